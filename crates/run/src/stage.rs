//! Stages that runs build on (multi-task fine-tuning, further pre-training),
//! cached by the identity of their own settings under
//! `$BERTFIT_CACHE/stages/KIND/ID/` and shared by every run and experiment
//! that needs the same one. A stage checkpoints into its folder while it
//! trains, so a killed stage resumes; a finished one holds `model/` and
//! `metrics.json`, written last. Workers that need a stage at once train it
//! once: one claims it, the others wait for it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use bertfit_data::assets::cache_dir;
use bertfit_train::Checkpoints;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::results::write_metrics;
use crate::run_lock::{Claim, Lock, claim};

pub struct Stage {
    pub dir: PathBuf,
}

impl Stage {
    /// The folder of stage `kind` (`multitask`, `pretrain`) with this identity.
    pub fn new(kind: &str, identity: &str) -> Self {
        Self { dir: cache_dir().join("stages").join(kind).join(identity) }
    }

    pub fn model_dir(&self) -> PathBuf {
        self.dir.join("model")
    }

    /// The lock of the worker training the stage.
    pub fn lock_path(&self) -> PathBuf {
        self.dir.with_extension("lock")
    }

    pub fn checkpoints(&self) -> Checkpoints {
        Checkpoints::new(&self.dir.join("checkpoints"))
    }

    /// The finished stage's metrics, if it is finished.
    pub fn finished<M: DeserializeOwned>(&self) -> Result<Option<M>> {
        let path = self.dir.join("metrics.json");
        if !path.is_file() || !self.model_dir().is_dir() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(Some(serde_json::from_str(&text).with_context(|| format!("{} is not a stage result", path.display()))?))
    }

    /// Claims the stage for this worker: waits while another live worker
    /// trains it (every run that needs it would otherwise train it too), and
    /// takes it over from one that is gone. The caller checks again whether
    /// it is finished before training it.
    pub fn claim(&self, quiet: bool) -> Result<Lock> {
        let path = self.lock_path();
        let mut said = false;
        loop {
            match claim(&path)? {
                Claim::Claimed(lock) => return Ok(lock),
                Claim::Held(owner) => {
                    if !quiet && !said {
                        eprintln!("waiting for the stage {}, which {} is training", self.dir.display(), owner.describe());
                        said = true;
                    }
                    std::thread::sleep(std::time::Duration::from_secs(2));
                }
            }
        }
    }

    /// Copies the finished stage into `out` (its model files, `metrics.json`,
    /// snapshots and settings; not its emptied `checkpoints/`), `metrics.json` last.
    pub fn copy_to(&self, out: &Path) -> Result<()> {
        copy_tree(&self.dir, out, &|name| name != "checkpoints" && name != "metrics.json")?;
        let metrics = self.dir.join("metrics.json");
        std::fs::copy(&metrics, out.join("metrics.json"))
            .with_context(|| format!("cannot copy {} to {}", metrics.display(), out.display()))?;
        Ok(())
    }

    /// Marks the stage finished with `metrics` (its model already in `model_dir`), atomically.
    pub fn finish<M: Serialize>(&self, metrics: &M) -> Result<()> {
        write_metrics(&self.dir, metrics)?;
        self.checkpoints().clear()
    }
}

/// Copies the files of `from` into `to`, recursively, the top-level entries
/// that `keep` accepts.
fn copy_tree(from: &Path, to: &Path, keep: &dyn Fn(&str) -> bool) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if !keep(&name) {
            continue;
        }
        let (source, target) = (entry.path(), to.join(&name));
        if entry.file_type()?.is_dir() {
            copy_tree(&source, &target, &|_| true)?;
        } else {
            std::fs::copy(&source, &target).with_context(|| format!("cannot copy {} to {}", source.display(), target.display()))?;
        }
    }
    Ok(())
}
