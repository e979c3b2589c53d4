//! A fine-tuned classifier in HF's layout: `model.safetensors`, `config.json`
//! with the labels, the tokenizer files, and `bertfit.json` (classes, head,
//! truncation) so that `bertfit predict` treats texts as training did. With
//! the default head it is HF's `BertForSequenceClassification` as it is.

use std::path::Path;

use anyhow::{Context, Result, bail};
use bertfit_data::{BertTokenizer, Truncation};
use bertfit_model::{BertConfig, BertForSequenceClassification, HeadConfig, save_hf_weights_as, stored_dtype};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::model_source::check_vocab;

/// What `model/bertfit.json` records beside the HF files.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedHead {
    pub classes: Vec<String>,
    pub head: HeadConfig,
    pub max_len: usize,
    pub truncation: Truncation,
}

/// Writes `model` to `dir` in HF's layout, with the tokenizer files of
/// `source_dir` and its weights' floating-point type (a model fine-tuned from
/// an fp16 checkpoint is saved in fp16; it trained in f32).
#[allow(clippy::too_many_arguments)]
pub fn export(
    model: &BertForSequenceClassification,
    bert_config: &BertConfig,
    source_dir: &Path,
    dir: &Path,
    classes: &[String],
    head: HeadConfig,
    max_len: usize,
    truncation: Truncation,
) -> Result<()> {
    save_hf_weights_as(model, dir, stored_dtype(source_dir)?)?;
    let mut config = bert_config.clone();
    config.extra.insert("num_labels".into(), classes.len().into());
    let id2label: serde_json::Map<String, serde_json::Value> =
        classes.iter().enumerate().map(|(i, c)| (i.to_string(), c.clone().into())).collect();
    let label2id: serde_json::Map<String, serde_json::Value> = classes.iter().enumerate().map(|(i, c)| (c.clone(), i.into())).collect();
    config.extra.insert("id2label".into(), id2label.into());
    config.extra.insert("label2id".into(), label2id.into());
    // HF's class is the pooler head on one sequence; with another head HF
    // loads the encoder (BertModel) and bertfit.json describes the rest.
    let architecture = if head == HeadConfig::default() { "BertForSequenceClassification" } else { "BertModel" };
    config.save(&dir.join("config.json"), architecture)?;
    copy_tokenizer(source_dir, dir)?;
    let exported = ExportedHead { classes: classes.to_vec(), head, max_len, truncation };
    std::fs::write(dir.join("bertfit.json"), serde_json::to_string_pretty(&exported)? + "\n")?;
    Ok(())
}

/// Copies the tokenizer files a HF model directory has.
pub fn copy_tokenizer(source_dir: &Path, dir: &Path) -> Result<()> {
    for name in ["tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"] {
        if source_dir.join(name).is_file() {
            std::fs::copy(source_dir.join(name), dir.join(name))?;
        }
    }
    Ok(())
}

/// A classifier `export` wrote: the model on `device`, what `bertfit.json`
/// records, and its tokenizer. Everything checked against the model first.
pub fn load_exported(dir: &Path, device: &Device) -> Result<(BertForSequenceClassification, ExportedHead, BertTokenizer)> {
    let head_path = dir.join("bertfit.json");
    let exported: ExportedHead = serde_json::from_str(
        &std::fs::read_to_string(&head_path)
            .with_context(|| format!("cannot read {} (is {} a model `bertfit finetune` wrote?)", head_path.display(), dir.display()))?,
    )
    .with_context(|| format!("{} is not valid", head_path.display()))?;
    let config = BertConfig::from_file(&dir.join("config.json"))?;
    let longest = exported.truncation.sequence_len(exported.max_len);
    if exported.max_len > config.max_position_embeddings || longest > config.max_position_embeddings {
        bail!(
            "{}: sequences of {} tokens do not fit the model's max_position_embeddings ({})",
            head_path.display(),
            exported.max_len.max(longest),
            config.max_position_embeddings
        );
    }
    if exported.classes.len() < 2 {
        bail!("{}: a classifier needs at least two classes", head_path.display());
    }
    if matches!(exported.truncation, Truncation::Hierarchical { .. }) != exported.head.chunk_pool.is_some() {
        bail!("{}: head.chunk_pool goes with hierarchical truncation, and only with it", head_path.display());
    }
    let model = BertForSequenceClassification::from_finetuned(dir, &config, exported.classes.len(), exported.head, device)?;
    let tokenizer = BertTokenizer::from_model_dir(dir)?;
    check_vocab(&tokenizer, &config, dir)?;
    Ok((model, exported, tokenizer))
}
