//! The paper's qualitative claims judged against our cells. Two cells are
//! told apart when their difference exceeds twice its standard error (each
//! cell's from `Stats::var_of_mean`); otherwise the verdict is that our numbers
//! cannot separate them, whatever the order of the means.

use crate::experiment::{Across, Claim, ClaimTest};
use crate::report::Report;
use crate::stats::Stats;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Supports,
    Contradicts,
    CannotSeparate,
    /// A cell it needs has no finished run.
    NotMeasured,
}

impl Verdict {
    pub fn words(&self) -> &'static str {
        match self {
            Self::Supports => "supported",
            Self::Contradicts => "contradicted",
            Self::CannotSeparate => "cannot separate",
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

/// Mean and variance of a cell's error; a cell whose every run diverged
/// counts as the majority-class error.
fn value(stats: &Stats) -> (f64, f64) {
    if stats.n == 0 {
        let p = stats.majority_error;
        (p, p * (1.0 - p) / stats.test_size as f64)
    } else {
        (stats.mean, stats.var_of_mean)
    }
}

fn pct(x: f64) -> String {
    format!("{:.2}", 100.0 * x)
}

/// Sign of `a - b` if it exceeds twice its standard error: -1 (a lower), 1, or 0.
fn compare(a: &Stats, b: &Stats) -> i32 {
    let ((ma, va), (mb, vb)) = (value(a), value(b));
    let d = ma - mb;
    let se = (va + vb).sqrt();
    if d < -2.0 * se {
        -1
    } else if d > 2.0 * se {
        1
    } else {
        0
    }
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
        let cells = Cells {
            labels: cells_axis.iter().map(|v| v.label.as_str()).collect(),
            stats: (0..cells_axis.len())
                .map(|i| match claim.across {
                    Across::Rows => report.stats(i, s),
                    Across::Columns => report.stats(s, i),
                })
                .collect(),
        };
        let (verdict, detail) = verdict(claim, &cells, &find);
        judgements.push(Judgement { scope: scope.label.clone(), verdict, detail });
    }
    judgements
}

/// The cells of one scope (a column, for a rows claim): each one's label and stats.
struct Cells<'a> {
    labels: Vec<&'a str>,
    stats: Vec<Option<Stats>>,
}

impl Cells<'_> {
    fn stats(&self, i: usize) -> Stats {
        self.stats[i].expect("checked")
    }

    fn show(&self, i: usize) -> String {
        let st = self.stats(i);
        if st.n == 0 { format!("{} diverged", self.labels[i]) } else { format!("{} {}", self.labels[i], pct(st.mean)) }
    }

    fn show_all(&self, cells: &[usize]) -> String {
        cells.iter().map(|&i| self.show(i)).collect::<Vec<_>>().join(", ")
    }
}

/// The claim's verdict on one scope's cells, and why.
fn verdict(claim: &Claim, cells: &Cells, find: &dyn Fn(&str) -> Option<usize>) -> (Verdict, String) {
    let absent: Vec<&str> = claim.named_cells().into_iter().filter(|c| find(c).is_none()).collect();
    let named: Vec<usize> = match claim.test {
        ClaimTest::Decreasing | ClaimTest::Lowest if claim.cells.is_empty() => (0..cells.labels.len()).collect(),
        // Along a trend, the cells this profile has.
        ClaimTest::Decreasing => claim.named_cells().iter().filter_map(|c| find(c)).collect(),
        _ if !absent.is_empty() => return (Verdict::NotMeasured, format!("this profile has no cell {}", absent.join(", "))),
        _ => claim.named_cells().iter().filter_map(|c| find(c)).collect(),
    };
    let missing: Vec<&str> = named.iter().filter(|&&i| cells.stats[i].is_none()).map(|&i| cells.labels[i]).collect();
    if !missing.is_empty() {
        return (Verdict::NotMeasured, format!("no result for {}", missing.join(", ")));
    }
    let index = |label: &str| find(label).expect("present");
    match claim.test {
        ClaimTest::Lowest | ClaimTest::Lower => {
            let cell = index(claim.cell.as_deref().expect("validated"));
            let others: Vec<usize> = match (claim.test, &claim.than) {
                (ClaimTest::Lower, Some(than)) => vec![index(than)],
                _ => named.iter().copied().filter(|&i| i != cell).collect(),
            };
            lower(cells, cell, &others)
        }
        ClaimTest::Decreasing => decreasing(cells, &named),
        ClaimTest::Fails => fails(cells, index(claim.cell.as_deref().expect("validated"))),
    }
}

/// `cell` is lower than every one of `others`.
fn lower(cells: &Cells, cell: usize, others: &[usize]) -> (Verdict, String) {
    let c = cells.stats(cell);
    let beaten_by: Vec<usize> = others.iter().copied().filter(|&o| compare(&c, &cells.stats(o)) > 0).collect();
    let ties: Vec<usize> = others.iter().copied().filter(|&o| compare(&c, &cells.stats(o)) == 0).collect();
    if !beaten_by.is_empty() {
        (Verdict::Contradicts, format!("{} is higher than {}", cells.show(cell), cells.show_all(&beaten_by)))
    } else if ties.is_empty() {
        (Verdict::Supports, format!("{} is lower than every other ({})", cells.show(cell), cells.show_all(others)))
    } else {
        (Verdict::CannotSeparate, format!("{} is within noise of {}", cells.show(cell), cells.show_all(&ties)))
    }
}

/// The error falls along `named`: the weighted least-squares slope of error
/// against position, and its standard error.
fn decreasing(cells: &Cells, named: &[usize]) -> (Verdict, String) {
    let points: Vec<(f64, f64, f64)> = named
        .iter()
        .enumerate()
        .map(|(x, &i)| {
            let (m, v) = value(&cells.stats(i));
            (x as f64, m, 1.0 / v.max(1e-12))
        })
        .collect();
    let w: f64 = points.iter().map(|p| p.2).sum();
    let xm = points.iter().map(|p| p.0 * p.2).sum::<f64>() / w;
    let ym = points.iter().map(|p| p.1 * p.2).sum::<f64>() / w;
    let sxx: f64 = points.iter().map(|p| p.2 * (p.0 - xm).powi(2)).sum();
    let slope = points.iter().map(|p| p.2 * (p.0 - xm) * (p.1 - ym)).sum::<f64>() / sxx.max(1e-300);
    let z = slope * sxx.sqrt();
    let detail = format!(
        "error goes from {} to {}; fitted slope {:+.2} points from one cell to the next, over {} cells (z = {z:.1})",
        cells.show(named[0]),
        cells.show(*named.last().expect("cells")),
        100.0 * slope,
        named.len()
    );
    let verdict = if named.len() < 2 {
        Verdict::NotMeasured
    } else if z < -2.0 {
        Verdict::Supports
    } else if z > 2.0 {
        Verdict::Contradicts
    } else {
        Verdict::CannotSeparate
    };
    (verdict, detail)
}

/// `cell` learns nothing: every run diverged, or no better than the majority class.
fn fails(cells: &Cells, cell: usize) -> (Verdict, String) {
    let st = cells.stats(cell);
    if st.n == 0 {
        return (Verdict::Supports, format!("{}: every run diverged", cells.labels[cell]));
    }
    let se = st.var_of_mean.sqrt();
    let detail = format!("{} against {} for always the majority class", cells.show(cell), pct(st.majority_error));
    if st.mean < st.majority_error - 2.0 * se {
        (Verdict::Contradicts, format!("it learns: {detail}"))
    } else {
        (Verdict::Supports, format!("no better than chance: {detail}"))
    }
}
