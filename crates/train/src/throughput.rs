//! Throughput of a training step and of inference, timed the same way
//! everywhere: `bertfit bench` and `bertfit reproduce --plan`'s probe.

use std::time::Instant;

use anyhow::Result;
use bertfit_model::{Backend, BertConfig, BertForSequenceClassification, BertInput, HeadConfig};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::{AdamW, OptimizerConfig, cross_entropy};

/// One case's timings.
pub struct Timing {
    pub steps: usize,
    pub train_secs: f64,
    pub infer_steps: usize,
    pub infer_secs: f64,
    /// Seconds summed over the timed steps: forward + loss, backward, optimizer.
    pub phases: [f64; 3],
}

impl Timing {
    /// Training and inference tokens/s, `tokens` tokens a step.
    pub fn tokens_per_s(&self, tokens: usize) -> (f64, f64) {
        (tokens as f64 * self.steps as f64 / self.train_secs, tokens as f64 * self.infer_steps as f64 / self.infer_secs)
    }
}

/// The two timed phases of [`time_case`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Train,
    Infer,
}

impl Phase {
    /// `train` or `infer`, as `BERTFIT_PERF_PHASE` names it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Infer => "infer",
        }
    }
}

/// Times `steps` training steps (forward and `loss`, backward, AdamW at `lr`)
/// after one warm-up step (allocations, kernel selection); then twice as many
/// inference batches of `infer` in eval mode, after one warm-up. `around_timed`
/// is told `(Phase::Train, "enable")` before the timed steps and `"disable"`
/// after, and the same of `Phase::Infer` around the timed batches (the bench's
/// perf sampling of one phase). `fused_adamw`: [`AdamW::fused`]
/// (`None`: the device's default).
#[allow(clippy::too_many_arguments)]
pub fn time_case<M: Module>(
    mut model: M,
    device: &Device,
    steps: usize,
    lr: f64,
    fused_adamw: Option<bool>,
    loss: impl Fn(&M) -> Tensor<1>,
    infer: impl Fn(&M),
    around_timed: &dyn Fn(Phase, &str),
) -> Timing {
    let mut optim = AdamW::new(OptimizerConfig::default());
    optim.fused = fused_adamw;
    let mut train_step = |model: M, phases: &mut [f64; 3]| {
        let start = Instant::now();
        let loss = loss(&model);
        let _loss: f32 = loss.clone().into_scalar();
        let forward = Instant::now();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        device.sync().ok();
        let backward = Instant::now();
        let (model, _) = optim.step(model, grads, lr, &|_| 1.0);
        device.sync().ok();
        phases[0] += (forward - start).as_secs_f64();
        phases[1] += (backward - forward).as_secs_f64();
        phases[2] += backward.elapsed().as_secs_f64();
        model
    };
    model = train_step(model, &mut [0.0; 3]);
    device.sync().ok();
    let mut phases = [0.0f64; 3];
    around_timed(Phase::Train, "enable");
    let start = Instant::now();
    for _ in 0..steps {
        model = train_step(model, &mut phases);
    }
    device.sync().ok();
    let train_secs = start.elapsed().as_secs_f64();
    around_timed(Phase::Train, "disable");

    let model = model.valid();
    infer(&model);
    let infer_steps = steps * 2;
    around_timed(Phase::Infer, "enable");
    let start = Instant::now();
    for _ in 0..infer_steps {
        infer(&model);
    }
    device.sync().ok();
    let infer_secs = start.elapsed().as_secs_f64();
    around_timed(Phase::Infer, "disable");
    Timing { steps, train_secs, infer_steps, infer_secs, phases }
}

/// Training and inference tokens/s of a random-weight 2-class classifier of
/// `shape` on `backend` at `batch` x `seq_len`: two timed steps after a warm-up.
pub fn probe_classifier(shape: &BertConfig, seq_len: usize, batch: usize, backend: Backend) -> Result<(f64, f64)> {
    let device = backend.device()?;
    let train_device = device.clone().autodiff();
    let model = BertForSequenceClassification::new(shape, 2, HeadConfig::default(), &train_device);
    // Word pieces above the special tokens (from id 1000 in a BERT vocabulary;
    // a small vocabulary, as a test's tiny model has, is read from its 30th).
    let low = (shape.vocab_size / 30).min(1000);
    let ids: Vec<i64> = (0..batch * seq_len).map(|i| (low + i * 7919 % (shape.vocab_size - low)) as i64).collect();
    let input = |device| BertInput::from_ids(ids.clone(), vec![1; batch * seq_len], [batch, seq_len], device);
    let labels = Tensor::<1, Int>::from_data(TensorData::new((0..batch as i64).map(|i| i % 2).collect::<Vec<_>>(), [batch]), &train_device);
    let timing = time_case(
        model,
        &device,
        2,
        2e-5,
        None,
        |model: &BertForSequenceClassification| cross_entropy(model.forward(input(&train_device)), labels.clone()),
        |model: &BertForSequenceClassification| {
            let _ = model.forward(input(&device)).into_data();
        },
        &|_, _| {},
    );
    Ok(timing.tokens_per_s(batch * seq_len))
}

/// Token ids `[CLS] w ... w [SEP]` of `len` tokens, words drawn from
/// `[low, vocab)` by a fixed sequence (no special tokens inside).
fn synthetic_sequence(index: usize, len: usize, vocab: usize) -> Vec<u32> {
    let low = (vocab / 30).min(1000);
    let mut ids: Vec<u32> = (0..len).map(|i| (low + (index * 7919 + i * 104_729) % (vocab - low)) as u32).collect();
    ids[0] = 101.min(vocab as u32 - 1);
    ids[len - 1] = 102.min(vocab as u32 - 1);
    ids
}

/// The shape a training loop is timed at: `batch` synthetic sequences of
/// `seq_len` tokens from a `vocab`-word vocabulary a step, `steps` timed steps.
#[derive(Debug, Clone, Copy)]
pub struct LoopShape {
    pub vocab: usize,
    pub batch: usize,
    pub seq_len: usize,
    pub steps: usize,
}

/// Milliseconds per optimizer step of the real fine-tuning loop
/// ([`crate::finetune`]: batching, the schedule, AdamW with clipping, the loss
/// read back for divergence, logging and progress to `progress`) on
/// synthetic documents, `shape.steps` steps an epoch: the second epoch's
/// training time over its steps (the first warms up; evaluation, a single
/// example, is timed apart by the loop).
pub fn time_finetune_loop(
    model: BertForSequenceClassification,
    shape: LoopShape,
    device: &Device,
    progress: crate::progress::ProgressTarget,
) -> Result<f64> {
    let LoopShape { vocab, batch, seq_len, steps } = shape;
    let split = |n: usize| crate::EncodedSplit {
        docs: (0..n).map(|i| vec![synthetic_sequence(i, seq_len, vocab)]).collect(),
        labels: (0..n).map(|i| i % 2).collect(),
        pad: 0,
        pad_to: None,
    };
    let (train, dev, test) = (split(batch * steps), split(1), split(1));
    let config = crate::FinetuneConfig { epochs: 2, batch_size: batch, eval_batch_size: 1, ..Default::default() };
    let control = crate::RunControl { progress, ..Default::default() };
    let outcome = crate::finetune(model, &train, &dev, &test, &config, &device.clone().autodiff(), &control)?;
    let crate::Outcome::Finished(done) = outcome else { anyhow::bail!("the timed loop stopped early") };
    let second = done.result.curve.get(1).ok_or_else(|| anyhow::anyhow!("the timed loop did not finish two epochs"))?;
    Ok(1000.0 * second.train_seconds / steps as f64)
}

/// Milliseconds per optimizer step of the real pre-training loop
/// ([`crate::pretrain`]: batches masked afresh each step, the schedule, AdamW
/// with clipping, the loss read back, logging and progress) on synthetic
/// sequences: the time of steps `steps + 1..=2 * steps` (the first `steps`
/// warm up; the held-out evaluations between them are timed apart by the loop).
pub fn time_pretrain_loop(
    model: bertfit_model::BertForMaskedLM,
    shape: LoopShape,
    device: &Device,
    progress: crate::progress::ProgressTarget,
) -> Result<f64> {
    let LoopShape { vocab, batch, seq_len, steps } = shape;
    use bertfit_data::mlm::Instance;
    let instances = |n: usize, from: usize| -> Vec<Instance> {
        (from..from + n)
            .map(|i| Instance { ids: synthetic_sequence(i, seq_len, vocab), token_types: vec![0; seq_len], is_next: None })
            .collect()
    };
    let (train, heldout) = (instances(batch * steps, 0), instances(batch, batch * steps));
    let special = bertfit_data::tokenize::SpecialTokens { cls: 101, sep: 102, pad: 0, mask: 103.min(vocab as u32 - 1), unk: 100 };
    let data = crate::MlmData { train: &train, heldout: &heldout, special, vocab_size: vocab };
    let config = crate::PretrainConfig {
        steps: 2 * steps as u64,
        warmup_steps: 1,
        batch_size: batch,
        max_len: seq_len,
        checkpoint_every: steps as u64,
        heldout_sequences: batch,
        eval_batch_size: batch,
        ..Default::default()
    };
    let control = crate::RunControl { progress, ..Default::default() };
    let outcome = crate::pretrain(model, &data, &config, &device.clone().autodiff(), &control, &|_, _| Ok(()))?;
    let crate::PretrainOutcome::Finished { result, .. } = outcome else { anyhow::bail!("the timed loop stopped early") };
    let at = |step: u64| result.curve.iter().find(|r| r.step == step).map(|r| r.train_seconds);
    let (Some(warm), Some(end)) = (at(steps as u64), at(2 * steps as u64)) else {
        anyhow::bail!("the timed loop kept no record of its steps")
    };
    Ok(1000.0 * (end - warm) / steps as f64)
}
