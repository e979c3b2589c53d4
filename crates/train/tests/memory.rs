//! Training does not leak: after a warm-up, 200 more steps of a tiny
//! classifier (forward, backward, AdamW) leave the process's resident memory
//! where it was, on every CPU backend this build has. (Alone in its test
//! binary, so no other test's allocations are counted.)

use bertfit_model::{Backend, BertConfig, BertForSequenceClassification, BertInput, HeadConfig};
use bertfit_train::{AdamW, OptimizerConfig, cross_entropy};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Int, Tensor, TensorData};

/// Resident set size of this process, MiB (Linux `VmRSS`).
fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 = status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).unwrap().parse().unwrap();
    kb / 1024.0
}

#[test]
fn resident_memory_does_not_grow_over_many_steps() {
    for backend in Backend::available().into_iter().filter(|b| *b != Backend::Wgpu) {
        let device = backend.device().unwrap().autodiff();
        device.seed(1);
        let config = BertConfig::tiny(100);
        let mut model = BertForSequenceClassification::new(&config, 2, HeadConfig::default(), &device).train();
        let mut optim = AdamW::new(OptimizerConfig::default());
        let (batch, len) = (4, 16);
        let ids: Vec<i64> = (0..batch * len).map(|i| 5 + (i as i64 * 7) % 90).collect();
        let mask: Vec<i64> = (0..batch * len).map(|i| i64::from(i % len < len - (i / len) % 5)).collect();
        let labels = Tensor::<1, Int>::from_data(TensorData::new((0..batch as i64).map(|i| i % 2).collect::<Vec<_>>(), [batch]), &device);
        let mut step = |model: BertForSequenceClassification| {
            let input = BertInput::from_ids(ids.clone(), mask.clone(), [batch, len], &device);
            let loss = cross_entropy(model.forward(input), labels.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            optim.step(model, grads, 1e-3, &|_| 1.0).0
        };
        for _ in 0..50 {
            model = step(model);
        }
        let before = rss_mb();
        for _ in 0..200 {
            model = step(model);
        }
        let after = rss_mb();
        eprintln!("{backend}: resident memory {before:.1} MiB after 50 steps, {after:.1} MiB after 250");
        assert!(after - before < 16.0, "{backend}: resident memory grew by {:.1} MiB over 200 steps", after - before);
    }
}
