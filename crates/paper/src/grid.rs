//! An experiment under one profile, expanded into its grid: every cell's run
//! settings (base run, then the profile's, the column's and the row's `set`,
//! then `--set`), each parsed and checked before anything trains, errors
//! naming the file and key.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use bertfit_data::settings::InvalidSetting;
use bertfit_run::RunConfig;

use crate::experiment::{AxisValue, Experiment, Profile};
use crate::overrides::{Layered, SourceFile, parse_cli_set};

/// The experiment files compiled into the binary (`experiments/*.toml` of the
/// checkout it was built from), in the order `reproduce all` runs them.
pub const BUILTIN: &[(&str, &str)] = &[
    ("truncation", include_str!("../../../experiments/truncation.toml")),
    ("layers", include_str!("../../../experiments/layers.toml")),
    ("forgetting", include_str!("../../../experiments/forgetting.toml")),
    ("layerwise-lr", include_str!("../../../experiments/layerwise-lr.toml")),
    ("schedules", include_str!("../../../experiments/schedules.toml")),
    ("itpt-steps", include_str!("../../../experiments/itpt-steps.toml")),
    ("further-pretraining", include_str!("../../../experiments/further-pretraining.toml")),
    ("comparison", include_str!("../../../experiments/comparison.toml")),
    ("multitask", include_str!("../../../experiments/multitask.toml")),
    ("few-shot", include_str!("../../../experiments/few-shot.toml")),
    ("bert-large", include_str!("../../../experiments/bert-large.toml")),
];

/// Folders whose `NAME.toml` add to or override the built-in experiments, in
/// order of precedence: `--experiments DIR`, `$BERTFIT_EXPERIMENTS`, then
/// `experiments/` in the working directory.
pub fn experiment_dirs(flag: Option<&PathBuf>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = flag.cloned().into_iter().collect();
    dirs.extend(std::env::var_os("BERTFIT_EXPERIMENTS").filter(|v| !v.is_empty()).map(PathBuf::from));
    let local = PathBuf::from("experiments");
    if local.is_dir() {
        dirs.push(local);
    }
    dirs
}

/// Every experiment name: built-in ones in their order, then others found in the folders.
pub fn known(dirs: &[PathBuf]) -> Vec<String> {
    let mut names: Vec<String> = BUILTIN.iter().map(|(n, _)| n.to_string()).collect();
    let mut extra = Vec::new();
    for dir in dirs {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "toml")
                && let Some(stem) = path.file_stem().map(|s| s.to_string_lossy().into_owned())
                && !names.contains(&stem)
                && !extra.contains(&stem)
            {
                extra.push(stem);
            }
        }
    }
    extra.sort();
    names.extend(extra);
    names
}

/// Reads and validates experiment `name`.
pub fn load_experiment(name: &str, dirs: &[PathBuf]) -> Result<(Experiment, SourceFile)> {
    let found = dirs.iter().map(|d| d.join(format!("{name}.toml"))).find(|p| p.is_file());
    let file = match found {
        Some(path) => SourceFile {
            label: path.display().to_string(),
            text: std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?,
        },
        None => match BUILTIN.iter().find(|(n, _)| *n == name) {
            Some((_, text)) => SourceFile { label: format!("built-in experiments/{name}.toml"), text: text.to_string() },
            None => bail!("unknown experiment {name:?}; the experiments are: {}", known(dirs).join(", ")),
        },
    };
    let experiment: Experiment = bertfit_data::settings::parse_toml(&file.text, &file.label)?;
    if let Err(e) = experiment.validate() {
        let message = format!("{e:#}");
        // A claim's error names the file's line of its [[claims]] table.
        let claim = message.strip_prefix("claims[").and_then(|rest| rest.split(']').next()?.parse::<usize>().ok());
        let place = claim.and_then(|i| claims_table_offset(&file.text, i)).map(|offset| file.place(offset)).unwrap_or(file.label.clone());
        bail!("{place}: {message}");
    }
    Ok((experiment, file))
}

/// The byte offset of the `index`-th `[[claims]]` table of an experiment file.
fn claims_table_offset(text: &str, index: usize) -> Option<usize> {
    let mut offset = 0;
    let mut seen = 0;
    for line in text.split_inclusive('\n') {
        if line.trim() == "[[claims]]" {
            if seen == index {
                return Some(offset);
            }
            seen += 1;
        }
        offset += line.len();
    }
    None
}

/// One cell: a row and a column, and its run (seed 0 of the profile's seeds).
#[derive(Debug, Clone)]
pub struct Cell {
    pub row: usize,
    pub column: usize,
    /// `None` for a cell the experiment leaves out (`skip`).
    pub config: Option<RunConfig>,
    layered: Layered,
}

pub struct Grid {
    pub name: String,
    pub experiment: Experiment,
    pub file: SourceFile,
    pub profile_name: String,
    pub profile: Profile,
    pub rows: Vec<AxisValue>,
    pub columns: Vec<AxisValue>,
    /// Added to each cell's `training.seed` (0, 1, ...).
    pub seeds: Vec<u64>,
    /// Row-major.
    pub cells: Vec<Cell>,
    /// The `--set` arguments, as given.
    pub overrides: Vec<String>,
}

impl Grid {
    /// Expands `experiment` under `profile_name`, with `cli_sets` applied last.
    pub fn build(
        name: &str,
        experiment: Experiment,
        file: SourceFile,
        profile_name: &str,
        cli_sets: &[String],
        seeds: Option<usize>,
    ) -> Result<Self> {
        let profile = experiment.profile(profile_name).map_err(|e| anyhow::anyhow!("{}: {e:#}", file.label))?;
        let (rows, columns) = experiment.axes(&profile);
        let (rows, columns) = (rows.values.clone(), columns.values.clone());
        let cli: Vec<(String, toml::Value)> = cli_sets.iter().map(|s| parse_cli_set(s)).collect::<Result<_>>()?;
        let place = |value: &toml::Spanned<toml::Value>| file.place(value.span().start);
        let mut cells = Vec::with_capacity(rows.len() * columns.len());
        for (r, row) in rows.iter().enumerate() {
            for (c, column) in columns.iter().enumerate() {
                if row.skips(column) || column.skips(row) {
                    cells.push(Cell { row: r, column: c, config: None, layered: Layered::new(toml::Table::new()) });
                    continue;
                }
                let mut layered = Layered::new(experiment.run.clone());
                let none = crate::experiment::Sets::new();
                let column_extra = column.profile_set.get(profile_name).unwrap_or(&none);
                let row_extra = row.profile_set.get(profile_name).unwrap_or(&none);
                let sets = profile.set.iter().chain(&column.set).chain(column_extra).chain(&row.set).chain(row_extra);
                for (key, value) in sets {
                    layered.set(key, value.get_ref().clone(), place(value))?;
                }
                for ((key, value), arg) in cli.iter().zip(cli_sets) {
                    layered.set(key, value.clone(), format!("--set {arg}"))?;
                }
                let base_place = |key: &str| base_place(&file, key);
                let config: RunConfig = layered
                    .build(&base_place)
                    .with_context(|| format!("cell {:?} / {:?} of profile {profile_name}", row.label, column.label))?;
                config.check().map_err(|e| Cell { row: r, column: c, config: None, layered: layered.clone() }.invalid(&file, e))?;
                let cell = Cell { row: r, column: c, config: Some(config), layered };
                cells.push(cell);
            }
        }
        let seeds = (0..seeds.or(profile.seeds).unwrap_or(1).max(1) as u64).collect();
        Ok(Self {
            name: name.to_string(),
            experiment,
            file,
            profile_name: profile_name.to_string(),
            profile,
            rows,
            columns,
            seeds,
            cells,
            overrides: cli_sets.to_vec(),
        })
    }
}

impl Cell {
    /// The cell's run with training seed `offset` added (and the multi-task
    /// stage's, which is part of what a seed varies).
    pub fn seeded(&self, offset: u64) -> Option<RunConfig> {
        let mut config = self.config.clone()?;
        config.training.seed += offset;
        if let Some(multitask) = &mut config.multitask {
            multitask.training.seed += offset;
        }
        Some(config)
    }

    /// An out-of-range setting of this cell, reported where it was written.
    pub fn invalid(&self, file: &SourceFile, e: InvalidSetting) -> anyhow::Error {
        let place = self.layered.place_of(&e.key).map(str::to_string).unwrap_or_else(|| base_place(file, &e.key));
        anyhow::anyhow!("{place}: {e}")
    }
}

/// Where `key` of the base run is written in the file (or the `[run]` table,
/// or the file, when it is not written there).
fn base_place(file: &SourceFile, key: &str) -> String {
    let mut path = vec!["run"];
    path.extend(key.split('.').filter(|p| !p.is_empty()));
    (1..=path.len()).rev().find_map(|n| file.locate(&path[..n])).unwrap_or_else(|| file.label.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs() -> Vec<PathBuf> {
        vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments")]
    }

    #[test]
    fn every_experiment_file_is_built_in_and_every_profile_expands() {
        let mut files: Vec<String> = std::fs::read_dir(&dirs()[0])
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
            .map(|e| e.path().file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let mut builtin: Vec<String> = BUILTIN.iter().map(|(n, _)| n.to_string()).collect();
        builtin.sort();
        assert_eq!(files, builtin, "experiments/ and grid::BUILTIN differ");
        for (name, _) in BUILTIN {
            let (experiment, file) = load_experiment(name, &[]).unwrap();
            for profile in experiment.profiles.keys() {
                let grid = Grid::build(name, experiment.clone(), file.clone(), profile, &[], None)
                    .unwrap_or_else(|e| panic!("{name} {profile}: {e:#}"));
                assert_eq!(grid.cells.len(), grid.rows.len() * grid.columns.len());
            }
        }
    }

    #[test]
    fn bad_settings_are_refused_at_their_place() {
        let (experiment, file) = load_experiment("layerwise-lr", &[]).unwrap();
        let error = Grid::build("layerwise-lr", experiment.clone(), file.clone(), "quick", &["training.layerwise.xi=1.5".into()], None)
            .err()
            .unwrap()
            .to_string();
        assert!(error.starts_with("--set training.layerwise.xi=1.5: training.layerwise.xi: must be in (0, 1]"), "{error}");
        let error = Grid::build("layerwise-lr", experiment.clone(), file.clone(), "quick", &["training.learning_rate=1".into()], None)
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap();
        assert!(error.contains("--set training.learning_rate=1") && error.contains("learning_rate"), "{error}");
        let error = Grid::build("layerwise-lr", experiment, file, "fast", &[], None).err().unwrap().to_string();
        assert!(error.contains("no profile \"fast\""), "{error}");
        let error = load_experiment("no-such-experiment", &[]).err().unwrap().to_string();
        assert!(error.contains("truncation") && error.contains("few-shot"), "{error}");
    }

    #[test]
    fn a_bad_key_in_a_file_is_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(dirs()[0].join("truncation.toml")).unwrap();
        let bad = text.replacen("[run.training]", "[run.training]\nlearnin_rate = 1", 1);
        assert_ne!(bad, text);
        std::fs::write(dir.path().join("truncation.toml"), &bad).unwrap();
        let (experiment, file) = load_experiment("truncation", &[dir.path().to_path_buf()]).unwrap();
        let error = format!("{:#}", Grid::build("truncation", experiment, file, "quick", &[], None).err().unwrap());
        let line = bad.lines().position(|l| l.starts_with("learnin_rate")).unwrap() + 1;
        assert!(error.contains(&format!("truncation.toml:{line}:")) && error.contains("learnin_rate"), "{error}");
    }

    #[test]
    fn a_claim_naming_a_cell_or_dataset_the_experiment_lacks_is_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(dirs()[0].join("comparison.toml")).unwrap();
        for (from, to, needle) in [
            ("except = [\"TREC\"]", "except = [\"TRECC\"]", "claims[1].except: \"TRECC\" is not a label of the other axis"),
            ("than = \"BERT-Feat\"", "than = \"BERT-Fat\"", "claims[0]: no row is labelled \"BERT-Fat\""),
        ] {
            let bad = text.replacen(from, to, 1);
            assert_ne!(bad, text, "{from}");
            std::fs::write(dir.path().join("comparison.toml"), &bad).unwrap();
            let error = format!("{:#}", load_experiment("comparison", &[dir.path().to_path_buf()]).err().unwrap());
            let index: usize = needle[7..8].parse().unwrap();
            let line = bad.lines().enumerate().filter(|(_, l)| l.trim() == "[[claims]]").nth(index).unwrap().0 + 1;
            assert!(error.contains(&format!("comparison.toml:{line}:1: {needle}")), "{error}");
        }
    }
}
