//! An experiment's grid resolved into runs before anything trains: every
//! (cell, seed) a prepared run, or why it cannot run here (its model or
//! dataset is not on this machine). Settings out of range, and datasets whose
//! splits come out empty, stop everything at their place.

use std::collections::BTreeMap;

use std::path::Path;

use anyhow::{Result, bail};
use bertfit_data::catalogue;
use bertfit_data::settings::invalid_setting;
use bertfit_model::Backend;
use bertfit_run::model_source::model_unavailable;
use bertfit_run::task::load_dataset;
use bertfit_run::{DataConfig, PreparedRun, RunConfig};

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
    check_disk_for_downloads(&planned)?;
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
                                let e = bertfit_data::settings::InvalidSetting::new(key, format!("the {split} split of {name} is empty"));
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
    key.pad_to_multiple = None;
    key
}

/// Every dataset a run reads: its own, the other tasks of a multi-task stage,
/// the corpus of a pre-training stage.
pub(crate) fn run_datasets(config: &RunConfig) -> Result<Vec<String>> {
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

/// What a run's datasets need before it can train, found without fetching.
#[derive(Debug, Default)]
pub struct DatasetNeeds {
    /// Why one of them cannot be had here at all.
    pub missing: Option<String>,
    /// Downloads (or packages) still to fetch, each once, with sizes where known.
    pub fetch: Vec<(String, Option<u64>)>,
}

/// What a run's datasets need: nothing, downloads, or a copy nobody can fetch.
pub fn dataset_needs(config: &RunConfig) -> Result<DatasetNeeds> {
    let mut needs = DatasetNeeds::default();
    for name in run_datasets(config)? {
        let spec = catalogue::find(&name)?;
        for (split, source) in spec.splits() {
            match source.locate() {
                catalogue::Located::Here(_) => {}
                catalogue::Located::Fetch { what, bytes } => {
                    if !needs.fetch.iter().any(|(w, _)| *w == what) {
                        needs.fetch.push((what, bytes));
                    }
                }
                catalogue::Located::Nowhere(tried) => {
                    let why = catalogue::Unavailable { dataset: spec.name.clone(), split: split.into(), tried };
                    needs.missing.get_or_insert(why.to_string());
                }
            }
        }
    }
    Ok(needs)
}

/// Stops before anything is fetched when the cache's disk cannot hold the
/// downloads the runs need, archive and unpacked copy (at least twice their size).
fn check_disk_for_downloads(planned: &[Planned]) -> Result<()> {
    let mut downloads: BTreeMap<String, u64> = BTreeMap::new();
    for p in planned {
        if let Ok(run) = &p.run {
            downloads.extend(dataset_needs(&run.config)?.fetch.into_iter().map(|(what, bytes)| (what, bytes.unwrap_or(0))));
        }
    }
    let cache = bertfit_data::assets::cache_dir();
    room_for_downloads(downloads.values().sum(), &cache, free_bytes(&cache))
}

/// Downloads of `bytes` need about twice that on `cache`'s disk (archive and
/// unpacked copy); an error in one line when `free` says it is not there.
fn room_for_downloads(bytes: u64, cache: &Path, free: Option<u64>) -> Result<()> {
    let need = 2 * bytes;
    if let Some(free) = free
        && need > free
    {
        bail!(
            "the datasets to download need about {:.1} GB (archives and unpacked), and {} has {:.1} GB free; set BERTFIT_CACHE to a larger disk",
            need as f64 / 1e9,
            cache.display(),
            free as f64 / 1e9
        );
    }
    Ok(())
}

/// Free bytes on the file system holding `path` (or its nearest existing
/// parent), from `df`; `None` where `df` is not at hand.
pub fn free_bytes(path: &Path) -> Option<u64> {
    let mut at = path.to_path_buf();
    while !at.exists() {
        at = at.parent()?.to_path_buf();
        if at.as_os_str().is_empty() {
            at = ".".into();
        }
    }
    let output = std::process::Command::new("df").arg("-Pk").arg(&at).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let kb: u64 = text.lines().nth(1)?.split_whitespace().nth(3)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disk_that_cannot_hold_the_downloads_is_one_line_naming_the_cache() {
        let cache = Path::new("/data/cache");
        let err = room_for_downloads(384_269_937, cache, Some(500_000_000)).unwrap_err().to_string();
        assert_eq!(
            err,
            "the datasets to download need about 0.8 GB (archives and unpacked), and /data/cache has 0.5 GB free; set BERTFIT_CACHE to a larger disk"
        );
        assert!(room_for_downloads(384_269_937, cache, Some(800_000_000)).is_ok());
        assert!(room_for_downloads(384_269_937, cache, None).is_ok(), "no df: nothing to say");
        assert!(room_for_downloads(0, cache, Some(0)).is_ok(), "nothing to fetch");
        assert!(free_bytes(Path::new(".")).is_some_and(|b| b > 0), "df reads this disk");
    }
}
