//! An experiment's error-rate table in the paper's layout, ours beside the
//! paper's numbers: `table.md` (with a header that says what produced it, and
//! the paper's claims judged below) and `table.csv` (one line per cell).

use std::collections::BTreeSet;
use std::fmt::Write;

use crate::cell_stats::{Stats, thousands};
use crate::claims::{Verdict, judge};
use crate::report::{CellState, Report};

/// A cell's error in percent: `mean ± spread`, `*` when the spread is the
/// binomial standard error of one seed.
pub fn cell_text(stats: &Stats) -> String {
    if stats.n == 0 {
        return format!("diverged ({}/{})", stats.diverged, stats.runs);
    }
    let of = if stats.runs > stats.n { format!(" of {}", stats.runs) } else { String::new() };
    let diverged = if stats.diverged > 0 { format!(", {} diverged", stats.diverged) } else { String::new() };
    let unconverged = if stats.unconverged > 0 { format!(" †{}/{}", stats.unconverged, stats.n) } else { String::new() };
    if stats.n == 1 {
        let seeds = if of.is_empty() && diverged.is_empty() { String::new() } else { format!(" (1{of}{diverged})") };
        format!("{:.2} ± {:.2}*{seeds}{unconverged}", 100.0 * stats.mean, 100.0 * stats.spread)
    } else {
        format!("{:.2} ± {:.2} (n={}{of}{diverged}){unconverged}", 100.0 * stats.mean, 100.0 * stats.spread, stats.n)
    }
}

/// How the default model is named; any other by its setting.
pub fn model_label(model: Option<&str>) -> String {
    match model {
        None => "all-MiniLM-L6-v2 (the embedded default)".into(),
        Some(m) => m.strip_prefix("hf:").unwrap_or(m).to_string(),
    }
}

/// `table.md`: the header that says what produced the table, the table beside
/// the paper's numbers, and the paper's claims judged.
pub fn markdown(report: &Report) -> String {
    let mut md = String::new();
    write_header(&mut md, report);
    write_table(&mut md, report);
    write_claims(&mut md, report);
    md
}

/// What produced the table: experiment, profile, model, data, backend, seeds, commit, cells.
fn write_header(md: &mut String, report: &Report) {
    let grid = report.grid;
    let e = &grid.experiment;
    let _ = writeln!(md, "# {}: {} ({} profile)\n", grid.name, e.title, grid.profile_name);
    let _ = writeln!(
        md,
        "Reproduces {} of Sun, Qiu, Xu, Huang (2019), \"How to Fine-Tune BERT for Text Classification?\". Test error in percent, ours beside the paper's. {}\n",
        e.reproduces,
        e.description.trim()
    );
    let _ = writeln!(md, "- **Profile** `{}`: {}", grid.profile_name, grid.profile.description.trim());
    let runs: Vec<_> = report.all_runs().collect();
    let models: BTreeSet<String> = runs.iter().map(|r| model_label(r.config.model.as_deref())).collect();
    let set_models: BTreeSet<String> =
        grid.cells.iter().filter_map(|c| c.config.as_ref()).map(|c| model_label(c.model.as_deref())).collect();
    let _ = writeln!(md, "- **Model**: {}", if models.is_empty() { set_models } else { models }.into_iter().collect::<Vec<_>>().join("; "));
    let data_lines = data_lines(report);
    if !data_lines.is_empty() {
        let _ = writeln!(md, "- **Data**: {}", data_lines.join("; "));
    }
    let capped = capped_lines(report);
    if !capped.is_empty() {
        let _ = writeln!(md, "- **Documents over `max_chunks`** (first and last chunks kept): {}", capped.join("; "));
    }
    let backends: BTreeSet<&str> = runs.iter().map(|r| r.backend.as_str()).collect();
    let commits: BTreeSet<&str> = runs.iter().map(|r| r.commit.as_str()).collect();
    let versions: BTreeSet<u64> = runs.iter().map(|r| r.results_version).collect();
    let seeds = grid.seeds.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ");
    let _ = writeln!(
        md,
        "- **Backend**: {}. **Seeds**: {} per cell (training seed offsets {seeds}). **Commit**: {}. **Results version**: {}. **Statistics version**: {}.",
        if backends.is_empty() { "-".into() } else { backends.into_iter().collect::<Vec<_>>().join(", ") },
        grid.seeds.len(),
        if commits.is_empty() { "-".into() } else { commits.iter().copied().collect::<Vec<_>>().join(", ") },
        if versions.is_empty() { "-".into() } else { versions.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ") },
        crate::inference::STATISTICS_VERSION,
    );
    if commits.len() > 1 || versions.len() > 1 {
        let _ = writeln!(
            md,
            "- **Mixed**: the runs of this table come from {} commits and {} results versions; cells may differ by the code as well as the method.",
            commits.len(),
            versions.len()
        );
    }
    if !grid.overrides.is_empty() {
        let _ = writeln!(md, "- **Overrides**: `--set {}`", grid.overrides.join("` `--set "));
    }
    let (done, partial, missing, failed) = report.counts();
    let compute: f64 = runs.iter().map(|r| r.result.train_seconds + r.result.curve.iter().map(|e| e.eval_seconds).sum::<f64>()).sum();
    let wall = if report.trained == 0 {
        format!("this invocation trained no run (all were done already): {:.1} min of reading and rendering", report.wall_seconds / 60.0)
    } else {
        format!("measured wall time of this invocation, which trained {} runs: {:.1} min", report.trained, report.wall_seconds / 60.0)
    };
    let _ = writeln!(
        md,
        "- **Cells**: {done} done, {partial} partly done, {missing} missing, {failed} failed. Training and evaluation time of the runs: {:.1} min; {wall}.",
        compute / 60.0,
    );
    let _ = writeln!(md);
}

/// Each column's data; said once when every column has the same (an axis that is not the dataset).
fn data_lines(report: &Report) -> Vec<String> {
    let grid = report.grid;
    let per_column: Vec<BTreeSet<String>> = (0..grid.columns.len())
        .map(|c| {
            (0..grid.rows.len())
                .flat_map(|r| report.runs(r, c))
                .map(|run| {
                    let p = &run.dataset;
                    let carved = p.test_carved.map(|f| format!(", test carved from train ({:.0}%)", 100.0 * f)).unwrap_or_default();
                    format!(
                        "`{}`: train {} / dev {} / test {} (split seed {}{carved})",
                        p.dataset,
                        thousands(run.sizes.train),
                        thousands(run.sizes.dev),
                        thousands(run.sizes.test),
                        p.split_seed
                    )
                })
                .collect()
        })
        .collect();
    if per_column.windows(2).all(|w| w[0] == w[1]) {
        per_column.first().map(|d| d.iter().cloned().collect()).unwrap_or_default()
    } else {
        grid.columns
            .iter()
            .zip(&per_column)
            .flat_map(|(column, d)| d.iter().map(move |line| format!("{} = {line}", column.label)))
            .collect()
    }
}

/// Cells whose documents lost middle chunks to `max_chunks`, with how many.
fn capped_lines(report: &Report) -> Vec<String> {
    let grid = report.grid;
    grid.rows
        .iter()
        .enumerate()
        .flat_map(|(r, row)| {
            grid.columns.iter().enumerate().filter_map(move |(c, column)| {
                let run = report.runs(r, c).first().filter(|m| m.capped.iter().any(|&n| n > 0))?;
                let [train, dev, test] = run.capped;
                let at = if grid.columns.len() > 1 { format!(" / {}", column.label) } else { String::new() };
                Some(format!(
                    "{}{at}: {train} of {} train, {dev} of {} dev, {test} of {} test",
                    row.label, run.sizes.train, run.sizes.dev, run.sizes.test
                ))
            })
        })
        .collect()
}

/// The table: rows × (ours, paper) per column, and the notes on missing or failed cells.
fn write_table(md: &mut String, report: &Report) {
    let grid = report.grid;
    let e = &grid.experiment;
    // The table: rows × (ours, paper) per column.
    let sizes_vary = grid.columns.iter().enumerate().any(|(c, _)| {
        let sizes: BTreeSet<_> =
            (0..grid.rows.len()).flat_map(|r| report.runs(r, c).iter().map(|m| (m.sizes.train, m.sizes.dev))).collect();
        sizes.len() > 1
    });
    let mut header = format!("| {} |", grid.experiment.rows.name);
    let mut rule = String::from("|---|");
    for column in &grid.columns {
        let paper = if column.paper_label() != column.label { format!(" ({})", column.paper_label()) } else { String::new() };
        let _ = write!(header, " {}: ours | paper{paper} |", column.label);
        rule.push_str("---|---|");
    }
    if sizes_vary {
        header.push_str(" train / dev |");
        rule.push_str("---|");
    }
    let _ = writeln!(md, "{header}\n{rule}");
    let mut notes: Vec<String> = Vec::new();
    for (r, row) in grid.rows.iter().enumerate() {
        let paper_row = if row.paper_label() != row.label { format!(" (paper: {})", row.paper_label()) } else { String::new() };
        let mut line = format!("| {}{paper_row} |", row.label);
        for (c, column) in grid.columns.iter().enumerate() {
            let ours = match report.state(r, c) {
                CellState::Runs { done, pending, .. } => {
                    let text = Stats::of(done).map(|s| cell_text(&s)).unwrap_or_else(|| "not run yet".into());
                    if *pending > 0 && !done.is_empty() { format!("{text} ({pending} seeds to run)") } else { text }
                }
                CellState::Skipped => "-".to_string(),
                CellState::Missing(why) | CellState::Failed(why) => {
                    let kind = if matches!(report.state(r, c), CellState::Missing(_)) { "missing" } else { "failed" };
                    let note = match notes.iter().position(|n| n == why) {
                        Some(i) => i + 1,
                        None => {
                            notes.push(why.clone());
                            notes.len()
                        }
                    };
                    format!("{kind} [{note}]")
                }
            };
            let paper = e.paper_number(row, column).map(|p| format!("{p:.2}")).unwrap_or_else(|| "-".into());
            let _ = write!(line, " {ours} | {paper} |");
        }
        if sizes_vary {
            let sizes: BTreeSet<String> = (0..grid.columns.len())
                .flat_map(|c| report.runs(r, c).iter().map(|m| format!("{} / {}", thousands(m.sizes.train), thousands(m.sizes.dev))))
                .collect();
            let _ = write!(line, " {} |", sizes.into_iter().collect::<Vec<_>>().join(", "));
        }
        let _ = writeln!(md, "{line}");
    }
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "± is the standard deviation over the seeds (n of them); `*` marks a single seed, where ± is the binomial standard error of its test error, sqrt(p(1-p)/test size). The paper's numbers are single runs of BERT-base on the full datasets, selected on the test set; ours select the epoch on dev."
    );
    let unconverged = unconverged_lines(report);
    if !unconverged.is_empty() {
        let _ = writeln!(
            md,
            "\n† k/n: k of the cell's n seeds had not converged when they stopped (best epoch on dev the last, with the dev error still falling by more than its noise, or no better than always the majority class); a claim that needs such a cell says it cannot judge it. Not converged here:"
        );
        for line in unconverged {
            let _ = writeln!(md, "- {line}");
        }
    }
    for (i, note) in notes.iter().enumerate() {
        let _ = writeln!(md, "\n[{}] {note}", i + 1);
    }
}

/// Each cell with seeds that had not converged, and why its first such seed had not.
fn unconverged_lines(report: &Report) -> Vec<String> {
    let grid = report.grid;
    let mut lines = Vec::new();
    for (r, row) in grid.rows.iter().enumerate() {
        for (c, column) in grid.columns.iter().enumerate() {
            if let Some(u) = crate::cell_stats::unconverged(report.runs(r, c)) {
                let at = if grid.columns.len() > 1 { format!(" / {}", column.label) } else { String::new() };
                lines.push(format!("{}{at}: {} of {} seeds (seed {}: {})", row.label, u.count, u.scored, u.seed, u.why));
            }
        }
    }
    lines
}

/// The paper's claims, each judged in every column (or row) of the table.
fn write_claims(md: &mut String, report: &Report) {
    let e = &report.grid.experiment;
    if !e.claims.is_empty() {
        let _ = writeln!(md, "\n## The paper's claims\n");
        let _ = writeln!(
            md,
            "Cells scored on the same test examples are compared paired: with one seed a side, the exact McNemar test and the Wald interval of the difference; with several seeds, a bootstrap that draws the test examples once for both cells, then the seeds ({} resamples): together when the two cells share their seeds (every cell of a grid trains with the same seed offsets, which fix the head's initialisation and the data order), each cell's own otherwise, as each line says. Its 95% interval holds both the seed-to-seed and the test-sampling variation. A seed that diverged has no test predictions and is left out of the test (the cell says so). A claim of several comparisons is corrected by Holm's method. A claim is supported or contradicted only when its comparisons separate (the interval excludes zero, the corrected p-value is below 0.05); otherwise our numbers cannot separate the cells. A claim that needs a cell whose seeds had not converged (marked †) cannot judge it. Differences are in error points, the first cell minus the other; the detectable difference is the smallest true one this profile would find with 80% power, under the design used. The paper's own numbers are single runs; whether they separate the claim at the paper's test size is judged as independent binomials.\n",
            crate::inference::RESAMPLES
        );
        for claim in &e.claims {
            let judgements = judge(report, claim);
            let _ = writeln!(md, "- {}", claim.text);
            for j in judgements {
                let mark = match j.verdict {
                    Verdict::NotMeasured | Verdict::CannotJudge => format!("*{}*", j.verdict.words()),
                    _ => format!("**{}**", j.verdict.words()),
                };
                let _ = writeln!(md, "  - {}: {mark}: {}", j.scope, j.detail);
            }
        }
    }
}

pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

/// `table.csv`: one line per cell.
pub fn csv(report: &Report) -> String {
    let grid = report.grid;
    let mut out = String::from(
        "row,column,paper_row,paper_column,status,mean_error_pct,spread_pct,n,diverged,paper_error_pct,train,dev,test,backend,commit,runs,note\n",
    );
    for (r, row) in grid.rows.iter().enumerate() {
        for (c, column) in grid.columns.iter().enumerate() {
            let paper = grid.experiment.paper_number(row, column).map(|p| p.to_string()).unwrap_or_default();
            let runs = report.runs(r, c);
            let (status, note) = match report.state(r, c) {
                CellState::Missing(why) => ("missing", why.clone()),
                CellState::Failed(why) => ("failed", why.clone()),
                CellState::Runs { pending: 0, .. } => ("done", String::new()),
                CellState::Runs { pending, .. } => ("partial", format!("{pending} seeds to run")),
                CellState::Skipped => ("not in the experiment", String::new()),
            };
            let stats = Stats::of(runs);
            let number = |f: fn(&Stats) -> f64| stats.filter(|s| s.n > 0).map(|s| format!("{:.4}", 100.0 * f(&s))).unwrap_or_default();
            let first = runs.first();
            let fields = [
                row.label.clone(),
                column.label.clone(),
                row.paper_label().to_string(),
                column.paper_label().to_string(),
                status.to_string(),
                number(|s| s.mean),
                number(|s| s.spread),
                stats.map(|s| s.n.to_string()).unwrap_or_default(),
                stats.map(|s| s.diverged.to_string()).unwrap_or_default(),
                paper,
                first.map(|m| m.sizes.train.to_string()).unwrap_or_default(),
                first.map(|m| m.sizes.dev.to_string()).unwrap_or_default(),
                first.map(|m| m.sizes.test.to_string()).unwrap_or_default(),
                first.map(|m| m.backend.clone()).unwrap_or_default(),
                first.map(|m| m.commit.clone()).unwrap_or_default(),
                runs.iter().map(|m| m.identity.as_str()).collect::<Vec<_>>().join(" "),
                note,
            ];
            out.push_str(&fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
    }
    out
}
