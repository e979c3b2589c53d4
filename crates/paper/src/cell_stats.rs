//! Statistics of the cells' test errors: each cell's mean over its seeds and
//! the variance of that mean, from which claims are judged; and whether a run
//! had converged.

use bertfit_run::RunMetrics;

/// A cell's test error over its seeds, as fractions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// Finished runs, diverged ones included.
    pub runs: usize,
    /// Finished runs with a test error (diverged runs that never finished an
    /// epoch have none).
    pub n: usize,
    /// Runs whose training diverged.
    pub diverged: usize,
    /// Runs with a test error that had not converged when they stopped (see [`not_converged`]).
    pub unconverged: usize,
    pub mean: f64,
    /// The standard deviation over seeds; with one seed, the binomial
    /// standard error of its test error.
    pub spread: f64,
    /// Variance of `mean`, for comparisons without per-example predictions:
    /// the seeds' variance over n plus the test sampling's p(1-p)/N, once
    /// (every seed is scored on the same N test examples); the binomial
    /// variance alone with one seed.
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
            (var.sqrt(), var / n as f64 + binomial_var)
        } else {
            (binomial_var.sqrt(), binomial_var)
        };
        let unconverged = unconverged(runs).map_or(0, |u| u.count);
        Some(Self {
            runs: runs.len(),
            n,
            diverged,
            unconverged,
            mean,
            spread,
            var_of_mean,
            majority_error: first.majority_error,
            test_size,
        })
    }

    /// "3 seeds", or "2 of 3 seeds (1 diverged)".
    pub fn seeds_text(&self) -> String {
        let plural = |k: usize| if k == 1 { "seed" } else { "seeds" };
        if self.n == self.runs {
            format!("{} {}", self.n, plural(self.n))
        } else {
            format!("{} of {} {} ({} diverged)", self.n, self.runs, plural(self.runs), self.runs - self.n)
        }
    }
}

/// A cell's seeds that had not converged (see [`not_converged`]): how many of
/// its seeds with a test error, and the first such seed with its reason.
pub struct Unconverged {
    pub count: usize,
    pub scored: usize,
    pub seed: u64,
    pub why: String,
}

/// The seeds of a cell's runs that had not converged; `None` when every one had.
pub fn unconverged(runs: &[RunMetrics]) -> Option<Unconverged> {
    let scored: Vec<&RunMetrics> = runs.iter().filter(|m| m.result.test_error.is_some()).collect();
    let why: Vec<(u64, String)> = scored.iter().filter_map(|m| Some((m.config.training.seed, not_converged(m)?))).collect();
    let (seed, first) = why.first()?.clone();
    Some(Unconverged { count: why.len(), scored: scored.len(), seed, why: first })
}

/// How many binomial standard errors of a dev error a fall must exceed to
/// count as more than noise: one (the epochs' errors are measured on the same
/// dev examples, so the noise of their difference is below that of either).
const NOISE_Z: f64 = 1.0;

/// Why a finished run had not converged when it stopped, if it had not: its
/// best epoch on dev was its last (of two or more), and its dev error was
/// still falling (by more than one binomial standard error of a dev error
/// over the last epoch) or it had not left the majority class (its test error
/// within that noise of always predicting the most frequent class). A run of
/// one epoch, or a diverged one, cannot tell.
pub fn not_converged(run: &RunMetrics) -> Option<String> {
    let r = &run.result;
    let (curve, best) = (&r.curve, r.best_epoch?);
    if curve.len() < 2 || best != curve.len() || r.diverged.is_some() {
        return None;
    }
    let (before, last) = (curve[curve.len() - 2].dev_error, curve[curve.len() - 1].dev_error);
    let dev = run.sizes.dev.max(1) as f64;
    let dev_noise = NOISE_Z * (before * (1.0 - before) / dev).sqrt();
    if before - last > dev_noise {
        return Some(format!(
            "best epoch the last ({best}), dev error still falling {:.1} -> {:.1} (noise {:.1})",
            100.0 * before,
            100.0 * last,
            100.0 * dev_noise
        ));
    }
    let (m, test) = (run.majority_error, run.sizes.test.max(1) as f64);
    let test_noise = NOISE_Z * (m * (1.0 - m) / test).sqrt();
    match r.test_error {
        Some(e) if e >= m - test_noise => Some(format!(
            "best epoch the last ({best}), test error {:.1} within noise ({:.1}) of the majority class's {:.1}",
            100.0 * e,
            100.0 * test_noise,
            100.0 * m
        )),
        _ => None,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A run of `results/forgetting` at results version 2 (commit 7b430dd,
    /// batch 16, 3 epochs; lr 2e-5 unless said), its `metrics.json` kept as a
    /// fixture so that retraining the experiment leaves these tests alone.
    fn run(id: &str) -> RunMetrics {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/forgetting_v2_runs").join(format!("{id}.json"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn a_run_still_falling_at_its_last_epoch_has_not_converged() {
        // Dev error 41.5 -> 34.5 -> 27.5 at 200 dev reviews: best at the last
        // epoch, falling by 7 points where one standard error is 3.4.
        let why = not_converged(&run("56ba5a79d799c176")).expect("not converged");
        assert_eq!(why, "best epoch the last (3), dev error still falling 34.5 -> 27.5 (noise 3.4)");
        // 38.5 -> 30.0 -> 26.5: a fall of 3.5 against a noise of 3.2.
        assert!(not_converged(&run("c674ea9da1aaa036")).is_some());
        // 45.0 -> 26.5 -> 24.0: the last fall (2.5) is within noise (3.1).
        assert_eq!(not_converged(&run("c70e53b311f50be7")), None);
        // lr 1e-4, 22.0 -> 19.5 -> 18.0: within noise; lr 4e-4, best epoch the first.
        assert_eq!(not_converged(&run("1bada57ed2195ac9")), None);
        assert_eq!(not_converged(&run("7f9d6d0b4183925d")), None);
        let mut stuck = run("1bada57ed2195ac9");
        stuck.result.test_error = Some(0.49);
        let why = not_converged(&stuck).expect("no better than the majority class");
        assert!(why.contains("within noise (2.2) of the majority class's 50.0"), "{why}");
    }

    #[test]
    fn a_cells_variance_counts_the_shared_test_set_once() {
        let runs: Vec<RunMetrics> = ["56ba5a79d799c176", "c674ea9da1aaa036", "c70e53b311f50be7"].iter().map(|id| run(id)).collect();
        let st = Stats::of(&runs).unwrap();
        let errors = [0.298, 0.246, 0.254];
        let mean = errors.iter().sum::<f64>() / 3.0;
        let s2 = errors.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / 2.0;
        assert!((st.var_of_mean - (s2 / 3.0 + mean * (1.0 - mean) / 500.0)).abs() < 1e-12, "{st:?}");
        assert_eq!((st.runs, st.n, st.unconverged), (3, 3, 2));
        assert_eq!(st.seeds_text(), "3 seeds");
    }
}
