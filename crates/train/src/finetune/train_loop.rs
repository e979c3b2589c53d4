//! The fine-tuning loop, top to bottom: epochs of batches (from [`crate::batch_order`]),
//! AdamW at the scheduled (and layer-wise scaled) learning rate, evaluation on
//! dev after each epoch without autodiff, the best epoch chosen on dev, and
//! test evaluated once, with that epoch's model, whose dev and test
//! predictions the run keeps. The whole per-epoch curve is kept (with
//! `test_every_epoch`, test errors too: the catastrophic-forgetting figure is
//! made of them), and a run whose loss turns NaN or explodes is recorded as
//! diverged, with its curve, instead of crashing.
//!
//! Everything random is a function of the seed and the position in the run
//! (data order: seed and epoch; dropout masks: seed and micro-batch), so a run
//! resumed from a checkpoint continues exactly as the uninterrupted one would.

use std::path::Path;
use std::time::Instant;

use anyhow::{Result, bail};
use bertfit_data::splits::derive_seed;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::evaluate::{error_rate, predict_probabilities, wrong_share};
use super::trainee::{Examples, TaskData, Trainee};
use super::{EpochRecord, FinetuneConfig, FinetuneResult, Finetuned, Outcome, SplitPredictions, TaskErrors};
use crate::batch_order::{Batching, epoch_plan};
use crate::control::RunControl;
use crate::progress::Progress;
use crate::resume::{LoopState, load_weights, resume, save};
use crate::{AdamW, LrSchedule, Schedule};

/// Trains `model` (on the autodiff `device`) on `tasks`, evaluating each on its
/// dev and test split after every epoch. With `control.checkpoints`, resumes
/// from the latest checkpoint there and writes new ones as it goes. `config`
/// is checked where it was read ([`FinetuneConfig::check`]), not here.
pub fn train_tasks<M: Trainee>(
    model: M,
    tasks: &[TaskData<M::Split>],
    config: &FinetuneConfig,
    device: &Device,
    control: &RunControl,
) -> Result<Outcome<M>> {
    if let Some(task) = tasks.iter().find(|t| t.train.is_empty()) {
        bail!("the training split of {} is empty", task.name);
    }
    let mut optim = AdamW::new(config.optimizer.clone());
    let (mut model, saved) = resume::<M, FinetuneState>(control, config, model, &mut optim, device)?;
    let mut state = saved.unwrap_or_else(|| FinetuneState::new(config, control));
    let mut best = best_model(&model, &state, control)?;
    let run = Loop::new(&model, tasks, config, device, control, &state);
    // The best epoch's dev probabilities, per task, when this session evaluated it.
    let mut best_dev = None;

    let mut diverged = None;
    while state.epoch < config.epochs {
        let (trained, end) = run.train_epoch(model, &mut optim, &mut state)?;
        model = trained;
        match end {
            EpochEnd::Complete => {}
            EpochEnd::Diverged(why) => {
                diverged = Some(why);
                break;
            }
            EpochEnd::Stopped => {
                run.bar.abandon();
                return Ok(Outcome::Stopped { step: state.step });
            }
        }
        let eval_model = model.valid();
        let (record, dev_probabilities) = run.evaluate(&eval_model, &state);
        let improved = state.end_epoch(record);
        if improved {
            best = Some(eval_model);
            best_dev = Some(dev_probabilities);
        }
        run.checkpoint(&state, &model, &optim, improved)?;
    }
    run.bar.finish();
    // Test once, with the model of the epoch dev selected.
    let predictions = match (&best, state.best_epoch) {
        (Some(best), Some(_)) => run.predict(best, best_dev),
        _ => Vec::new(),
    };
    let test_errors: Vec<f64> = predictions.iter().zip(tasks).map(|(p, t)| wrong_share(&p.test, t.test.labels())).collect();
    let result = state.into_result(diverged, &test_errors);
    Ok(Outcome::Finished(Box::new(Finetuned { result, model: best.unwrap_or_else(|| model.valid()), predictions })))
}

/// Where a run stands; what a checkpoint's `state.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FinetuneState {
    config: FinetuneConfig,
    /// `RunControl::identity` of the run that wrote it.
    #[serde(default)]
    identity: Option<String>,
    /// Current epoch (0-based) and batches of it already trained.
    epoch: usize,
    batches_done: usize,
    step: u64,
    micro_step: u64,
    curve: Vec<EpochRecord>,
    epoch_loss_sum: f64,
    epoch_batches: usize,
    epoch_tokens: u64,
    epoch_seconds: f64,
    train_tokens: u64,
    train_seconds: f64,
    best_epoch: Option<usize>,
}

impl LoopState for FinetuneState {
    type Config = FinetuneConfig;

    fn config(&self) -> &FinetuneConfig {
        &self.config
    }

    fn identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }

    fn step(&self) -> u64 {
        self.step
    }

    fn resuming(&self, dir: &Path) -> String {
        format!("resuming from {} (step {}, epoch {})", dir.display(), self.step, self.epoch + 1)
    }
}

impl FinetuneState {
    fn new(config: &FinetuneConfig, control: &RunControl) -> Self {
        Self {
            config: config.clone(),
            identity: control.identity.clone(),
            epoch: 0,
            batches_done: 0,
            step: 0,
            micro_step: 0,
            curve: Vec::new(),
            epoch_loss_sum: 0.0,
            epoch_batches: 0,
            epoch_tokens: 0,
            epoch_seconds: 0.0,
            train_tokens: 0,
            train_seconds: 0.0,
            best_epoch: None,
        }
    }

    /// Adds the epoch's record to the curve and starts the next epoch; whether
    /// it is the best on dev so far (the first, on ties).
    fn end_epoch(&mut self, record: EpochRecord) -> bool {
        let improved = match self.best_epoch {
            None => true,
            Some(b) => record.dev_error < self.curve[b - 1].dev_error || self.curve[b - 1].dev_error.is_nan(),
        };
        if improved {
            self.best_epoch = Some(record.epoch);
        }
        self.train_tokens += self.epoch_tokens;
        self.train_seconds += self.epoch_seconds;
        self.curve.push(record);
        self.epoch += 1;
        self.batches_done = 0;
        self.epoch_loss_sum = 0.0;
        self.epoch_batches = 0;
        self.epoch_tokens = 0;
        self.epoch_seconds = 0.0;
        improved
    }

    /// The run's result, with the test error of each task's best-epoch model
    /// (none when no epoch finished); a diverged run counts the tokens and time
    /// of its last, unfinished epoch.
    fn into_result(mut self, diverged: Option<String>, test_errors: &[f64]) -> FinetuneResult {
        if diverged.is_some() {
            self.train_tokens += self.epoch_tokens;
            self.train_seconds += self.epoch_seconds;
        }
        let best_record = self.best_epoch.map(|e| self.curve[e - 1].clone());
        FinetuneResult {
            best_epoch: self.best_epoch,
            dev_error: best_record.as_ref().map(|r| r.dev_error),
            test_error: (!test_errors.is_empty()).then(|| test_errors.iter().sum::<f64>() / test_errors.len() as f64),
            task_test_errors: if test_errors.len() > 1 { test_errors.to_vec() } else { Vec::new() },
            diverged,
            steps: self.step,
            train_tokens: self.train_tokens,
            train_seconds: self.train_seconds,
            tokens_per_second: self.train_tokens as f64 / self.train_seconds.max(1e-9),
            curve: self.curve,
        }
    }
}

/// The checkpoint folder that keeps the model of the best epoch.
fn best_dir(epoch: usize) -> String {
    format!("best-epoch-{epoch}")
}

/// The best epoch's model of a resumed run (on a plain device), from its checkpoint.
fn best_model<M: Trainee>(model: &M, state: &FinetuneState, control: &RunControl) -> Result<Option<M>> {
    let (Some(epoch), Some(checkpoints)) = (state.best_epoch, control.checkpoints) else { return Ok(None) };
    let mut best = model.valid();
    load_weights(&mut best, &checkpoints.dir().join(best_dir(epoch)))?;
    Ok(Some(best))
}

/// How an epoch's training ended.
enum EpochEnd {
    Complete,
    /// The loss turned NaN or exploded (why, where).
    Diverged(String),
    /// Stopped on request, right after a checkpoint.
    Stopped,
}

/// On a GPU, the training losses are read back every this many batches.
const READBACK_ON_GPU: usize = 16;

/// Training losses not read back yet, each with where it was computed.
#[derive(Default)]
struct Losses {
    unread: Vec<(Tensor<1>, String)>,
    /// Batches between reads: 1 on the CPU, [`READBACK_ON_GPU`] on a GPU
    /// (decided at the first loss).
    every: Option<usize>,
    /// The last loss read.
    last: f64,
}

impl Losses {
    fn push(&mut self, loss: &Tensor<1>, at: String) {
        self.every.get_or_insert_with(|| if bertfit_tch::is_cuda(loss) { READBACK_ON_GPU } else { 1 });
        self.unread.push((loss.clone().detach(), at));
    }

    fn due(&self) -> bool {
        self.unread.len() >= self.every.unwrap_or(1)
    }

    /// Reads every unread loss back (one transfer), adds them to the epoch's
    /// sum in order, and names the first that is not finite or exceeds `limit`.
    fn read(&mut self, state: &mut FinetuneState, limit: f64) -> Option<String> {
        let unread = std::mem::take(&mut self.unread);
        let values: Vec<f64> = match unread.len() {
            0 => return None,
            1 => vec![unread[0].0.clone().into_scalar::<f32>() as f64],
            _ => {
                let losses: Vec<Tensor<1>> = unread.iter().map(|(l, _)| l.clone()).collect();
                Tensor::cat(losses, 0).into_data().convert::<f32>().iter::<f32>().map(f64::from).collect()
            }
        };
        for (value, (_, at)) in values.into_iter().zip(&unread) {
            if !value.is_finite() || value > limit {
                return Some(format!("training loss {value} at {at}"));
            }
            state.epoch_loss_sum += value;
            self.last = value;
        }
        None
    }
}

/// What stays fixed over the run.
struct Loop<'a, 'd, M: Trainee> {
    tasks: &'a [TaskData<'d, M::Split>],
    config: &'a FinetuneConfig,
    device: &'a Device,
    eval_device: Device,
    control: &'a RunControl<'a>,
    schedule: LrSchedule,
    num_layers: usize,
    /// Tokens of each training example, per task.
    lengths: Vec<Vec<usize>>,
    batching: Batching,
    bar: Progress,
    /// Start of this session, and the tokens trained before it (tokens/s of the session).
    session_start: Instant,
    session_tokens_start: u64,
}

impl<'a, 'd, M: Trainee> Loop<'a, 'd, M> {
    fn new(
        model: &M,
        tasks: &'a [TaskData<'d, M::Split>],
        config: &'a FinetuneConfig,
        device: &'a Device,
        control: &'a RunControl<'a>,
        state: &FinetuneState,
    ) -> Self {
        let lengths: Vec<Vec<usize>> = tasks.iter().map(|t| t.train.lengths()).collect();
        let batching =
            Batching { batch_size: config.batch_size, bucketed: config.bucketed, sampling: config.task_sampling, seed: config.seed };
        let steps_per_epoch = epoch_plan(&lengths, &batching, 0).len().div_ceil(config.grad_accum) as u64;
        let total_steps = steps_per_epoch * config.epochs as u64;
        let bar = Progress::new(total_steps, "steps", &control.progress).log_every(steps_per_epoch / 10);
        bar.set_position(state.step);
        Self {
            tasks,
            config,
            device,
            eval_device: device.clone().inner(),
            control,
            schedule: config.schedule.build(config.lr, total_steps as usize),
            num_layers: model.num_layers(),
            lengths,
            batching,
            bar,
            session_start: Instant::now(),
            session_tokens_start: state.train_tokens + state.epoch_tokens,
        }
    }

    /// Trains the rest of the current epoch: each batch's loss and gradients,
    /// accumulated over `grad_accum` micro-batches, then an optimizer step.
    ///
    /// The losses are read back (for the divergence check, the epoch's mean
    /// and the progress line) after every batch on the CPU, where a read costs
    /// nothing; on a GPU every [`READBACK_ON_GPU`] batches and before each
    /// checkpoint, so that the host queues the next steps while the device
    /// works instead of waiting for each loss. A divergence is still named at
    /// its own step; the run then ends a few steps past it.
    fn train_epoch(&self, mut model: M, optim: &mut AdamW, state: &mut FinetuneState) -> Result<(M, EpochEnd)> {
        let config = self.config;
        let epoch = state.epoch;
        self.bar.set_prefix(format!("epoch {}/{}", epoch + 1, config.epochs));
        let plan = epoch_plan(&self.lengths, &self.batching, epoch);
        let mut accumulator = GradientsAccumulator::new();
        let mut pending = 0;
        let mut unread = Losses::default();
        let mut timer = Instant::now();
        for (b, (task, idx)) in plan.iter().enumerate().skip(state.batches_done) {
            // Dropout masks depend on the seed and the position in the run only.
            self.device.seed(derive_seed(config.seed, &format!("dropout/{}", state.micro_step)));
            let loss = model.loss(*task, self.tasks[*task].train, idx, self.device);
            unread.push(&loss, format!("step {} (epoch {}, batch {})", state.step + 1, epoch + 1, b + 1));
            if unread.due()
                && let Some(why) = unread.read(state, config.divergence_loss)
            {
                return Ok((model, EpochEnd::Diverged(why)));
            }
            accumulator.accumulate(&model, GradientsParams::from_grads(self.group_mean(loss, b, plan.len()).backward(), &model));
            pending += 1;
            state.micro_step += 1;
            state.batches_done = b + 1;
            state.epoch_batches += 1;
            state.epoch_tokens += idx.iter().map(|&i| self.lengths[*task][i] as u64).sum::<u64>();
            if pending < config.grad_accum && b + 1 < plan.len() {
                continue;
            }
            let lr = self.schedule.lr(state.step as usize);
            let (updated, _grad_norm) = optim.step(model, accumulator.grads(), lr, &|path| config.layerwise.factor(path, self.num_layers));
            model = updated;
            pending = 0;
            state.step += 1;
            state.epoch_seconds += timer.elapsed().as_secs_f64();
            timer = Instant::now();
            let stop = self.control.stops_at(state.step);
            let checkpoint = stop || config.checkpoint_every.is_some_and(|n| state.step.is_multiple_of(n));
            if (checkpoint || b + 1 == plan.len())
                && let Some(why) = unread.read(state, config.divergence_loss)
            {
                return Ok((model, EpochEnd::Diverged(why)));
            }
            self.report_step(state, unread.last, lr);
            if checkpoint {
                self.checkpoint(state, &model, optim, false)?;
            }
            if stop {
                return Ok((model, EpochEnd::Stopped));
            }
        }
        Ok((model, EpochEnd::Complete))
    }

    /// The loss of batch `b` as its share of the optimizer step's mean over its
    /// micro-batches; the last group of an epoch may have fewer than `grad_accum`.
    fn group_mean(&self, loss: Tensor<1>, b: usize, batches: usize) -> Tensor<1> {
        let accum = self.config.grad_accum;
        let group_len = accum.min(batches - b / accum * accum);
        if group_len > 1 { loss.div_scalar(group_len as f64) } else { loss }
    }

    fn report_step(&self, state: &FinetuneState, loss: f64, lr: f64) {
        let session_tokens = state.train_tokens + state.epoch_tokens - self.session_tokens_start;
        let rate = session_tokens as f64 / self.session_start.elapsed().as_secs_f64().max(1e-9);
        self.bar.update(state.step, format!("loss {loss:.4} lr {lr:.2e} {rate:.0} tok/s"));
    }

    /// The end of an epoch: dev error of every task (and test error with
    /// `test_every_epoch`), without autodiff and dropout; and the dev
    /// probabilities, per task.
    fn evaluate(&self, eval_model: &M, state: &FinetuneState) -> (EpochRecord, Vec<Vec<Vec<f32>>>) {
        let eval_start = Instant::now();
        let batch = self.config.eval_batch_size;
        let dev: Vec<Vec<Vec<f32>>> = self
            .tasks
            .iter()
            .enumerate()
            .map(|(t, data)| predict_probabilities(eval_model, t, data.dev, batch, &self.eval_device))
            .collect();
        let errors: Vec<TaskErrors> = self
            .tasks
            .iter()
            .enumerate()
            .map(|(t, data)| TaskErrors {
                task: data.name.clone(),
                dev_error: wrong_share(&dev[t], data.dev.labels()),
                test_error: self.config.test_every_epoch.then(|| error_rate(eval_model, t, data.test, batch, &self.eval_device)),
            })
            .collect();
        let mean = |f: fn(&TaskErrors) -> f64| errors.iter().map(f).sum::<f64>() / errors.len() as f64;
        let test_error = self.config.test_every_epoch.then(|| mean(|e| e.test_error.unwrap_or(f64::NAN)));
        let record = EpochRecord {
            epoch: state.epoch + 1,
            steps: state.step,
            train_loss: state.epoch_loss_sum / state.epoch_batches.max(1) as f64,
            lr: self.schedule.lr(state.step.saturating_sub(1) as usize),
            dev_error: mean(|e| e.dev_error),
            test_error,
            tasks: if errors.len() > 1 { errors } else { Vec::new() },
            train_tokens: state.epoch_tokens,
            train_seconds: state.epoch_seconds,
            eval_seconds: eval_start.elapsed().as_secs_f64(),
        };
        let test = record.test_error.map(|e| format!(", test error {:.2}%", 100.0 * e)).unwrap_or_default();
        self.bar.println(format!(
            "epoch {}: train loss {:.4}, dev error {:.2}%{test} ({:.0} s training, {:.0} s evaluation)",
            record.epoch,
            record.train_loss,
            100.0 * record.dev_error,
            record.train_seconds,
            record.eval_seconds
        ));
        (record, dev)
    }

    /// Dev and test class probabilities of every task, from the best epoch's
    /// model (its dev ones as that epoch's evaluation found them, when this
    /// session ran it; a resumed run evaluates them again, to the same values).
    fn predict(&self, best: &M, best_dev: Option<Vec<Vec<Vec<f32>>>>) -> Vec<SplitPredictions> {
        let batch = self.config.eval_batch_size;
        let start = Instant::now();
        let mut dev = best_dev.map(|d| d.into_iter());
        let predictions: Vec<SplitPredictions> = self
            .tasks
            .iter()
            .enumerate()
            .map(|(t, data)| SplitPredictions {
                dev: match dev.as_mut().and_then(|d| d.next()) {
                    Some(known) => known,
                    None => predict_probabilities(best, t, data.dev, batch, &self.eval_device),
                },
                test: predict_probabilities(best, t, data.test, batch, &self.eval_device),
            })
            .collect();
        self.bar.println(format!("test predictions of the best epoch's model ({:.0} s)", start.elapsed().as_secs_f64()));
        predictions
    }

    /// A checkpoint of where the run stands. `new_best`: the model is the new
    /// best epoch's, which the checkpoint keeps as `best-epoch-K/` too (a hard
    /// link to the same file, not a second write).
    fn checkpoint(&self, state: &FinetuneState, model: &M, optim: &AdamW, new_best: bool) -> Result<()> {
        let keep = state.best_epoch.map(best_dir);
        let checkpoints = self.control.checkpoints;
        save(self.control, state, model, optim, &keep.iter().map(String::as_str).collect::<Vec<_>>(), |dir| {
            if let (true, Some(keep), Some(checkpoints)) = (new_best, &keep, checkpoints) {
                let best = checkpoints.dir().join(keep);
                std::fs::create_dir_all(&best)?;
                let (from, to) = (dir.join("model.safetensors"), best.join("model.safetensors"));
                let _ = std::fs::remove_file(&to);
                if std::fs::hard_link(&from, &to).is_err() {
                    std::fs::copy(&from, &to)?;
                }
            }
            Ok(())
        })
    }
}
