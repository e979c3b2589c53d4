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

use std::path::Path;
use std::time::Instant;

use anyhow::{Result, bail};
use bertfit_data::mlm::Instance;
use bertfit_data::splits::{SplitMix64, derive_seed};
use bertfit_model::BertForMaskedLM;
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::batch::{evaluate, losses, make_batch, mask_all, micro_batch};
use super::{MlmData, PretrainConfig, PretrainOutcome, PretrainRecord, PretrainResult};
use crate::control::RunControl;
use crate::progress::Progress;
use crate::resume::{LoopState, resume, save};
use crate::{AdamW, LrSchedule, Precision, Schedule};

/// Trains `model` (on the autodiff `device`) on `data`. With
/// `control.checkpoints`, resumes from the latest checkpoint there and writes
/// new ones every `checkpoint_every` steps; `snapshot` receives the model of
/// each checkpoint step when `keep_checkpoints` is set. `config` is checked
/// where it was read ([`PretrainConfig::check`]), not here.
pub fn pretrain(
    model: BertForMaskedLM,
    data: &MlmData,
    config: &PretrainConfig,
    device: &Device,
    control: &RunControl,
    snapshot: &dyn Fn(u64, &BertForMaskedLM) -> Result<()>,
) -> Result<PretrainOutcome> {
    if data.train.is_empty() {
        bail!("the pre-training corpus has no training sequences");
    }
    if data.heldout.is_empty() {
        bail!("the pre-training corpus has no held-out sequences (pretrain.heldout_share is 0 or the corpus is one document)");
    }
    let mut optim = AdamW::new(config.optimizer.clone());
    let (mut model, saved) = resume::<_, PretrainState>(control, config, model, &mut optim, device)?;
    // The encoder blocks' arithmetic; f32 master weights, moments and MLM head either way.
    model.bert.set_bf16(config.precision == Precision::Bf16);
    let mut state = saved.unwrap_or_else(|| PretrainState::new(config, control));
    let mut run = Loop::new(data, config, device, control, &state);
    if state.curve.is_empty() {
        run.record(&mut state, &model, 0.0);
        // The session's tokens/s counts training time, not this evaluation.
        run.session_start = Instant::now();
    }

    let mut order = (usize::MAX, Vec::new());
    while state.step < config.steps {
        let (trained, lr) = run.step(model, &mut optim, &mut state, &mut order)?;
        model = trained;
        let at_checkpoint = state.step.is_multiple_of(config.checkpoint_every) || state.step == config.steps;
        if at_checkpoint {
            run.record(&mut state, &model, lr);
            if config.keep_checkpoints {
                snapshot(state.step, &model)?;
            }
        }
        let stop = control.stops_at(state.step);
        if at_checkpoint || stop {
            save(control, &state, &model, &optim, &[], |_| Ok(()))?;
        }
        if stop {
            run.bar.abandon();
            return Ok(PretrainOutcome::Stopped { step: state.step });
        }
    }
    run.bar.finish();
    Ok(PretrainOutcome::Finished { model: Box::new(model.valid()), result: state.into_result(data, config) })
}

/// Where a run stands; what a checkpoint's `state.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PretrainState {
    config: PretrainConfig,
    identity: Option<String>,
    step: u64,
    curve: Vec<PretrainRecord>,
    /// Training loss, correct and predicted masked tokens since the last record.
    loss_sum: f64,
    correct: u64,
    predicted: u64,
    train_tokens: u64,
    train_seconds: f64,
}

impl LoopState for PretrainState {
    type Config = PretrainConfig;

    fn config(&self) -> &PretrainConfig {
        &self.config
    }

    fn identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }

    fn step(&self) -> u64 {
        self.step
    }

    fn resuming(&self, dir: &Path) -> String {
        format!("resuming pre-training from {} (step {})", dir.display(), self.step)
    }
}

impl PretrainState {
    fn new(config: &PretrainConfig, control: &RunControl) -> Self {
        Self {
            config: config.clone(),
            identity: control.identity.clone(),
            step: 0,
            curve: Vec::new(),
            loss_sum: 0.0,
            correct: 0,
            predicted: 0,
            train_tokens: 0,
            train_seconds: 0.0,
        }
    }

    fn into_result(self, data: &MlmData, config: &PretrainConfig) -> PretrainResult {
        PretrainResult {
            steps: self.step,
            train_sequences: data.train.len(),
            heldout_sequences: data.heldout.len().min(config.heldout_sequences),
            train_tokens: self.train_tokens,
            train_seconds: self.train_seconds,
            tokens_per_second: self.train_tokens as f64 / self.train_seconds.max(1e-9),
            curve: self.curve,
        }
    }
}

/// What stays fixed over the run.
struct Loop<'a> {
    data: &'a MlmData<'a>,
    config: &'a PretrainConfig,
    device: &'a Device,
    eval_device: Device,
    schedule: LrSchedule,
    bar: Progress,
    /// Start of this session, and the tokens trained before it (tokens/s of the session).
    session_start: Instant,
    session_tokens: u64,
}

impl<'a> Loop<'a> {
    fn new(data: &'a MlmData<'a>, config: &'a PretrainConfig, device: &'a Device, control: &RunControl, state: &PretrainState) -> Self {
        let bar = Progress::new(config.steps, "steps", &control.progress).log_every(config.checkpoint_every.min(config.steps / 20).max(1));
        bar.set_prefix("pre-training");
        bar.set_position(state.step);
        Self {
            data,
            config,
            device,
            eval_device: device.clone().inner(),
            schedule: config.schedule().build(config.lr, config.steps as usize),
            bar,
            session_start: Instant::now(),
            session_tokens: state.train_tokens,
        }
    }

    /// One optimizer step: `grad_accum` micro-batches, each masked afresh, then
    /// AdamW. Returns the model and the step's learning rate.
    fn step(
        &self,
        model: BertForMaskedLM,
        optim: &mut AdamW,
        state: &mut PretrainState,
        order: &mut (usize, Vec<usize>),
    ) -> Result<(BertForMaskedLM, f64)> {
        let (config, data) = (self.config, self.data);
        let timer = Instant::now();
        let mut accumulator = GradientsAccumulator::new();
        let (mut step_loss, mut step_correct, mut step_predicted) = (0.0, 0, 0);
        for micro in 0..config.grad_accum as u64 {
            let g = state.step * config.grad_accum as u64 + micro;
            let idx = micro_batch(data.train.len(), config.batch_size, config.seed, g, order);
            let instances: Vec<&Instance> = idx.iter().map(|&i| &data.train[i]).collect();
            let masked = mask_all(&instances, data, config, &mut SplitMix64::new(derive_seed(config.seed, &format!("mlm/mask/{g}"))));
            let batch = make_batch(&instances, &masked, data.special.pad, self.device);
            state.train_tokens += batch.tokens;
            self.device.seed(derive_seed(config.seed, &format!("mlm/dropout/{g}")));
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
        let lr = self.schedule.lr(state.step as usize);
        let (model, _) = optim.step(model, accumulator.grads(), lr, &|_| 1.0);
        state.step += 1;
        state.loss_sum += step_loss;
        state.correct += step_correct;
        state.predicted += step_predicted;
        state.train_seconds += timer.elapsed().as_secs_f64();
        let rate = (state.train_tokens - self.session_tokens) as f64 / self.session_start.elapsed().as_secs_f64().max(1e-9);
        let accuracy = 100.0 * step_correct as f64 / step_predicted.max(1) as f64;
        let loss = step_loss / config.grad_accum as f64;
        self.bar.update(state.step, format!("loss {loss:.4} acc {accuracy:.1}% lr {lr:.2e} {rate:.0} tok/s"));
        Ok((model, lr))
    }

    /// Evaluates on the held-out sequences and adds a record to the curve.
    fn record(&self, state: &mut PretrainState, model: &BertForMaskedLM, lr: f64) {
        let (heldout_loss, heldout_accuracy, nsp) = evaluate(&model.valid(), self.data, self.config, &self.eval_device);
        let steps_since = state.step - state.curve.last().map_or(0, |r| r.step);
        state.curve.push(PretrainRecord {
            step: state.step,
            heldout_loss,
            heldout_accuracy,
            heldout_next_sentence_accuracy: nsp,
            train_loss: (steps_since > 0).then(|| state.loss_sum / (steps_since * self.config.grad_accum as u64) as f64),
            train_accuracy: (state.predicted > 0).then(|| state.correct as f64 / state.predicted as f64),
            lr,
            train_tokens: state.train_tokens,
            train_seconds: state.train_seconds,
        });
        state.loss_sum = 0.0;
        state.correct = 0;
        state.predicted = 0;
        let r = state.curve.last().expect("just recorded");
        let train = r.train_loss.map(|l| format!(" (train loss {l:.4})")).unwrap_or_default();
        self.bar.println(format!(
            "step {}: held-out MLM loss {:.4}, masked-token accuracy {:.2}%{train}",
            r.step,
            r.heldout_loss,
            100.0 * r.heldout_accuracy
        ));
    }
}
