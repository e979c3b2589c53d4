//! `BertConfig`: the fields of a HuggingFace `config.json` that shape a BERT.
//!
//! Mirrors `transformers.BertConfig`. Keys we do not use are kept in `extra`
//! so that a config read and written back loses nothing.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

pub use bertfit_tch::Activation;

/// `hidden_act` read and written by its HF name; an unknown name is an error
/// that names the key and the names there are.
mod hidden_act {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use super::Activation;

    pub fn serialize<S: Serializer>(act: &Activation, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(act.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Activation, D::Error> {
        let name = String::deserialize(deserializer)?;
        Activation::from_name(&name).ok_or_else(|| {
            let known: Vec<String> = Activation::ALL.iter().map(|a| format!("{:?}", a.name())).collect();
            D::Error::custom(format!("unsupported hidden_act {name:?} (supported: {})", known.join(", ")))
        })
    }
}

fn default_eps() -> f64 {
    1e-12
}
fn default_dropout() -> f64 {
    0.1
}
fn default_type_vocab() -> usize {
    2
}
fn default_position_type() -> String {
    "absolute".into()
}
fn default_act() -> Activation {
    Activation::Gelu
}
fn default_init_range() -> f64 {
    0.02
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act", with = "hidden_act")]
    pub hidden_act: Activation,
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    #[serde(default)]
    pub pad_token_id: usize,
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
    /// Every other key of the file, written back unchanged.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl BertConfig {
    /// Reads and validates a HF `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read model config {}", path.display()))?;
        let config: Self = serde_json::from_str(&text).with_context(|| format!("{} is not a valid BERT config.json", path.display()))?;
        config.validate().with_context(|| format!("in {}", path.display()))?;
        Ok(config)
    }

    /// Checks every value this implementation depends on; an unsupported one is
    /// an error that names the key.
    pub fn validate(&self) -> Result<()> {
        if let Some(model_type) = self.extra.get("model_type").and_then(|v| v.as_str())
            && model_type != "bert"
        {
            bail!("model_type {model_type:?} is not a BERT; only \"bert\" is supported");
        }
        if self.position_embedding_type != "absolute" {
            bail!("unsupported position_embedding_type {:?} (only \"absolute\")", self.position_embedding_type);
        }
        for (key, value) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            if value == 0 {
                bail!("key {key} must be positive");
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            bail!("hidden_size {} is not a multiple of num_attention_heads {}", self.hidden_size, self.num_attention_heads);
        }
        for (key, p) in
            [("hidden_dropout_prob", self.hidden_dropout_prob), ("attention_probs_dropout_prob", self.attention_probs_dropout_prob)]
        {
            if !(0.0..1.0).contains(&p) {
                bail!("key {key} must be in [0, 1), got {p}");
            }
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            bail!("key layer_norm_eps must be positive");
        }
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// BERT-base's shape (Devlin et al. 2019: 12 layers, hidden 768, 12 heads).
    pub fn base(vocab_size: usize) -> Self {
        let tiny = Self::tiny(vocab_size);
        Self {
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            max_position_embeddings: 512,
            ..tiny
        }
    }

    /// BERT-large's shape (24 layers, hidden 1024, 16 heads).
    pub fn large(vocab_size: usize) -> Self {
        Self { hidden_size: 1024, num_hidden_layers: 24, num_attention_heads: 16, intermediate_size: 4096, ..Self::base(vocab_size) }
    }

    /// Parameters of the encoder and embeddings (no task head).
    pub fn parameter_count(&self) -> usize {
        let (h, i) = (self.hidden_size, self.intermediate_size);
        let embeddings = (self.vocab_size + self.max_position_embeddings + self.type_vocab_size) * h + 2 * h;
        let layer = 4 * (h * h + h) + 2 * (h * i) + i + h + 4 * h;
        embeddings + self.num_hidden_layers * layer + h * h + h
    }

    /// A tiny random-weight config for tests.
    pub fn tiny(vocab_size: usize) -> Self {
        Self {
            vocab_size,
            hidden_size: 32,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            intermediate_size: 64,
            hidden_act: Activation::Gelu,
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            max_position_embeddings: 128,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            initializer_range: 0.02,
            pad_token_id: 0,
            position_embedding_type: "absolute".into(),
            extra: Default::default(),
        }
    }

    /// Writes the config as HF `config.json`, with `model_type` and `architectures` set.
    pub fn save(&self, path: &Path, architecture: &str) -> Result<()> {
        let mut value = serde_json::to_value(self)?;
        let map = value.as_object_mut().expect("struct serializes to a map");
        map.insert("model_type".into(), "bert".into());
        map.insert("architectures".into(), serde_json::json!([architecture]));
        std::fs::write(path, serde_json::to_string_pretty(&value)? + "\n").with_context(|| format!("cannot write {}", path.display()))
    }
}
