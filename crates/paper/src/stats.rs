//! Statistics of the cells' test errors: each cell's mean over its seeds and
//! the variance of that mean, from which claims are judged.

use bertfit_run::RunMetrics;

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

/// `n` with thousands separated by commas.
pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
