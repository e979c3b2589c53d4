//! The results of an experiment's grid, gathered for its table, claims and
//! plots: each cell's finished runs (one per seed), or why the cell has none.

use bertfit_run::RunMetrics;

use crate::grid::Grid;
use crate::stats::Stats;

/// What one cell holds.
#[derive(Debug, Clone)]
pub enum CellState {
    /// Cannot run here: the dataset or model is not on this machine (and
    /// what would supply it).
    Missing(String),
    /// A run of it failed with this error.
    Failed(String),
    /// Its finished runs, and how many of its seeds are not finished.
    Runs { done: Vec<RunMetrics>, pending: usize },
    /// Not part of the experiment (the paper has no such cell either).
    Skipped,
}

/// A grid and what each of its cells holds, row-major.
pub struct Report<'a> {
    pub grid: &'a Grid,
    pub cells: Vec<CellState>,
    /// Wall time of this invocation of the runner, seconds.
    pub wall_seconds: f64,
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
