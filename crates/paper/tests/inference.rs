//! The statistics module against scipy and statsmodels (the fixture of
//! `tools/make_stats_fixture.py`), and the bootstrap's properties.

use bertfit_data::splits::SplitMix64;
use bertfit_paper::inference::{
    Method, Outcomes, Seeds, binomial_z, bootstrap, detectable, holm, mcnemar_difference, mcnemar_exact, normal_quantile,
    normal_upper_tail, paired, percentile_difference, trend,
};
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/stats.json")).unwrap()
}

fn rows(key: &str) -> Vec<Vec<Value>> {
    fixture()[key].as_array().unwrap().iter().map(|r| r.as_array().unwrap().clone()).collect()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

#[test]
fn normal_quantiles_and_tails_match_scipy() {
    for r in rows("normal_quantile") {
        let (p, expected) = (f(&r[0]), f(&r[1]));
        assert!((normal_quantile(p) - expected).abs() < 1e-8 * expected.abs().max(1.0), "ppf({p}) = {} not {expected}", normal_quantile(p));
    }
    for r in rows("normal_upper_tail") {
        let (z, expected) = (f(&r[0]), f(&r[1]));
        assert!((normal_upper_tail(z) - expected).abs() <= 1e-9 * expected, "sf({z}) = {} not {expected}", normal_upper_tail(z));
    }
}

#[test]
fn exact_mcnemar_matches_statsmodels() {
    for r in rows("mcnemar_exact") {
        let (b, c, expected) = (r[0].as_u64().unwrap(), r[1].as_u64().unwrap(), f(&r[2]));
        let p = mcnemar_exact(b, c);
        assert!((p - expected).abs() <= 1e-9 * expected.max(1e-300), "mcnemar({b}, {c}) = {p} not {expected}");
    }
}

#[test]
fn holm_matches_statsmodels() {
    for r in rows("holm") {
        let p: Vec<f64> = r[0].as_array().unwrap().iter().map(f).collect();
        let expected: Vec<f64> = r[1].as_array().unwrap().iter().map(f).collect();
        let got = holm(&p);
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() < 1e-12, "holm({p:?}) = {got:?} not {expected:?}");
        }
    }
}

#[test]
fn detectable_differences_match_statsmodels_power() {
    for r in rows("detectable") {
        let (se, m, expected) = (f(&r[0]), r[1].as_u64().unwrap() as usize, f(&r[2]));
        let got = detectable(se, m);
        // statsmodels solves the power equation numerically (and counts the far tail): 1e-6 apart.
        assert!((got - expected).abs() < 1e-5 * expected, "detectable({se}, {m}) = {got} not {expected}");
    }
}

#[test]
fn the_papers_binomial_z_matches_statsmodels() {
    for r in rows("binomial_z") {
        let (a, b, n, expected) = (f(&r[0]), f(&r[1]), r[2].as_u64().unwrap() as usize, f(&r[3]));
        assert!((binomial_z(a, b, n) - expected).abs() < 1e-9, "z({a}, {b}, {n}) = {} not {expected}", binomial_z(a, b, n));
    }
    // Table 2's head+tail against head-only on IMDb: about 1.5 standard errors apart.
    assert!((binomial_z(0.0542, 0.0563, 25_000).abs() - 1.03).abs() < 0.05);
}

/// Two outcome vectors of `n` examples with `b` only-A-wrong, `c` only-B-wrong and `both` both-wrong.
fn table(n: usize, b: usize, c: usize, both: usize) -> (Vec<bool>, Vec<bool>) {
    let a = (0..n).map(|i| i < b || (b + c..b + c + both).contains(&i)).collect();
    let bb = (0..n).map(|i| (b..b + c + both).contains(&i)).collect();
    (a, bb)
}

#[test]
fn the_paired_wald_interval_matches_the_fixture() {
    for r in rows("paired_wald") {
        let (n, b, c) = (r[0].as_u64().unwrap() as usize, r[1].as_u64().unwrap() as usize, r[2].as_u64().unwrap() as usize);
        let (a, bb) = table(n, b, c, n / 10);
        let d = mcnemar_difference(&a, &bb);
        assert_eq!(d.method, Method::McNemar);
        for (got, expected) in [(d.estimate, f(&r[3])), (d.low, f(&r[4])), (d.high, f(&r[5]))] {
            // The normal quantile's approximation (relative error 1e-9) times the standard error.
            assert!((got - expected).abs() < 1e-9, "({n}, {b}, {c}): {d:?} against {r:?}");
        }
        assert!((d.p - mcnemar_exact(b as u64, c as u64)).abs() < 1e-15);
    }
}

fn random_wrong(rng: &mut SplitMix64, n: usize, rate: f64) -> Vec<bool> {
    (0..n).map(|_| rng.unit() < rate).collect()
}

#[test]
fn the_bootstrap_is_deterministic_and_agrees_with_the_analytic_interval_on_one_seed() {
    let mut rng = SplitMix64::new(3);
    let n = 2000;
    // Correlated cells: B flips a tenth of A's outcomes.
    let a = random_wrong(&mut rng, n, 0.2);
    let b: Vec<bool> = a.iter().map(|w| if rng.unit() < 0.1 { !w } else { *w }).collect();
    let (oa, ob) = (Outcomes::of_seeds(vec![a.clone()]), Outcomes::of_seeds(vec![b.clone()]));
    let (first, _) = bootstrap(&[&oa, &ob]);
    assert_eq!(first, bootstrap(&[&oa, &ob]).0, "same resamples every time");
    let diffs: Vec<f64> = first.iter().map(|r| r[0] - r[1]).collect();
    let mean = diffs.iter().sum::<f64>() / diffs.len() as f64;
    let se = (diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (diffs.len() - 1) as f64).sqrt();
    let wald = mcnemar_difference(&a, &b);
    assert!((se / wald.se - 1.0).abs() < 0.1, "bootstrap se {se} against Wald {}", wald.se);
    // Paired is far tighter than treating the cells as independent.
    let independent = ((0.2f64 * 0.8 + 0.2 * 0.8) / n as f64).sqrt();
    assert!(wald.se < 0.6 * independent, "{} against {independent}", wald.se);
}

#[test]
fn seed_to_seed_variation_widens_the_interval() {
    let mut rng = SplitMix64::new(9);
    let n = 1000;
    let base = random_wrong(&mut rng, n, 0.2);
    // Three seeds a cell; each seed flips its own share of examples (3% to 15%).
    let seeds = |rng: &mut SplitMix64, flips: &[f64]| {
        Outcomes::of_seeds(flips.iter().map(|&q| base.iter().map(|w| if rng.unit() < q { !w } else { *w }).collect()).collect())
    };
    let quiet_a = seeds(&mut rng, &[0.03, 0.03, 0.03]);
    let quiet_b = seeds(&mut rng, &[0.03, 0.03, 0.03]);
    let noisy_a = seeds(&mut rng, &[0.01, 0.08, 0.15]);
    let noisy_b = seeds(&mut rng, &[0.15, 0.01, 0.08]);
    let quiet = paired(&quiet_a, &quiet_b);
    let noisy = paired(&noisy_a, &noisy_b);
    assert!(matches!(quiet.method, Method::Bootstrap { resamples: 2000, seeds: Seeds::Paired }));
    assert!(noisy.high - noisy.low > 1.3 * (quiet.high - quiet.low), "{noisy:?} against {quiet:?}");
    assert!(quiet.low < quiet.estimate && quiet.estimate < quiet.high);
}

#[test]
fn a_falling_trend_is_found_and_a_flat_one_is_not() {
    let mut rng = SplitMix64::new(4);
    let n = 1500;
    let cells: Vec<Outcomes> = [0.30, 0.25, 0.20, 0.15].iter().map(|&r| Outcomes::of_seeds(vec![random_wrong(&mut rng, n, r)])).collect();
    let t = trend(&cells.iter().collect::<Vec<_>>());
    assert!(t.high < 0.0 && (t.estimate + 0.05).abs() < 0.01, "{t:?}");
    let flat: Vec<Outcomes> = [0.2, 0.2, 0.2].iter().map(|&r| Outcomes::of_seeds(vec![random_wrong(&mut rng, n, r)])).collect();
    let t = trend(&flat.iter().collect::<Vec<_>>());
    assert!(t.low < 0.0 && t.high > 0.0, "{t:?}");
}

/// Two cells trained with the same seeds share each seed's effect (its head's
/// initialisation, its data order): here B is A with the same 2% of the
/// examples turned wrong, under every seed, while the seeds differ from each
/// other by up to 15% of the examples. Drawing the seeds jointly compares
/// each seed with itself: the interval is the paired difference's alone, whose
/// standard error is the Wald one of seed 0 (the same per-example difference
/// under every seed; `mcnemar_difference` is checked against statsmodels
/// above). Drawn independently, the seeds' own spread would widen it.
#[test]
fn seeds_shared_by_two_cells_are_drawn_together_and_only_then() {
    let mut rng = SplitMix64::new(21);
    let n = 2000;
    let base = random_wrong(&mut rng, n, 0.2);
    let worse: Vec<bool> = (0..n).map(|_| rng.unit() < 0.02).collect();
    let a = Outcomes::of_seeds(
        [0.01, 0.08, 0.15].iter().map(|&q| base.iter().map(|w| if rng.unit() < q { !w } else { *w }).collect::<Vec<bool>>()).collect(),
    );
    let b =
        Outcomes { wrong: a.wrong.iter().map(|w| w.iter().zip(&worse).map(|(x, y)| *x || *y).collect()).collect(), seeds: a.seeds.clone() };
    let joint = paired(&a, &b);
    assert!(matches!(joint.method, Method::Bootstrap { seeds: Seeds::Paired, .. }), "{joint:?}");
    let reference = mcnemar_difference(&a.wrong[0], &b.wrong[0]).se;
    assert!((joint.se / reference - 1.0).abs() < 0.1, "joint se {} against the paired difference's {reference}", joint.se);
    assert!(joint.high < 0.0, "A is better under every seed: {joint:?}");
    // The same outcomes under seeds that are not shared: drawn on their own.
    let other = Outcomes { seeds: vec![10, 11, 12], ..b.clone() };
    let independent = paired(&a, &other);
    assert!(matches!(independent.method, Method::Bootstrap { seeds: Seeds::Independent, .. }), "{independent:?}");
    assert!(independent.se > 2.0 * joint.se, "independent se {} against joint {}", independent.se, joint.se);
    assert!(independent.method.words().contains("do not share their seeds"));
    assert!(joint.method.words().contains("both paired"));
}

/// A cell compared with an identical copy of itself: exactly [0, 0], p = 1.
#[test]
fn a_cell_against_its_own_copy_is_exactly_zero() {
    let mut rng = SplitMix64::new(5);
    let a = Outcomes::of_seeds((0..3).map(|_| random_wrong(&mut rng, 500, 0.2)).collect());
    let d = paired(&a, &a.clone());
    assert_eq!((d.estimate, d.low, d.high, d.p), (0.0, 0.0, 0.0, 1.0), "{d:?}");
}

/// The percentile interval leaves as many replicates outside on each side:
/// of 2,000, indices 50 and 1,949 (50 below, 50 above).
#[test]
fn the_percentile_interval_is_symmetric_in_replicates() {
    let replicates: Vec<f64> = (0..2000).rev().map(|i| i as f64).collect();
    let d = percentile_difference(0.0, &replicates, Seeds::Paired);
    assert_eq!((d.low, d.high), (50.0, 1949.0));
    assert_eq!(replicates.iter().filter(|r| **r < d.low).count(), replicates.iter().filter(|r| **r > d.high).count());
}
