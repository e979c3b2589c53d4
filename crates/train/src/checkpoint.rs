//! Checkpoints of a training run: everything needed to go on as if never
//! stopped. The model (HF layout, `model.safetensors`), the optimizer's moments
//! by parameter path (`optimizer.safetensors`) and a JSON state (position in the
//! data, step, curve so far). The schedule is a function of the step and the
//! data order and dropout masks are functions of (seed, epoch, step), so the
//! step is their whole state.
//!
//! Each checkpoint is written to its own directory and then published by an
//! atomic rename of the `LATEST` pointer: a kill at any moment leaves the
//! previous checkpoint intact.
//!
//! `resume.rs` continues from and writes these for both training loops.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use safetensors::tensor::{Dtype, TensorView};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::optimizer::OptimizerState;

/// A run's checkpoint directory.
pub struct Checkpoints {
    dir: PathBuf,
}

const LATEST: &str = "LATEST";

impl Checkpoints {
    pub fn new(dir: &Path) -> Self {
        Self { dir: dir.to_path_buf() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The newest published checkpoint, if any.
    pub fn latest(&self) -> Result<Option<PathBuf>> {
        let pointer = self.dir.join(LATEST);
        if !pointer.is_file() {
            return Ok(None);
        }
        let name = std::fs::read_to_string(&pointer).with_context(|| format!("cannot read {}", pointer.display()))?;
        let path = self.dir.join(name.trim());
        if !path.is_dir() {
            bail!("{} points at {}, which is missing", pointer.display(), path.display());
        }
        Ok(Some(path))
    }

    /// Writes a checkpoint named `name` with `write` (which fills the fresh
    /// directory it is given), publishes it, and removes the older ones except
    /// those whose names `keep` lists.
    pub fn publish(&self, name: &str, keep: &[&str], write: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.dir).with_context(|| format!("cannot create {}", self.dir.display()))?;
        let path = self.dir.join(name);
        let partial = self.dir.join(format!("{name}.partial"));
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir_all(&partial)?;
        write(&partial)?;
        let _ = std::fs::remove_dir_all(&path);
        std::fs::rename(&partial, &path)?;
        let pointer = self.dir.join(format!("{LATEST}.partial"));
        std::fs::write(&pointer, name)?;
        std::fs::rename(&pointer, self.dir.join(LATEST))?;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let entry_name = entry.file_name().to_string_lossy().to_string();
            if entry.path().is_dir() && entry_name != name && !keep.contains(&entry_name.as_str()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(path)
    }

    /// Removes every checkpoint (after the run finished and wrote its results).
    pub fn clear(&self) -> Result<()> {
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir).with_context(|| format!("cannot remove {}", self.dir.display()))?;
        }
        Ok(())
    }
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a valid checkpoint state", path.display()))
}

/// Optimizer moments as safetensors: `{path}.m`, `{path}.v`, and the step in the metadata.
pub fn save_optimizer(state: &OptimizerState, path: &Path) -> Result<()> {
    let bytes = |x: &[f32]| x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
    let buffers: Vec<(String, Vec<u8>, usize)> = state
        .moments
        .iter()
        .flat_map(|(name, m, v)| [(format!("{name}.m"), bytes(m), m.len()), (format!("{name}.v"), bytes(v), v.len())])
        .collect();
    let views: Vec<(String, TensorView)> =
        buffers.iter().map(|(name, data, n)| Ok((name.clone(), TensorView::new(Dtype::F32, vec![*n], data)?))).collect::<Result<_>>()?;
    let metadata = HashMap::from([("step".to_string(), state.step.to_string())]);
    safetensors::serialize_to_file(views, Some(metadata), path).with_context(|| format!("cannot write {}", path.display()))
}

pub fn load_optimizer(path: &Path) -> Result<OptimizerState> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)?;
    let step = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("step"))
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{}: no step in the metadata", path.display()))?;
    let tensors = safetensors::SafeTensors::deserialize(&bytes).with_context(|| format!("cannot read {}", path.display()))?;
    let floats = |name: &str| -> Result<Vec<f32>> {
        let view = tensors.tensor(name).with_context(|| format!("{}: no tensor {name}", path.display()))?;
        Ok(view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect())
    };
    let mut names: Vec<String> = tensors.names().into_iter().filter_map(|n| n.strip_suffix(".m").map(str::to_string)).collect();
    names.sort();
    let moments = names
        .into_iter()
        .map(|name| Ok((name.clone(), floats(&format!("{name}.m"))?, floats(&format!("{name}.v"))?)))
        .collect::<Result<_>>()?;
    Ok(OptimizerState { step, moments })
}
