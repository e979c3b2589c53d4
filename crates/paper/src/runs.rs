//! An experiment's runs folder: `runs/ID/`, one folder per run identity, with
//! the lock of the worker training it and a worker's log; which planned runs
//! are still to do; how one invocation's runs ended.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use bertfit_run::run_lock::{self, Owner};
use bertfit_run::{Predictions, PreparedRun, RunMetrics, finished};

use crate::grid::Grid;
use crate::plan::Planned;
use crate::report::load_predictions;

/// How the runs of one invocation ended.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Errors of the runs that failed, by index into the plan.
    pub failures: BTreeMap<usize, String>,
    /// Runs another worker (another invocation, another node) holds.
    pub elsewhere: usize,
    /// Whether a run stopped on request (BERTFIT_STOP_AFTER_STEPS).
    pub stopped: bool,
    /// Runs this invocation (or its workers) trained to the end.
    pub trained: usize,
}

/// Where an experiment's runs live: `runs/ID/`, one folder per run identity,
/// with the lock of the worker training it (`runs/ID/.lock`) and a worker's
/// log (`runs/ID/worker.log`).
pub(crate) struct Runs {
    pub(crate) dir: PathBuf,
}

impl Runs {
    pub(crate) fn of(&self, run: &PreparedRun) -> PathBuf {
        self.dir.join(&run.identity)
    }

    pub(crate) fn lock(&self, run: &PreparedRun) -> PathBuf {
        self.of(run).join(".lock")
    }

    pub(crate) fn log(&self, run: &PreparedRun) -> PathBuf {
        self.of(run).join("worker.log")
    }

    pub(crate) fn finished(&self, run: &PreparedRun) -> Result<Option<RunMetrics>> {
        finished(&self.of(run), &run.identity, "run")
    }

    /// The live worker that holds the run, if one does.
    pub(crate) fn held_elsewhere(&self, run: &PreparedRun) -> Result<Option<Owner>> {
        Ok(run_lock::owner(&self.lock(run))?.filter(Owner::alive))
    }

    /// A finished run's test predictions; `None` for a run written before runs
    /// kept them, or one that never finished an epoch. A file that does not
    /// match its run's test set is refused, naming it.
    pub(crate) fn predictions(&self, run: &RunMetrics) -> Result<Option<Predictions>> {
        load_predictions(&self.dir.join(&run.identity), run)
    }

    /// The planned runs not finished yet (indices into `planned`), said in one line.
    pub(crate) fn to_do(&self, grid: &Grid, planned: &[Planned], quiet: bool) -> Result<Vec<usize>> {
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
            // Roughly how long, before it starts: what the profile file states.
            if let Some(time) = grid.profile.wall_time.as_ref().filter(|_| !todo.is_empty()) {
                let as_written = grid.overrides.is_empty() && grid.profile.seeds.is_none_or(|s| s == grid.seeds.len());
                let note = if as_written { "" } else { " (for the profile as written; this invocation's --set / --seeds change it)" };
                eprintln!("{} ({}) took, as its file states{note}: {time}", grid.name, grid.profile_name);
            }
        }
        Ok(todo)
    }
}

/// `row / column seed N`, for progress lines.
pub(crate) fn run_label(grid: &Grid, p: &Planned) -> String {
    let cell = &grid.cells[p.cell];
    let seed = p.run.as_ref().map(|r| r.config.training.seed.to_string()).unwrap_or_else(|_| "-".into());
    format!("{} / {} seed {seed}", grid.rows[cell.row].label, grid.columns[cell.column].label)
}
