//! bertfit-model: BERT in burn with HuggingFace-compatible weights, and the
//! heads that sit on it. Knows nothing of datasets or experiments.

pub mod backend;
pub mod bert;
pub mod bert_feat;
pub mod chunk_pool;
pub mod classifier;
pub mod config;
pub mod features;
pub mod mlm;
pub mod weights;

pub use backend::Backend;
pub use bert::{BertInput, BertModel, EncoderOutput, Positions, Readout};
pub use config::BertConfig;
pub use weights::{
    EncoderPrefix, LoadReport, WeightsDtype, load_hf_weights, save_hf_weights, save_hf_weights_as, stored_dtype, weights_file,
};

pub use bert_feat::{BertFeatClassifier, FeatConfig};
pub use chunk_pool::{AttentionPool, ChunkPool};
pub use classifier::{BertForMultiTask, BertForSequenceClassification, HeadConfig};
pub use features::{Combine, Features, LayerSet, Tokens};
pub use mlm::{BertForMaskedLM, PretrainingOutput};

use std::path::Path;

/// Reads `config.json` and the weights of a HF model directory into a `BertModel`.
pub fn load_pretrained(dir: &Path, device: &burn::tensor::Device) -> anyhow::Result<(BertConfig, BertModel, LoadReport)> {
    if !dir.is_dir() {
        anyhow::bail!("model directory {} does not exist", dir.display());
    }
    let config = BertConfig::from_file(&dir.join("config.json"))?;
    let mut model = BertModel::new(&config, device);
    let report = load_hf_weights(&mut model, dir, EncoderPrefix::Bare, &[])?;
    Ok((config, model, report))
}
