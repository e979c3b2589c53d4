//! HuggingFace checkpoint I/O through burn-store.
//!
//! Loads `model.safetensors` or `pytorch_model.bin` with or without the
//! `bert.` prefix and with the old `LayerNorm.gamma/beta` names; saves back to
//! `model.safetensors` + `config.json` in HF's layout, so HF transformers loads
//! what we train. Loading is strict: a missing, unexpected or mis-shaped tensor
//! is an error that lists the names.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn_store::{ApplyResult, BurnToPyTorchAdapter, KeyRemapper, ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore};

/// Where the encoder's tensors live in a module we load into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncoderPrefix {
    /// A bare `BertModel`: `embeddings.*`, `encoder.*`, `pooler.*`.
    Bare,
    /// A model with a head: `bert.embeddings.*`, ... (`BertForSequenceClassification`).
    Bert,
}

/// Buffers HF keeps in some checkpoints that carry no learned state.
const IGNORED_BUFFERS: &[&str] = &["embeddings.position_ids"];

/// Tensors of other HF heads: a checkpoint of `BertForPreTraining` or of a
/// classifier is a valid source for our encoder; these are left out, and said.
const OTHER_HEADS: &[&str] = &["cls.", "classifier.", "qa_outputs."];

/// The weights file in a model directory: `model.safetensors`, else `pytorch_model.bin`.
pub fn weights_file(dir: &Path) -> Result<PathBuf> {
    if !dir.is_dir() {
        bail!("model directory {} does not exist", dir.display());
    }
    for name in ["model.safetensors", "pytorch_model.bin"] {
        let path = dir.join(name);
        if path.is_file() {
            return Ok(path);
        }
    }
    bail!("no model.safetensors or pytorch_model.bin in {}", dir.display())
}

/// What a load did besides filling every parameter.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Tensors of the checkpoint that belong to heads the module does not have.
    pub skipped: Vec<String>,
    /// Parameters left at their initial value because the caller allowed it
    /// (a new classification head on a pretrained encoder).
    pub initialized: Vec<String>,
}

/// Checkpoint names to ours. The prefix rule is a no-op on names already in
/// the wanted form, so it needs no look at the file first.
fn key_remapper(prefix: EncoderPrefix) -> Result<KeyRemapper> {
    let remapper = KeyRemapper::new()
        .add_pattern(r"(^|\.)attention\.self\.", "${1}attention.self_attention.")?
        .add_pattern(r"LayerNorm\.gamma$", "LayerNorm.weight")?
        .add_pattern(r"LayerNorm\.beta$", "LayerNorm.bias")?;
    Ok(match prefix {
        EncoderPrefix::Bare => remapper.add_pattern(r"^bert\.", "")?,
        EncoderPrefix::Bert => remapper.add_pattern(r"^(embeddings|encoder|pooler)\.", "bert.${1}.")?,
    })
}

/// Loads the weights of the HF model directory `dir` into `module`.
///
/// `may_be_missing` lists path prefixes (in our names, e.g. `"classifier."`)
/// that may be absent from the checkpoint and keep their initialisation.
pub fn load_hf_weights<M: ModuleSnapshot>(
    module: &mut M,
    dir: &Path,
    prefix: EncoderPrefix,
    may_be_missing: &[&str],
) -> Result<LoadReport> {
    let path = weights_file(dir)?;
    let remapper = key_remapper(prefix)?;
    let result = if path.extension().is_some_and(|e| e == "safetensors") {
        let mut store =
            SafetensorsStore::from_file(&path).remap(remapper).with_from_adapter(PyTorchToBurnAdapter).allow_partial(true).validate(true);
        module.load_from(&mut store).map_err(|e| anyhow::anyhow!("cannot read weights {}: {e}", path.display()))?
    } else {
        let mut store = PytorchStore::from_file(&path).remap(remapper).allow_partial(true).validate(true);
        module.load_from(&mut store).map_err(|e| anyhow::anyhow!("cannot read weights {}: {e}", path.display()))?
    };
    check_strict(result, &path, prefix, may_be_missing)
}

fn check_strict(result: ApplyResult, path: &Path, prefix: EncoderPrefix, may_be_missing: &[&str]) -> Result<LoadReport> {
    let mut report = LoadReport::default();
    if !result.errors.is_empty() {
        let list: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
        bail!("{}: {} tensor(s) could not be loaded (wrong shape or type): {}", path.display(), list.len(), list.join("; "));
    }
    let mut missing = BTreeSet::new();
    for (name, _) in &result.missing {
        if may_be_missing.iter().any(|p| name.starts_with(p)) {
            report.initialized.push(name.clone());
        } else {
            missing.insert(name.clone());
        }
    }
    if !missing.is_empty() {
        bail!(
            "{}: {} tensor(s) missing from the checkpoint: {}",
            path.display(),
            missing.len(),
            missing.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    let encoder_prefix = match prefix {
        EncoderPrefix::Bare => "",
        EncoderPrefix::Bert => "bert.",
    };
    let mut unexpected = BTreeSet::new();
    for name in &result.unused {
        let bare = name.strip_prefix("bert.").unwrap_or(name);
        if IGNORED_BUFFERS.contains(&bare) {
            continue;
        }
        let other_head = OTHER_HEADS.iter().any(|h| name.starts_with(h)) && !(encoder_prefix.is_empty() && name.starts_with("bert."));
        if other_head {
            report.skipped.push(name.clone());
        } else {
            unexpected.insert(name.clone());
        }
    }
    if !unexpected.is_empty() {
        bail!(
            "{}: {} unexpected tensor(s) in the checkpoint: {}",
            path.display(),
            unexpected.len(),
            unexpected.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(report)
}

/// Saves `module` as HF `model.safetensors` in `dir` (HF names and layout).
pub fn save_hf_weights<M: ModuleSnapshot>(module: &M, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("model.safetensors");
    let tmp = dir.join("model.safetensors.partial");
    let remapper = KeyRemapper::new().add_pattern(r"attention\.self_attention\.", "attention.self.")?;
    let mut store =
        SafetensorsStore::from_file(&tmp).remap(remapper).with_to_adapter(BurnToPyTorchAdapter).metadata("format", "pt").overwrite(true);
    module.save_into(&mut store).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
