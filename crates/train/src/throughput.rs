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

/// Times `steps` training steps (forward and `loss`, backward, AdamW at `lr`)
/// after one warm-up step (allocations, kernel selection), `around_timed`
/// told `enable` before the timed ones and `disable` after (the bench's perf
/// sampling); then twice as many inference batches of
/// `infer` in eval mode, after one warm-up. `fused_adamw`: [`AdamW::fused`]
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
    around_timed: &dyn Fn(&str),
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
    around_timed("enable");
    let start = Instant::now();
    for _ in 0..steps {
        model = train_step(model, &mut phases);
    }
    device.sync().ok();
    let train_secs = start.elapsed().as_secs_f64();
    around_timed("disable");

    let model = model.valid();
    infer(&model);
    let infer_steps = steps * 2;
    let start = Instant::now();
    for _ in 0..infer_steps {
        infer(&model);
    }
    device.sync().ok();
    Timing { steps, train_secs, infer_steps, infer_secs: start.elapsed().as_secs_f64(), phases }
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
        &|_| {},
    );
    Ok(timing.tokens_per_s(batch * seq_len))
}
