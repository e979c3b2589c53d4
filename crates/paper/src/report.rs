//! The results of an experiment's grid, gathered for its table, claims and
//! plots: each cell's finished runs (one per seed), or why the cell has none.

use std::path::Path;

use anyhow::Result;
use bertfit_run::{Predictions, RunMetrics, predictions_path, read_predictions};

use crate::cell_stats::Stats;
use crate::grid::Grid;
use crate::inference::Outcomes;

/// What one cell holds.
#[derive(Debug, Clone)]
pub enum CellState {
    /// Cannot run here: the dataset or model is not on this machine (and
    /// what would supply it).
    Missing(String),
    /// A run of it failed with this error.
    Failed(String),
    /// Its finished runs, their test predictions (`None` for runs written
    /// before runs kept them), and how many of its seeds are not finished.
    Runs { done: Vec<RunMetrics>, predictions: Vec<Option<Predictions>>, pending: usize },
    /// Not part of the experiment (the paper has no such cell either).
    Skipped,
}

/// A cell's outcomes on its test examples (every seed on the same ids, in order).
#[derive(Debug, Clone, PartialEq)]
pub struct Tested {
    pub ids: Vec<String>,
    pub gold: Vec<String>,
    pub outcomes: Outcomes,
}

impl Tested {
    /// The outcomes of the seeds' test predictions (each with its training
    /// seed), every seed in the first one's example order; `None` when there
    /// are none or their examples differ.
    pub fn of(seeds: &[(u64, &Predictions)]) -> Option<Self> {
        let (_, first) = seeds.first()?;
        let mut wrong = Vec::with_capacity(seeds.len());
        for (seed, p) in seeds {
            let own = Tested {
                ids: p.ids.clone(),
                gold: Vec::new(),
                outcomes: Outcomes { wrong: vec![p.correct().iter().map(|c| !c).collect()], seeds: vec![*seed] },
            };
            wrong.extend(own.aligned(&first.ids)?.wrong);
        }
        let outcomes = Outcomes { wrong, seeds: seeds.iter().map(|(s, _)| *s).collect() };
        Some(Tested { ids: first.ids.clone(), gold: first.gold.clone(), outcomes })
    }

    /// The same outcomes with the examples in the order of `ids`; `None` when
    /// the two test sets differ.
    pub fn aligned(&self, ids: &[String]) -> Option<Outcomes> {
        if self.ids == ids {
            return Some(self.outcomes.clone());
        }
        if self.ids.len() != ids.len() {
            return None;
        }
        let position: std::collections::HashMap<&str, usize> = self.ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
        let order: Vec<usize> = ids.iter().map(|id| position.get(id.as_str()).copied()).collect::<Option<_>>()?;
        let wrong = self.outcomes.wrong.iter().map(|w| order.iter().map(|&i| w[i]).collect()).collect();
        Some(Outcomes { wrong, seeds: self.outcomes.seeds.clone() })
    }

    /// The outcomes of always predicting the most frequent gold class, as
    /// many times as the cell has seeds (under its seeds: a constant baseline).
    pub fn majority(&self) -> Outcomes {
        let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
        for g in &self.gold {
            *counts.entry(g.as_str()).or_default() += 1;
        }
        let most = counts.iter().max_by_key(|(_, n)| **n).map(|(c, _)| *c).unwrap_or_default();
        let wrong: Vec<bool> = self.gold.iter().map(|g| g != most).collect();
        Outcomes { wrong: vec![wrong; self.outcomes.seeds()], seeds: self.outcomes.seeds.clone() }
    }
}

/// A grid and what each of its cells holds, row-major.
pub struct Report<'a> {
    pub grid: &'a Grid,
    pub cells: Vec<CellState>,
    /// Wall time of this invocation of the runner, seconds.
    pub wall_seconds: f64,
    /// Runs this invocation trained (or finished).
    pub trained: usize,
}

impl Report<'_> {
    pub fn state(&self, row: usize, column: usize) -> &CellState {
        &self.cells[row * self.grid.columns.len() + column]
    }

    pub fn runs(&self, row: usize, column: usize) -> &[RunMetrics] {
        match self.state(row, column) {
            CellState::Runs { done, .. } => done,
            _ => &[],
        }
    }

    pub fn stats(&self, row: usize, column: usize) -> Option<Stats> {
        Stats::of(self.runs(row, column))
    }

    /// The cell's per-example outcomes on its test set, one row per finished
    /// seed that was scored: `None` when a finished run kept no predictions
    /// (or none finished with a score).
    pub fn tested(&self, row: usize, column: usize) -> Option<Tested> {
        let CellState::Runs { done, predictions, .. } = self.state(row, column) else { return None };
        let scored: Vec<(u64, &Predictions)> = done
            .iter()
            .zip(predictions)
            .filter(|(m, _)| m.result.test_error.is_some())
            .map(|(m, p)| Some((m.config.training.seed, p.as_ref()?)))
            .collect::<Option<_>>()?;
        Tested::of(&scored)
    }

    /// Every finished run of the grid.
    pub fn all_runs(&self) -> impl Iterator<Item = &RunMetrics> {
        self.cells.iter().flat_map(|c| match c {
            CellState::Runs { done, .. } => done.as_slice(),
            _ => &[],
        })
    }

    /// Cells by state: (with all seeds done, with some pending, missing, failed).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let mut counts = (0, 0, 0, 0);
        for cell in &self.cells {
            match cell {
                CellState::Runs { pending: 0, .. } => counts.0 += 1,
                CellState::Runs { .. } => counts.1 += 1,
                CellState::Missing(_) => counts.2 += 1,
                CellState::Failed(_) => counts.3 += 1,
                CellState::Skipped => {}
            }
        }
        counts
    }
}

/// The test predictions in the run folder `dir` of `run`: `None` when it kept
/// none (written before runs kept them, or no epoch finished).
pub fn load_predictions(dir: &Path, run: &RunMetrics) -> Result<Option<Predictions>> {
    let path = predictions_path(dir, "test");
    if run.result.test_error.is_none() || (!path.exists() && run.results_version < 2) {
        return Ok(None);
    }
    read_predictions(&path, Some(run.sizes.test)).map(Some)
}
