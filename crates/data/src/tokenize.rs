//! WordPiece tokenization with `tokenizers`, padding and truncation owned by us.
//!
//! A model directory gives `tokenizer.json` or, failing that, `vocab.txt`
//! (lower-casing from `tokenizer_config.json`'s `do_lower_case`). Whatever
//! padding or truncation the file fixes (MiniLM's forces 128) is turned off:
//! `tokenize` returns the content ids of each text without special tokens, and
//! `truncation.rs` builds the model inputs from them.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use tokenizers::Tokenizer;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;

/// Ids of the special tokens BERT inputs are built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialTokens {
    pub cls: u32,
    pub sep: u32,
    pub pad: u32,
    pub mask: u32,
    pub unk: u32,
}

pub struct BertTokenizer {
    inner: Tokenizer,
    pub special: SpecialTokens,
    pub vocab_size: usize,
    /// What the tokenizer was built from, for cache keys.
    pub fingerprint: String,
}

fn lowercase_from_config(dir: &Path) -> Result<bool> {
    let path = dir.join("tokenizer_config.json");
    if !path.is_file() {
        return Ok(true);
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
    Ok(value.get("do_lower_case").and_then(|v| v.as_bool()).unwrap_or(true))
}

impl BertTokenizer {
    /// Loads the tokenizer of a HF model directory.
    pub fn from_model_dir(dir: &Path) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        let vocab = dir.join("vocab.txt");
        let (mut inner, fingerprint) = if json.is_file() {
            let tokenizer = Tokenizer::from_file(&json).map_err(|e| anyhow!("cannot load tokenizer {}: {e}", json.display()))?;
            let bytes = std::fs::read(&json)?;
            (tokenizer, format!("tokenizer.json:{}", crate::hash_bytes(&bytes)))
        } else if vocab.is_file() {
            let lowercase = lowercase_from_config(dir)?;
            let wordpiece = WordPiece::from_file(&vocab.to_string_lossy())
                .build()
                .map_err(|e| anyhow!("cannot load vocabulary {}: {e}", vocab.display()))?;
            let mut tokenizer = Tokenizer::new(wordpiece);
            let _ = tokenizer.with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)));
            let _ = tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
            let bytes = std::fs::read(&vocab)?;
            (tokenizer, format!("vocab.txt:{}:lower={lowercase}", crate::hash_bytes(&bytes)))
        } else {
            bail!("no tokenizer.json or vocab.txt in model directory {}", dir.display());
        };
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|e| anyhow!("cannot disable truncation: {e}"))?;
        let id =
            |token: &str| inner.token_to_id(token).with_context(|| format!("the vocabulary of {} has no {token} token", dir.display()));
        let special = SpecialTokens { cls: id("[CLS]")?, sep: id("[SEP]")?, pad: id("[PAD]")?, mask: id("[MASK]")?, unk: id("[UNK]")? };
        let vocab_size = inner.get_vocab_size(true);
        Ok(Self { inner, special, vocab_size, fingerprint })
    }

    /// WordPiece ids of each text, without special tokens, in parallel over cores.
    pub fn tokenize<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Result<Vec<Vec<u32>>> {
        let inputs: Vec<&str> = texts.iter().map(|t| t.as_ref()).collect();
        let encodings = self.inner.encode_batch(inputs, false).map_err(|e| anyhow!("tokenization failed: {e}"))?;
        Ok(encodings.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
}

/// `tokenize`, cached on disk under `$BERTFIT_CACHE/tokens/`, keyed by a hash of
/// the texts, the tokenizer files and the settings: any change makes a new key.
/// Written to a temporary file and renamed, so no partial cache is ever read.
pub fn tokenize_cached<S: AsRef<str> + Sync>(tokenizer: &BertTokenizer, texts: &[S]) -> Result<Vec<Vec<u32>>> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(b"bertfit-tokens-v1\0");
    hasher.update(tokenizer.fingerprint.as_bytes());
    hasher.update((texts.len() as u64).to_le_bytes());
    for t in texts {
        let t = t.as_ref().as_bytes();
        hasher.update((t.len() as u64).to_le_bytes());
        hasher.update(t);
    }
    let key = format!("{:x}", hasher.finalize());
    let dir = crate::assets::cache_dir().join("tokens");
    let path = dir.join(format!("{key}.bin"));
    if let Ok(bytes) = std::fs::read(&path)
        && let Some(ids) = decode_ids(&bytes, texts.len())
    {
        return Ok(ids);
    }
    let ids = tokenizer.tokenize(texts)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(format!("{key}.partial-{}", std::process::id()));
    std::fs::write(&tmp, encode_ids(&ids))?;
    std::fs::rename(&tmp, &path)?;
    Ok(ids)
}

/// Layout: count, then per text its length and ids, all u32 little-endian.
fn encode_ids(ids: &[Vec<u32>]) -> Vec<u8> {
    let total: usize = ids.iter().map(|s| s.len() + 1).sum::<usize>() + 1;
    let mut out = Vec::with_capacity(total * 4);
    out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
    for seq in ids {
        out.extend_from_slice(&(seq.len() as u32).to_le_bytes());
        for id in seq {
            out.extend_from_slice(&id.to_le_bytes());
        }
    }
    out
}

fn decode_ids(bytes: &[u8], expected: usize) -> Option<Vec<Vec<u32>>> {
    let words: Vec<u32> = bytes.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let (&count, mut rest) = words.split_first()?;
    if count as usize != expected {
        return None;
    }
    let mut out = Vec::with_capacity(expected);
    for _ in 0..count {
        let (&len, tail) = rest.split_first()?;
        let len = len as usize;
        if tail.len() < len {
            return None;
        }
        out.push(tail[..len].to_vec());
        rest = &tail[len..];
    }
    rest.is_empty().then_some(out)
}
