//! The one checkpoint/resume mechanism of both training loops: [`resume`]
//! continues from the latest checkpoint (refusing one that another run
//! wrote) and [`save`] writes one; each loop brings only its own [`LoopState`].

use std::path::Path;

use anyhow::{Result, bail};
use bertfit_model::{EncoderPrefix, load_hf_weights, save_hf_weights};
use burn::module::Module;
use burn::tensor::Device;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::checkpoint::{Checkpoints, load_optimizer, read_json, save_optimizer, write_json};
use crate::control::RunControl;
use crate::optimizer::AdamW;

/// Where a training loop stands: what a checkpoint's `state.json` holds beside
/// the model and the optimizer's moments.
pub trait LoopState: Serialize + DeserializeOwned {
    type Config: PartialEq;
    /// The settings of the run that wrote it, and its identity.
    fn config(&self) -> &Self::Config;
    fn identity(&self) -> Option<&str>;
    /// Optimizer steps taken.
    fn step(&self) -> u64;
    /// How the log line names where it resumes.
    fn resuming(&self, dir: &Path) -> String;
}

/// Continues from the latest checkpoint of `control`, if there is one: its
/// weights into `model` (back in training mode), its moments into `optim`, and
/// its loop state. A checkpoint made with other settings is refused.
pub fn resume<M: Module, S: LoopState>(
    control: &RunControl,
    config: &S::Config,
    mut model: M,
    optim: &mut AdamW,
    device: &Device,
) -> Result<(M, Option<S>)> {
    let Some(latest) = control.checkpoints.map(Checkpoints::latest).transpose()?.flatten() else { return Ok((model, None)) };
    let saved: S = read_json(&latest.join("state.json"))?;
    if saved.config() != config || saved.identity() != control.identity.as_deref() {
        bail!("the checkpoint in {} was made by a run with other settings; remove it to start over", latest.display());
    }
    load_weights(&mut model, &latest)?;
    let model = model.train();
    optim.load_state(&model, load_optimizer(&latest.join("optimizer.safetensors"))?, device)?;
    if !control.quiet() {
        eprintln!("{}", saved.resuming(&latest));
    }
    Ok((model, Some(saved)))
}

/// Writes a checkpoint of `state` at its step (model, moments, state; `also`
/// adds files to it) and publishes it, keeping the older ones named in `keep`.
/// Nothing without `control.checkpoints`.
pub fn save<M: Module, S: LoopState>(
    control: &RunControl,
    state: &S,
    model: &M,
    optim: &AdamW,
    keep: &[&str],
    also: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let Some(checkpoints) = control.checkpoints else { return Ok(()) };
    checkpoints.publish(&format!("step-{}", state.step()), keep, |dir| {
        save_hf_weights(model, dir)?;
        also(dir)?;
        save_optimizer(&optim.state(model), &dir.join("optimizer.safetensors"))?;
        write_json(&dir.join("state.json"), state)
    })?;
    Ok(())
}

/// Reads a checkpointed model's weights into `model` (same structure).
pub fn load_weights<M: Module>(model: &mut M, dir: &Path) -> Result<()> {
    load_hf_weights(model, dir, EncoderPrefix::Bert, &[])?;
    Ok(())
}
