//! A job's folder of results: `metrics.json`, written last and atomically, so
//! that its presence means the job is finished; the folder belongs to one
//! identity, and another job's results are never taken for its own.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use serde::de::DeserializeOwned;

/// What a finished job's `metrics.json` says it is.
pub trait Finished: DeserializeOwned {
    fn identity(&self) -> &str;
}

/// The job in `out` if it is finished; an error if `out` holds another job's
/// results. `what` names the kind of job in messages ("run", "pre-training").
pub fn finished<M: Finished>(out: &Path, identity: &str, what: &str) -> Result<Option<M>> {
    let path = out.join("metrics.json");
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    if value.get("identity").is_none() {
        bail!("{} was written by an older bertfit (it has no identity); move {} away to run again", path.display(), out.display());
    }
    let done: M = serde_json::from_value(value).with_context(|| format!("{} is not a bertfit {what} result", path.display()))?;
    if done.identity() != identity {
        bail!(
            "{} holds a finished {what} with other settings (identity {}, this one {identity}); choose another output folder",
            out.display(),
            done.identity()
        );
    }
    Ok(Some(done))
}

/// Writes `contents` to `path` through a temporary name and a rename: a
/// reader (or a kill) never sees half a file, and of two writers at once the
/// last rename wins whole.
pub fn write_atomic(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let tmp = path.with_extension(format!("partial-{}-{}", crate::run_lock::hostname(), std::process::id()));
    std::fs::write(&tmp, contents).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes `metrics.json` into `out`, last and atomically: the job is finished.
pub fn write_metrics<M: serde::Serialize>(out: &Path, metrics: &M) -> Result<()> {
    write_atomic(&out.join("metrics.json"), &(serde_json::to_string_pretty(metrics)? + "\n"))
}

/// The commit of the running binary, as the binary set it (`set_commit`).
static COMMIT: OnceLock<&'static str> = OnceLock::new();

/// Records the commit the running binary was built from (`-dirty`: with
/// uncommitted changes), which every run's metrics record. Only the `bertfit`
/// binary is stamped at build time (`crates/cli/build.rs`), so that a change
/// to the source rebuilds that crate alone; it calls this first thing.
pub fn set_commit(commit: &'static str) {
    let _ = COMMIT.set(commit);
}

/// The commit `set_commit` recorded; "unknown" in a process that did not set
/// it (a library's own tests).
pub fn commit() -> &'static str {
    COMMIT.get().copied().unwrap_or("unknown")
}
