//! The schema of an experiment (`experiments/NAME.toml`): one table or figure
//! of the paper as a grid of runs.
//!
//! An experiment is a base run (the `bertfit finetune` schema, under `[run]`),
//! two axes (`rows` and `columns`, the paper's table layout), each value of
//! which changes some settings of the run, the paper's number for each cell,
//! the paper's qualitative claims, a figure, and profiles: `quick` (the
//! default, sized for a 2-core CPU and the embedded model and data) and
//! `paper` (the paper's settings, for a GPU). A profile changes settings of
//! every cell and may replace an axis (6 layers of the default model instead
//! of BERT-base's 12, the datasets available here instead of the paper's).
//!
//! Settings are changed by `set`: a table of dotted keys of the run schema and
//! their new values, `{ "data.max_len" = 128 }`; the value replaces what was
//! there (a table as a whole). `--set data.max_len=128` on the command line
//! is the same thing, applied last.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use serde::Deserialize;
use toml::Spanned;

/// `set`: dotted keys of the run schema and their new values.
pub type Sets = BTreeMap<String, Spanned<toml::Value>>;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// The paper's artefact: "Table 2", "Figure 3".
    pub reproduces: String,
    pub title: String,
    pub description: String,
    /// The base run every cell starts from.
    pub run: toml::Table,
    pub rows: Axis,
    pub columns: Axis,
    /// The paper's test error (%) by row label, then column label.
    #[serde(default)]
    pub paper: BTreeMap<String, BTreeMap<String, f64>>,
    /// What the paper says of these cells, judged against our numbers.
    #[serde(default)]
    pub claims: Vec<Claim>,
    /// A figure beyond the bar chart every experiment gets.
    #[serde(default)]
    pub figure: Option<Figure>,
    pub profiles: BTreeMap<String, Profile>,
}

/// One axis of the grid.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Axis {
    /// What the axis varies ("method", "dataset", "lr").
    pub name: String,
    pub values: Vec<AxisValue>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AxisValue {
    pub label: String,
    #[serde(default)]
    pub set: Sets,
    /// The label of the paper's row (or column) this one is compared with,
    /// when it differs (a 6-layer model's block 3 against BERT-base's layer 5).
    #[serde(default)]
    pub paper: Option<String>,
    /// More settings of this value under a profile, applied after `set`:
    /// `profile_set.quick = { "data.truncation.max_chunks" = 4 }`.
    #[serde(default)]
    pub profile_set: BTreeMap<String, Sets>,
    /// Its position on a line figure's x axis (steps, training fraction).
    #[serde(default)]
    pub x: Option<f64>,
    /// Labels of the other axis whose cell with this value is not part of the
    /// experiment (the paper's "/" cells): not run, shown as "-".
    #[serde(default)]
    pub skip: Vec<String>,
}

impl AxisValue {
    pub fn paper_label(&self) -> &str {
        self.paper.as_deref().unwrap_or(&self.label)
    }

    /// Whether the cell of this value and `other` (of the other axis) is left out.
    pub fn skips(&self, other: &AxisValue) -> bool {
        self.skip.iter().any(|s| s == &other.label || s == other.paper_label())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Another profile this one starts from: its `set`, `rows`, `columns` and
    /// seeds, then this profile's own on top (its own `set` keys replacing the
    /// other's). Row and column `profile_set`s stay with the profile they name.
    #[serde(default)]
    pub extends: Option<String>,
    pub description: String,
    /// Wall time of `just reproduce NAME` with this profile when it was last
    /// sized, and where: documentation for the reader of the file (a table
    /// states the wall time measured by the command that wrote it).
    #[serde(default)]
    pub wall_time: Option<String>,
    /// Training seeds per cell (0, 1, ...; `--seeds` overrides); one, or the
    /// profile it extends's, when left out.
    #[serde(default)]
    pub seeds: Option<usize>,
    #[serde(default)]
    pub set: Sets,
    /// Replacements for the experiment's axes under this profile.
    #[serde(default)]
    pub rows: Option<Axis>,
    #[serde(default)]
    pub columns: Option<Axis>,
}

/// A qualitative claim of the paper, and how our cells test it. Cells are
/// named by row label (`across = "rows"`, the default: judged in each column)
/// or by column label (`across = "columns"`: judged in each row).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    /// The claim in words, as the table states it.
    pub text: String,
    pub test: ClaimTest,
    /// `lowest`, `highest`, `lower`, `fails`: the cell the claim is about.
    #[serde(default)]
    pub cell: Option<String>,
    /// `lower`: the cell it beats.
    #[serde(default)]
    pub than: Option<String>,
    /// `lowest`, `highest`: the cells it is compared with; `falling_slope`:
    /// the cells in order (every cell of the axis, in order, when left out).
    #[serde(default)]
    pub cells: Vec<String>,
    #[serde(default)]
    pub across: Across,
    /// Judge it only in this column (or row).
    #[serde(default)]
    pub only: Option<String>,
    /// Columns (or rows) the claim leaves out, as the paper states it ("on
    /// all datasets but TREC").
    #[serde(default)]
    pub except: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Across {
    #[default]
    Rows,
    Columns,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimTest {
    /// `cell` has the lowest error of `cells` (every cell when left out).
    Lowest,
    /// `cell` has the highest error of `cells` (every cell when left out).
    Highest,
    /// `cell` has a lower error than `than`.
    Lower,
    /// The least-squares slope of the error along `cells`, in order, is below
    /// zero: the error falls on the whole, not at every step.
    FallingSlope,
    /// `cell` does not learn: it diverged, or its error is no better than
    /// predicting the majority class.
    Fails,
}

impl Claim {
    /// The cells the claim names.
    pub fn named_cells(&self) -> Vec<&str> {
        self.cell.iter().chain(&self.than).chain(&self.cells).map(String::as_str).collect()
    }

    fn check(&self, i: usize) -> Result<()> {
        let needs = |what: &str, present: bool| if present { Ok(()) } else { bail!("claims[{i}]: test {:?} needs {what}", self.test) };
        match self.test {
            ClaimTest::Lowest | ClaimTest::Highest | ClaimTest::Fails => needs("cell", self.cell.is_some()),
            ClaimTest::Lower => needs("cell and than", self.cell.is_some() && self.than.is_some()),
            ClaimTest::FallingSlope => needs("no cell (the cells go in cells)", self.cell.is_none()),
        }
    }
}

/// Figures beyond the bar chart of the table.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Figure {
    /// Test error per epoch, one line per row (the paper's Figure 2).
    LearningCurves,
    /// Error against each row's `x`, one line per column (Figures 3 and 4).
    Line {
        x_label: String,
        #[serde(default)]
        log_x: bool,
    },
    /// The learning rate of each row's schedule over its run's steps.
    Schedules,
}

impl Experiment {
    /// Profile `name` with the one it extends folded in; an error naming the
    /// file's key for an unknown profile or a cycle.
    pub fn profile(&self, name: &str) -> Result<Profile> {
        let Some(own) = self.profiles.get(name) else {
            bail!("no profile {name:?} (it has {})", self.profiles.keys().cloned().collect::<Vec<_>>().join(", "));
        };
        let mut chain = vec![name.to_string()];
        let mut profile = own.clone();
        while let Some(base_name) = profile.extends.take() {
            if chain.contains(&base_name) {
                bail!("profiles.{name}.extends: the profiles extend each other in a circle ({} -> {base_name})", chain.join(" -> "));
            }
            let Some(base) = self.profiles.get(&base_name) else {
                bail!("profiles.{}.extends: no profile {base_name:?}", chain.last().expect("one at least"));
            };
            chain.push(base_name);
            let mut set = base.set.clone();
            set.extend(std::mem::take(&mut profile.set));
            profile = Profile {
                extends: base.extends.clone(),
                description: profile.description,
                wall_time: profile.wall_time,
                seeds: profile.seeds.or(base.seeds),
                set,
                rows: profile.rows.or_else(|| base.rows.clone()),
                columns: profile.columns.or_else(|| base.columns.clone()),
            };
        }
        Ok(profile)
    }

    /// The axes under `profile`: its replacements, else the experiment's.
    pub fn axes<'a>(&'a self, profile: &'a Profile) -> (&'a Axis, &'a Axis) {
        (profile.rows.as_ref().unwrap_or(&self.rows), profile.columns.as_ref().unwrap_or(&self.columns))
    }

    /// The paper's number for a row and a column, by the paper's labels.
    pub fn paper_number(&self, row: &AxisValue, column: &AxisValue) -> Option<f64> {
        self.paper.get(row.paper_label()).and_then(|r| r.get(column.paper_label())).copied()
    }

    /// Checks what the schema cannot: unique labels, paper numbers and
    /// claims that name existing cells, a quick profile. Errors name the key.
    pub fn validate(&self) -> Result<()> {
        if !self.profiles.contains_key("quick") {
            bail!("profiles: a [profiles.quick] is required (the default profile)");
        }
        for (key, axis) in [("rows", &self.rows), ("columns", &self.columns)] {
            check_axis(key, axis, &self.profiles)?;
        }
        for (key, axis, other) in [("rows", &self.rows, &self.columns), ("columns", &self.columns, &self.rows)] {
            for (i, value) in axis.values.iter().enumerate() {
                if let Some(label) = value.skip.iter().find(|s| !other.values.iter().any(|v| &v.label == *s)) {
                    bail!("{key}.values[{i}].skip: {label:?} is not a label of the other axis");
                }
            }
        }
        for (row, numbers) in &self.paper {
            if !self.rows.values.iter().any(|v| &v.label == row) {
                bail!("paper.{row:?}: no row has this label");
            }
            for column in numbers.keys() {
                if !self.columns.values.iter().any(|v| &v.label == column) {
                    bail!("paper.{row:?}.{column:?}: no column has this label");
                }
            }
        }
        // Claims name cells by the paper's labels; a profile that replaces an
        // axis matches them through each value's `paper` label.
        for (i, claim) in self.claims.iter().enumerate() {
            claim.check(i)?;
            let (cells, other) = match claim.across {
                Across::Rows => (&self.rows, &self.columns),
                Across::Columns => (&self.columns, &self.rows),
            };
            for cell in claim.named_cells() {
                if !cells.values.iter().any(|v| v.label == cell) {
                    bail!("claims[{i}]: no {} is labelled {cell:?}", if claim.across == Across::Rows { "row" } else { "column" });
                }
            }
            if let Some(only) = &claim.only
                && !other.values.iter().any(|v| &v.label == only)
            {
                bail!("claims[{i}].only: {only:?} is not a label of the other axis");
            }
            if let Some(except) = claim.except.iter().find(|e| !other.values.iter().any(|v| &v.label == *e)) {
                bail!("claims[{i}].except: {except:?} is not a label of the other axis");
            }
        }
        for name in self.profiles.keys() {
            let profile = &self.profile(name)?;
            if profile.seeds == Some(0) {
                bail!("profiles.{name}.seeds: must be at least 1");
            }
            let (rows, columns) = self.axes(profile);
            for (key, axis, paper_axis) in [("rows", rows, &self.rows), ("columns", columns, &self.columns)] {
                check_axis(&format!("profiles.{name}.{key}"), axis, &self.profiles)?;
                for value in axis.values.iter().filter(|v| v.paper.is_some()) {
                    if !paper_axis.values.iter().any(|v| v.label == value.paper_label()) {
                        bail!(
                            "profiles.{name}.{key}: value {:?} is compared with the paper's {:?}, which the experiment's {key} do not have",
                            value.label,
                            value.paper_label()
                        );
                    }
                }
            }
            if matches!(self.figure, Some(Figure::Line { .. })) && rows.values.iter().any(|v| v.x.is_none()) {
                bail!("profiles.{name}: a line figure needs an x for every row");
            }
        }
        Ok(())
    }
}

fn check_axis(key: &str, axis: &Axis, profiles: &BTreeMap<String, Profile>) -> Result<()> {
    if axis.values.is_empty() {
        bail!("{key}.values: an axis needs at least one value");
    }
    for (i, value) in axis.values.iter().enumerate() {
        if axis.values[..i].iter().any(|v| v.label == value.label) {
            bail!("{key}.values[{i}].label: {:?} is used twice", value.label);
        }
        if let Some(profile) = value.profile_set.keys().find(|p| !profiles.contains_key(*p)) {
            bail!("{key}.values[{i}].profile_set.{profile}: there is no profile {profile:?}");
        }
    }
    Ok(())
}
