//! An experiment's plots, PNG and SVG, with an embedded font (DejaVu Sans):
//! a bar chart of every table (ours with their spread, the paper's beside
//! them), and the figure the experiment asks for: learning curves per row
//! (the paper's Figure 2), error against a numeric axis (Figures 3 and 4), or
//! the learning rate of each schedule over its run.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use bertfit_run::write_atomic;
use bertfit_train::Schedule;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::cell_stats::Stats;
use crate::experiment::Figure;
use crate::report::Report;

const SIZE: (u32, u32) = (1000, 600);
const FONT: &str = "sans-serif";

fn palette(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    COLORS[i % COLORS.len()]
}

fn register_font() -> Result<()> {
    static ONCE: std::sync::Once = std::sync::Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
            .map_err(|_| anyhow!("the embedded font is unreadable"));
    });
    result
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotting failed: {e:?}")
}

/// The series' legend, in one style for every plot, at `position`.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<()> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 14))
        .position(position)
        .draw()
        .map_err(err)
}

/// Draws with `draw` into `STEM.svg` and `STEM.png`; returns both paths.
fn render(
    stem: &Path,
    draw: &dyn Fn(DrawingArea<SVGBackend, Shift>) -> Result<()>,
    draw_png: &dyn Fn(DrawingArea<BitMapBackend, Shift>) -> Result<()>,
) -> Result<Vec<PathBuf>> {
    register_font()?;
    // Drawn in memory and written under a temporary name: two workers
    // rendering one experiment at once never leave half a picture.
    let svg = stem.with_extension("svg");
    let mut svg_text = String::new();
    draw(SVGBackend::with_string(&mut svg_text, SIZE).into_drawing_area())?;
    write_atomic(&svg, &svg_text)?;
    let mut buffer = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
    draw_png(BitMapBackend::with_buffer(&mut buffer, SIZE).into_drawing_area())?;
    let png_path = stem.with_extension("png");
    let mut png_bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut png_bytes, SIZE.0, SIZE.1);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header().map_err(err)?.write_image_data(&buffer).map_err(err)?;
    write_atomic(&png_path, &png_bytes)?;
    Ok(vec![png_path, svg])
}

/// Every plot of the report into `dir`; returns the files written.
pub fn plot_all(report: &Report, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = render(&dir.join("bars"), &|area| bars(report, area), &|area| bars(report, area))?;
    match &report.grid.experiment.figure {
        Some(Figure::LearningCurves) => {
            files.extend(render(&dir.join("curves"), &|a| learning_curves(report, a), &|a| learning_curves(report, a))?)
        }
        Some(Figure::Line { x_label, log_x }) => {
            files.extend(render(&dir.join("line"), &|a| line(report, x_label, *log_x, a), &|a| line(report, x_label, *log_x, a))?)
        }
        Some(Figure::Schedules) => files.extend(render(&dir.join("schedules"), &|a| schedules(report, a), &|a| schedules(report, a))?),
        None => {}
    }
    Ok(files)
}

fn title(report: &Report, what: &str) -> String {
    let grid = report.grid;
    format!("{} ({}): {what}, {} profile", grid.name, grid.experiment.reproduces, grid.profile_name)
}

/// Grouped bars: for each row, ours and the paper's per column.
fn bars<DB: DrawingBackend>(report: &Report, area: DrawingArea<DB, Shift>) -> Result<()> {
    let grid = report.grid;
    area.fill(&WHITE).map_err(err)?;
    let (rows, columns) = (grid.rows.len(), grid.columns.len());
    let mut top: f64 = 1.0;
    for r in 0..rows {
        for c in 0..columns {
            if let Some(s) = report.stats(r, c).filter(|s| s.n > 0) {
                top = top.max(100.0 * (s.mean + s.spread));
            }
            if let Some(p) = grid.experiment.paper_number(&grid.rows[r], &grid.columns[c]) {
                top = top.max(p);
            }
        }
    }
    // Headroom above the tallest bar for the legend in the upper right (two
    // entries a column, about 19 px each), so that it covers no bar.
    let plot_height = (area.dim_in_pixel().1 as f64 - 130.0).max(100.0);
    let legend_share = (((2 * columns) as f64 * 19.0 + 25.0) / plot_height).min(0.6);
    let mut chart = ChartBuilder::on(&area)
        .caption(title(report, "test error (%)"), (FONT, 22))
        .margin(15)
        .x_label_area_size(60)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..rows as f64 - 0.5, 0f64..(top * 1.05 / (1.0 - legend_share)).max(top * 1.15))
        .map_err(err)?;
    let labels: Vec<String> = grid.rows.iter().map(|r| r.label.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(rows)
        .x_label_formatter(&|x| {
            labels.get(x.round().max(0.0) as usize).filter(|_| (x - x.round()).abs() < 1e-6).cloned().unwrap_or_default()
        })
        .x_desc(grid.experiment.rows.name.clone())
        .y_desc("test error (%)")
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(err)?;
    let slot = 0.8 / (2 * columns) as f64;
    for (c, column) in grid.columns.iter().enumerate() {
        let color = palette(c);
        let ours: Vec<(usize, Stats)> = (0..rows).filter_map(|r| report.stats(r, c).filter(|s| s.n > 0).map(|s| (r, s))).collect();
        let left = |r: usize, k: usize| r as f64 - 0.4 + (2 * c + k) as f64 * slot;
        chart
            .draw_series(
                ours.iter().map(|(r, s)| Rectangle::new([(left(*r, 0), 0.0), (left(*r, 0) + slot * 0.9, 100.0 * s.mean)], color.filled())),
            )
            .map_err(err)?
            .label(format!("{}: ours", column.label))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        chart
            .draw_series(ours.iter().map(|(r, s)| {
                let x = left(*r, 0) + slot * 0.45;
                PathElement::new(vec![(x, 100.0 * (s.mean - s.spread)), (x, 100.0 * (s.mean + s.spread))], BLACK.stroke_width(2))
            }))
            .map_err(err)?;
        let paper: Vec<(usize, f64)> =
            (0..rows).filter_map(|r| grid.experiment.paper_number(&grid.rows[r], column).map(|p| (r, p))).collect();
        let light = color.mix(0.35);
        chart
            .draw_series(paper.iter().map(|(r, p)| Rectangle::new([(left(*r, 1), 0.0), (left(*r, 1) + slot * 0.9, *p)], light.filled())))
            .map_err(err)?
            .label(format!("{}: paper", column.label))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], light.filled()));
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    area.present().map_err(err)
}

/// Whether every run of the report has a test error at every epoch (`training.test_every_epoch`).
fn test_every_epoch(report: &Report) -> bool {
    report.all_runs().all(|m| m.result.curve.iter().all(|e| e.test_error.is_some()))
}

/// Mean over seeds of each epoch's test error (`test`) or dev error, [epoch]
/// (the shortest curve's length).
fn mean_curve(report: &Report, r: usize, c: usize, test: bool) -> Vec<f64> {
    let runs = report.runs(r, c);
    let epochs = runs.iter().map(|m| m.result.curve.len()).min().unwrap_or(0);
    let error = |e: &bertfit_train::EpochRecord| if test { e.test_error.unwrap_or(f64::NAN) } else { e.dev_error };
    (0..epochs).map(|e| runs.iter().map(|m| error(&m.result.curve[e])).sum::<f64>() / runs.len() as f64).collect()
}

fn learning_curves<DB: DrawingBackend>(report: &Report, area: DrawingArea<DB, Shift>) -> Result<()> {
    let grid = report.grid;
    area.fill(&WHITE).map_err(err)?;
    // Test errors per epoch where the runs evaluated them, else dev's.
    let test = test_every_epoch(report);
    let split = if test { "test" } else { "dev" };
    let mut series = Vec::new();
    for (r, row) in grid.rows.iter().enumerate() {
        for (c, column) in grid.columns.iter().enumerate() {
            let curve = mean_curve(report, r, c, test);
            if !curve.is_empty() {
                let label = if grid.columns.len() > 1 { format!("{} / {}", row.label, column.label) } else { row.label.clone() };
                series.push((label, curve));
            }
        }
    }
    let epochs = series.iter().map(|(_, c)| c.len()).max().unwrap_or(1).max(2);
    let top = series.iter().flat_map(|(_, c)| c.iter()).fold(1.0f64, |m, &v| m.max(100.0 * v));
    let mut chart = ChartBuilder::on(&area)
        .caption(title(report, &format!("{split} error per epoch")), (FONT, 22))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(1f64..epochs as f64, 0f64..top * 1.1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(epochs)
        .x_desc("epoch")
        .y_desc(format!("{split} error (%)"))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(err)?;
    for (i, (label, curve)) in series.iter().enumerate() {
        let color = palette(i);
        let points: Vec<(f64, f64)> = curve.iter().enumerate().map(|(e, v)| ((e + 1) as f64, 100.0 * v)).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled()))).map_err(err)?;
    }
    // Upper right: error curves fall, so the legend covers none of their last points.
    legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    area.present().map_err(err)
}

fn line<DB: DrawingBackend>(report: &Report, x_label: &str, log_x: bool, area: DrawingArea<DB, Shift>) -> Result<()> {
    let grid = report.grid;
    area.fill(&WHITE).map_err(err)?;
    let xs: Vec<f64> = grid.rows.iter().map(|r| r.x.unwrap_or(0.0)).collect();
    let to_axis = |x: f64| if log_x { x.max(1e-12).log10() } else { x };
    let (lo, hi) = xs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| (lo.min(to_axis(x)), hi.max(to_axis(x))));
    let pad = ((hi - lo) * 0.05).max(0.05);
    let mut top: f64 = 1.0;
    for r in 0..grid.rows.len() {
        for c in 0..grid.columns.len() {
            if let Some(s) = report.stats(r, c).filter(|s| s.n > 0) {
                top = top.max(100.0 * (s.mean + s.spread));
            }
        }
    }
    let mut chart = ChartBuilder::on(&area)
        .caption(title(report, "test error"), (FONT, 22))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(lo - pad..hi + pad, 0f64..top * 1.1)
        .map_err(err)?;
    let x_desc = if log_x { format!("{x_label} (log scale)") } else { x_label.to_string() };
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("test error (%)")
        .x_label_formatter(&|x| if log_x { format!("{}", 10f64.powf(*x)) } else { format!("{x}") })
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(err)?;
    for (c, column) in grid.columns.iter().enumerate() {
        let color = palette(c);
        let points: Vec<(f64, Stats)> =
            (0..grid.rows.len()).filter_map(|r| report.stats(r, c).filter(|s| s.n > 0).map(|s| (to_axis(xs[r]), s))).collect();
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(points.iter().map(|(x, s)| (*x, 100.0 * s.mean)), color.stroke_width(2)))
            .map_err(err)?
            .label(column.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        chart
            .draw_series(points.iter().map(|(x, s)| {
                PathElement::new(vec![(*x, 100.0 * (s.mean - s.spread)), (*x, 100.0 * (s.mean + s.spread))], color.stroke_width(1))
            }))
            .map_err(err)?;
        chart.draw_series(points.iter().map(|(x, s)| Circle::new((*x, 100.0 * s.mean), 4, color.filled()))).map_err(err)?;
    }
    legend(&mut chart, SeriesLabelPosition::MiddleRight)?;
    area.present().map_err(err)
}

/// Each row's learning rate at every step of its (first) run.
fn schedules<DB: DrawingBackend>(report: &Report, area: DrawingArea<DB, Shift>) -> Result<()> {
    let grid = report.grid;
    area.fill(&WHITE).map_err(err)?;
    let mut series = Vec::new();
    for (r, row) in grid.rows.iter().enumerate() {
        if let Some(run) = (0..grid.columns.len()).flat_map(|c| report.runs(r, c).first()).next() {
            let t = &run.config.training;
            let total = run.result.steps.max(1) as usize;
            let schedule = t.schedule.build(t.lr, total);
            series.push((row.label.clone(), (0..total).map(|s| (s as f64, schedule.lr(s))).collect::<Vec<_>>()));
        }
    }
    let steps = series.iter().map(|(_, p)| p.len()).max().unwrap_or(1).max(2) as f64;
    let top = series.iter().flat_map(|(_, p)| p.iter()).fold(1e-12f64, |m, &(_, lr)| m.max(lr));
    let mut chart = ChartBuilder::on(&area)
        .caption(title(report, "learning rate per step"), (FONT, 22))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..steps, 0f64..top * 1.1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("optimizer step")
        .y_desc("learning rate")
        .y_label_formatter(&|y| format!("{y:.1e}"))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(err)?;
    for (i, (label, points)) in series.iter().enumerate() {
        let color = palette(i);
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
    }
    legend(&mut chart, SeriesLabelPosition::MiddleRight)?;
    area.present().map_err(err)
}
