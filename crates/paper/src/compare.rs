//! `bertfit compare A B`: two result sets of one experiment (two results
//! folders, two profiles or backends, two commits' committed results) matched
//! cell by cell. Each pair's difference of test error comes with its paired
//! 95% interval (the same examples: McNemar with one seed a side, else the
//! bootstrap over seeds and examples) and whether the two agree; runs that are
//! equal bit for bit (the same identity, curve and predictions) say so.
//! Written as markdown and CSV.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bertfit_run::{Predictions, RunMetrics, finished};

use crate::cell_stats::Stats;
use crate::inference::{Difference, paired, unpaired};
use crate::report::{Tested, load_predictions};

/// A cell's finished runs, each with its test predictions (if it kept them).
pub type CellRuns = Vec<(RunMetrics, Option<Predictions>)>;

/// One side of a comparison: a folder with `table.md` and `table.csv`.
pub struct ResultSet {
    /// As the user named it.
    pub name: String,
    /// The experiment and profile its table says it holds.
    pub experiment: String,
    pub profile: String,
    /// Finished runs of each cell (row, column), with their test predictions.
    pub cells: BTreeMap<(String, String), CellRuns>,
    /// Cell order as the table lists them.
    pub order: Vec<(String, String)>,
}

impl ResultSet {
    /// Reads the table folder `dir` and its runs (`dir/runs/`, or the
    /// experiment folder's `runs/` for a profile's subfolder).
    pub fn read(dir: &Path, name: &str) -> Result<Self> {
        let (experiment, profile) = table_title(dir, name)?;
        let runs_dir = [dir.join("runs"), dir.parent().map(|p| p.join("runs")).unwrap_or_default()]
            .into_iter()
            .find(|d| d.is_dir())
            .unwrap_or_else(|| dir.join("runs"));
        let csv_path = dir.join("table.csv");
        let text = std::fs::read_to_string(&csv_path).with_context(|| format!("cannot read {}", csv_path.display()))?;
        let mut cells = BTreeMap::new();
        let mut order = Vec::new();
        let mut lines = text.lines();
        let header = split_csv(lines.next().unwrap_or_default());
        let column = |key: &str| header.iter().position(|h| h == key).with_context(|| format!("{}: no column {key:?}", csv_path.display()));
        let (row_at, column_at, runs_at) = (column("row")?, column("column")?, column("runs")?);
        for (n, line) in lines.enumerate() {
            let fields = split_csv(line);
            let field =
                |i: usize| fields.get(i).cloned().with_context(|| format!("{}, line {}: too few fields", csv_path.display(), n + 2));
            let key = (field(row_at)?, field(column_at)?);
            let mut runs = Vec::new();
            for identity in field(runs_at)?.split_whitespace() {
                let run_dir = runs_dir.join(identity);
                let metrics: RunMetrics = finished(&run_dir, identity, "run")?
                    .with_context(|| format!("{}: the run {identity} its table lists is not there", runs_dir.display()))?;
                let predictions = load_predictions(&run_dir, &metrics)?;
                runs.push((metrics, predictions));
            }
            order.push(key.clone());
            cells.insert(key, runs);
        }
        Ok(Self { name: name.to_string(), experiment, profile, cells, order })
    }

    /// Whether every finished run with a test error kept its predictions.
    fn has_predictions(&self) -> bool {
        self.cells.values().flatten().all(|(m, p)| m.result.test_error.is_none() || p.is_some())
    }
}

/// The experiment and profile of the table in `dir` (named `name` in errors).
pub fn table_title(dir: &Path, name: &str) -> Result<(String, String)> {
    let table = dir.join("table.md");
    let head = std::fs::read_to_string(&table).with_context(|| format!("{name}: no table.md in {}", dir.display()))?;
    title(&head).with_context(|| format!("{}: its first line is not a bertfit table title", table.display()))
}

/// Refuses two table folders of different experiments, in one line, before their runs are read.
pub fn same_experiment(a: (&Path, &str), b: (&Path, &str)) -> Result<()> {
    let (ea, _) = table_title(a.0, a.1)?;
    let (eb, _) = table_title(b.0, b.1)?;
    if ea != eb {
        bail!("{} holds experiment {ea} but {} holds {eb}: nothing to compare", a.1, b.1);
    }
    Ok(())
}

/// `# NAME: TITLE (PROFILE profile)` → (NAME, PROFILE).
fn title(text: &str) -> Option<(String, String)> {
    let line = text.lines().next()?.strip_prefix("# ")?;
    let (name, rest) = line.split_once(": ")?;
    let profile = rest.rsplit_once(" (")?.1.strip_suffix(" profile)")?;
    Some((name.to_string(), profile.to_string()))
}

/// The fields of one CSV line (quotes as `table::csv` writes them).
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// One cell of both sets compared.
pub struct CellComparison {
    pub row: String,
    pub column: String,
    pub a: (f64, usize),
    pub b: (f64, usize),
    pub difference: Difference,
    /// Every seed's run is the same identity with the same curve and predictions.
    pub identical: bool,
}

impl CellComparison {
    pub fn verdict(&self) -> &'static str {
        if self.identical {
            "equal bit for bit"
        } else if self.difference.separates() {
            "differ"
        } else {
            "agree within noise"
        }
    }
}

/// The comparison of two result sets, and its notes.
pub struct Comparison {
    pub a: String,
    pub b: String,
    pub experiment: String,
    pub cells: Vec<CellComparison>,
    pub notes: Vec<String>,
}

/// The comparison of `a` and `b` (each a table folder), cell by cell.
pub fn compare(a: &ResultSet, b: &ResultSet) -> Result<Comparison> {
    if a.experiment != b.experiment {
        bail!("{} holds experiment {} but {} holds {}: nothing to compare", a.name, a.experiment, b.name, b.experiment);
    }
    let mut notes = Vec::new();
    for side in [a, b] {
        if !side.has_predictions() {
            notes.push(format!(
                "{}: its runs kept no per-example predictions (written before results version 2): its cells are compared unpaired, as independent binomials",
                side.name
            ));
        }
    }
    let mut cells = Vec::new();
    for key in &a.order {
        let (Some(ra), Some(rb)) = (a.cells.get(key), b.cells.get(key)) else { continue };
        let scored = |runs: &CellRuns| -> CellRuns { runs.iter().filter(|(m, _)| m.result.test_error.is_some()).cloned().collect() };
        let (ra, rb) = (scored(ra), scored(rb));
        if ra.is_empty() || rb.is_empty() {
            continue;
        }
        cells.push(compare_cell(key, &ra, &rb));
    }
    if cells.is_empty() {
        bail!("{} and {} have no finished cell in common (experiment {})", a.name, b.name, a.experiment);
    }
    let differing = differing_settings(a, b);
    if !differing.is_empty() {
        notes.push(format!("the two sides' runs differ in these settings (beyond the seed): {}", differing.join(", ")));
    }
    Ok(Comparison { a: a.name.clone(), b: b.name.clone(), experiment: a.experiment.clone(), cells, notes })
}

fn compare_cell(
    key: &(String, String),
    a: &[(RunMetrics, Option<Predictions>)],
    b: &[(RunMetrics, Option<Predictions>)],
) -> CellComparison {
    let stats = |runs: &[(RunMetrics, Option<Predictions>)]| {
        Stats::of(&runs.iter().map(|(m, _)| m.clone()).collect::<Vec<_>>()).expect("a cell of finished runs")
    };
    let tested = |runs: &[(RunMetrics, Option<Predictions>)]| {
        Tested::of(&runs.iter().map(|(m, p)| Some((m.config.training.seed, p.as_ref()?))).collect::<Option<Vec<_>>>()?)
    };
    let (sa, sb) = (stats(a), stats(b));
    let difference = match (tested(a), tested(b)) {
        (Some(ta), Some(tb)) => match tb.aligned(&ta.ids) {
            Some(ob) => paired(&ta.outcomes, &ob),
            None => unpaired((sa.mean, sa.var_of_mean), (sb.mean, sb.var_of_mean), "the two sides were scored on different test examples"),
        },
        _ => unpaired((sa.mean, sa.var_of_mean), (sb.mean, sb.var_of_mean), "a side kept no per-example predictions"),
    };
    let identical = a.len() == b.len()
        && a.iter().zip(b).all(|((ma, pa), (mb, pb))| {
            ma.identity == mb.identity && untimed(&ma.result) == untimed(&mb.result) && pa.is_some() && pa == pb
        });
    CellComparison { row: key.0.clone(), column: key.1.clone(), a: (sa.mean, a.len()), b: (sb.mean, b.len()), difference, identical }
}

/// The dotted settings whose values differ between the two sides' runs of
/// the same cell (the first seed of each), the training seed left out.
fn differing_settings(a: &ResultSet, b: &ResultSet) -> Vec<String> {
    fn flatten(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, serde_json::Value>) {
        match value {
            serde_json::Value::Object(map) if !map.is_empty() => {
                for (k, v) in map {
                    flatten(&if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, v, out);
                }
            }
            _ => {
                out.insert(prefix.to_string(), value.clone());
            }
        }
    }
    let mut keys = std::collections::BTreeSet::new();
    for (key, ra) in &a.cells {
        let (Some((ma, _)), Some((mb, _))) = (ra.first(), b.cells.get(key).and_then(|r| r.first())) else { continue };
        let (mut fa, mut fb) = (BTreeMap::new(), BTreeMap::new());
        flatten("", &serde_json::json!(ma.config), &mut fa);
        flatten("", &serde_json::json!(mb.config), &mut fb);
        for k in fa.keys().chain(fb.keys()) {
            if k != "training.seed" && fa.get(k) != fb.get(k) {
                keys.insert(k.clone());
            }
        }
    }
    keys.into_iter().collect()
}

/// A run's curve without its timings: what equal runs share bit for bit.
fn untimed(r: &bertfit_train::FinetuneResult) -> Vec<(u64, f64, f64, Option<f64>)> {
    r.curve.iter().map(|e| (e.steps, e.train_loss, e.dev_error, e.test_error)).collect()
}

impl Comparison {
    pub fn markdown(&self) -> String {
        let mut md = format!("# {}: {} against {}\n\n", self.experiment, self.a, self.b);
        let equal = self.cells.iter().filter(|c| c.identical).count();
        let differ = self.cells.iter().filter(|c| !c.identical && c.difference.separates()).count();
        let _ = writeln!(
            md,
            "{} cells in common: {equal} equal bit for bit, {} agree within noise, {differ} differ (the 95% interval of the difference excludes zero; uncorrected, one test per cell).\n",
            self.cells.len(),
            self.cells.len() - equal - differ
        );
        for note in &self.notes {
            let _ = writeln!(md, "- {note}");
        }
        if !self.notes.is_empty() {
            let _ = writeln!(md);
        }
        let _ = writeln!(md, "| row | column | {} (seeds) | {} (seeds) | difference [95% CI] | test | verdict |", self.a, self.b);
        let _ = writeln!(md, "|---|---|---|---|---|---|---|");
        for c in &self.cells {
            let d = &c.difference;
            let _ = writeln!(
                md,
                "| {} | {} | {:.2} ({}) | {:.2} ({}) | {:+.2} [{:+.2}, {:+.2}] | {} | {} |",
                c.row,
                c.column,
                100.0 * c.a.0,
                c.a.1,
                100.0 * c.b.0,
                c.b.1,
                100.0 * d.estimate,
                100.0 * d.low,
                100.0 * d.high,
                d.method.words(),
                c.verdict()
            );
        }
        let _ = writeln!(md, "\nTest error in percent; the difference is {} minus {}, in points.", self.a, self.b);
        md
    }

    pub fn csv(&self) -> String {
        let mut out =
            String::from("row,column,a_error_pct,a_seeds,b_error_pct,b_seeds,difference_pct,ci_low_pct,ci_high_pct,p,test,verdict\n");
        for c in &self.cells {
            let d = &c.difference;
            let fields = [
                c.row.clone(),
                c.column.clone(),
                format!("{:.4}", 100.0 * c.a.0),
                c.a.1.to_string(),
                format!("{:.4}", 100.0 * c.b.0),
                c.b.1.to_string(),
                format!("{:.4}", 100.0 * d.estimate),
                format!("{:.4}", 100.0 * d.low),
                format!("{:.4}", 100.0 * d.high),
                format!("{:.4}", d.p),
                d.method.words(),
                c.verdict().to_string(),
            ];
            out.push_str(&fields.iter().map(|f| crate::table::csv_field(f)).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
        out
    }

    /// One line: how many cells are equal, agree, differ.
    pub fn summary(&self) -> String {
        let equal = self.cells.iter().filter(|c| c.identical).count();
        let differ = self.cells.iter().filter(|c| !c.identical && c.difference.separates()).count();
        format!(
            "{} against {}: {} cells; {equal} equal bit for bit, {} agree within noise, {differ} differ",
            self.a,
            self.b,
            self.cells.len(),
            self.cells.len() - equal - differ
        )
    }
}

/// A side named `REV:PATH` (a commit's committed results): that folder as of
/// the commit, unpacked with `git archive` into `scratch`. Any other name is a folder.
pub fn locate(name: &str, scratch: &Path) -> Result<PathBuf> {
    let path = PathBuf::from(name);
    if path.is_dir() {
        return Ok(path);
    }
    let Some((rev, inside)) = name.split_once(':') else { bail!("{name}: no such folder (a commit's results are named REV:PATH)") };
    let inside = inside.trim_end_matches('/');
    // The table's folder, and the experiment folder's runs/ for a profile's subfolder.
    let parent = Path::new(inside).parent().map(|p| p.join("runs")).filter(|p| !p.as_os_str().is_empty());
    let target = scratch.join(rev.replace('/', "_"));
    std::fs::create_dir_all(&target).with_context(|| format!("cannot create {}", target.display()))?;
    let mut paths = vec![inside.to_string()];
    if let Some(runs) = parent {
        let listed = std::process::Command::new("git").args(["ls-tree", "-d", "--name-only", rev, &runs.to_string_lossy()]).output();
        if listed.is_ok_and(|o| o.status.success() && !o.stdout.is_empty()) {
            paths.push(runs.to_string_lossy().into_owned());
        }
    }
    let archive = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("git archive --format=tar {rev} -- {} | tar -x -C {}", paths.join(" "), target.display()))
        .output()
        .context("cannot run git archive")?;
    if !archive.status.success() || !target.join(inside).is_dir() {
        bail!("{name}: git has no folder {inside} at {rev} ({})", String::from_utf8_lossy(&archive.stderr).trim());
    }
    Ok(target.join(inside))
}
