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
use bertfit_run::run_lock::{Claim, claim};
use bertfit_run::{
    Predictions, PreparedPretrain, RunMetrics, RunOptions, execute, predictions_path, pretrain_stage, stop_after_steps, summary,
    write_atomic,
};
use bertfit_train::progress::{Progress, ProgressTarget};
use indicatif::MultiProgress;

use crate::cluster::submit;
use crate::compare::{ResultSet, compare};
use crate::grid::{Grid, known, load_experiment};
use crate::index::write_index;
use crate::options::{Action, ReproduceOptions};
use crate::plan::{Planned, plan};
use crate::report::{CellState, Report};
use crate::runs::{Outcome, Runs, run_label};
use crate::status::status;
use crate::workers::run_in_workers;

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
    let out = output_dir(&options.results, name, &grid.profile_name);
    let todo = match &options.action {
        Action::OnlyRun(identity) => return run_only(&grid, &planned, &runs, identity, options),
        Action::OnlyStage(identity) => return stage_only(&grid, &planned, identity, options),
        Action::Status => {
            print!("{}", status(&grid, &planned, &runs, &out)?);
            return Ok(());
        }
        Action::Render => Vec::new(),
        Action::Slurm(slurm) => {
            let todo = runs.to_do(&grid, &planned, options.quiet)?;
            if !todo.is_empty() {
                return submit(&grid, &planned, &todo, &out, options, slurm);
            }
            eprintln!("{name}: every run is done; nothing to submit, the table is rendered here");
            todo
        }
        Action::TrainAndRender => runs.to_do(&grid, &planned, options.quiet)?,
    };
    let outcome = if todo.is_empty() {
        Outcome::default()
    } else if options.jobs > 1 || !options.devices.is_empty() {
        run_in_workers(&grid, &planned, &todo, &runs, options)?
    } else {
        run_all(&grid, &planned, &todo, &runs, options)?
    };
    let Outcome { failures, elsewhere, stopped, trained } = outcome;
    let cells = collect(&grid, &planned, &failures, &runs)?;
    if !options.quiet {
        let elsewhere = if elsewhere > 0 { format!("; {elsewhere} held by other workers, left to them") } else { String::new() };
        eprintln!("{name}: {trained} of {} runs to do trained here{elsewhere}", todo.len());
    }
    let report = Report { grid: &grid, cells, wall_seconds: start.elapsed().as_secs_f64(), trained };
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

/// `--run ID`: trains the one run of the grid with this identity, unless it is
/// finished or another worker holds it; renders nothing.
fn run_only(grid: &Grid, planned: &[Planned], runs: &Runs, identity: &str, options: &ReproduceOptions) -> Result<()> {
    crate::workers::watch_parent();
    let Some(p) = planned.iter().find(|p| p.run.as_ref().is_ok_and(|r| r.identity == identity)) else {
        bail!("{}: no run {identity} in its grid (profile {}) that can run here", grid.file.label, grid.profile_name);
    };
    let run = p.run.as_ref().expect("found among the runnable");
    let label = run_label(grid, p);
    if runs.finished(run)?.is_some() {
        eprintln!("{label}: run {identity} is finished already");
        crate::workers::left_to_another();
        return Ok(());
    }
    let lock = match claim(&runs.lock(run))? {
        Claim::Held(owner) => {
            eprintln!("{label}: run {identity} is being trained by {}; left to it", owner.describe());
            crate::workers::left_to_another();
            return Ok(());
        }
        Claim::Claimed(lock) => lock,
    };
    if runs.finished(run)?.is_some() {
        eprintln!("{label}: run {identity} was finished by another worker");
        drop(lock);
        crate::workers::left_to_another();
        return Ok(());
    }
    let run_options = RunOptions::from_env(options.quiet, options.keep_models)?;
    match execute(run, &runs.of(run), &run_options)? {
        Some(metrics) => eprintln!("{label}: {}", summary(&metrics)),
        None => eprintln!("{label}: stopped as BERTFIT_STOP_AFTER_STEPS asked; rerun to resume"),
    }
    Ok(())
}

/// `--pretrain-stage ID`: trains the further pre-training stage of this
/// identity that runs of the grid start from (unless the stage cache holds it
/// finished, or another worker trains it: then it waits for that one); trains
/// no run and renders nothing.
fn stage_only(grid: &Grid, planned: &[Planned], identity: &str, options: &ReproduceOptions) -> Result<()> {
    for run in planned.iter().filter_map(|p| p.run.as_ref().ok()) {
        let Some(pretrain) = PreparedPretrain::for_run(&run.config, run.backend)? else { continue };
        if pretrain.identity != identity {
            continue;
        }
        let run_options = RunOptions::from_env(options.quiet, false)?;
        match pretrain_stage(&pretrain, None, &run_options)? {
            Some((metrics, _)) => eprintln!("pre-training stage {identity}: {}", bertfit_run::pretrain::summary(&metrics)),
            None => eprintln!("pre-training stage {identity}: stopped as BERTFIT_STOP_AFTER_STEPS asked; rerun to resume"),
        }
        return Ok(());
    }
    bail!("{}: no run of its grid (profile {}) starts from a pre-training stage {identity}", grid.file.label, grid.profile_name)
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
            write_atomic(&out.join("reference.md"), comparison.markdown())?;
            write_atomic(&out.join("reference.csv"), comparison.csv())?;
            if !quiet {
                eprintln!("{} (in {})", comparison.summary(), out.join("reference.md").display());
            }
        }
        Err(e) if !quiet => eprintln!("not compared with the reference: {e:#}"),
        Err(_) => {}
    }
    Ok(())
}

/// Trains the runs `todo` in this process, one after the other, each under
/// its lock; a run another worker holds is left to it.
fn run_all(grid: &Grid, planned: &[Planned], todo: &[usize], runs: &Runs, options: &ReproduceOptions) -> Result<Outcome> {
    let multi = MultiProgress::new();
    let target = if options.quiet { ProgressTarget::Quiet } else { ProgressTarget::Under(multi.clone()) };
    let bar = Progress::new(todo.len() as u64, "runs", &target).log_every(1);
    bar.set_prefix(format!("{} ({})", grid.name, grid.profile_name));
    let run_options = RunOptions { progress: target, export_model: options.keep_models, stop_after_steps: stop_after_steps()? };
    let mut outcome = Outcome::default();
    for (k, &i) in todo.iter().enumerate() {
        let p = &planned[i];
        let run = p.run.as_ref().expect("only runnable ones are to do");
        let label = run_label(grid, p);
        let _lock = match claim(&runs.lock(run))? {
            Claim::Claimed(lock) => lock,
            Claim::Held(owner) => {
                bar.println(format!("{label}: held by {}; left to it", owner.describe()));
                outcome.elsewhere += 1;
                bar.update(k as u64 + 1, format!("skipped {label}"));
                continue;
            }
        };
        if runs.finished(run)?.is_some() {
            bar.update(k as u64 + 1, format!("{label} finished by another worker"));
            continue;
        }
        bar.update(k as u64, format!("running {label}"));
        match execute(run, &runs.of(run), &run_options) {
            Ok(Some(metrics)) => {
                outcome.trained += 1;
                bar.println(format!("{label}: {}", summary(&metrics)));
            }
            Ok(None) => {
                bar.println(format!("{label}: stopped as BERTFIT_STOP_AFTER_STEPS asked; rerun to resume"));
                outcome.stopped = true;
                break;
            }
            Err(e) => {
                bar.println(format!("{label}: failed: {e:#}"));
                outcome.failures.insert(i, format!("{e:#}"));
            }
        }
        bar.update(k as u64 + 1, format!("finished {label}"));
    }
    bar.finish();
    Ok(outcome)
}

/// `table.md`, `table.csv` and the plots into `out`, and the index of `results/`.
fn write_report(report: &Report, out: &Path, options: &ReproduceOptions) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let table = crate::table::markdown(report);
    write_atomic(&out.join("table.md"), &table)?;
    write_atomic(&out.join("table.csv"), crate::table::csv(report))?;
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
