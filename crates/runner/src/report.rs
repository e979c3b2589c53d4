//! The results of an experiment's grid, gathered for its table, claims and
//! plots: each cell's finished runs (one per seed) summarised as a mean and a
//! spread, or why the cell has none.

use crate::grid::Grid;
use crate::run::RunMetrics;

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

/// A cell's test error over its seeds, as fractions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// Finished runs with a test error (diverged runs that never finished an
    /// epoch have none).
    pub n: usize,
    /// Runs whose training diverged.
    pub diverged: usize,
    pub mean: f64,
    /// The standard deviation over seeds; with one seed, the binomial
    /// standard error of its test error.
    pub spread: f64,
    /// Variance of `mean`: the seeds' variance (at least the binomial
    /// variance of one test error) over n; the binomial variance with one seed.
    pub var_of_mean: f64,
    /// Error of always predicting the test set's most frequent class.
    pub majority_error: f64,
    pub test_size: usize,
}

impl Stats {
    pub fn of(runs: &[RunMetrics]) -> Option<Self> {
        let first = runs.first()?;
        let errors: Vec<f64> = runs.iter().filter_map(|r| r.result.test_error).collect();
        let diverged = runs.iter().filter(|r| r.result.diverged.is_some()).count();
        let n = errors.len();
        let test_size = first.sizes.test.max(1);
        let mean = if n == 0 { f64::NAN } else { errors.iter().sum::<f64>() / n as f64 };
        let binomial_var = (mean * (1.0 - mean) / test_size as f64).max(0.0);
        let (spread, var_of_mean) = if n >= 2 {
            let var = errors.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            (var.sqrt(), var.max(binomial_var) / n as f64)
        } else {
            (binomial_var.sqrt(), binomial_var)
        };
        Some(Self { n, diverged, mean, spread, var_of_mean, majority_error: first.majority_error, test_size })
    }
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
