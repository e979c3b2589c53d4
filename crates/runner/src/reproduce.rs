//! `bertfit reproduce NAME`: an experiment's grid, run by run, into
//! `results/NAME/` (`results/NAME/PROFILE/` for profiles other than quick):
//! every run in `runs/ID/` under its identity, then `table.md`, `table.csv`
//! and the plots, and `results/README.md`, the index of every table.
//!
//! Everything is checked before anything trains: the file's keys, every
//! cell's settings (against its model too), the datasets' sizes. A cell whose
//! dataset or model is not on this machine is marked missing, with what would
//! supply it; the rest of the grid runs. Finished runs are never redone: a
//! killed `reproduce` run again continues the unfinished run from its
//! checkpoint and skips the finished ones.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use bertfit_data::catalogue;
use bertfit_model::Backend;
use bertfit_train::invalid_setting;
use bertfit_train::progress::{Progress, ProgressTarget};
use indicatif::MultiProgress;

use crate::grid::{Grid, experiment_dirs, known, load_experiment};
use crate::model_source::model_unavailable;
use crate::pipeline::load_dataset;
use crate::report::{CellState, Report};
use crate::run::{PreparedRun, RunMetrics, RunOptions, execute, finished, summary};
use crate::run_config::DataConfig;
use crate::stage::write_atomic;

#[derive(clap::Args, Debug, Clone)]
pub struct ReproduceArgs {
    /// The experiment (`--list` shows them), or `all` for every one in turn.
    #[arg(required_unless_present = "list")]
    pub name: Option<String>,
    /// Each experiment, the paper's artefact it reproduces, and which of its
    /// cells can run on this machine.
    #[arg(long)]
    pub list: bool,
    /// `quick` (2-core CPU, embedded model and data) or `paper` (the paper's settings, for a GPU).
    #[arg(long, default_value = "quick")]
    pub profile: String,
    /// Overrides every cell's backend: flex, ndarray, tch, tch-cuda[:N], wgpu.
    #[arg(long)]
    pub backend: Option<Backend>,
    /// Training seeds per cell (default: the profile's).
    #[arg(long)]
    pub seeds: Option<usize>,
    /// A setting of every cell's run, applied last: `--set training.lr=3e-5`.
    /// Part of each run's identity.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Where results go.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// A folder of experiment files that add to or override the built-in ones.
    #[arg(long, value_name = "DIR")]
    pub experiments: Option<PathBuf>,
    /// Also write each run's fine-tuned model (HF layout) to its run folder.
    #[arg(long)]
    pub keep_models: bool,
    /// No progress bars or log lines.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(args: ReproduceArgs) -> Result<()> {
    let dirs = experiment_dirs(args.experiments.as_ref());
    if args.list {
        return list(&args, &dirs);
    }
    let name = args.name.clone().expect("clap requires it");
    if name != "all" {
        return reproduce(&name, &args, &dirs);
    }
    let mut failed = Vec::new();
    for name in known(&dirs) {
        if let Err(e) = reproduce(&name, &args, &dirs) {
            eprintln!("error: {name}: {e:#}");
            failed.push(name);
        }
    }
    if !failed.is_empty() {
        bail!("these experiments did not finish: {}", failed.join(", "));
    }
    Ok(())
}

/// A run of the grid: its cell, seed and what it needs.
struct Planned {
    cell: usize,
    run: Result<PreparedRun, String>,
}

/// Resolves every (cell, seed) of the grid: a prepared run, or why it cannot
/// run here. Settings out of range stop everything, at their place.
fn plan(grid: &Grid, backend: Option<Backend>) -> Result<Vec<Planned>> {
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

/// Where a profile's tables and plots go.
fn output_dir(results: &Path, name: &str, profile: &str) -> PathBuf {
    if profile == "quick" { results.join(name) } else { results.join(name).join(profile) }
}

fn reproduce(name: &str, args: &ReproduceArgs, dirs: &[PathBuf]) -> Result<()> {
    let start = Instant::now();
    let (experiment, file) = load_experiment(name, dirs)?;
    let grid = Grid::build(name, experiment, file, &args.profile, &args.set, args.seeds)?;
    let planned = plan(&grid, args.backend)?;
    let runs_dir = args.results.join(name).join("runs");
    let out_of = |run: &PreparedRun| runs_dir.join(&run.identity);
    let mut done = 0;
    let mut todo = Vec::new();
    for (i, p) in planned.iter().enumerate() {
        if let Ok(run) = &p.run {
            if finished(&out_of(run), &run.identity)?.is_some() {
                done += 1;
            } else {
                todo.push(i);
            }
        }
    }
    let missing = planned.len() - done - todo.len();
    if !args.quiet {
        eprintln!(
            "{name} ({}, profile {}): {} cells × {} seeds = {} runs: {done} done, {} to run, {missing} missing here",
            grid.experiment.reproduces,
            grid.profile_name,
            grid.cells.len(),
            grid.seeds.len(),
            planned.len(),
            todo.len()
        );
    }

    let multi = MultiProgress::new();
    let (grid_target, run_target) = if args.quiet {
        (ProgressTarget::Quiet, ProgressTarget::Quiet)
    } else {
        (ProgressTarget::Under(multi.clone()), ProgressTarget::Under(multi.clone()))
    };
    let bar = Progress::new(todo.len() as u64, "runs", &grid_target).log_every(1);
    bar.set_prefix(format!("{name} ({})", grid.profile_name));
    let options = RunOptions { progress: run_target, export_model: args.keep_models, stop_after_steps: stop_after_steps()? };
    let mut failures: BTreeMap<usize, String> = BTreeMap::new();
    let mut stopped = false;
    for (k, &i) in todo.iter().enumerate() {
        let p = &planned[i];
        let run = p.run.as_ref().expect("only runnable ones are to do");
        let cell = &grid.cells[p.cell];
        let label = format!("{} / {} seed {}", grid.rows[cell.row].label, grid.columns[cell.column].label, run.config.training.seed);
        bar.update(k as u64, format!("running {label}"));
        match execute(run, &out_of(run), &options) {
            Ok(Some(metrics)) => bar.println(format!("{label}: {}", summary(&metrics))),
            Ok(None) => {
                bar.println(format!("{label}: stopped as BERTFIT_STOP_AFTER_STEPS asked; rerun to resume"));
                stopped = true;
                break;
            }
            Err(e) => {
                bar.println(format!("{label}: failed: {e:#}"));
                failures.insert(i, format!("{e:#}"));
            }
        }
        bar.update(k as u64 + 1, format!("finished {label}"));
    }
    bar.finish();

    let cells = collect(&grid, &planned, &failures, &out_of)?;
    let report = Report { grid: &grid, cells, wall_seconds: start.elapsed().as_secs_f64() };
    let out = output_dir(&args.results, name, &grid.profile_name);
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    write_atomic(&out.join("table.md"), &crate::table::markdown(&report))?;
    write_atomic(&out.join("table.csv"), &crate::table::csv(&report))?;
    let plots = crate::plots::plot_all(&report, &out)?;
    write_index(&args.results)?;
    if !args.quiet {
        print!("{}", crate::table::markdown(&report));
        eprintln!(
            "wrote {} and {} in {:.1} min",
            out.join("table.md").display(),
            plots.iter().map(|p| p.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect::<Vec<_>>().join(", "),
            report.wall_seconds / 60.0
        );
    }
    if stopped {
        return Ok(());
    }
    if !failures.is_empty() {
        bail!("{} runs of {name} failed; their errors are in {}", failures.len(), out.join("table.md").display());
    }
    Ok(())
}

/// Each cell's state from its planned runs.
fn collect(
    grid: &Grid,
    planned: &[Planned],
    failures: &BTreeMap<usize, String>,
    out_of: &dyn Fn(&PreparedRun) -> PathBuf,
) -> Result<Vec<CellState>> {
    let mut cells = Vec::with_capacity(grid.cells.len());
    for c in 0..grid.cells.len() {
        let mut done: Vec<RunMetrics> = Vec::new();
        let mut pending = 0;
        let mut missing = None;
        let mut failed = None;
        for (i, p) in planned.iter().enumerate().filter(|(_, p)| p.cell == c) {
            match &p.run {
                Err(why) => missing = Some(why.clone()),
                Ok(run) => match finished(&out_of(run), &run.identity)? {
                    Some(m) => done.push(m),
                    None => match failures.get(&i) {
                        Some(e) => failed = Some(e.clone()),
                        None => pending += 1,
                    },
                },
            }
        }
        if grid.cells[c].config.is_none() {
            cells.push(CellState::Skipped);
            continue;
        }
        cells.push(match (missing, failed) {
            (Some(why), _) => CellState::Missing(why),
            (None, Some(e)) if done.is_empty() => CellState::Failed(e),
            _ => CellState::Runs { done, pending },
        });
    }
    Ok(cells)
}

/// For tests and for trying resumption by hand: stop after N steps, as a kill would.
pub fn stop_after_steps() -> Result<Option<u64>> {
    match std::env::var("BERTFIT_STOP_AFTER_STEPS") {
        Ok(v) => Ok(Some(v.parse().map_err(|_| anyhow::anyhow!("BERTFIT_STOP_AFTER_STEPS={v:?} is not a step count"))?)),
        Err(_) => Ok(None),
    }
}

/// `results/README.md`: every table and plot under `results/`.
fn write_index(results: &Path) -> Result<()> {
    let mut tables = Vec::new();
    for entry in std::fs::read_dir(results).into_iter().flatten().flatten() {
        let dir = entry.path();
        for candidate in std::iter::once(dir.clone()).chain(std::fs::read_dir(&dir).into_iter().flatten().flatten().map(|e| e.path())) {
            if candidate.join("table.md").is_file() {
                tables.push(candidate);
            }
        }
    }
    tables.sort();
    let mut md = String::from(
        "# Results\n\nWritten by `bertfit reproduce` (`just reproduce NAME`); each table says which model, data, profile, backend, seeds and commit produced it. Runs are in `NAME/runs/ID/` (`metrics.json`, `curve.csv`, `config.toml`), under the identity of their settings.\n\n| experiment | table | plots |\n|---|---|---|\n",
    );
    for dir in &tables {
        let rel = dir.strip_prefix(results).unwrap_or(dir);
        let title = std::fs::read_to_string(dir.join("table.md"))
            .ok()
            .and_then(|t| t.lines().next().map(|l| l.trim_start_matches("# ").to_string()))
            .unwrap_or_default();
        let plots: BTreeSet<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.path().file_name().map(|n| n.to_string_lossy().into_owned()))
            .filter(|n| n.ends_with(".png") || n.ends_with(".svg"))
            .collect();
        let links = plots.iter().map(|p| format!("[{p}]({}/{p})", rel.display())).collect::<Vec<_>>().join(" ");
        md.push_str(&format!("| {title} | [table.md]({0}/table.md), [table.csv]({0}/table.csv) | {links} |\n", rel.display()));
    }
    for other in ["bench", "datasets", "runs"] {
        if results.join(other).is_dir() {
            md.push_str(&format!("\nAlso: [`{other}/`]({other}/)"));
        }
    }
    md.push('\n');
    write_atomic(&results.join("README.md"), &md)
}

/// `--list`: each experiment, what it reproduces, and which cells of the
/// profile can run here (checked without reading datasets through).
fn list(args: &ReproduceArgs, dirs: &[PathBuf]) -> Result<()> {
    println!("experiment | reproduces | title | {} profile here", args.profile);
    for name in known(dirs) {
        let line = (|| -> Result<String> {
            let (experiment, file) = load_experiment(&name, dirs)?;
            let grid = Grid::build(&name, experiment, file, &args.profile, &args.set, Some(1))?;
            let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
            let mut runnable = 0;
            let mut skipped = 0;
            for cell in &grid.cells {
                let Some(config) = &cell.config else {
                    skipped += 1;
                    continue;
                };
                let model = match PreparedRun::prepare(config, args.backend) {
                    Err(e) => Some(model_unavailable(&e).map(|m| m.to_string()).unwrap_or_else(|| format!("{e:#}"))),
                    Ok(_) => None,
                };
                let why = match (model, dataset_missing(config)?) {
                    (Some(m), Some(d)) => Some(format!("{m}; and {d}")),
                    (m, d) => m.or(d),
                };
                match why {
                    None => runnable += 1,
                    Some(why) => *reasons.entry(why).or_default() += 1,
                }
            }
            let mut text = format!(
                "{} | {} | {runnable} of {} cells run here",
                grid.experiment.reproduces,
                grid.experiment.title,
                grid.cells.len() - skipped
            );
            for (why, n) in reasons {
                text.push_str(&format!("; {n} missing: {why}"));
            }
            Ok(text)
        })();
        match line {
            Ok(line) => println!("{name} | {line}"),
            Err(e) => println!("{name} | error: {e:#}"),
        }
    }
    Ok(())
}

/// Every dataset a run reads: its own, the other tasks of a multi-task stage,
/// the corpus of a pre-training stage.
fn run_datasets(config: &crate::run_config::RunConfig) -> Result<Vec<String>> {
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
fn dataset_missing(config: &crate::run_config::RunConfig) -> Result<Option<String>> {
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
