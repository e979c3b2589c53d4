//! `bertfit bundle NAME --profile gpu --out DIR`: one self-contained folder
//! that runs an experiment's profile on a machine with PyTorch (for its
//! LibTorch) but no Rust and no internet, such as a cluster's GPU node:
//!
//! * `bertfit.xz`: the binary (built against that machine's torch);
//! * `payload.tar.xz`: what the grid reads, found by planning it here: the
//!   models and datasets of its runnable cells as they lie in this machine's
//!   cache (`$BERTFIT_CACHE`: the embedded model and data, `default@f16`,
//!   `hf:` models) and data root (`$BERTFIT_DATA_ROOT`: local copies), the
//!   catalogue entries of datasets that are not built in, and the experiment
//!   file when it is not built in;
//! * `run.sh`: unpacks both, points the cache, data root and catalogue at
//!   them, and runs `bertfit reproduce NAME` with the bundle's profile,
//!   settings, backend and `--jobs`, into a results folder (the experiment's
//!   runs, table, claims and plots, ready to copy into `results/`), and with
//!   `$OUT` set, also as one archive there.
//!
//! The runs there have the identities they would have here: the same model
//! bytes, catalogue entries and settings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use bertfit_data::assets::cache_dir;
use bertfit_data::catalogue;
use bertfit_data::paths::data_root;

use crate::grid::{Grid, load_experiment};
use crate::options::ReproduceOptions;
use crate::plan::{plan, run_datasets};

/// What goes into a bundle, besides the experiment's settings.
pub struct BundleOptions {
    /// The experiment's profile, seeds, settings and experiment folder.
    pub reproduce: ReproduceOptions,
    /// The folder to write (created; emptied first).
    pub out: PathBuf,
    /// The bertfit binary to carry (one built against the target machine's LibTorch).
    pub binary: PathBuf,
    /// The backend the bundle's script trains on (`tch-cuda` by default).
    pub backend: String,
    /// Workers the script runs at once (`reproduce --jobs`).
    pub jobs: usize,
}

/// A file or folder of this machine and where it goes in the payload.
type Entries = BTreeMap<PathBuf, PathBuf>;

/// `path` (canonical) under `root`, as `prefix/rest`.
fn under(path: &Path, root: &Path, prefix: &str) -> Option<PathBuf> {
    let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    canonical(path).strip_prefix(canonical(root)).ok().map(|rest| Path::new(prefix).join(rest))
}

/// Where a file the grid reads goes in the payload: `cache/...` or `data/...`.
fn place(path: &Path, what: &str) -> Result<PathBuf> {
    under(path, &cache_dir(), "cache").or_else(|| under(path, &data_root(), "data")).with_context(|| {
        format!(
            "{what} {} lies outside the cache ({}) and the data root ({}), which are what a bundle carries: move it under one of them",
            path.display(),
            cache_dir().display(),
            data_root().display()
        )
    })
}

/// Adds the cache's `.complete` marker of the package or model folder that holds `inside`.
fn add_marker(inside: &Path, entries: &mut Entries) {
    let cache = cache_dir();
    let mut dir = inside.to_path_buf();
    while let Some(parent) = dir.parent().map(Path::to_path_buf) {
        if dir.join(".complete").is_file()
            && let Some(target) = under(&dir.join(".complete"), &cache, "cache")
        {
            entries.insert(dir.join(".complete"), target);
            return;
        }
        if under(&parent, &cache, "cache").is_none() {
            return;
        }
        dir = parent;
    }
}

/// Everything the grid of `name` reads, by where it goes in the payload.
fn contents(name: &str, options: &ReproduceOptions) -> Result<(Entries, Grid, usize)> {
    let dirs = options.experiment_dirs();
    let (experiment, file) = load_experiment(name, &dirs)?;
    let grid = Grid::build(name, experiment, file, &options.profile, &options.set, options.seeds)?;
    let planned = plan(&grid, None)?;
    let mut entries = Entries::new();
    let mut runnable = 0;
    let mut datasets = std::collections::BTreeSet::new();
    for p in &planned {
        let Ok(run) = &p.run else { continue };
        runnable += 1;
        let model = &run.model_dir;
        entries.insert(model.clone(), place(model, "the model")?);
        add_marker(&model.join("config.json"), &mut entries);
        datasets.extend(run_datasets(&run.config)?);
    }
    for dataset in datasets {
        if Path::new(&dataset).extension().is_some_and(|e| e == "toml") {
            bail!(
                "dataset {dataset}: a bundle carries datasets by name; put its TOML in a catalogue folder ($BERTFIT_DATASETS) and name it"
            );
        }
        if let Some(toml) = catalogue::catalogue_dirs().into_iter().map(|d| d.join(format!("{dataset}.toml"))).find(|p| p.is_file()) {
            entries.insert(toml, Path::new("datasets").join(format!("{dataset}.toml")));
        }
        let spec = catalogue::find(&dataset)?;
        for (split, sources) in spec.splits() {
            let file = sources.resolve(&spec.name, split)?;
            entries.insert(file.path.clone(), place(&file.path, &format!("dataset {dataset}'s {split} split"))?);
            add_marker(&file.path, &mut entries);
        }
    }
    if let Some(file) = dirs.iter().map(|d| d.join(format!("{name}.toml"))).find(|p| p.is_file()) {
        entries.insert(file, Path::new("experiments").join(format!("{name}.toml")));
    }
    Ok((entries, grid, runnable))
}

/// `xz` of `input` (bytes on its stdin) into `out`, on every core.
fn xz(input: impl FnOnce(&mut dyn std::io::Write) -> Result<()>, out: &Path) -> Result<()> {
    let file = std::fs::File::create(out).with_context(|| format!("cannot write {}", out.display()))?;
    let mut child = Command::new("xz")
        .args(["-T0", "-9", "-c"])
        .stdin(Stdio::piped())
        .stdout(file)
        .spawn()
        .context("cannot run xz (a bundle is compressed with it; install xz-utils)")?;
    input(child.stdin.as_mut().expect("piped"))?;
    drop(child.stdin.take());
    if !child.wait()?.success() {
        bail!("xz failed writing {}", out.display());
    }
    Ok(())
}

/// A shell word.
fn quote(word: &str) -> String {
    if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+".contains(c)) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The bundle's `run.sh`.
fn script(name: &str, options: &BundleOptions, grid: &Grid, has_experiments: bool) -> String {
    let r = &options.reproduce;
    let mut args = vec!["reproduce".to_string(), name.to_string(), "--profile".into(), r.profile.clone()];
    if let Some(seeds) = r.seeds {
        args.extend(["--seeds".into(), seeds.to_string()]);
    }
    for set in &r.set {
        args.extend(["--set".into(), set.clone()]);
    }
    let args: Vec<String> = args.iter().map(|a| quote(a)).collect();
    let experiments = if has_experiments { " --experiments \"$work/experiments\"" } else { "" };
    format!(
        r#"#!/usr/bin/env bash
# bertfit bundle: `{name}` ({reproduces}), profile {profile}, {cells} cells x {seeds} seeds, on {backend}.
# Needs bash, tar, xz and a Python whose torch is the LibTorch the binary was
# built against (it says so, in one line, if not); no Rust, no internet.
#   bash run.sh [RESULTS]      (default: ./results beside this script)
# The results folder receives {name}/ (runs, table, claims, plots) as `bertfit
# reproduce` writes it, ready to copy into a checkout's results/. With $OUT set,
# also $OUT/{name}-{profile}-results.tar.gz. Extra arguments after RESULTS go to
# `bertfit reproduce` (e.g. --seeds 5); $BACKEND and $JOBS change the backend
# ({backend}) and the runs at once ({jobs}); $WORK is where it unpacks (/tmp/bertfit-bundle).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
results="$(mkdir -p "${{1:-$here/results}}" && cd "${{1:-$here/results}}" && pwd)"
shift || true
work="${{WORK:-/tmp/bertfit-bundle}}"
mkdir -p "$work"
if [ ! -f "$work/.unpacked" ]; then
  xz -dc "$here/bertfit.xz" > "$work/bertfit" && chmod +x "$work/bertfit"
  xz -dc "$here/payload.tar.xz" | tar -x -C "$work"
  touch "$work/.unpacked"
fi
python="${{PYTHON:-python3}}"
if torch_lib="$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)"; then
  export LD_LIBRARY_PATH="$torch_lib:${{LD_LIBRARY_PATH:-}}"
fi
export BERTFIT_CACHE="$work/cache" BERTFIT_DATA_ROOT="$work/data" BERTFIT_DATASETS="$work/datasets"
start=$(date +%s)
"$work/bertfit" {args} --backend "${{BACKEND:-{backend}}}" --jobs "${{JOBS:-{jobs}}}"{experiments} --results "$results" "$@"
echo "{name}: $(( $(date +%s) - start )) s; results in $results/{name}"
if [ -n "${{OUT:-}}" ]; then
  tar -czf "$OUT/{name}-{profile}-results.tar.gz" -C "$results" {name}
  echo "archived into $OUT/{name}-{profile}-results.tar.gz"
fi
"#,
        reproduces = grid.experiment.reproduces,
        profile = r.profile,
        cells = grid.cells.len(),
        seeds = grid.seeds.len(),
        backend = options.backend,
        jobs = options.jobs,
        args = args.join(" "),
    )
}

/// What a bundle holds, for the one-line report.
pub struct Bundled {
    pub files: Vec<(PathBuf, u64)>,
    pub runnable: usize,
    pub carried: usize,
}

impl Bundled {
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|(_, b)| b).sum()
    }
}

/// Writes the bundle of experiment `name` into `options.out`.
pub fn bundle(name: &str, options: &BundleOptions) -> Result<Bundled> {
    options.reproduce.check()?;
    if !options.binary.is_file() {
        bail!("--binary {}: no such file", options.binary.display());
    }
    let (entries, grid, runnable) = contents(name, &options.reproduce)?;
    if runnable == 0 {
        bail!("{name} (profile {}): no cell can run here, so there is nothing to carry", options.reproduce.profile);
    }
    let out = &options.out;
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("cannot empty {}", out.display()))?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    xz(
        |stdin| {
            let mut tar = tar::Builder::new(stdin);
            tar.follow_symlinks(true);
            for (source, target) in &entries {
                let added = if source.is_dir() { tar.append_dir_all(target, source) } else { tar.append_path_with_name(source, target) };
                added.with_context(|| format!("cannot add {} to the bundle", source.display()))?;
            }
            tar.finish().context("cannot finish the bundle's archive")
        },
        &out.join("payload.tar.xz"),
    )?;
    let binary = std::fs::read(&options.binary).with_context(|| format!("cannot read {}", options.binary.display()))?;
    xz(|stdin| stdin.write_all(&binary).context("cannot compress the binary"), &out.join("bertfit.xz"))?;
    let has_experiments = entries.values().any(|t| t.starts_with("experiments"));
    std::fs::write(out.join("run.sh"), script(name, options, &grid, has_experiments))?;
    let mut files = Vec::new();
    for file in ["bertfit.xz", "payload.tar.xz", "run.sh"] {
        files.push((out.join(file), std::fs::metadata(out.join(file))?.len()));
    }
    Ok(Bundled { files, runnable, carried: entries.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(quote("training.lr=3e-5"), "training.lr=3e-5");
        assert_eq!(quote("data.truncation={ kind = \"head_only\" }"), "'data.truncation={ kind = \"head_only\" }'");
        assert_eq!(quote("it's"), "'it'\\''s'");
    }
}
