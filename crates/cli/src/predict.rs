//! `bertfit predict --model DIR`: a model `bertfit finetune` exported, on new
//! texts (one per line), one JSON line per text out:
//! `{"index": i, "label": "pos", "probabilities": {"neg": 0.1, "pos": 0.9}}`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};
use bertfit_data::Example;
use bertfit_model::Backend;
use bertfit_run::export::load_exported;
use bertfit_run::task::encode;
use bertfit_train::{argmax, predict_probabilities};

use crate::input::read_lines;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The `model/` directory of a finetune run.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    #[arg(long, default_value = "auto")]
    backend: Backend,
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
}

pub fn run(args: Args) -> Result<()> {
    let device = args.backend.device()?;
    let (model, exported, tokenizer) = load_exported(&args.model, &device)?;
    let input = args.input.as_deref();
    let texts = read_lines(input)?;
    if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
        bail!("line {} of {} is empty", i + 1, input.map(|p| p.display().to_string()).unwrap_or_else(|| "standard input".into()));
    }
    let examples: Vec<Example> = texts.into_iter().map(|text| Example::new(text, 0)).collect();
    let (split, _) = encode(&tokenizer, &examples, exported.truncation, exported.max_len, None)?;
    let probabilities = predict_probabilities(&model, 0, &split, args.batch_size, &device);
    let mut stdout = std::io::stdout().lock();
    for (index, p) in probabilities.iter().enumerate() {
        let probs: serde_json::Map<String, serde_json::Value> =
            exported.classes.iter().zip(p).map(|(c, &v)| (c.clone(), serde_json::json!(v))).collect();
        let line = serde_json::json!({"index": index, "label": exported.classes[argmax(p)], "probabilities": probs});
        writeln!(stdout, "{line}")?;
    }
    Ok(())
}
