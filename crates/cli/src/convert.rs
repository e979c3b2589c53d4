//! `bertfit convert`: a HF BERT directory (safetensors or pytorch_model.bin,
//! any naming we read) written back as HF `model.safetensors` + `config.json`
//! + tokenizer files, its weights in f32, f16 or bf16.

use std::path::PathBuf;

use anyhow::Result;
use bertfit_model::WeightsDtype;
use bertfit_run::export::copy_tokenizer;

use crate::model_args::ModelArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Output directory.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The weights' floating-point type in the output: f32, f16 or bf16
    /// (default: the type the checkpoint was read in).
    #[arg(long)]
    dtype: Option<WeightsDtype>,
}

pub fn run(args: Args) -> Result<()> {
    let dir = args.model.model_dir()?;
    let device = args.model.backend.device()?;
    let (config, model, report) = bertfit_model::load_pretrained(&dir, &device)?;
    let dtype = args.dtype.unwrap_or(WeightsDtype::of(report.dtype));
    bertfit_model::save_hf_weights_as(&model, &args.out, dtype)?;
    config.save(&args.out.join("config.json"), "BertModel")?;
    copy_tokenizer(&dir, &args.out)?;
    if !report.skipped.is_empty() {
        eprintln!("left out (heads this encoder has not): {}", report.skipped.join(", "));
    }
    eprintln!("wrote {} (weights in {dtype}; read in {})", args.out.display(), WeightsDtype::of(report.dtype));
    Ok(())
}
