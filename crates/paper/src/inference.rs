//! The statistics of every verdict and of `bertfit compare`: two cells scored
//! on the same test examples, compared paired.
//!
//! - One seed on each side: the exact McNemar test on the discordant examples
//!   (two-sided, as statsmodels' `mcnemar(exact=True)`), and the Wald
//!   interval of the paired difference of error rates.
//! - Several seeds: a two-level bootstrap that draws the test examples (the
//!   same draw for every cell, so the comparison stays paired), then the
//!   seeds, with replacement: when the cells share their seeds (every cell of
//!   a grid trains with the same seed offsets, which fix the head's
//!   initialisation and the data order) one draw of seed indices serves every
//!   cell, so a seed is compared with itself; otherwise each cell's seeds are
//!   drawn on their own. Its interval is the percentile one (as many
//!   replicates outside it on each side) and its p-value twice the smaller
//!   tail share at zero. It holds both the seed-to-seed and the
//!   test-sampling variation. Deterministic: the number of resamples and the
//!   generator's seed are fixed ([`RESAMPLES`]).
//! - Several comparisons in one claim: Holm's step-down correction.
//! - The smallest difference a comparison could detect: at 95% (corrected)
//!   and 80% power, `(z(1 - alpha/2) + z(0.8))` standard errors.
//! - The paper's own numbers (single runs, predictions unpublished): two
//!   independent binomials at its test size (pairing could only narrow it).
//!
//! Checked against scipy and statsmodels by `tests/inference.rs`
//! (fixture: `tools/make_stats_fixture.py`).

use bertfit_data::splits::SplitMix64;

/// Version of the verdicts' statistics, stated in every table: 1 drew each
/// cell's seeds on its own, took the bootstrap's upper bound one replicate
/// too high and counted the test sampling once per seed; 2 draws shared seeds
/// together, fixes both, and never judges on a cell that had not converged.
/// Runs are unchanged by it (their identities carry `RESULTS_VERSION`).
pub const STATISTICS_VERSION: u64 = 2;

/// Bootstrap resamples of every comparison.
pub const RESAMPLES: usize = 2000;
/// Seed of the bootstrap's generator.
const BOOTSTRAP_SEED: u64 = 0x5eed_b007;
/// The level of every interval and test.
pub const ALPHA: f64 = 0.05;
/// The power at which detectable differences are stated.
pub const POWER: f64 = 0.8;

/// The standard normal quantile (Acklam's rational approximation, relative
/// error below 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    assert!(p > 0.0 && p < 1.0, "a probability in (0, 1), not {p}");
    const A: [f64; 6] =
        [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1, 2.506628277459239];
    const B: [f64; 5] = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
    const C: [f64; 6] =
        [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
    const D: [f64; 4] = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
    let low = 0.02425;
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5]) / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < low {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - low {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// P(X <= k) for X ~ Binomial(n, 1/2), summed in log space (no underflow at large n).
fn binomial_half_cdf(k: u64, n: u64) -> f64 {
    let mut log_choose = 0.0f64; // ln C(n, 0)
    let mut terms = Vec::with_capacity(k as usize + 1);
    for i in 0..=k.min(n) {
        if i > 0 {
            log_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        terms.push(log_choose - n as f64 * std::f64::consts::LN_2);
    }
    let top = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    (top + terms.iter().map(|t| (t - top).exp()).sum::<f64>().ln()).exp().min(1.0)
}

/// Two-sided exact McNemar p-value for `b` and `c` discordant examples
/// (A wrong and B right; A right and B wrong).
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    if b + c == 0 {
        return 1.0;
    }
    (2.0 * binomial_half_cdf(b.min(c), b + c)).min(1.0)
}

/// Holm's step-down adjustment of `p` (each adjusted p-value, in the given order).
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// The smallest true difference detected with probability [`POWER`] by a
/// two-sided test at [`ALPHA`] / `comparisons` (Bonferroni's level: Holm's
/// first step), whose estimate has standard error `se`.
pub fn detectable(se: f64, comparisons: usize) -> f64 {
    let alpha = ALPHA / comparisons.max(1) as f64;
    (normal_quantile(1.0 - alpha / 2.0) + normal_quantile(POWER)) * se
}

/// How the bootstrap drew the cells' seeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seeds {
    /// The cells share their seeds: one draw of seed indices for every cell.
    Paired,
    /// They do not (another seed set, a seed that diverged): each cell's own draw.
    Independent,
}

/// How a difference was tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// One seed a side: exact McNemar, Wald interval of the paired difference.
    McNemar,
    /// Several seeds: the two-level (seeds, then examples) bootstrap, the
    /// examples always paired, the seeds as `seeds` says.
    Bootstrap { resamples: usize, seeds: Seeds },
    /// Cells not scored on common examples: independent binomials, with the
    /// seeds' variance where there are several; `why` says what kept them apart.
    Unpaired { why: &'static str },
}

impl Method {
    pub fn words(&self) -> String {
        match self {
            Self::McNemar => "exact McNemar, Wald CI".into(),
            Self::Bootstrap { resamples, seeds: Seeds::Paired } => {
                format!("bootstrap over examples and seeds, both paired (the cells share their seeds), {resamples} resamples")
            }
            Self::Bootstrap { resamples, seeds: Seeds::Independent } => format!(
                "bootstrap over examples (paired) and seeds (drawn for each cell on its own: the cells do not share their seeds), {resamples} resamples"
            ),
            Self::Unpaired { why } => format!("unpaired, as independent binomials ({why})"),
        }
    }
}

/// A difference of error rates (A minus B), with its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Difference {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
    pub se: f64,
    pub p: f64,
    pub method: Method,
}

impl Difference {
    /// Whether the interval excludes zero.
    pub fn separates(&self) -> bool {
        self.low > 0.0 || self.high < 0.0
    }
}

/// One cell's outcomes on a test set: for each seed, which examples it got
/// wrong (every seed on the same examples, in the same order), and the
/// seed's training seed.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcomes {
    pub wrong: Vec<Vec<bool>>,
    pub seeds: Vec<u64>,
}

impl Outcomes {
    /// Outcomes of seeds 0, 1, ... (a grid's seed offsets from training seed 0).
    pub fn of_seeds(wrong: Vec<Vec<bool>>) -> Self {
        let seeds = (0..wrong.len() as u64).collect();
        Self { wrong, seeds }
    }

    pub fn examples(&self) -> usize {
        self.wrong.first().map_or(0, Vec::len)
    }

    pub fn seeds(&self) -> usize {
        self.wrong.len()
    }

    /// The mean error over seeds.
    pub fn error(&self) -> f64 {
        let n = self.examples().max(1) as f64;
        self.wrong.iter().map(|w| w.iter().filter(|x| **x).count() as f64 / n).sum::<f64>() / self.seeds().max(1) as f64
    }
}

/// The paired comparison of two cells on the same examples: McNemar with one
/// seed on each side, else the two-level bootstrap.
pub fn paired(a: &Outcomes, b: &Outcomes) -> Difference {
    assert_eq!(a.examples(), b.examples(), "paired cells are scored on the same examples");
    if a.seeds() == 1 && b.seeds() == 1 {
        return mcnemar_difference(&a.wrong[0], &b.wrong[0]);
    }
    let (replicates, seeds) = bootstrap(&[a, b]);
    let diffs: Vec<f64> = replicates.iter().map(|r| r[0] - r[1]).collect();
    percentile_difference(a.error() - b.error(), &diffs, seeds)
}

/// One seed a side: the exact McNemar test and the Wald interval of the
/// paired difference, Var = ((b + c) - (b - c)^2 / n) / n^2.
pub fn mcnemar_difference(a: &[bool], b: &[bool]) -> Difference {
    let n = a.len() as f64;
    let only_a = a.iter().zip(b).filter(|(x, y)| **x && !**y).count() as u64;
    let only_b = a.iter().zip(b).filter(|(x, y)| !**x && **y).count() as u64;
    let d = (only_a as f64 - only_b as f64) / n;
    let var = ((only_a + only_b) as f64 - (only_a as f64 - only_b as f64).powi(2) / n) / (n * n);
    let se = var.max(0.0).sqrt();
    let z = normal_quantile(1.0 - ALPHA / 2.0);
    Difference { estimate: d, low: d - z * se, high: d + z * se, se, p: mcnemar_exact(only_a, only_b), method: Method::McNemar }
}

/// The interval and p-value of a statistic from its bootstrap replicates:
/// the interval leaves floor(r * alpha / 2) replicates outside on each side
/// (50 and 50 of 2,000: indices 50 and 1,949).
pub fn percentile_difference(estimate: f64, replicates: &[f64], seeds: Seeds) -> Difference {
    let mut sorted = replicates.to_vec();
    sorted.sort_by(f64::total_cmp);
    let r = sorted.len();
    let outside = ((ALPHA / 2.0 * r as f64).floor() as usize).min(r.saturating_sub(1) / 2);
    let below = sorted.iter().filter(|d| **d <= 0.0).count();
    let above = sorted.iter().filter(|d| **d >= 0.0).count();
    let p = (2.0 * below.min(above) as f64 / r as f64).clamp(1.0 / r as f64, 1.0);
    let mean = sorted.iter().sum::<f64>() / r as f64;
    let se = (sorted.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (r - 1).max(1) as f64).sqrt();
    let (low, high) = (sorted[outside], sorted[r - 1 - outside]);
    Difference { estimate, low, high, se, p, method: Method::Bootstrap { resamples: r, seeds } }
}

/// [`RESAMPLES`] replicates of every cell's mean error, [replicate][cell]:
/// each draws the examples once for all cells (paired), then the seeds: one
/// draw of seed indices for every cell when they share their seeds
/// ([`Seeds::Paired`]), each cell's own draw otherwise.
pub fn bootstrap(cells: &[&Outcomes]) -> (Vec<Vec<f64>>, Seeds) {
    let n = cells.first().map_or(0, |c| c.examples());
    assert!(cells.iter().all(|c| c.examples() == n), "cells scored on the same examples");
    let shared = cells.first().is_some_and(|first| cells.iter().all(|c| c.seeds == first.seeds && c.seeds.len() == c.wrong.len()));
    let design = if shared { Seeds::Paired } else { Seeds::Independent };
    let mut rng = SplitMix64::new(BOOTSTRAP_SEED);
    let mut counts = vec![0u32; n];
    let mut drawn: Vec<usize> = Vec::new();
    let replicates = (0..RESAMPLES)
        .map(|_| {
            counts.iter_mut().for_each(|c| *c = 0);
            for _ in 0..n {
                counts[rng.below(n)] += 1;
            }
            if shared {
                let seeds = cells[0].seeds();
                drawn = (0..seeds).map(|_| rng.below(seeds)).collect();
            }
            cells
                .iter()
                .map(|cell| {
                    let seeds = cell.seeds();
                    let total: f64 = (0..seeds)
                        .map(|k| {
                            let s = if shared { drawn[k] } else { rng.below(seeds) };
                            cell.wrong[s].iter().zip(&counts).filter(|(w, _)| **w).map(|(_, c)| *c as f64).sum::<f64>()
                        })
                        .sum();
                    total / (seeds * n.max(1)) as f64
                })
                .collect()
        })
        .collect();
    (replicates, design)
}

/// The least-squares slope of `values` against their positions 0, 1, ...
pub fn slope(values: &[f64]) -> f64 {
    let k = values.len() as f64;
    let xm = (k - 1.0) / 2.0;
    let ym = values.iter().sum::<f64>() / k;
    let sxx: f64 = (0..values.len()).map(|i| (i as f64 - xm).powi(2)).sum();
    (0..values.len()).map(|i| (i as f64 - xm) * (values[i] - ym)).sum::<f64>() / sxx.max(1e-300)
}

/// The slope of the cells' errors along their order, with its bootstrap
/// interval (examples drawn once for all cells, then each cell's seeds).
pub fn trend(cells: &[&Outcomes]) -> Difference {
    let observed: Vec<f64> = cells.iter().map(|c| c.error()).collect();
    let (replicates, seeds) = bootstrap(cells);
    let slopes: Vec<f64> = replicates.iter().map(|r| slope(r)).collect();
    percentile_difference(slope(&observed), &slopes, seeds)
}

/// Two error rates measured on different (or unknown) examples: `a` and `b`
/// with the variance of each mean; `why` says what kept them apart.
pub fn unpaired(a: (f64, f64), b: (f64, f64), why: &'static str) -> Difference {
    let d = a.0 - b.0;
    let se = (a.1 + b.1).max(0.0).sqrt();
    let z = normal_quantile(1.0 - ALPHA / 2.0);
    let p = if se > 0.0 {
        2.0 * normal_upper_tail((d / se).abs())
    } else if d == 0.0 {
        1.0
    } else {
        0.0
    };
    Difference { estimate: d, low: d - z * se, high: d + z * se, se, p, method: Method::Unpaired { why } }
}

/// The Wald z of two single-run error rates on `n` test examples each, as
/// independent binomials (the paper's numbers).
pub fn binomial_z(a: f64, b: f64, n: usize) -> f64 {
    let var = (a * (1.0 - a) + b * (1.0 - b)) / n as f64;
    if var > 0.0 { (a - b) / var.sqrt() } else { 0.0 }
}

/// P(Z > z) for a standard normal Z (erfc by its continued fraction / series,
/// relative error below 1e-12 over the range used here).
pub fn normal_upper_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The complementary error function: erf's Taylor series below 2.5, Lentz's
/// continued fraction for erfc above.
fn erfc(x: f64) -> f64 {
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    if x < 2.5 {
        // erf by its Taylor series: 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1)).
        let mut term = x;
        let mut sum = x;
        let mut n = 0.0;
        while term.abs() > 1e-17 * sum.abs() {
            n += 1.0;
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
        }
        1.0 - 2.0 / std::f64::consts::PI.sqrt() * sum
    } else {
        // Lentz's continued fraction: erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...)))).
        let mut f = x;
        let tiny = 1e-300;
        let (mut c, mut d) = (x, 0.0);
        for k in 1..200 {
            let a = k as f64 / 2.0;
            d = x + a * d;
            d = if d.abs() < tiny { tiny } else { d };
            c = x + a / c;
            c = if c.abs() < tiny { tiny } else { c };
            d = 1.0 / d;
            let delta = c * d;
            f *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        (-x * x).exp() / std::f64::consts::PI.sqrt() / f
    }
}
