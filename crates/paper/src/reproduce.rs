//! `bertfit reproduce NAME`: an experiment's grid, run by run, into
//! `results/NAME/` (`results/NAME/PROFILE/` for profiles other than quick):
//! every run in `runs/ID/` under its identity, then `table.md`, `table.csv`
//! and the plots, and `results/README.md`, the index of every table.
//!
//! Everything is checked before anything trains: the file's keys, every
//! cell's settings (against its model too), the datasets' sizes. A cell whose
//! dataset or model is not on this machine is marked missing, with what would
//! supply it; the rest of the grid runs. Finished runs are never redone: a
//! killed `reproduce` run again continues the unfinished run from its
//! checkpoint and skips the finished ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use bertfit_model::Backend;
use bertfit_run::{
    Predictions, PreparedRun, RunMetrics, RunOptions, execute, finished, predictions_path, stop_after_steps, summary, write_atomic,
};
use bertfit_train::progress::{Progress, ProgressTarget};
use indicatif::MultiProgress;

use crate::compare::{ResultSet, compare};
use crate::grid::{Grid, experiment_dirs, known, load_experiment};
use crate::index::write_index;
use crate::plan::{Planned, plan};
use crate::report::{CellState, Report, load_predictions};

/// How `reproduce` runs an experiment.
#[derive(Debug, Clone)]
pub struct ReproduceOptions {
    /// `quick` (2-core CPU, embedded model and data) or `paper` (the paper's settings, for a GPU).
    pub profile: String,
    /// Overrides every cell's backend.
    pub backend: Option<Backend>,
    /// Training seeds per cell (default: the profile's).
    pub seeds: Option<usize>,
    /// Settings of every cell's run, applied last (`training.lr=3e-5`); part of each run's identity.
    pub set: Vec<String>,
    /// Where results go.
    pub results: PathBuf,
    /// Committed results to compare with once the table is written (skipped
    /// when it is `results` itself or holds no table of this experiment and profile).
    pub reference: Option<PathBuf>,
    /// A folder of experiment files that add to or override the built-in ones.
    pub experiments: Option<PathBuf>,
    /// Also write each run's fine-tuned model (HF layout) to its run folder.
    pub keep_models: bool,
    /// No progress bars or log lines.
    pub quiet: bool,
}

impl ReproduceOptions {
    /// Folders whose experiment files add to or override the built-in ones.
    pub fn experiment_dirs(&self) -> Vec<PathBuf> {
        experiment_dirs(self.experiments.as_ref())
    }

    /// Options that cannot run, in one line, before anything is read or trained.
    pub fn check(&self) -> Result<()> {
        if self.seeds == Some(0) {
            bail!("--seeds 0: a cell needs at least one seed");
        }
        if let Some(dir) = &self.experiments
            && !dir.is_dir()
        {
            bail!("--experiments {}: no such folder", dir.display());
        }
        Ok(())
    }
}

/// Runs experiment `name`, or every one in turn for `all`.
pub fn reproduce(name: &str, options: &ReproduceOptions) -> Result<()> {
    let dirs = options.experiment_dirs();
    if name != "all" {
        return reproduce_one(name, options, &dirs);
    }
    let mut failed = Vec::new();
    for name in known(&dirs) {
        if let Err(e) = reproduce_one(&name, options, &dirs) {
            eprintln!("error: {name}: {e:#}");
            failed.push(name);
        }
    }
    if !failed.is_empty() {
        bail!("these experiments did not finish: {}", failed.join(", "));
    }
    Ok(())
}

/// Where a profile's tables and plots go.
fn output_dir(results: &Path, name: &str, profile: &str) -> PathBuf {
    if profile == "quick" { results.join(name) } else { results.join(name).join(profile) }
}

fn reproduce_one(name: &str, options: &ReproduceOptions, dirs: &[PathBuf]) -> Result<()> {
    let start = Instant::now();
    let (experiment, file) = load_experiment(name, dirs)?;
    let grid = Grid::build(name, experiment, file, &options.profile, &options.set, options.seeds)?;
    let planned = plan(&grid, options.backend)?;
    let runs = Runs { dir: options.results.join(name).join("runs") };
    let todo = runs.to_do(&grid, &planned, options.quiet)?;
    let (failures, stopped) = run_all(&grid, &planned, &todo, &runs, options)?;
    let cells = collect(&grid, &planned, &failures, &runs)?;
    let trained = todo.len() - failures.len();
    let report = Report { grid: &grid, cells, wall_seconds: start.elapsed().as_secs_f64(), trained };
    let out = output_dir(&options.results, name, &grid.profile_name);
    write_report(&report, &out, options)?;
    if stopped {
        return Ok(());
    }
    if let Some(reference) = &options.reference {
        against_reference(&out, &output_dir(reference, name, &grid.profile_name), options.quiet)?;
    }
    if !failures.is_empty() {
        bail!("{} runs of {name} failed; their errors are in {}", failures.len(), out.join("table.md").display());
    }
    Ok(())
}

/// Compares the table just written in `out` with the reference's table of the
/// same experiment and profile, into `out/reference.md` and `reference.csv`,
/// and says the outcome in one line; nothing when there is no such reference
/// (or it is `out` itself).
fn against_reference(out: &Path, reference: &Path, quiet: bool) -> Result<()> {
    let same = |a: &Path, b: &Path| a.canonicalize().ok().zip(b.canonicalize().ok()).is_some_and(|(a, b)| a == b);
    if !reference.join("table.csv").is_file() || same(out, reference) {
        return Ok(());
    }
    let ours = ResultSet::read(out, &out.display().to_string())?;
    let theirs = ResultSet::read(reference, &format!("the reference {}", reference.display()))?;
    match compare(&ours, &theirs) {
        Ok(comparison) => {
            write_atomic(&out.join("reference.md"), &comparison.markdown())?;
            write_atomic(&out.join("reference.csv"), &comparison.csv())?;
            if !quiet {
                eprintln!("{} (in {})", comparison.summary(), out.join("reference.md").display());
            }
        }
        Err(e) if !quiet => eprintln!("not compared with the reference: {e:#}"),
        Err(_) => {}
    }
    Ok(())
}

/// Where an experiment's runs live: `runs/ID/`, one folder per run identity.
struct Runs {
    dir: PathBuf,
}

impl Runs {
    fn of(&self, run: &PreparedRun) -> PathBuf {
        self.dir.join(&run.identity)
    }

    fn finished(&self, run: &PreparedRun) -> Result<Option<RunMetrics>> {
        finished(&self.of(run), &run.identity, "run")
    }

    /// A finished run's test predictions; `None` for a run written before runs
    /// kept them, or one that never finished an epoch. A file that does not
    /// match its run's test set is refused, naming it.
    fn predictions(&self, run: &RunMetrics) -> Result<Option<Predictions>> {
        load_predictions(&self.dir.join(&run.identity), run)
    }

    /// The planned runs not finished yet (indices into `planned`), said in one line.
    fn to_do(&self, grid: &Grid, planned: &[Planned], quiet: bool) -> Result<Vec<usize>> {
        let mut done = 0;
        let mut todo = Vec::new();
        for (i, p) in planned.iter().enumerate() {
            if let Ok(run) = &p.run {
                if self.finished(run)?.is_some() {
                    done += 1;
                } else {
                    todo.push(i);
                }
            }
        }
        let missing = planned.len() - done - todo.len();
        if !quiet {
            eprintln!(
                "{} ({}, profile {}): {} cells × {} seeds = {} runs: {done} done, {} to run, {missing} missing here",
                grid.name,
                grid.experiment.reproduces,
                grid.profile_name,
                grid.cells.len(),
                grid.seeds.len(),
                planned.len(),
                todo.len()
            );
        }
        Ok(todo)
    }
}

/// Trains the runs `todo`, one after the other: the errors of those that
/// failed (by index into `planned`), and whether it stopped on request.
fn run_all(
    grid: &Grid,
    planned: &[Planned],
    todo: &[usize],
    runs: &Runs,
    options: &ReproduceOptions,
) -> Result<(BTreeMap<usize, String>, bool)> {
    let multi = MultiProgress::new();
    let target = if options.quiet { ProgressTarget::Quiet } else { ProgressTarget::Under(multi.clone()) };
    let bar = Progress::new(todo.len() as u64, "runs", &target).log_every(1);
    bar.set_prefix(format!("{} ({})", grid.name, grid.profile_name));
    let run_options = RunOptions { progress: target, export_model: options.keep_models, stop_after_steps: stop_after_steps()? };
    let mut failures = BTreeMap::new();
    let mut stopped = false;
    for (k, &i) in todo.iter().enumerate() {
        let p = &planned[i];
        let run = p.run.as_ref().expect("only runnable ones are to do");
        let cell = &grid.cells[p.cell];
        let label = format!("{} / {} seed {}", grid.rows[cell.row].label, grid.columns[cell.column].label, run.config.training.seed);
        bar.update(k as u64, format!("running {label}"));
        match execute(run, &runs.of(run), &run_options) {
            Ok(Some(metrics)) => bar.println(format!("{label}: {}", summary(&metrics))),
            Ok(None) => {
                bar.println(format!("{label}: stopped as BERTFIT_STOP_AFTER_STEPS asked; rerun to resume"));
                stopped = true;
                break;
            }
            Err(e) => {
                bar.println(format!("{label}: failed: {e:#}"));
                failures.insert(i, format!("{e:#}"));
            }
        }
        bar.update(k as u64 + 1, format!("finished {label}"));
    }
    bar.finish();
    Ok((failures, stopped))
}

/// `table.md`, `table.csv` and the plots into `out`, and the index of `results/`.
fn write_report(report: &Report, out: &Path, options: &ReproduceOptions) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let table = crate::table::markdown(report);
    write_atomic(&out.join("table.md"), &table)?;
    write_atomic(&out.join("table.csv"), &crate::table::csv(report))?;
    let plots = crate::plots::plot_all(report, out)?;
    write_index(&options.results)?;
    if !options.quiet {
        print!("{table}");
        eprintln!(
            "wrote {} and {} in {:.1} min",
            out.join("table.md").display(),
            plots.iter().map(|p| p.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect::<Vec<_>>().join(", "),
            report.wall_seconds / 60.0
        );
    }
    Ok(())
}

/// Refuses a cell whose seeds were scored on different test examples, naming the file.
fn same_examples(done: &[RunMetrics], predictions: &[Option<Predictions>], runs: &Runs) -> Result<()> {
    let scored: Vec<(&RunMetrics, &Predictions)> = done.iter().zip(predictions).filter_map(|(m, p)| Some((m, p.as_ref()?))).collect();
    if let Some((first, p0)) = scored.first() {
        for (m, p) in &scored[1..] {
            if p.ids != p0.ids {
                bail!(
                    "{}: its test examples differ from those of {} (a seed of the same cell)",
                    predictions_path(&runs.dir.join(&m.identity), "test").display(),
                    predictions_path(&runs.dir.join(&first.identity), "test").display()
                );
            }
        }
    }
    Ok(())
}

/// Each cell's state from its planned runs.
fn collect(grid: &Grid, planned: &[Planned], failures: &BTreeMap<usize, String>, runs: &Runs) -> Result<Vec<CellState>> {
    let mut cells = Vec::with_capacity(grid.cells.len());
    for c in 0..grid.cells.len() {
        let mut done: Vec<RunMetrics> = Vec::new();
        let mut pending = 0;
        let mut missing = None;
        let mut failed = None;
        for (i, p) in planned.iter().enumerate().filter(|(_, p)| p.cell == c) {
            match &p.run {
                Err(why) => missing = Some(why.clone()),
                Ok(run) => match runs.finished(run)? {
                    Some(m) => done.push(m),
                    None => match failures.get(&i) {
                        Some(e) => failed = Some(e.clone()),
                        None => pending += 1,
                    },
                },
            }
        }
        if grid.cells[c].config.is_none() {
            cells.push(CellState::Skipped);
            continue;
        }
        let predictions = done.iter().map(|m| runs.predictions(m)).collect::<Result<Vec<_>>>()?;
        same_examples(&done, &predictions, runs)?;
        cells.push(match (missing, failed) {
            (Some(why), _) => CellState::Missing(why),
            (None, Some(e)) if done.is_empty() => CellState::Failed(e),
            _ => CellState::Runs { done, predictions, pending },
        });
    }
    Ok(cells)
}
