//! Further pre-training with masked LM, top to bottom: steps over shuffled
//! sequences of a corpus, each batch masked afresh (BERT's 15%, at most 20 a
//! sequence, 80/10/10), AdamW at a linear warmup-then-decay rate, optionally
//! next-sentence prediction beside it. A held-out evaluation (masked-LM loss
//! and masked-token accuracy on documents never trained on, masked the same
//! way every time) runs at step 0 and at each checkpoint.
//!
//! Everything random is a function of the seed and the position in the run
//! (sequence order: seed and epoch; masks: seed and micro-batch; dropout: seed
//! and micro-batch), so a run resumed from a checkpoint continues exactly as
//! the uninterrupted one would.

use std::time::Instant;

use anyhow::{Result, bail};
use bertfit_data::mlm::{IGNORE, Instance, MaskingConfig, mask};
use bertfit_data::splits::{SplitMix64, derive_seed};
use bertfit_data::tokenize::SpecialTokens;
use bertfit_model::{BertForMaskedLM, BertInput, EncoderPrefix, load_hf_weights, save_hf_weights};
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoints, load_optimizer, read_json, save_optimizer, write_json};
use crate::finetune_loop::RunControl;
use crate::progress::Progress;
use crate::setting::InvalidSetting;
use crate::{AdamW, OptimizerConfig, Schedule, ScheduleConfig, ScheduleKind, Warmup, cross_entropy};

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

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PretrainState {
    config: PretrainConfig,
    identity: Option<String>,
    step: u64,
    curve: Vec<PretrainRecord>,
    loss_sum: f64,
    correct: u64,
    predicted: u64,
    train_tokens: u64,
    train_seconds: f64,
}

/// The sequences of global micro-batch `g`: consecutive slices of the epochs'
/// shuffled orders (epoch e's order: the seed and e).
fn micro_batch(n: usize, batch: usize, seed: u64, g: u64, order: &mut (usize, Vec<usize>)) -> Vec<usize> {
    (0..batch as u64)
        .map(|k| {
            let position = g * batch as u64 + k;
            let epoch = (position / n as u64) as usize;
            if order.0 != epoch || order.1.is_empty() {
                let mut indices: Vec<usize> = (0..n).collect();
                SplitMix64::new(derive_seed(seed, &format!("mlm/epoch/{epoch}"))).shuffle(&mut indices);
                *order = (epoch, indices);
            }
            order.1[(position % n as u64) as usize]
        })
        .collect()
}

/// A masked batch as model inputs: input, flat masked positions, their labels,
/// is-next labels, and the real tokens in it.
struct Batch {
    input: BertInput,
    positions: Tensor<1, Int>,
    labels: Tensor<1, Int>,
    is_next: Option<Tensor<1, Int>>,
    tokens: u64,
}

fn make_batch(instances: &[&Instance], masked: &[(Vec<u32>, Vec<i64>)], pad: u32, device: &Device) -> Batch {
    let batch = instances.len();
    let len = instances.iter().map(|i| i.ids.len()).max().unwrap_or(1);
    let mut ids = vec![pad as i64; batch * len];
    let mut attention = vec![0i64; batch * len];
    let mut types = vec![0i64; batch * len];
    let (mut positions, mut labels) = (Vec::new(), Vec::new());
    for (row, (instance, (input, label))) in instances.iter().zip(masked).enumerate() {
        for (col, (&id, &l)) in input.iter().zip(label).enumerate() {
            ids[row * len + col] = id as i64;
            attention[row * len + col] = 1;
            types[row * len + col] = instance.token_types[col] as i64;
            if l != IGNORE {
                positions.push((row * len + col) as i64);
                labels.push(l);
            }
        }
    }
    let tokens = attention.iter().filter(|&&m| m == 1).count() as u64;
    let mut input = BertInput::from_ids(ids, attention, [batch, len], device);
    input.token_type_ids = Some(Tensor::from_data(TensorData::new(types, [batch, len]), device));
    let n = positions.len();
    let is_next = instances[0].is_next.map(|_| {
        let v: Vec<i64> = instances.iter().map(|i| i64::from(i.is_next == Some(true))).collect();
        Tensor::from_data(TensorData::new(v, [batch]), device)
    });
    Batch {
        input,
        positions: Tensor::from_data(TensorData::new(positions, [n]), device),
        labels: Tensor::from_data(TensorData::new(labels, [n]), device),
        is_next,
        tokens,
    }
}

/// Masked-LM loss (plus next-sentence loss), and (correct, predicted) masked tokens.
fn losses(model: &BertForMaskedLM, batch: Batch) -> (Tensor<1>, u64, u64, Option<(u64, u64)>) {
    let out = model.forward(batch.input, batch.positions);
    let predicted = batch.labels.dims()[0] as u64;
    let correct =
        out.mlm_logits.clone().argmax(1).reshape([predicted as usize]).equal(batch.labels.clone()).int().sum().into_scalar::<i64>() as u64;
    let mut loss = cross_entropy(out.mlm_logits, batch.labels);
    let mut nsp = None;
    if let (Some(logits), Some(is_next)) = (out.nsp_logits, batch.is_next) {
        let n = is_next.dims()[0];
        let right = logits.clone().argmax(1).reshape([n]).equal(is_next.clone()).int().sum().into_scalar::<i64>() as u64;
        nsp = Some((right, n as u64));
        loss = loss + cross_entropy(logits, is_next);
    }
    (loss, correct, predicted, nsp)
}

/// Held-out masked-LM loss, accuracy and next-sentence accuracy of `model`
/// (plain device) on sequences masked once with a fixed seed.
fn evaluate(model: &BertForMaskedLM, data: &MlmData, config: &PretrainConfig, device: &Device) -> (f64, f64, Option<f64>) {
    let instances: Vec<&Instance> = data.heldout.iter().take(config.heldout_sequences).collect();
    let mut rng = SplitMix64::new(derive_seed(config.seed, "mlm/heldout-masks"));
    let masked: Vec<(Vec<u32>, Vec<i64>)> = instances
        .iter()
        .map(|i| {
            let m = mask(&i.ids, &config.masking, &data.special, data.vocab_size, &mut rng);
            (m.input_ids, m.labels)
        })
        .collect();
    let (mut loss_sum, mut correct, mut predicted, mut nsp_right, mut nsp_total) = (0.0, 0u64, 0u64, 0u64, 0u64);
    for (chunk, masks) in instances.chunks(config.eval_batch_size).zip(masked.chunks(config.eval_batch_size)) {
        let batch = make_batch(chunk, masks, data.special.pad, device);
        let (loss, c, p, nsp) = losses(model, batch);
        loss_sum += loss.into_scalar::<f32>() as f64 * p as f64;
        correct += c;
        predicted += p;
        if let Some((r, t)) = nsp {
            nsp_right += r;
            nsp_total += t;
        }
    }
    let p = predicted.max(1) as f64;
    (loss_sum / p, correct as f64 / p, (nsp_total > 0).then(|| nsp_right as f64 / nsp_total as f64))
}

/// Trains `model` (on the autodiff `device`) on `data`. With
/// `control.checkpoints`, resumes from the latest checkpoint there and writes
/// new ones every `checkpoint_every` steps; `snapshot` receives the model of
/// each checkpoint step when `keep_checkpoints` is set.
pub fn pretrain(
    mut model: BertForMaskedLM,
    data: &MlmData,
    config: &PretrainConfig,
    device: &Device,
    control: &RunControl,
    snapshot: &dyn Fn(u64, &BertForMaskedLM) -> Result<()>,
) -> Result<PretrainOutcome> {
    config.check().map_err(|e| e.within("pretrain"))?;
    if data.train.is_empty() {
        bail!("the pre-training corpus has no training sequences");
    }
    if data.heldout.is_empty() {
        bail!("the pre-training corpus has no held-out sequences (pretrain.heldout_share is 0 or the corpus is one document)");
    }
    let eval_device = device.clone().inner();
    let schedule = config.schedule().build(config.lr, config.steps as usize);
    let mut optim = AdamW::new(config.optimizer.clone());
    let mut state = PretrainState {
        config: config.clone(),
        identity: control.identity.clone(),
        step: 0,
        curve: Vec::new(),
        loss_sum: 0.0,
        correct: 0,
        predicted: 0,
        train_tokens: 0,
        train_seconds: 0.0,
    };
    if let Some(latest) = control.checkpoints.map(Checkpoints::latest).transpose()?.flatten() {
        let saved: PretrainState = read_json(&latest.join("state.json"))?;
        if saved.config != *config || saved.identity != control.identity {
            bail!("the checkpoint in {} was made by a run with other settings; remove it to start over", latest.display());
        }
        load_hf_weights(&mut model, &latest, EncoderPrefix::Bert, &[])?;
        model = model.train();
        optim.load_state(&model, load_optimizer(&latest.join("optimizer.safetensors"))?, device)?;
        if !control.quiet() {
            eprintln!("resuming pre-training from {} (step {})", latest.display(), saved.step);
        }
        state = saved;
    }
    let save = |state: &PretrainState, model: &BertForMaskedLM, optim: &AdamW| -> Result<()> {
        let Some(checkpoints) = control.checkpoints else { return Ok(()) };
        checkpoints.publish(&format!("step-{}", state.step), &[], |dir| {
            save_hf_weights(model, dir)?;
            save_optimizer(&optim.state(model), &dir.join("optimizer.safetensors"))?;
            write_json(&dir.join("state.json"), state)
        })?;
        Ok(())
    };
    let record = |state: &mut PretrainState, model: &BertForMaskedLM, lr: f64| {
        let (heldout_loss, heldout_accuracy, nsp) = evaluate(&model.valid(), data, config, &eval_device);
        let steps_since = state.step - state.curve.last().map_or(0, |r| r.step);
        state.curve.push(PretrainRecord {
            step: state.step,
            heldout_loss,
            heldout_accuracy,
            heldout_next_sentence_accuracy: nsp,
            train_loss: (steps_since > 0).then(|| state.loss_sum / (steps_since * config.grad_accum as u64) as f64),
            train_accuracy: (state.predicted > 0).then(|| state.correct as f64 / state.predicted as f64),
            lr,
            train_tokens: state.train_tokens,
            train_seconds: state.train_seconds,
        });
        state.loss_sum = 0.0;
        state.correct = 0;
        state.predicted = 0;
    };

    let bar = Progress::new(config.steps, "steps", &control.progress).log_every(config.checkpoint_every.min(config.steps / 20).max(1));
    bar.set_prefix("pre-training");
    bar.set_position(state.step);
    if state.curve.is_empty() {
        record(&mut state, &model, 0.0);
        let r = &state.curve[0];
        bar.println(format!("step 0: held-out MLM loss {:.4}, masked-token accuracy {:.2}%", r.heldout_loss, 100.0 * r.heldout_accuracy));
    }
    let session_start = Instant::now();
    let session_tokens = state.train_tokens;
    let mut order = (usize::MAX, Vec::new());
    while state.step < config.steps {
        let timer = Instant::now();
        let mut accumulator = GradientsAccumulator::new();
        let (mut step_loss, mut step_correct, mut step_predicted) = (0.0, 0, 0);
        for micro in 0..config.grad_accum as u64 {
            let g = state.step * config.grad_accum as u64 + micro;
            let idx = micro_batch(data.train.len(), config.batch_size, config.seed, g, &mut order);
            let instances: Vec<&Instance> = idx.iter().map(|&i| &data.train[i]).collect();
            let mut rng = SplitMix64::new(derive_seed(config.seed, &format!("mlm/mask/{g}")));
            let masked: Vec<(Vec<u32>, Vec<i64>)> = instances
                .iter()
                .map(|i| {
                    let m = mask(&i.ids, &config.masking, &data.special, data.vocab_size, &mut rng);
                    (m.input_ids, m.labels)
                })
                .collect();
            let batch = make_batch(&instances, &masked, data.special.pad, device);
            state.train_tokens += batch.tokens;
            device.seed(derive_seed(config.seed, &format!("mlm/dropout/{g}")));
            let (loss, correct, predicted, _) = losses(&model, batch);
            let value = loss.clone().into_scalar::<f32>() as f64;
            if !value.is_finite() {
                bail!("pre-training loss is {value} at step {}", state.step + 1);
            }
            step_loss += value;
            step_correct += correct;
            step_predicted += predicted;
            let loss = if config.grad_accum > 1 { loss.div_scalar(config.grad_accum as f64) } else { loss };
            accumulator.accumulate(&model, GradientsParams::from_grads(loss.backward(), &model));
        }
        let lr = schedule.lr(state.step as usize);
        let (updated, _) = optim.step(model, accumulator.grads(), lr, &|_| 1.0);
        model = updated;
        state.step += 1;
        state.loss_sum += step_loss;
        state.correct += step_correct;
        state.predicted += step_predicted;
        state.train_seconds += timer.elapsed().as_secs_f64();
        let rate = (state.train_tokens - session_tokens) as f64 / session_start.elapsed().as_secs_f64().max(1e-9);
        let accuracy = 100.0 * step_correct as f64 / step_predicted.max(1) as f64;
        bar.update(state.step, format!("loss {:.4} acc {accuracy:.1}% lr {lr:.2e} {rate:.0} tok/s", step_loss / config.grad_accum as f64));
        let at_checkpoint = state.step.is_multiple_of(config.checkpoint_every) || state.step == config.steps;
        if at_checkpoint {
            record(&mut state, &model, lr);
            let r = state.curve.last().expect("just recorded");
            bar.println(format!(
                "step {}: held-out MLM loss {:.4}, masked-token accuracy {:.2}% (train loss {:.4})",
                r.step,
                r.heldout_loss,
                100.0 * r.heldout_accuracy,
                r.train_loss.unwrap_or(f64::NAN)
            ));
            if config.keep_checkpoints {
                snapshot(state.step, &model)?;
            }
        }
        let stop = control.stop_after_steps == Some(state.step);
        if at_checkpoint || stop {
            save(&state, &model, &optim)?;
        }
        if stop {
            bar.abandon();
            return Ok(PretrainOutcome::Stopped { step: state.step });
        }
    }
    bar.finish();
    let result = PretrainResult {
        steps: state.step,
        train_sequences: data.train.len(),
        heldout_sequences: data.heldout.len().min(config.heldout_sequences),
        train_tokens: state.train_tokens,
        train_seconds: state.train_seconds,
        tokens_per_second: state.train_tokens as f64 / state.train_seconds.max(1e-9),
        curve: state.curve,
    };
    Ok(PretrainOutcome::Finished { model: Box::new(model.valid()), result })
}
