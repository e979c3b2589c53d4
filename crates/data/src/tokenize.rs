//! WordPiece tokenization with `tokenizers`, padding and truncation owned by us.
//!
//! A model directory gives `tokenizer.json` or, failing that, `vocab.txt`
//! (lower-casing from `tokenizer_config.json`'s `do_lower_case`). Whatever
//! padding or truncation the file fixes (MiniLM's forces 128) is turned off:
//! `tokenize` returns the content ids of each text without special tokens, and
//! `truncation.rs` builds the model inputs from them.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::Tokenizer;

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
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    Ok(value
        .get("do_lower_case")
        .and_then(|v| v.as_bool())
        .unwrap_or(true))
}

impl BertTokenizer {
    /// Loads the tokenizer of a HF model directory.
    pub fn from_model_dir(dir: &Path) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        let vocab = dir.join("vocab.txt");
        let (mut inner, fingerprint) = if json.is_file() {
            let tokenizer = Tokenizer::from_file(&json)
                .map_err(|e| anyhow!("cannot load tokenizer {}: {e}", json.display()))?;
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
            (
                tokenizer,
                format!("vocab.txt:{}:lower={lowercase}", crate::hash_bytes(&bytes)),
            )
        } else {
            bail!(
                "no tokenizer.json or vocab.txt in model directory {}",
                dir.display()
            );
        };
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| anyhow!("cannot disable truncation: {e}"))?;
        let id = |token: &str| {
            inner
                .token_to_id(token)
                .with_context(|| format!("the vocabulary of {} has no {token} token", dir.display()))
        };
        let special = SpecialTokens {
            cls: id("[CLS]")?,
            sep: id("[SEP]")?,
            pad: id("[PAD]")?,
            mask: id("[MASK]")?,
            unk: id("[UNK]")?,
        };
        let vocab_size = inner.get_vocab_size(true);
        Ok(Self {
            inner,
            special,
            vocab_size,
            fingerprint,
        })
    }

    /// WordPiece ids of each text, without special tokens, in parallel over cores.
    pub fn tokenize<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Result<Vec<Vec<u32>>> {
        let inputs: Vec<&str> = texts.iter().map(|t| t.as_ref()).collect();
        let encodings = self
            .inner
            .encode_batch(inputs, false)
            .map_err(|e| anyhow!("tokenization failed: {e}"))?;
        Ok(encodings.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
}
