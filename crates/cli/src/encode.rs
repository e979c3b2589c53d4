//! `bertfit encode`: texts in, per-layer [CLS] or mean vectors out (JSON lines).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use bertfit_data::{BertTokenizer, PaddedBatch, Truncation};
use bertfit_model::{BertInput, BertModel, load_pretrained};
use burn::module::Module;
use burn::tensor::{Int, Tensor};

use crate::input::read_lines;
use crate::model_args::ModelArgs;

#[derive(clap::Args, Debug)]
pub struct EncodeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Layers to output: `all`, or a comma list such as `0,6` (0 = embeddings).
    #[arg(long, default_value = "all")]
    pub layers: String,
    /// `cls`: the [CLS] vector; `mean`: the mean over real (unpadded) tokens.
    #[arg(long, default_value = "cls")]
    pub pool: Pool,
    /// Longest input in tokens, [CLS] and [SEP] included (head-only truncation).
    /// Default: the model's max_position_embeddings.
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Texts, one per line; default: standard input.
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    Cls,
    Mean,
}

fn parse_layers(spec: &str, num_layers: usize) -> Result<Vec<usize>> {
    if spec == "all" {
        return Ok((0..=num_layers).collect());
    }
    spec.split(',')
        .map(|s| {
            let k: usize = s.trim().parse().with_context(|| format!("--layers: {s:?} is not a layer number"))?;
            if k > num_layers {
                bail!("--layers: layer {k} does not exist (the model has layers 0..={num_layers})");
            }
            Ok(k)
        })
        .collect()
}

/// [batch, hidden] vectors of one layer: [CLS], or the mean over real tokens.
pub fn pool_layer(hidden: Tensor<3>, mask: Tensor<2, Int>, pool: Pool) -> Tensor<2> {
    let [batch, len, width] = hidden.dims();
    match pool {
        Pool::Cls => hidden.slice([0..batch, 0..1, 0..width]).reshape([batch, width]),
        Pool::Mean => {
            let mask = mask.float().reshape([batch, len, 1]);
            let sum = (hidden * mask.clone()).sum_dim(1).reshape([batch, width]);
            let count = mask.sum_dim(1).reshape([batch, 1]).clamp_min(1e-9);
            sum / count
        }
    }
}

pub fn run(args: EncodeArgs) -> Result<()> {
    let dir = args.model.model_dir()?;
    let device = args.model.backend.device()?;
    let (config, model, _) = load_pretrained(&dir, &device)?;
    let model: BertModel = model.valid();
    let tokenizer = BertTokenizer::from_model_dir(&dir)?;
    bertfit_run::model_source::check_vocab(&tokenizer, &config, &dir)?;
    let layers = parse_layers(&args.layers, config.num_hidden_layers)?;
    let max_len = args.max_len.unwrap_or(config.max_position_embeddings);
    if max_len < 2 || max_len > config.max_position_embeddings {
        bail!("--max-len {max_len} must be between 2 and the model's max_position_embeddings {}", config.max_position_embeddings);
    }
    let texts = read_lines(args.input.as_deref())?;
    let content = tokenizer.tokenize(&texts)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (start, chunk) in content.chunks(args.batch_size.max(1)).enumerate() {
        let sequences: Vec<Vec<u32>> =
            chunk.iter().map(|ids| Truncation::HeadOnly.apply(ids, max_len, &tokenizer.special).remove(0)).collect();
        let batch = PaddedBatch::new(&sequences, tokenizer.special.pad);
        let input = BertInput::from_ids(batch.input_ids, batch.attention_mask, [batch.batch, batch.len], &device);
        let mask = input.attention_mask.clone();
        let output = model.forward(input);
        let mut per_layer = Vec::with_capacity(layers.len());
        for &k in &layers {
            let vectors = pool_layer(output.hidden_states[k].clone(), mask.clone(), args.pool);
            let values: Vec<f32> =
                vectors.into_data().convert::<f32>().try_to_vec::<f32>().map_err(|e| anyhow::anyhow!("cannot read layer {k}: {e:?}"))?;
            per_layer.push(values);
        }
        let width = config.hidden_size;
        for row in 0..batch.batch {
            let mut layers_json = serde_json::Map::new();
            for (i, &k) in layers.iter().enumerate() {
                let v = &per_layer[i][row * width..(row + 1) * width];
                layers_json.insert(k.to_string(), serde_json::json!(v));
            }
            let index = start * args.batch_size.max(1) + row;
            let line = serde_json::json!({"index": index, "layers": layers_json});
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}
