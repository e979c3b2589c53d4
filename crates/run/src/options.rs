//! How a job is driven: progress, export, a stop on request; which backend it
//! runs on; the training loop's control built from them.

use anyhow::{Context, Result};
use bertfit_data::settings::InvalidSetting;
use bertfit_model::Backend;
use bertfit_train::progress::ProgressTarget;
use bertfit_train::{Checkpoints, Precision, RunControl};

#[derive(Clone, Default)]
pub struct RunOptions {
    pub progress: ProgressTarget,
    /// Write the fine-tuned model (HF layout) to `OUT/model/`.
    pub export_model: bool,
    /// Stop after this many optimizer steps, as a kill would (tests, trying resumption).
    pub stop_after_steps: Option<u64>,
}

impl RunOptions {
    /// Progress to standard error (or none) and the stop `BERTFIT_STOP_AFTER_STEPS` asks for.
    pub fn from_env(quiet: bool, export_model: bool) -> Result<Self> {
        let progress = if quiet { ProgressTarget::Quiet } else { ProgressTarget::Stderr };
        Ok(Self { progress, export_model, stop_after_steps: stop_after_steps()? })
    }

    pub fn quiet(&self) -> bool {
        matches!(self.progress, ProgressTarget::Quiet)
    }

    /// The training loop's control: checkpoints in `checkpoints`, for the job `identity`.
    pub fn control<'a>(&self, checkpoints: &'a Checkpoints, identity: &str) -> RunControl<'a> {
        RunControl {
            checkpoints: Some(checkpoints),
            identity: Some(identity.to_string()),
            stop_after_steps: self.stop_after_steps,
            progress: self.progress.clone(),
        }
    }
}

/// For tests and for trying resumption by hand: stop after N steps, as a kill would.
pub fn stop_after_steps() -> Result<Option<u64>> {
    match std::env::var("BERTFIT_STOP_AFTER_STEPS") {
        Ok(v) => Ok(Some(v.parse().map_err(|_| anyhow::anyhow!("BERTFIT_STOP_AFTER_STEPS={v:?} is not a step count"))?)),
        Err(_) => Ok(None),
    }
}

/// The backend a job runs on: the command line's, else its file's `backend`, else `auto`.
pub fn resolve_backend(flag: Option<Backend>, setting: Option<&str>) -> Result<Backend> {
    let backend = match flag {
        Some(b) => b,
        None => setting.unwrap_or("auto").parse().context("key backend")?,
    };
    backend.check()?;
    Ok(backend)
}

/// A job's `training.precision` on `backend`: `auto` decided (bf16 on LibTorch
/// CUDA, fp32 elsewhere), `bf16` refused where it has no path.
pub fn resolve_precision(precision: Precision, backend: Backend) -> Result<Precision, InvalidSetting> {
    match precision {
        Precision::Bf16 if !backend.has_bf16() => Err(InvalidSetting::new(
            "training.precision",
            format!("bf16 runs on the LibTorch backends (tch, tch-cuda) only; backend {backend} trains in fp32"),
        )),
        Precision::Auto => Ok(if matches!(backend, Backend::TchCuda(_)) { Precision::Bf16 } else { Precision::Fp32 }),
        other => Ok(other),
    }
}
