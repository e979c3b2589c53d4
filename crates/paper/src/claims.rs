//! The paper's qualitative claims judged against our cells, with the tests of
//! [`crate::inference`]: cells scored on the same test examples are compared
//! paired (exact McNemar with one seed a side, else the two-level bootstrap
//! over seeds and examples); a claim of several comparisons is Holm-corrected.
//! A claim is supported or contradicted only when its comparisons separate
//! (the 95% interval excludes zero and the corrected p-value is below 0.05);
//! otherwise our numbers cannot separate the cells, whatever the order of the
//! means. Each verdict says what the profile could have detected, whether
//! seed variation was measured, and whether the paper's own single-run numbers
//! separate the cells at its test size.

use crate::cell_stats::{Stats, thousands, unconverged};
use crate::experiment::{Across, AxisValue, Claim, ClaimTest};
use crate::inference::{
    ALPHA, Difference, Method, Outcomes, binomial_z, detectable, holm, mcnemar_difference, normal_quantile, normal_upper_tail, paired,
    trend, unpaired,
};
use crate::report::{Report, Tested};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Supports,
    Contradicts,
    CannotSeparate,
    /// A cell it needs had not converged: its numbers decide nothing.
    CannotJudge,
    /// A cell it needs has no finished run.
    NotMeasured,
}

impl Verdict {
    pub fn words(&self) -> &'static str {
        match self {
            Self::Supports => "supported",
            Self::Contradicts => "contradicted",
            Self::CannotSeparate => "cannot separate",
            Self::CannotJudge => "cannot judge",
            Self::NotMeasured => "not measured",
        }
    }
}

/// A claim's verdict in one column (or row) of the table.
#[derive(Debug, Clone)]
pub struct Judgement {
    pub scope: String,
    pub verdict: Verdict,
    pub detail: String,
}

/// A claim that a cell learns less than this much over the majority class
/// (error points, as a fraction) is supported when the interval shows it.
const FAILS_MARGIN: f64 = 0.02;

/// Table 1's test sizes, by the labels experiments give the datasets or by
/// the datasets' catalogue names.
pub fn paper_test_size(label: &str) -> Option<usize> {
    Some(match label {
        "IMDb" | "imdb" => 25_000,
        "Yelp P." | "yelp_polarity" => 38_000,
        "Yelp F." | "yelp_full" => 50_000,
        "TREC" | "trec" => 500,
        "Yah. A." | "Yahoo! Answers" | "yahoo_answers" => 60_000,
        "AG" | "AG's News" | "ag_news" => 7_600,
        "DBP" | "DBPedia" | "dbpedia" => 70_000,
        "Sogou" | "Sogou News" | "sogou_news" => 6_000,
        _ => return None,
    })
}

/// The paper's test size for a claim judged in `scope`: the scope's dataset
/// when the scope is one (a column "IMDb"), else the dataset of the
/// experiment's own `[run.data]` (Table 4's rows are learning rates, all on IMDb).
fn scope_test_size(run: &toml::Table, scope: &AxisValue) -> Option<usize> {
    paper_test_size(scope.paper_label()).or_else(|| paper_test_size(&scope.label)).or_else(|| {
        let dataset = run.get("data")?.get("dataset")?.as_str()?;
        paper_test_size(dataset)
    })
}

fn pts(x: f64) -> String {
    format!("{:.2}", 100.0 * x)
}

fn signed(x: f64) -> String {
    format!("{:+.2}", 100.0 * x)
}

/// The claim's verdict in each column (rows claims) or row (columns claims).
pub fn judge(report: &Report, claim: &Claim) -> Vec<Judgement> {
    let grid = report.grid;
    let (cells_axis, scope_axis) = match claim.across {
        Across::Rows => (&grid.rows, &grid.columns),
        Across::Columns => (&grid.columns, &grid.rows),
    };
    // Claims name the paper's cells; a profile's own axis matches by label or by `paper` label.
    let find =
        |label: &str| cells_axis.iter().position(|v| v.label == label).or_else(|| cells_axis.iter().position(|v| v.paper_label() == label));
    let mut judgements = Vec::new();
    for (s, scope) in scope_axis.iter().enumerate() {
        if claim.only.as_ref().is_some_and(|only| *only != scope.label && *only != scope.paper_label()) {
            continue;
        }
        if claim.except.iter().any(|e| *e == scope.label || e == scope.paper_label()) {
            continue;
        }
        let at = |i: usize| match claim.across {
            Across::Rows => (i, s),
            Across::Columns => (s, i),
        };
        let cells = Cells {
            labels: cells_axis.iter().map(|v| v.label.as_str()).collect(),
            paper_labels: cells_axis.iter().map(|v| v.paper_label()).collect(),
            stats: (0..cells_axis.len()).map(|i| report.stats(at(i).0, at(i).1)).collect(),
            tested: (0..cells_axis.len()).map(|i| report.tested(at(i).0, at(i).1)).collect(),
            unconverged: (0..cells_axis.len())
                .map(|i| unconverged(report.runs(at(i).0, at(i).1)).map(|u| format!("{} of {} seeds; {}", u.count, u.scored, u.why)))
                .collect(),
            paper: (0..cells_axis.len())
                .map(|i| {
                    let (r, c) = at(i);
                    grid.experiment.paper_number(&grid.rows[r], &grid.columns[c]).map(|p| p / 100.0)
                })
                .collect(),
            paper_test_size: scope_test_size(&grid.experiment.run, scope),
        };
        let (verdict, detail) = verdict(claim, &cells, &find);
        judgements.push(Judgement { scope: scope.label.clone(), verdict, detail });
    }
    judgements
}

/// The cells of one scope (a column, for a rows claim).
pub struct Cells<'a> {
    pub labels: Vec<&'a str>,
    /// The paper's name of each cell (a quick profile's `paper = "..."` alias,
    /// else its label): the paper's own numbers are quoted under it.
    pub paper_labels: Vec<&'a str>,
    pub stats: Vec<Option<Stats>>,
    /// Per-example outcomes, where every finished run kept its predictions.
    pub tested: Vec<Option<Tested>>,
    /// Why a cell's seeds had not converged, where some had not.
    pub unconverged: Vec<Option<String>>,
    /// The paper's error of each cell, as a fraction.
    pub paper: Vec<Option<f64>>,
    /// The paper's test size for this scope (Table 1), when it is a dataset.
    pub paper_test_size: Option<usize>,
}

impl Cells<'_> {
    fn stats(&self, i: usize) -> Stats {
        self.stats[i].expect("checked")
    }

    fn show(&self, i: usize) -> String {
        let st = self.stats(i);
        if st.n == 0 { format!("{} diverged", self.labels[i]) } else { format!("{} {}", self.labels[i], pts(st.mean)) }
    }

    /// Fewest seeds of `cells`.
    fn min_seeds(&self, cells: &[usize]) -> usize {
        cells.iter().map(|&i| self.stats(i).n).min().unwrap_or(0)
    }

    /// The cells' outcomes on common test examples, in order; else why they
    /// cannot be paired.
    fn paired_outcomes(&self, cells: &[usize]) -> Result<Vec<Outcomes>, &'static str> {
        const NO_PREDICTIONS: &str = "a cell kept no per-example predictions";
        if cells.iter().any(|&i| self.stats(i).n == 0) {
            return Err("every run of a cell diverged");
        }
        let first = self.tested[*cells.first().ok_or(NO_PREDICTIONS)?].as_ref().ok_or(NO_PREDICTIONS)?;
        cells
            .iter()
            .map(|&i| {
                self.tested[i].as_ref().ok_or(NO_PREDICTIONS)?.aligned(&first.ids).ok_or("the cells were scored on different test examples")
            })
            .collect()
    }

    /// Mean and variance of the mean of a cell's error (seeds and test
    /// sampling), for the unpaired comparison; a cell whose every run
    /// diverged counts as the majority-class error.
    fn unpaired_value(&self, i: usize) -> (f64, f64) {
        let st = self.stats(i);
        if st.n == 0 {
            let p = st.majority_error;
            (p, p * (1.0 - p) / st.test_size as f64)
        } else {
            (st.mean, st.var_of_mean)
        }
    }

    /// `a` minus `b`, paired where both kept predictions on the same examples.
    fn difference(&self, a: usize, b: usize) -> Difference {
        match self.paired_outcomes(&[a, b]) {
            Ok(o) => paired(&o[0], &o[1]),
            Err(why) => unpaired(self.unpaired_value(a), self.unpaired_value(b), why),
        }
    }
}

/// The claim's verdict on one scope's cells, and why.
pub fn verdict(claim: &Claim, cells: &Cells, find: &dyn Fn(&str) -> Option<usize>) -> (Verdict, String) {
    let absent: Vec<&str> = claim.named_cells().into_iter().filter(|c| find(c).is_none()).collect();
    let named: Vec<usize> = match claim.test {
        ClaimTest::FallingSlope | ClaimTest::Lowest | ClaimTest::Highest if claim.cells.is_empty() => (0..cells.labels.len()).collect(),
        // Along a trend, the cells this profile has.
        ClaimTest::FallingSlope => claim.named_cells().iter().filter_map(|c| find(c)).collect(),
        _ if !absent.is_empty() => return (Verdict::NotMeasured, format!("this profile has no cell {}", absent.join(", "))),
        _ => claim.named_cells().iter().filter_map(|c| find(c)).collect(),
    };
    let missing: Vec<&str> = named.iter().filter(|&&i| cells.stats[i].is_none()).map(|&i| cells.labels[i]).collect();
    if !missing.is_empty() {
        return (Verdict::NotMeasured, format!("no result for {}", missing.join(", ")));
    }
    let index = |label: &str| find(label).expect("present");
    let unconverged: Vec<String> = named
        .iter()
        .chain(claim.cell.as_deref().map(index).iter())
        .filter_map(|&i| Some(format!("{} did not converge ({})", cells.labels[i], cells.unconverged[i].as_ref()?)))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let (verdict, detail) = match claim.test {
        ClaimTest::Lowest | ClaimTest::Highest | ClaimTest::Lower => {
            let cell = index(claim.cell.as_deref().expect("validated"));
            let others: Vec<usize> = match (claim.test, &claim.than) {
                (ClaimTest::Lower, Some(than)) => vec![index(than)],
                _ => named.iter().copied().filter(|&i| i != cell).collect(),
            };
            let direction = if claim.test == ClaimTest::Highest { Direction::Above } else { Direction::Below };
            order(cells, cell, &others, direction)
        }
        ClaimTest::FallingSlope => falling_slope(cells, &named),
        ClaimTest::Fails => fails(cells, index(claim.cell.as_deref().expect("validated"))),
    };
    if unconverged.is_empty() {
        return (verdict, detail);
    }
    (Verdict::CannotJudge, format!("{}. What the runs show so far, not a verdict: {detail}", unconverged.join("; ")))
}

/// Whether a claim puts its cell below (lower error) or above the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Below,
    Above,
}

/// What the seeds of the compared cells let a verdict say, and how the test
/// treats seeds that diverged.
fn seeds_note(cells: &Cells, compared: &[usize]) -> String {
    let diverged: Vec<String> = compared
        .iter()
        .copied()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|&i| cells.stats(i).runs > cells.stats(i).n)
        .map(|i| format!("{} has {}", cells.labels[i], cells.stats(i).seeds_text()))
        .collect();
    let diverged = if diverged.is_empty() {
        String::new()
    } else {
        format!(" {}: a diverged seed has no test predictions and is left out of the test.", diverged.join(", "))
    };
    match cells.min_seeds(compared) {
        0 | 1 => format!(" One seed: seed-to-seed variation is unmeasured, so the interval holds only the test sampling.{diverged}"),
        n => format!(" {n}+ seeds a cell.{diverged}"),
    }
}

/// `cell` is below (or above) every one of `others` (Holm over the comparisons).
fn order(cells: &Cells, cell: usize, others: &[usize], direction: Direction) -> (Verdict, String) {
    if others.is_empty() {
        return (Verdict::NotMeasured, format!("{} has no other cell to be compared with here", cells.labels[cell]));
    }
    let diffs: Vec<Difference> = others.iter().map(|&o| cells.difference(cell, o)).collect();
    let adjusted = holm(&diffs.iter().map(|d| d.p).collect::<Vec<_>>());
    let separated = |k: usize| diffs[k].separates() && adjusted[k] < ALPHA;
    // The sign the claim expects of cell minus other.
    let sign = if direction == Direction::Below { -1.0 } else { 1.0 };
    let against: Vec<usize> = (0..others.len()).filter(|&k| separated(k) && sign * diffs[k].estimate < 0.0).collect();
    let as_claimed = (0..others.len()).all(|k| separated(k) && sign * diffs[k].estimate > 0.0);
    let verdict = if !against.is_empty() {
        Verdict::Contradicts
    } else if as_claimed {
        Verdict::Supports
    } else {
        Verdict::CannotSeparate
    };
    let m = others.len();
    let methods: std::collections::BTreeSet<String> = diffs.iter().map(|d| d.method.words()).collect();
    let correction = if m > 1 { format!(", Holm over {m}") } else { String::new() };
    let lines: Vec<String> = others
        .iter()
        .zip(&diffs)
        .zip(&adjusted)
        .map(|((&o, d), p)| {
            let p = if m > 1 { format!("Holm-adjusted {}", p_text(*p)) } else { p_text(*p) };
            format!("vs {}: {} [{}, {}], {p}", cells.show(o), signed(d.estimate), signed(d.low), signed(d.high))
        })
        .collect();
    let detectable_pts = diffs.iter().map(|d| detectable(d.se, m)).fold(0.0f64, f64::max);
    let detail = format!(
        "{}: difference in points with 95% CI, {}: {} ({}{correction}). This profile could detect differences of {} points or more (80% power).{}{}",
        cells.show(cell),
        if m > 1 { "each comparison" } else { "the comparison" },
        lines.join("; "),
        methods.into_iter().collect::<Vec<_>>().join("; "),
        pts(detectable_pts),
        seeds_note(cells, &[&[cell][..], others].concat()),
        paper_order(cells, cell, others, direction)
    );
    (verdict, detail)
}

/// "p = 0.024", or "p < 0.001" below the precision a bootstrap of 2000 can give.
fn p_text(p: f64) -> String {
    if p < 0.001 { "p < 0.001".into() } else { format!("p = {p:.3}") }
}

/// Whether the paper's own numbers separate `cell` below (or above) `others` at its test size.
fn paper_order(cells: &Cells, cell: usize, others: &[usize], direction: Direction) -> String {
    let paper = |i: usize| cells.paper.get(i).copied().flatten();
    let (Some(n), Some(a)) = (cells.paper_test_size, paper(cell)) else { return String::new() };
    let pairs: Vec<(usize, f64)> = others.iter().filter_map(|&o| Some((o, paper(o)?))).collect();
    if pairs.is_empty() {
        return String::new();
    }
    // Signed so that the claimed direction is negative.
    let sign = if direction == Direction::Below { 1.0 } else { -1.0 };
    let z: Vec<f64> = pairs.iter().map(|&(_, b)| sign * binomial_z(a, b, n)).collect();
    let adjusted = holm(&z.iter().map(|z| 2.0 * normal_upper_tail(z.abs())).collect::<Vec<_>>());
    let separated = z.iter().zip(&adjusted).all(|(z, p)| *z < 0.0 && *p < ALPHA);
    let weakest = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let against =
        pairs.iter().zip(&z).max_by(|a, b| a.1.total_cmp(b.1)).map(|((o, b), _)| format!("{} {}", cells.paper_labels[*o], pts(*b)));
    format!(
        " The paper's own numbers ({} {} {}, {} test examples, as independent binomials): {} (weakest z = {:.2}).",
        cells.paper_labels[cell],
        pts(a),
        against.map(|t| format!("against {t}")).unwrap_or_default(),
        thousands(n),
        if separated { "they separate it" } else { "they do not separate it" },
        sign * weakest,
    )
}

/// The error falls along `named` on the whole: the least-squares slope of
/// error against position is below zero, with its bootstrap interval (paired
/// where predictions are kept). Not that every step falls.
fn falling_slope(cells: &Cells, named: &[usize]) -> (Verdict, String) {
    if named.len() < 2 {
        return (Verdict::NotMeasured, "fewer than two cells along the trend here".into());
    }
    let (d, how) = match cells.paired_outcomes(named) {
        Ok(outcomes) => {
            let d = trend(&outcomes.iter().collect::<Vec<_>>());
            (d, d.method.words())
        }
        Err(why) => (weighted_slope(cells, named, why), format!("weighted least squares on the cells' means ({why})")),
    };
    let verdict = if !d.separates() || d.p >= ALPHA {
        Verdict::CannotSeparate
    } else if d.estimate < 0.0 {
        Verdict::Supports
    } else {
        Verdict::Contradicts
    };
    let detail = format!(
        "tested as the least-squares slope of the error along the cells (the error falls on the whole, not at every step): error goes from {} to {}; slope {} points from one cell to the next over {} cells, 95% CI [{}, {}], {} ({how}). This profile could detect a slope of {} points or more (80% power).{}",
        cells.show(named[0]),
        cells.show(*named.last().expect("cells")),
        signed(d.estimate),
        named.len(),
        signed(d.low),
        signed(d.high),
        p_text(d.p),
        pts(detectable(d.se, 1)),
        seeds_note(cells, named)
    );
    (verdict, detail)
}

/// The slope of the cells' means weighted by their variances, for cells that cannot be paired (`why`).
fn weighted_slope(cells: &Cells, named: &[usize], why: &'static str) -> Difference {
    let points: Vec<(f64, f64, f64)> = named
        .iter()
        .enumerate()
        .map(|(x, &i)| {
            let (m, v) = cells.unpaired_value(i);
            (x as f64, m, 1.0 / v.max(1e-12))
        })
        .collect();
    let w: f64 = points.iter().map(|p| p.2).sum();
    let xm = points.iter().map(|p| p.0 * p.2).sum::<f64>() / w;
    let ym = points.iter().map(|p| p.1 * p.2).sum::<f64>() / w;
    let sxx: f64 = points.iter().map(|p| p.2 * (p.0 - xm).powi(2)).sum();
    let slope = points.iter().map(|p| p.2 * (p.0 - xm) * (p.1 - ym)).sum::<f64>() / sxx.max(1e-300);
    let se = 1.0 / sxx.max(1e-300).sqrt();
    let z = normal_quantile(1.0 - ALPHA / 2.0);
    let p = 2.0 * normal_upper_tail((slope / se).abs());
    Difference { estimate: slope, low: slope - z * se, high: slope + z * se, se, p, method: Method::Unpaired { why } }
}

/// `cell` learns nothing: every run diverged, or its error is within
/// [`FAILS_MARGIN`] of always predicting the majority class (the interval of
/// the paired difference shows it); it learns when it is separated below.
fn fails(cells: &Cells, cell: usize) -> (Verdict, String) {
    let st = cells.stats(cell);
    if st.n == 0 {
        return (Verdict::Supports, format!("{}: every run diverged", cells.labels[cell]));
    }
    let d = match cells.tested[cell].as_ref() {
        Some(t) if t.outcomes.seeds() == 1 => mcnemar_difference(&t.outcomes.wrong[0], &t.majority().wrong[0]),
        Some(t) => paired(&t.outcomes, &t.majority()),
        None => unpaired(cells.unpaired_value(cell), (st.majority_error, 0.0), "the cell kept no per-example predictions"),
    };
    let detail = format!(
        "{} against {} for always the majority class: {} points, 95% CI [{}, {}], {} ({}).{}",
        cells.show(cell),
        pts(st.majority_error),
        signed(d.estimate),
        signed(d.low),
        signed(d.high),
        p_text(d.p),
        d.method.words(),
        seeds_note(cells, &[cell])
    );
    if d.high < 0.0 && d.p < ALPHA {
        (Verdict::Contradicts, format!("it learns: {detail}"))
    } else if d.low > -FAILS_MARGIN {
        (Verdict::Supports, format!("no better than the majority class by more than {} points: {detail}", pts(FAILS_MARGIN)))
    } else {
        (Verdict::CannotSeparate, detail)
    }
}

#[cfg(test)]
mod tests {
    use bertfit_data::splits::SplitMix64;

    use super::*;
    use crate::experiment::{Across, Claim, ClaimTest};

    const N: usize = 2000;

    /// A cell of `seeds` seeds around error `rate` on the shared examples;
    /// `None` stats: a cell without a finished run.
    fn cell(rng: &mut SplitMix64, base: &[f64], rate: f64, seeds: usize) -> (Option<Stats>, Option<Tested>) {
        // Example i is wrong when its difficulty is below the rate: cells share hard examples.
        let wrong: Vec<Vec<bool>> = (0..seeds).map(|_| base.iter().map(|d| *d < rate + 0.01 * (rng.unit() - 0.5)).collect()).collect();
        let errors: Vec<f64> = wrong.iter().map(|w| w.iter().filter(|x| **x).count() as f64 / N as f64).collect();
        let mean = errors.iter().sum::<f64>() / seeds as f64;
        let stats = Stats {
            runs: seeds,
            n: seeds,
            diverged: 0,
            unconverged: 0,
            mean,
            spread: 0.0,
            var_of_mean: mean * (1.0 - mean) / N as f64 / seeds as f64,
            majority_error: 0.5,
            test_size: N,
        };
        let tested = Tested {
            ids: (0..N).map(|i| format!("d/test/{i}")).collect(),
            gold: (0..N).map(|i| if i % 2 == 0 { "neg" } else { "pos" }.to_string()).collect(),
            outcomes: Outcomes::of_seeds(wrong),
        };
        (Some(stats), Some(tested))
    }

    fn cells<'a>(labels: &[&'a str], rates: &[Option<f64>], seeds: usize, paper: &[f64], paper_n: Option<usize>) -> Cells<'a> {
        let mut rng = SplitMix64::new(1);
        let base: Vec<f64> = (0..N).map(|_| rng.unit()).collect();
        let made: Vec<(Option<Stats>, Option<Tested>)> =
            rates.iter().map(|r| r.map(|r| cell(&mut rng, &base, r, seeds)).unwrap_or((None, None))).collect();
        Cells {
            labels: labels.to_vec(),
            paper_labels: labels.to_vec(),
            stats: made.iter().map(|m| m.0).collect(),
            tested: made.into_iter().map(|m| m.1).collect(),
            paper: paper.iter().map(|p| Some(*p)).collect(),
            paper_test_size: paper_n,
            unconverged: vec![None; labels.len()],
        }
    }

    fn claim(test: ClaimTest, cell: Option<&str>, than: Option<&str>, others: &[&str]) -> Claim {
        Claim {
            text: "a claim".into(),
            test,
            cell: cell.map(String::from),
            than: than.map(String::from),
            cells: others.iter().map(|s| s.to_string()).collect(),
            across: Across::Rows,
            only: None,
            except: Vec::new(),
        }
    }

    fn judge_on(claim: &Claim, cells: &Cells) -> (Verdict, String) {
        let labels = cells.labels.clone();
        verdict(claim, cells, &|l: &str| labels.iter().position(|x| *x == l))
    }

    const ABC: [&str; 3] = ["a", "b", "c"];

    #[test]
    fn lower_is_supported_contradicted_or_inseparable_by_its_paired_interval() {
        let lower = claim(ClaimTest::Lower, Some("a"), Some("b"), &[]);
        let (v, detail) = judge_on(&lower, &cells(&ABC, &[Some(0.10), Some(0.16), Some(0.2)], 1, &[0.0542, 0.0563, 0.06], Some(25_000)));
        assert_eq!(v, Verdict::Supports, "{detail}");
        assert!(detail.contains("exact McNemar") && detail.contains("seed-to-seed variation is unmeasured"), "{detail}");
        assert!(detail.contains("could detect differences of"), "{detail}");
        assert!(detail.contains("25,000 test examples") && detail.contains("they do not separate it"), "{detail}");
        let (v, detail) = judge_on(&lower, &cells(&ABC, &[Some(0.16), Some(0.10), Some(0.2)], 3, &[], None));
        assert_eq!(v, Verdict::Contradicts, "{detail}");
        assert!(detail.contains("bootstrap over examples and seeds, both paired") && detail.contains("3+ seeds"), "{detail}");
        let (v, detail) = judge_on(&lower, &cells(&ABC, &[Some(0.150), Some(0.152), Some(0.2)], 3, &[], None));
        assert_eq!(v, Verdict::CannotSeparate, "{detail}");
    }

    #[test]
    fn the_papers_numbers_are_quoted_under_the_papers_row_names() {
        let lower = claim(ClaimTest::Lower, Some("a"), Some("b"), &[]);
        let mut aliased = cells(&ABC, &[Some(0.10), Some(0.16), Some(0.2)], 1, &[0.0437, 0.0540, 0.06], Some(25_000));
        aliased.paper_labels = vec!["BERT-base + ITPT", "BERT-base", "c"];
        let (_, detail) = judge_on(&lower, &aliased);
        assert!(detail.contains("The paper's own numbers (BERT-base + ITPT 4.37 against BERT-base 5.40,"), "{detail}");
        assert!(detail.starts_with("a ") && detail.contains("vs b "), "{detail}");
    }

    #[test]
    fn lowest_needs_every_comparison_separated_after_holm() {
        let lowest = claim(ClaimTest::Lowest, Some("a"), None, &[]);
        let (v, detail) = judge_on(&lowest, &cells(&ABC, &[Some(0.10), Some(0.16), Some(0.18)], 1, &[], None));
        assert_eq!(v, Verdict::Supports, "{detail}");
        assert!(detail.contains("Holm over 2"), "{detail}");
        // One comparison within noise: not supported, though a has the lowest mean.
        let (v, detail) = judge_on(&lowest, &cells(&ABC, &[Some(0.10), Some(0.101), Some(0.18)], 1, &[], None));
        assert_eq!(v, Verdict::CannotSeparate, "{detail}");
        // Another cell clearly lower: contradicted.
        let (v, detail) = judge_on(&lowest, &cells(&ABC, &[Some(0.15), Some(0.08), Some(0.18)], 1, &[], None));
        assert_eq!(v, Verdict::Contradicts, "{detail}");
        // Alone on its axis: nothing to compare, not supported.
        let alone = cells(&["a"], &[Some(0.1)], 1, &[], None);
        assert_eq!(judge_on(&lowest, &alone).0, Verdict::NotMeasured);
    }

    #[test]
    fn missing_and_absent_cells_are_not_measured_and_never_panic() {
        let lower = claim(ClaimTest::Lower, Some("a"), Some("b"), &[]);
        let (v, detail) = judge_on(&lower, &cells(&ABC, &[Some(0.1), None, Some(0.2)], 1, &[], None));
        assert_eq!(v, Verdict::NotMeasured);
        assert!(detail.contains("no result for b"), "{detail}");
        let (v, detail) = judge_on(&claim(ClaimTest::Lower, Some("a"), Some("z"), &[]), &cells(&ABC, &[Some(0.1); 3], 1, &[], None));
        assert_eq!(v, Verdict::NotMeasured);
        assert!(detail.contains("this profile has no cell z"), "{detail}");
        // A trend whose named cells are all absent from this profile's axis.
        let trend = claim(ClaimTest::FallingSlope, None, None, &["x", "y"]);
        assert_eq!(judge_on(&trend, &cells(&ABC, &[Some(0.1); 3], 1, &[], None)).0, Verdict::NotMeasured);
        let lowest = claim(ClaimTest::Lowest, Some("a"), None, &["b", "c"]);
        assert_eq!(judge_on(&lowest, &cells(&ABC, &[None; 3], 1, &[], None)).0, Verdict::NotMeasured);
    }

    #[test]
    fn a_trend_is_judged_by_its_slope_interval() {
        let falling = claim(ClaimTest::FallingSlope, None, None, &[]);
        let (v, detail) = judge_on(&falling, &cells(&ABC, &[Some(0.2), Some(0.15), Some(0.1)], 1, &[], None));
        assert_eq!(v, Verdict::Supports, "{detail}");
        assert_eq!(judge_on(&falling, &cells(&ABC, &[Some(0.1), Some(0.15), Some(0.2)], 1, &[], None)).0, Verdict::Contradicts);
        assert_eq!(judge_on(&falling, &cells(&ABC, &[Some(0.15), Some(0.151), Some(0.15)], 2, &[], None)).0, Verdict::CannotSeparate);
    }

    #[test]
    fn fails_is_supported_only_with_evidence() {
        let fails = claim(ClaimTest::Fails, Some("a"), None, &[]);
        // Predicting the majority class (nearly) always: the paired interval is
        // narrow around zero, so it does not learn.
        let mut stuck = cells(&["a"], &[Some(0.5)], 1, &[], None);
        let tested = stuck.tested[0].as_mut().unwrap();
        let mut wrong = tested.majority().wrong.swap_remove(0);
        wrong.iter_mut().take(10).for_each(|w| *w = !*w);
        tested.outcomes = Outcomes::of_seeds(vec![wrong]);
        let (v, detail) = judge_on(&fails, &stuck);
        assert_eq!(v, Verdict::Supports, "{detail}");
        // Near the majority error but disagreeing with it on many examples: the
        // interval is too wide to say it learns nothing.
        let (v, detail) = judge_on(&fails, &cells(&["a"], &[Some(0.5)], 1, &[], None));
        assert_eq!(v, Verdict::CannotSeparate, "{detail}");
        let (v, detail) = judge_on(&fails, &cells(&["a"], &[Some(0.2)], 1, &[], None));
        assert_eq!(v, Verdict::Contradicts, "{detail}");
        // Every run diverged.
        let mut diverged = cells(&["a"], &[Some(0.5)], 1, &[], None);
        diverged.stats[0] = Some(Stats { n: 0, diverged: 1, runs: 1, ..diverged.stats[0].unwrap() });
        assert_eq!(judge_on(&fails, &diverged).0, Verdict::Supports);
        // Without predictions: the unpaired comparison with the majority error.
        let mut unpaired_cells = cells(&["a"], &[Some(0.2)], 1, &[], None);
        unpaired_cells.tested[0] = None;
        let (v, detail) = judge_on(&fails, &unpaired_cells);
        assert_eq!(v, Verdict::Contradicts, "{detail}");
        assert!(detail.contains("unpaired"), "{detail}");
    }

    #[test]
    fn a_claim_on_a_cell_that_had_not_converged_cannot_judge() {
        let lower = claim(ClaimTest::Lower, Some("a"), Some("b"), &[]);
        let mut still_learning = cells(&ABC, &[Some(0.10), Some(0.16), Some(0.2)], 3, &[], None);
        still_learning.unconverged[1] =
            Some("3 of 3 seeds; best epoch the last (3), dev error still falling 34.5 -> 27.5 (noise 3.4)".into());
        let (v, detail) = judge_on(&lower, &still_learning);
        assert_eq!(v, Verdict::CannotJudge, "{detail}");
        assert_eq!(v.words(), "cannot judge");
        assert!(detail.starts_with("b did not converge (3 of 3 seeds; best epoch the last"), "{detail}");
        // A cell the claim does not compare does not matter.
        still_learning.unconverged[1] = None;
        still_learning.unconverged[2] = Some("1 of 3 seeds".into());
        assert_eq!(judge_on(&lower, &still_learning).0, Verdict::Supports);
    }

    #[test]
    fn highest_is_lowest_turned_over() {
        let highest = claim(ClaimTest::Highest, Some("c"), None, &["a", "b"]);
        let (v, detail) =
            judge_on(&highest, &cells(&ABC, &[Some(0.10), Some(0.12), Some(0.20)], 3, &[0.0549, 0.0571, 0.0589], Some(25_000)));
        assert_eq!(v, Verdict::Supports, "{detail}");
        assert!(detail.contains("they do not separate it"), "{detail}");
        let (v, detail) = judge_on(&highest, &cells(&ABC, &[Some(0.10), Some(0.25), Some(0.20)], 3, &[], None));
        assert_eq!(v, Verdict::Contradicts, "{detail}");
    }

    #[test]
    fn the_paper_test_size_comes_from_the_scope_or_else_the_experiments_dataset() {
        let value = |text: &str| toml::from_str::<AxisValue>(text).unwrap();
        let run: toml::Table = toml::from_str("[data]\ndataset = \"imdb\"").unwrap();
        // A dataset column names its own test size, whatever the base run's dataset.
        assert_eq!(scope_test_size(&run, &value("label = \"TREC\"")), Some(500));
        assert_eq!(scope_test_size(&run, &value("label = \"AG (quick)\"\npaper = \"AG\"")), Some(7_600));
        // A scope that is no dataset (Table 4's learning-rate rows) takes the run's.
        assert_eq!(scope_test_size(&run, &value("label = \"1.0e-4\"")), Some(25_000));
        assert_eq!(scope_test_size(&toml::Table::new(), &value("label = \"1.0e-4\"")), None);
    }
}
