//! `bertfit convert`: a HF BERT directory (safetensors or pytorch_model.bin,
//! any naming we read) written back as HF `model.safetensors` + `config.json`
//! + tokenizer files.

use std::path::PathBuf;

use anyhow::Result;
use bertfit_run::export::copy_tokenizer;

use crate::model_args::ModelArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Output directory.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let dir = args.model.model_dir()?;
    let device = args.model.backend.device()?;
    let (config, model, report) = bertfit_model::load_pretrained(&dir, &device)?;
    bertfit_model::save_hf_weights(&model, &args.out)?;
    config.save(&args.out.join("config.json"), "BertModel")?;
    copy_tokenizer(&dir, &args.out)?;
    if !report.skipped.is_empty() {
        eprintln!("left out (heads this encoder has not): {}", report.skipped.join(", "));
    }
    eprintln!("wrote {}", args.out.display());
    Ok(())
}
