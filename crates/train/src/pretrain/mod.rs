//! Further pre-training with masked LM (Section 5.2 of the paper): its
//! settings (the paper's by default), what a run records, and the loop.

mod batch;
mod train_loop;

use bertfit_data::mlm::{Instance, MaskingConfig};
use bertfit_data::tokenize::SpecialTokens;
use bertfit_model::BertForMaskedLM;
use serde::{Deserialize, Serialize};

pub use train_loop::pretrain;

use crate::{OptimizerConfig, Precision, ScheduleConfig, ScheduleKind, Warmup};
use bertfit_data::settings::InvalidSetting;

/// The settings of a pre-training run. Defaults are the paper's (Section 5.2):
/// batch 32, sequences of 128, lr 5e-5, 100,000 steps, 10,000 warmup steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PretrainConfig {
    pub steps: u64,
    pub warmup_steps: u64,
    pub lr: f64,
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Tokens per sequence, [CLS] and [SEP] included.
    pub max_len: usize,
    pub masking: MaskingConfig,
    pub optimizer: OptimizerConfig,
    /// Train next-sentence prediction beside masked LM (the original code used
    /// Google's MLM + NSP pre-training); sequences are then sentence pairs.
    pub next_sentence: bool,
    /// Seed of the sequence order, the masks, dropout and new heads.
    pub seed: u64,
    /// Evaluate and checkpoint every N steps (and at the end).
    pub checkpoint_every: u64,
    /// Keep the model of every checkpoint (fine-tuning from each: Figure 3).
    pub keep_checkpoints: bool,
    /// Share of the corpus's documents held out for evaluation.
    pub heldout_share: f64,
    /// At most this many held-out sequences are evaluated.
    pub heldout_sequences: usize,
    pub eval_batch_size: usize,
    /// `fp32`; `bf16`: the encoder blocks in bfloat16 mixed precision with f32
    /// master weights, as fine-tuning's `training.precision` (LibTorch only);
    /// `auto`: bf16 on LibTorch CUDA, fp32 elsewhere (resolved before the
    /// stage's identity). Left out of the serialized settings at fp32, so fp32
    /// stages keep their identities.
    #[serde(skip_serializing_if = "Precision::is_fp32")]
    pub precision: Precision,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        Self {
            steps: 100_000,
            warmup_steps: 10_000,
            lr: 5e-5,
            batch_size: 32,
            grad_accum: 1,
            max_len: 128,
            masking: MaskingConfig::default(),
            optimizer: OptimizerConfig::default(),
            next_sentence: false,
            seed: 0,
            checkpoint_every: 10_000,
            keep_checkpoints: false,
            heldout_share: 0.01,
            heldout_sequences: 512,
            eval_batch_size: 64,
            precision: Precision::Fp32,
        }
    }
}

impl PretrainConfig {
    /// Settings out of range, by key under `[pretrain]`.
    pub fn check(&self) -> std::result::Result<(), InvalidSetting> {
        for (key, value) in [("steps", self.steps), ("checkpoint_every", self.checkpoint_every)] {
            if value == 0 {
                return Err(InvalidSetting::new(key, "must be at least 1"));
            }
        }
        for (key, value) in [("batch_size", self.batch_size), ("grad_accum", self.grad_accum), ("eval_batch_size", self.eval_batch_size)] {
            if value == 0 {
                return Err(InvalidSetting::new(key, "must be at least 1"));
            }
        }
        if self.warmup_steps > self.steps {
            return Err(InvalidSetting::new("warmup_steps", format!("{} is more than the {} steps", self.warmup_steps, self.steps)));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(InvalidSetting::new("lr", format!("must be a positive number, not {}", self.lr)));
        }
        if self.max_len < 8 {
            return Err(InvalidSetting::new("max_len", "must be at least 8"));
        }
        let m = &self.masking;
        if !(m.probability > 0.0 && m.probability < 1.0) {
            return Err(InvalidSetting::new("masking.probability", format!("must be in (0, 1), not {}", m.probability)));
        }
        if m.max_predictions == 0 {
            return Err(InvalidSetting::new("masking.max_predictions", "must be at least 1"));
        }
        if !(m.mask_share >= 0.0 && m.random_share >= 0.0 && m.mask_share + m.random_share <= 1.0) {
            return Err(InvalidSetting::new("masking.mask_share", "mask_share and random_share must be shares that add up to at most 1"));
        }
        if !(0.0..0.5).contains(&self.heldout_share) {
            return Err(InvalidSetting::new("heldout_share", format!("must be in [0, 0.5), not {}", self.heldout_share)));
        }
        self.optimizer.check().map_err(|e| e.within("optimizer"))
    }

    /// The paper's schedule: linear warmup over `warmup_steps`, then linear decay to 0.
    pub fn schedule(&self) -> ScheduleConfig {
        ScheduleConfig { kind: ScheduleKind::Linear, warmup: Warmup::Steps(self.warmup_steps as usize), ..ScheduleConfig::paper() }
    }
}

/// The sequences a run trains and evaluates on.
pub struct MlmData<'a> {
    pub train: &'a [Instance],
    pub heldout: &'a [Instance],
    pub special: SpecialTokens,
    pub vocab_size: usize,
}

/// One evaluation of the curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainRecord {
    pub step: u64,
    /// Held-out masked-LM loss (mean over masked tokens) and masked-token accuracy.
    pub heldout_loss: f64,
    pub heldout_accuracy: f64,
    /// Held-out next-sentence accuracy, with next-sentence prediction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heldout_next_sentence_accuracy: Option<f64>,
    /// Mean training loss and masked-token accuracy since the previous record.
    pub train_loss: Option<f64>,
    pub train_accuracy: Option<f64>,
    /// Learning rate of the last step before this record.
    pub lr: f64,
    pub train_tokens: u64,
    pub train_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainResult {
    pub curve: Vec<PretrainRecord>,
    pub steps: u64,
    pub train_sequences: usize,
    pub heldout_sequences: usize,
    /// Real (non-padding) tokens trained on, and per second of training.
    pub train_tokens: u64,
    pub train_seconds: f64,
    pub tokens_per_second: f64,
}

pub enum PretrainOutcome {
    Finished {
        model: Box<BertForMaskedLM>,
        result: PretrainResult,
    },
    /// Stopped on request after this many steps (a checkpoint was written).
    Stopped {
        step: u64,
    },
}
