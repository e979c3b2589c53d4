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
use burn::module::{ModuleMapper, Param};
use burn::tensor::{DType, Tensor};
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
#[derive(Debug)]
pub struct LoadReport {
    /// Tensors of the checkpoint that belong to heads the module does not have.
    pub skipped: Vec<String>,
    /// Parameters left at their initial value because the caller allowed it
    /// (a new classification head on a pretrained encoder).
    pub initialized: Vec<String>,
    /// The floating-point type the checkpoint stores (its parameters are
    /// widened to f32 on load); f32 for an f32 checkpoint.
    pub dtype: DType,
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
pub fn load_hf_weights<M: ModuleSnapshot + Clone>(
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
    let mut report = check_strict(result, &path, prefix, may_be_missing)?;
    // A checkpoint in fp16 or bf16 (as many on the hub are) loads as it is
    // stored; the model computes in f32 (bf16 is a run's mixed precision, with
    // f32 master weights), so its parameters are widened here.
    let mut cast = CastFloats { to: DType::F32, found: None };
    *module = module.clone().map(&mut cast);
    report.dtype = cast.found.unwrap_or(DType::F32);
    Ok(report)
}

/// Casts every float parameter to `to`, noting the first other dtype it met.
struct CastFloats {
    to: DType,
    found: Option<DType>,
}

impl ModuleMapper for CastFloats {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let dtype = tensor.dtype();
        if dtype == self.to {
            return Param::from_mapped_value(id, tensor, mapper);
        }
        self.found.get_or_insert(dtype);
        // A parameter tracked by autodiff is cast as a new leaf: the cast of
        // its inner values, tracked again (a cast of the tracked tensor would
        // be a node of the graph, which cannot be made a parameter).
        let cast =
            if tensor.is_require_grad() { Tensor::from_inner(tensor.inner().cast(self.to)).require_grad() } else { tensor.cast(self.to) };
        Param::from_mapped_value(id, cast, mapper)
    }
}

/// The floating-point types a checkpoint may be saved in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightsDtype {
    #[default]
    F32,
    F16,
    Bf16,
}

impl WeightsDtype {
    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
            Self::Bf16 => DType::BF16,
        }
    }

    /// The type a checkpoint was read in (f32 for any other).
    pub fn of(dtype: DType) -> Self {
        match dtype {
            DType::F16 => Self::F16,
            DType::BF16 => Self::Bf16,
            _ => Self::F32,
        }
    }
}

impl std::str::FromStr for WeightsDtype {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "f32" | "fp32" | "float32" => Self::F32,
            "f16" | "fp16" | "float16" => Self::F16,
            "bf16" | "bfloat16" => Self::Bf16,
            other => bail!("unknown weights dtype {other:?} (expected f32, f16 or bf16)"),
        })
    }
}

impl std::fmt::Display for WeightsDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
        })
    }
}

fn check_strict(result: ApplyResult, path: &Path, prefix: EncoderPrefix, may_be_missing: &[&str]) -> Result<LoadReport> {
    let mut report = LoadReport { skipped: Vec::new(), initialized: Vec::new(), dtype: DType::F32 };
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

/// The floating-point type the weights of model directory `dir` are stored
/// in, from the safetensors header (its first floating-point tensor); f32
/// for a `pytorch_model.bin`.
pub fn stored_dtype(dir: &Path) -> Result<WeightsDtype> {
    let path = weights_file(dir)?;
    if path.extension().is_none_or(|e| e != "safetensors") {
        return Ok(WeightsDtype::F32);
    }
    use std::io::Read;
    let mut file = std::fs::File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).with_context(|| format!("{} is not a safetensors file", path.display()))?;
    let len = u64::from_le_bytes(len);
    if len > 100_000_000 {
        bail!("{} is not a safetensors file (a header of {len} bytes)", path.display());
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).with_context(|| format!("{} is not a safetensors file", path.display()))?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).with_context(|| format!("{}: its header is not JSON", path.display()))?;
    let first = header.values().filter_map(|t| t.get("dtype")?.as_str()).find(|d| matches!(*d, "F32" | "F16" | "BF16"));
    Ok(match first {
        Some("F16") => WeightsDtype::F16,
        Some("BF16") => WeightsDtype::Bf16,
        _ => WeightsDtype::F32,
    })
}

/// Saves `module` as HF `model.safetensors` in `dir` (HF names and layout),
/// its float parameters in `dtype` (f32: as they are).
pub fn save_hf_weights_as<M: ModuleSnapshot + Clone>(module: &M, dir: &Path, dtype: WeightsDtype) -> Result<()> {
    if dtype == WeightsDtype::F32 {
        return save_hf_weights(module, dir);
    }
    let narrowed = module.clone().map(&mut CastFloats { to: dtype.dtype(), found: None });
    save_hf_weights(&narrowed, dir)
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
