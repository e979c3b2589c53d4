//! `bertfit predict --model DIR`: a model `bertfit finetune` exported, on new
//! texts (one per line), one JSON line per text out:
//! `{"index": i, "label": "pos", "probabilities": {"neg": 0.1, "pos": 0.9}}`.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use bertfit_data::{BertTokenizer, Example, Truncation};
use bertfit_model::{Backend, BertConfig, BertForSequenceClassification};

use crate::export::ExportedHead;
use crate::model_source::check_vocab;
use crate::pipeline::encode;

pub fn predict(dir: &Path, backend: Backend, input: Option<&Path>, batch_size: usize) -> Result<()> {
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
    let device = backend.device()?;
    let model = BertForSequenceClassification::from_finetuned(dir, &config, exported.classes.len(), exported.head, &device)?;
    let tokenizer = BertTokenizer::from_model_dir(dir)?;
    check_vocab(&tokenizer, &config, dir)?;
    let texts = crate::encode::read_lines(input)?;
    if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
        bail!("line {} of {} is empty", i + 1, input.map(|p| p.display().to_string()).unwrap_or_else(|| "standard input".into()));
    }
    let examples: Vec<Example> = texts.into_iter().map(|text| Example { text, label: 0 }).collect();
    let (split, _) = encode(&tokenizer, &examples, exported.truncation, exported.max_len)?;
    let probabilities = bertfit_train::predict_probabilities(&model, 0, &split, batch_size, &device);
    let mut stdout = std::io::stdout().lock();
    for (index, p) in probabilities.iter().enumerate() {
        let best = bertfit_train::finetune_loop::argmax(p);
        let probs: serde_json::Map<String, serde_json::Value> =
            exported.classes.iter().zip(p).map(|(c, &v)| (c.clone(), serde_json::json!(v))).collect();
        let line = serde_json::json!({"index": index, "label": exported.classes[best], "probabilities": probs});
        writeln!(stdout, "{line}")?;
    }
    Ok(())
}
