//! The arguments of the commands that run one job from a TOML file
//! (`finetune`, `pretrain`).

use std::path::{Path, PathBuf};

use anyhow::Result;
use bertfit_model::Backend;
use bertfit_run::RunOptions;

#[derive(clap::Args, Debug)]
pub struct JobArgs {
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Output directory (default: results/runs/<config file name> for
    /// finetune, results/pretrain/<config file name> for pretrain).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Overrides the config's backend: auto, flex, tch, tch-cuda[:N], wgpu.
    #[arg(long)]
    pub backend: Option<Backend>,
    /// No progress bar or log lines.
    #[arg(long)]
    pub quiet: bool,
}

impl JobArgs {
    /// `--out`, or `BASE/<config file name>`.
    pub fn out(&self, base: &str) -> PathBuf {
        self.out.clone().unwrap_or_else(|| Path::new(base).join(self.config.file_stem().unwrap_or("run".as_ref())))
    }

    /// Progress (unless quiet), the model exported, and a stop `BERTFIT_STOP_AFTER_STEPS` asks for.
    pub fn options(&self) -> Result<RunOptions> {
        RunOptions::from_env(self.quiet, true)
    }
}
