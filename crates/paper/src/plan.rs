//! An experiment's grid resolved into runs before anything trains: every
//! (cell, seed) a prepared run, or why it cannot run here (its model or
//! dataset is not on this machine). Settings out of range, and datasets whose
//! splits come out empty, stop everything at their place.

use std::collections::BTreeMap;

use anyhow::Result;
use bertfit_data::catalogue;
use bertfit_model::Backend;
use bertfit_run::model_source::model_unavailable;
use bertfit_run::task::load_dataset;
use bertfit_run::{DataConfig, PreparedRun, RunConfig};
use bertfit_train::invalid_setting;

use crate::grid::Grid;

/// A run of the grid: its cell, seed and what it needs.
pub struct Planned {
    pub cell: usize,
    pub run: Result<PreparedRun, String>,
}

/// Resolves every (cell, seed) of the grid: a prepared run, or why it cannot
/// run here. Settings out of range stop everything, at their place.
pub fn plan(grid: &Grid, backend: Option<Backend>) -> Result<Vec<Planned>> {
    let mut planned = Vec::new();
    for (i, cell) in grid.cells.iter().enumerate() {
        for &seed in &grid.seeds {
            let Some(config) = cell.seeded(seed) else { continue };
            let run = match PreparedRun::prepare(&config, backend) {
                Ok(run) => Ok(run),
                Err(e) => {
                    if let Some(missing) = model_unavailable(&e) {
                        Err(missing.to_string())
                    } else if let Some(invalid) = invalid_setting(&e) {
                        return Err(cell.invalid(&grid.file, invalid.clone()));
                    } else {
                        let (row, column) = (&grid.rows[cell.row].label, &grid.columns[cell.column].label);
                        return Err(e.context(format!("{}: cell {row:?} / {column:?}", grid.file.label)));
                    }
                }
            };
            planned.push(Planned { cell: i, run });
        }
    }
    // Datasets: read each distinct `[data]` once, to mark unavailable ones and
    // refuse empty splits before training.
    let mut seen: BTreeMap<String, Result<(), String>> = BTreeMap::new();
    for p in &mut planned {
        let Ok(run) = &p.run else { continue };
        let data = run.config.data.clone();
        let data = &data;
        let mut names = run_datasets(&run.config)?;
        let mut unavailable = None;
        names.retain(|d| *d != data.dataset);
        names.insert(0, data.dataset.clone());
        for name in names {
            let key = serde_json::to_string(&(&name, data_key(data)))?;
            if !seen.contains_key(&key) {
                let outcome = match load_dataset(data, &name) {
                    Ok(dataset) => {
                        let cell = &grid.cells[p.cell];
                        for (split, len, key) in [
                            ("dev", dataset.dev.len(), "data.dev_size"),
                            ("test", dataset.test.len(), "data.test_size"),
                            ("train", dataset.train.len(), "data.train_subset"),
                        ] {
                            if len == 0 {
                                let e = bertfit_train::InvalidSetting::new(key, format!("the {split} split of {name} is empty"));
                                return Err(cell.invalid(&grid.file, e));
                            }
                        }
                        Ok(())
                    }
                    Err(e) => match catalogue::unavailable(&e) {
                        Some(why) => Err(why.to_string()),
                        None => return Err(e.context(format!("{}: dataset {name}", grid.file.label))),
                    },
                };
                seen.insert(key.clone(), outcome);
            }
            if let Err(why) = &seen[&key] {
                unavailable = Some(why.clone());
            }
        }
        if let Some(why) = unavailable {
            p.run = Err(why);
        }
    }
    Ok(planned)
}

/// The `[data]` settings that decide which examples a dataset yields.
fn data_key(data: &DataConfig) -> DataConfig {
    let mut key = data.clone();
    key.dataset = String::new();
    key.truncation = None;
    key.max_len = 0;
    key
}

/// Every dataset a run reads: its own, the other tasks of a multi-task stage,
/// the corpus of a pre-training stage.
fn run_datasets(config: &RunConfig) -> Result<Vec<String>> {
    let mut names = vec![config.data.dataset.clone()];
    if let Some(multitask) = &config.multitask {
        names.extend(multitask.datasets.iter().cloned());
    }
    if let Some(pretrain) = &config.pretrain {
        names.extend(pretrain.corpus_datasets(&config.data.dataset)?);
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// Why a run's datasets are not available here, if they are not.
pub fn dataset_missing(config: &RunConfig) -> Result<Option<String>> {
    for name in run_datasets(config)? {
        let spec = catalogue::find(&name)?;
        for (split, source) in std::iter::once(("train", &spec.train)).chain(spec.test.as_ref().map(|t| ("test", t))) {
            if let Err(e) = source.resolve(&spec.name, split) {
                return match catalogue::unavailable(&e) {
                    Some(why) => Ok(Some(why.to_string())),
                    None => Err(e),
                };
            }
        }
    }
    Ok(None)
}
