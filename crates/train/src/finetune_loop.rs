//! Fine-tuning, top to bottom: epochs of shuffled batches, AdamW at the
//! scheduled (and layer-wise scaled) learning rate, evaluation on dev and test
//! after each epoch without autodiff, the best epoch chosen on dev. The whole
//! per-epoch curve is kept (the catastrophic-forgetting figure is made of it),
//! and a run whose loss turns NaN or explodes is recorded as diverged, with its
//! curve, instead of crashing.
//!
//! Everything random is a function of the seed and the position in the run
//! (data order: seed and epoch; dropout masks: seed and micro-batch), so a run
//! resumed from a checkpoint continues exactly as the uninterrupted one would.
//!
//! One loop trains every model through [`Trainee`]: the BERT classifier (one
//! task), the multi-task model (tasks share the encoder; batches are drawn
//! across tasks) and BERT-Feat's classifier on cached features.

use std::path::Path;
use std::time::Instant;

use anyhow::{Result, bail};
use bertfit_data::batching::{ChunkBatch, epoch_batches};
use bertfit_data::splits::{SplitMix64, derive_seed};
use bertfit_model::{BertForMultiTask, BertForSequenceClassification, BertInput, EncoderPrefix, load_hf_weights, save_hf_weights};
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoints, load_optimizer, read_json, save_optimizer, write_json};
use crate::progress::{Progress, ProgressTarget};
use crate::setting::InvalidSetting;
use crate::{AdamW, LayerwiseDecay, OptimizerConfig, Schedule, ScheduleConfig, cross_entropy};

/// A split the loop can batch: examples with a size (tokens) and a label.
pub trait Examples {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Tokens of each example (batching by length, tokens/s).
    fn lengths(&self) -> Vec<usize>;
    fn labels(&self) -> &[usize];
}

/// A model the loop trains: a loss on a batch of one task's examples, and
/// class probabilities for evaluation.
pub trait Trainee: Module {
    type Split: Examples;
    /// Encoder blocks, for the layer-wise learning rate (0 when there is no encoder).
    fn num_layers(&self) -> usize;
    /// Mean cross-entropy (plus any regulariser) over the examples `idx` of `split`.
    fn loss(&self, task: usize, split: &Self::Split, idx: &[usize], device: &Device) -> Tensor<1>;
    /// Class probabilities, [idx.len(), classes].
    fn probabilities(&self, task: usize, split: &Self::Split, idx: &[usize], device: &Device) -> Tensor<2>;
}

/// Token ids of one split, ready for the model: each document is one sequence
/// (`[CLS] ... [SEP]`), or several chunks for the hierarchical methods.
#[derive(Debug, Clone, Default)]
pub struct EncodedSplit {
    pub docs: Vec<Vec<Vec<u32>>>,
    pub labels: Vec<usize>,
    /// The tokenizer's [PAD] id.
    pub pad: u32,
}

impl Examples for EncodedSplit {
    fn len(&self) -> usize {
        self.docs.len()
    }

    fn lengths(&self) -> Vec<usize> {
        self.docs.iter().map(|d| d.iter().map(Vec::len).sum()).collect()
    }

    fn labels(&self) -> &[usize] {
        &self.labels
    }
}

impl EncodedSplit {
    /// The documents `idx` as one model input, with their chunk counts.
    pub fn input(&self, idx: &[usize], device: &Device) -> (BertInput, Vec<usize>) {
        let docs: Vec<&[Vec<u32>]> = idx.iter().map(|&i| self.docs[i].as_slice()).collect();
        let batch = ChunkBatch::new(&docs, self.pad);
        let chunks = batch.chunks;
        let input = BertInput::from_ids(chunks.input_ids, chunks.attention_mask, [chunks.batch, chunks.len], device);
        (input, batch.chunks_per_doc)
    }
}

/// Labels of the examples `idx`, as a tensor.
pub fn label_tensor<S: Examples>(split: &S, idx: &[usize], device: &Device) -> Tensor<1, Int> {
    let labels: Vec<i64> = idx.iter().map(|&i| split.labels()[i] as i64).collect();
    Tensor::from_data(TensorData::new(labels, [idx.len()]), device)
}

impl Trainee for BertForSequenceClassification {
    type Split = EncodedSplit;

    fn num_layers(&self) -> usize {
        self.bert.num_layers()
    }

    fn loss(&self, _task: usize, split: &EncodedSplit, idx: &[usize], device: &Device) -> Tensor<1> {
        let (input, chunks) = split.input(idx, device);
        cross_entropy(self.forward_documents(input, &chunks), label_tensor(split, idx, device))
    }

    fn probabilities(&self, _task: usize, split: &EncodedSplit, idx: &[usize], device: &Device) -> Tensor<2> {
        let (input, chunks) = split.input(idx, device);
        softmax(self.forward_documents(input, &chunks), 1)
    }
}

impl Trainee for BertForMultiTask {
    type Split = EncodedSplit;

    fn num_layers(&self) -> usize {
        self.bert.num_layers()
    }

    fn loss(&self, task: usize, split: &EncodedSplit, idx: &[usize], device: &Device) -> Tensor<1> {
        let (input, _) = split.input(idx, device);
        cross_entropy(self.forward(task, input), label_tensor(split, idx, device))
    }

    fn probabilities(&self, task: usize, split: &EncodedSplit, idx: &[usize], device: &Device) -> Tensor<2> {
        let (input, _) = split.input(idx, device);
        softmax(self.forward(task, input), 1)
    }
}

/// One task's splits.
pub struct TaskData<'a, S> {
    pub name: String,
    pub train: &'a S,
    pub dev: &'a S,
    pub test: &'a S,
}

/// How batches are drawn across tasks in multi-task training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TaskSampling {
    /// Every batch of every task once per epoch, shuffled together: tasks are
    /// drawn in proportion to their size.
    #[default]
    Proportional,
    /// Each step draws a task uniformly; a task's batches cycle (reshuffled)
    /// when used up. An epoch has as many steps as all tasks have batches.
    Uniform,
}

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
    pub test_error: f64,
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
    /// Dev and test error (the mean over tasks in multi-task training).
    pub dev_error: f64,
    pub test_error: f64,
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
    /// Test error of the best epoch.
    pub test_error: Option<f64>,
    /// Why the run stopped early, if its loss diverged.
    pub diverged: Option<String>,
    pub steps: u64,
    pub train_tokens: u64,
    pub train_seconds: f64,
    /// Real (non-padding) training tokens per second of training time.
    pub tokens_per_second: f64,
}

/// A finished run: the result and the model of its best epoch (on a plain device).
pub struct Finetuned<M> {
    pub result: FinetuneResult,
    pub model: M,
}

pub enum Outcome<M> {
    Finished(Box<Finetuned<M>>),
    /// Stopped on request after this many optimizer steps (a checkpoint was written).
    Stopped {
        step: u64,
    },
}

/// How a run is driven from outside: where it checkpoints, where progress goes.
#[derive(Default)]
pub struct RunControl<'a> {
    pub checkpoints: Option<&'a Checkpoints>,
    /// The identity of the whole run (a hash of its resolved configuration):
    /// a checkpoint made by another run is never continued.
    pub identity: Option<String>,
    /// Stop (as if killed, right after a checkpoint) after this many optimizer steps.
    pub stop_after_steps: Option<u64>,
    pub progress: ProgressTarget,
}

impl RunControl<'_> {
    pub fn quiet(&self) -> bool {
        matches!(self.progress, ProgressTarget::Quiet)
    }
}

/// Where a run stands; what a checkpoint's `state.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LoopState {
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

fn best_dir(epoch: usize) -> String {
    format!("best-epoch-{epoch}")
}

/// The batches of one epoch as `(task, example indices)`, a function of the
/// seed and the epoch only. One task: `epoch_batches` of its train split.
pub fn epoch_plan<S: Examples>(tasks: &[TaskData<S>], config: &FinetuneConfig, epoch: usize) -> Vec<(usize, Vec<usize>)> {
    let batches = |t: usize, round: usize| {
        let seed = if tasks.len() == 1 { config.seed } else { derive_seed(config.seed, &format!("task/{t}")) };
        epoch_batches(&tasks[t].train.lengths(), config.batch_size, seed, round, config.bucketed)
    };
    if tasks.len() == 1 {
        return batches(0, epoch).into_iter().map(|b| (0, b)).collect();
    }
    let mut rng = SplitMix64::new(derive_seed(config.seed, &format!("tasks/epoch/{epoch}")));
    let per_task: Vec<Vec<Vec<usize>>> = (0..tasks.len()).map(|t| batches(t, epoch)).collect();
    match config.task_sampling {
        TaskSampling::Proportional => {
            let mut plan: Vec<(usize, Vec<usize>)> =
                per_task.into_iter().enumerate().flat_map(|(t, bs)| bs.into_iter().map(move |b| (t, b))).collect();
            rng.shuffle(&mut plan);
            plan
        }
        TaskSampling::Uniform => {
            let total: usize = per_task.iter().map(Vec::len).sum();
            let mut cursor = vec![0usize; tasks.len()];
            let mut rounds = vec![0usize; tasks.len()];
            let mut current = per_task;
            (0..total)
                .map(|_| {
                    let t = rng.below(tasks.len());
                    if cursor[t] == current[t].len() {
                        // Used up: the next round of this task's batches, in a new order.
                        rounds[t] += 1;
                        current[t] = batches(t, epoch * 1000 + rounds[t]);
                        cursor[t] = 0;
                    }
                    cursor[t] += 1;
                    (t, current[t][cursor[t] - 1].clone())
                })
                .collect()
        }
    }
}

/// Class probabilities of each example of `split` for `task`, [examples][classes].
/// `model` on a plain device.
pub fn predict_probabilities<M: Trainee>(model: &M, task: usize, split: &M::Split, batch_size: usize, device: &Device) -> Vec<Vec<f32>> {
    // Longest first, so that batches pad little and memory peaks at once.
    let lengths = split.lengths();
    let mut order: Vec<usize> = (0..split.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    let mut probabilities = vec![Vec::new(); split.len()];
    for idx in order.chunks(batch_size.max(1)) {
        let probs = model.probabilities(task, split, idx, device);
        let classes = probs.dims()[1];
        let values = probs.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 probabilities");
        for (row, &i) in idx.iter().enumerate() {
            probabilities[i] = values[row * classes..(row + 1) * classes].to_vec();
        }
    }
    probabilities
}

pub fn argmax(p: &[f32]) -> usize {
    p.iter().enumerate().fold(0, |best, (i, &v)| if v > p[best] { i } else { best })
}

/// Error rate of `model` (plain device) on `split` for `task`.
pub fn error_rate<M: Trainee>(model: &M, task: usize, split: &M::Split, batch_size: usize, device: &Device) -> f64 {
    if split.is_empty() {
        return f64::NAN;
    }
    let probabilities = predict_probabilities(model, task, split, batch_size, device);
    let wrong = probabilities.iter().zip(split.labels()).filter(|(p, label)| argmax(p) != **label).count();
    wrong as f64 / split.len() as f64
}

/// Reads a checkpointed model's weights into `model` (same structure).
fn load_weights<M: Trainee>(model: &mut M, dir: &Path) -> Result<()> {
    load_hf_weights(model, dir, EncoderPrefix::Bert, &[])?;
    Ok(())
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

/// The loop. With `control.checkpoints`, resumes from the latest checkpoint
/// there and writes new ones as it goes.
pub fn train_tasks<M: Trainee>(
    mut model: M,
    tasks: &[TaskData<M::Split>],
    config: &FinetuneConfig,
    device: &Device,
    control: &RunControl,
) -> Result<Outcome<M>> {
    config.check().map_err(|e| e.within("training"))?;
    if let Some(task) = tasks.iter().find(|t| t.train.is_empty()) {
        bail!("the training split of {} is empty", task.name);
    }
    let eval_device = device.clone().inner();
    let num_layers = model.num_layers();
    let batches_per_epoch = epoch_plan(tasks, config, 0).len();
    let steps_per_epoch = batches_per_epoch.div_ceil(config.grad_accum) as u64;
    let total_steps = steps_per_epoch * config.epochs as u64;
    let schedule = config.schedule.build(config.lr, total_steps as usize);
    let lr_factor = |path: &str| config.layerwise.factor(path, num_layers);
    let lengths: Vec<Vec<usize>> = tasks.iter().map(|t| t.train.lengths()).collect();
    let mut optim = AdamW::new(config.optimizer.clone());
    let mut best: Option<M> = None;

    let mut state = LoopState {
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
    };
    if let Some(latest) = control.checkpoints.map(Checkpoints::latest).transpose()?.flatten() {
        let saved: LoopState = read_json(&latest.join("state.json"))?;
        if saved.config != *config || saved.identity != control.identity {
            bail!("the checkpoint in {} was made by a run with other settings; remove it to start over", latest.display());
        }
        load_weights(&mut model, &latest)?;
        model = model.train();
        optim.load_state(&model, load_optimizer(&latest.join("optimizer.safetensors"))?, device)?;
        if let Some(epoch) = saved.best_epoch {
            let mut best_model = model.valid();
            load_weights(&mut best_model, &control.checkpoints.unwrap().dir().join(best_dir(epoch)))?;
            best = Some(best_model);
        }
        if !control.quiet() {
            eprintln!("resuming from {} (step {}, epoch {})", latest.display(), saved.step, saved.epoch + 1);
        }
        state = saved;
    }

    // `new_best`: the model is the new best epoch's, which the checkpoint keeps
    // as `best-epoch-K/` too (a hard link to the same file, not a second write).
    let save = |state: &LoopState, model: &M, optim: &AdamW, new_best: bool| -> Result<()> {
        let Some(checkpoints) = control.checkpoints else { return Ok(()) };
        let keep = state.best_epoch.map(best_dir);
        checkpoints.publish(&format!("step-{}", state.step), &keep.iter().map(String::as_str).collect::<Vec<_>>(), |dir| {
            save_hf_weights(model, dir)?;
            if let (true, Some(keep)) = (new_best, &keep) {
                let best = checkpoints.dir().join(keep);
                std::fs::create_dir_all(&best)?;
                let (from, to) = (dir.join("model.safetensors"), best.join("model.safetensors"));
                let _ = std::fs::remove_file(&to);
                if std::fs::hard_link(&from, &to).is_err() {
                    std::fs::copy(&from, &to)?;
                }
            }
            save_optimizer(&optim.state(model), &dir.join("optimizer.safetensors"))?;
            write_json(&dir.join("state.json"), state)
        })?;
        Ok(())
    };

    let bar = Progress::new(total_steps, "steps", &control.progress).log_every(steps_per_epoch / 10);
    bar.set_position(state.step);
    let session_start = Instant::now();
    let session_tokens_start = state.train_tokens + state.epoch_tokens;
    let mut diverged = None;

    'epochs: while state.epoch < config.epochs {
        let epoch = state.epoch;
        bar.set_prefix(format!("epoch {}/{}", epoch + 1, config.epochs));
        let plan = epoch_plan(tasks, config, epoch);
        let mut accumulator = GradientsAccumulator::new();
        let mut pending = 0;
        let mut timer = Instant::now();
        for (b, (task, idx)) in plan.iter().enumerate().skip(state.batches_done) {
            // Dropout masks depend on the seed and the position in the run only.
            device.seed(derive_seed(config.seed, &format!("dropout/{}", state.micro_step)));
            let loss = model.loss(*task, tasks[*task].train, idx, device);
            let loss_value = loss.clone().into_scalar::<f32>() as f64;
            if !loss_value.is_finite() || loss_value > config.divergence_loss {
                diverged = Some(format!("training loss {loss_value} at step {} (epoch {}, batch {})", state.step + 1, epoch + 1, b + 1));
                break 'epochs;
            }
            // The mean over the micro-batches of this optimizer step; the last
            // group of an epoch may have fewer than `grad_accum` of them.
            let group_start = b / config.grad_accum * config.grad_accum;
            let group_len = config.grad_accum.min(plan.len() - group_start);
            let loss = if group_len > 1 { loss.div_scalar(group_len as f64) } else { loss };
            accumulator.accumulate(&model, GradientsParams::from_grads(loss.backward(), &model));
            pending += 1;
            state.micro_step += 1;
            state.batches_done = b + 1;
            state.epoch_loss_sum += loss_value;
            state.epoch_batches += 1;
            state.epoch_tokens += idx.iter().map(|&i| lengths[*task][i] as u64).sum::<u64>();
            if pending < config.grad_accum && b + 1 < plan.len() {
                continue;
            }
            let lr = schedule.lr(state.step as usize);
            let (updated, _grad_norm) = optim.step(model, accumulator.grads(), lr, &lr_factor);
            model = updated;
            pending = 0;
            state.step += 1;
            state.epoch_seconds += timer.elapsed().as_secs_f64();
            timer = Instant::now();

            let session_tokens = state.train_tokens + state.epoch_tokens - session_tokens_start;
            let rate = session_tokens as f64 / session_start.elapsed().as_secs_f64().max(1e-9);
            let message = format!("loss {loss_value:.4} lr {lr:.2e} {rate:.0} tok/s");
            bar.update(state.step, message);
            let stop = control.stop_after_steps == Some(state.step);
            if stop || config.checkpoint_every.is_some_and(|n| state.step.is_multiple_of(n)) {
                save(&state, &model, &optim, false)?;
            }
            if stop {
                bar.abandon();
                return Ok(Outcome::Stopped { step: state.step });
            }
        }

        // End of the epoch: evaluate without autodiff and dropout.
        let eval_start = Instant::now();
        let eval_model = model.valid();
        let errors: Vec<TaskErrors> = tasks
            .iter()
            .enumerate()
            .map(|(t, data)| TaskErrors {
                task: data.name.clone(),
                dev_error: error_rate(&eval_model, t, data.dev, config.eval_batch_size, &eval_device),
                test_error: error_rate(&eval_model, t, data.test, config.eval_batch_size, &eval_device),
            })
            .collect();
        let mean = |f: fn(&TaskErrors) -> f64| errors.iter().map(f).sum::<f64>() / errors.len() as f64;
        let record = EpochRecord {
            epoch: epoch + 1,
            steps: state.step,
            train_loss: state.epoch_loss_sum / state.epoch_batches.max(1) as f64,
            lr: schedule.lr(state.step.saturating_sub(1) as usize),
            dev_error: mean(|e| e.dev_error),
            test_error: mean(|e| e.test_error),
            tasks: if errors.len() > 1 { errors } else { Vec::new() },
            train_tokens: state.epoch_tokens,
            train_seconds: state.epoch_seconds,
            eval_seconds: eval_start.elapsed().as_secs_f64(),
        };
        let line = format!(
            "epoch {}: train loss {:.4}, dev error {:.2}%, test error {:.2}% ({:.0} s training, {:.0} s evaluation)",
            record.epoch,
            record.train_loss,
            100.0 * record.dev_error,
            100.0 * record.test_error,
            record.train_seconds,
            record.eval_seconds
        );
        bar.println(line);
        let improved = match state.best_epoch {
            None => true,
            Some(b) => record.dev_error < state.curve[b - 1].dev_error || state.curve[b - 1].dev_error.is_nan(),
        };
        if improved {
            state.best_epoch = Some(record.epoch);
            best = Some(eval_model);
        }
        state.train_tokens += state.epoch_tokens;
        state.train_seconds += state.epoch_seconds;
        state.curve.push(record);
        state.epoch += 1;
        state.batches_done = 0;
        state.epoch_loss_sum = 0.0;
        state.epoch_batches = 0;
        state.epoch_tokens = 0;
        state.epoch_seconds = 0.0;
        save(&state, &model, &optim, improved)?;
    }
    bar.finish();
    if diverged.is_some() {
        state.train_tokens += state.epoch_tokens;
        state.train_seconds += state.epoch_seconds;
    }

    let best_record = state.best_epoch.map(|e| state.curve[e - 1].clone());
    let result = FinetuneResult {
        best_epoch: state.best_epoch,
        dev_error: best_record.as_ref().map(|r| r.dev_error),
        test_error: best_record.as_ref().map(|r| r.test_error),
        diverged,
        steps: state.step,
        train_tokens: state.train_tokens,
        train_seconds: state.train_seconds,
        tokens_per_second: state.train_tokens as f64 / state.train_seconds.max(1e-9),
        curve: state.curve,
    };
    let model = best.unwrap_or_else(|| model.valid());
    Ok(Outcome::Finished(Box::new(Finetuned { result, model })))
}
