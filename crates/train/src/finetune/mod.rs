//! Fine-tuning (Section 5.3 of the paper): its settings, what a run records,
//! and the loop that trains every classifier of the paper through [`Trainee`]:
//! the BERT classifier (one task), the multi-task model (tasks share the
//! encoder; batches are drawn across tasks by [`crate::batch_order`]) and BERT-Feat's
//! classifier on cached features.

mod evaluate;
mod train_loop;
mod trainee;

use anyhow::Result;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

pub use evaluate::{argmax, error_rate, evaluation_batches, predict_probabilities, wrong_share};
pub use train_loop::train_tasks;
pub use trainee::{EncodedSplit, Examples, TaskData, Trainee, label_tensor};

use crate::batch_order::TaskSampling;
use crate::control::RunControl;
use crate::{LayerwiseDecay, OptimizerConfig, ScheduleConfig};
use bertfit_data::settings::InvalidSetting;

/// The settings of one fine-tuning run. Defaults are the paper's (Section 5.1):
/// batch 24, lr 2e-5, linear decay after 10% warmup, 4 epochs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FinetuneConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub eval_batch_size: usize,
    pub lr: f64,
    pub schedule: ScheduleConfig,
    pub optimizer: OptimizerConfig,
    pub layerwise: LayerwiseDecay,
    /// Micro-batches per optimizer step (effective batch = batch_size × grad_accum).
    pub grad_accum: usize,
    /// Batch texts of similar length together (less padding, same epoch content).
    pub bucketed: bool,
    /// Multi-task only: how batches are drawn across tasks.
    pub task_sampling: TaskSampling,
    /// Seed of the data order, dropout and the new head's initialisation.
    pub seed: u64,
    /// A training loss above this (or not finite) marks the run diverged.
    pub divergence_loss: f64,
    /// Checkpoint every N optimizer steps as well as at each epoch end.
    pub checkpoint_every: Option<u64>,
    /// `fp32`; `bf16`: mixed precision as PyTorch AMP does it (f32 master
    /// weights, gradients and AdamW state; bfloat16 products and attention;
    /// f32 LayerNorm, softmax and loss), LibTorch backends only; `auto`: bf16
    /// on LibTorch CUDA, fp32 elsewhere (resolved before a run's identity).
    /// Left out of the serialized settings at fp32, so fp32 runs keep their
    /// identities.
    #[serde(skip_serializing_if = "Precision::is_fp32")]
    pub precision: Precision,
    /// Evaluate test after every epoch (the forgetting curves need it); by
    /// default test is evaluated once, with the model of the epoch dev selects.
    pub test_every_epoch: bool,
}

/// The arithmetic of the encoder blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    Bf16,
    Auto,
}

impl Precision {
    pub fn is_fp32(&self) -> bool {
        *self == Self::Fp32
    }
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        Self {
            epochs: 4,
            batch_size: 24,
            eval_batch_size: 64,
            lr: 2e-5,
            schedule: ScheduleConfig::paper(),
            optimizer: OptimizerConfig::default(),
            layerwise: LayerwiseDecay::OFF,
            grad_accum: 1,
            bucketed: false,
            task_sampling: TaskSampling::Proportional,
            seed: 0,
            divergence_loss: 100.0,
            checkpoint_every: None,
            precision: Precision::Fp32,
            test_every_epoch: false,
        }
    }
}

impl FinetuneConfig {
    /// Settings out of range, named by their key under `[training]`.
    pub fn check(&self) -> std::result::Result<(), InvalidSetting> {
        for (name, value) in [
            ("epochs", self.epochs),
            ("batch_size", self.batch_size),
            ("eval_batch_size", self.eval_batch_size),
            ("grad_accum", self.grad_accum),
        ] {
            if value == 0 {
                return Err(InvalidSetting::new(name, "must be at least 1"));
            }
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(InvalidSetting::new("lr", format!("must be a positive number, not {}", self.lr)));
        }
        if !(self.layerwise.xi > 0.0 && self.layerwise.xi <= 1.0) {
            return Err(InvalidSetting::new(
                "layerwise.xi",
                format!("must be in (0, 1] (1 turns the decay off), not {}", self.layerwise.xi),
            ));
        }
        if self.checkpoint_every == Some(0) {
            return Err(InvalidSetting::new("checkpoint_every", "must be at least 1 (or left out)"));
        }
        self.schedule.check().map_err(|e| e.within("schedule"))?;
        self.optimizer.check().map_err(|e| e.within("optimizer"))
    }
}

/// Dev and test error of one task at the end of an epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskErrors {
    pub task: String,
    pub dev_error: f64,
    /// With `test_every_epoch` only.
    #[serde(default)]
    pub test_error: Option<f64>,
}

/// One epoch of the curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: usize,
    /// Optimizer steps at the end of the epoch, from the start of the run.
    pub steps: u64,
    pub train_loss: f64,
    /// Learning rate of the epoch's last step (base rate, before layer-wise factors).
    pub lr: f64,
    /// Dev error, and test error with `test_every_epoch` (the mean over tasks
    /// in multi-task training).
    pub dev_error: f64,
    #[serde(default)]
    pub test_error: Option<f64>,
    /// Per task, in multi-task training.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<TaskErrors>,
    pub train_tokens: u64,
    pub train_seconds: f64,
    pub eval_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneResult {
    pub curve: Vec<EpochRecord>,
    /// Epoch with the lowest dev error (the first, on ties); `None` if none finished.
    pub best_epoch: Option<usize>,
    pub dev_error: Option<f64>,
    /// Test error of the best epoch's model, evaluated once after training.
    pub test_error: Option<f64>,
    /// Per task (multi-task training), the test error of the best epoch's model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_test_errors: Vec<f64>,
    /// Why the run stopped early, if its loss diverged.
    pub diverged: Option<String>,
    pub steps: u64,
    pub train_tokens: u64,
    pub train_seconds: f64,
    /// Real (non-padding) training tokens per second of training time.
    pub tokens_per_second: f64,
}

/// A finished run: the result and the model of its best epoch (on a plain
/// device) with that model's predictions, per task (none when no epoch finished).
pub struct Finetuned<M> {
    pub result: FinetuneResult,
    pub model: M,
    pub predictions: Vec<SplitPredictions>,
}

/// Class probabilities of every dev and test example of one task, in split order.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitPredictions {
    pub dev: Vec<Vec<f32>>,
    pub test: Vec<Vec<f32>>,
}

pub enum Outcome<M> {
    Finished(Box<Finetuned<M>>),
    /// Stopped on request after this many optimizer steps (a checkpoint was written).
    Stopped {
        step: u64,
    },
}

/// Fine-tunes a single-task `model` (on the autodiff `device`) on `train`,
/// evaluating on `dev` and `test` after each epoch.
#[allow(clippy::too_many_arguments)]
pub fn finetune<M: Trainee>(
    model: M,
    train: &M::Split,
    dev: &M::Split,
    test: &M::Split,
    config: &FinetuneConfig,
    device: &Device,
    control: &RunControl,
) -> Result<Outcome<M>> {
    let task = TaskData { name: "task".into(), train, dev, test };
    train_tasks(model, &[task], config, device, control)
}
