//! The two optimizer modes on one linear layer with a known gradient, against
//! the update rules written out by hand: torch AdamW (bias-corrected, global
//! clipping) and the original code's BERTAdam (no bias correction, each
//! parameter clipped on its own).

use bertfit_train::{AdamW, OptimizerConfig, OptimizerKind};
use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};

/// weight [[1], [2]], bias [0.5]; loss = x·w + b with x = [3, 4]: grad w = [3, 4] (norm 5), grad b = [1].
fn step(kind: OptimizerKind) -> (Vec<f32>, Vec<f32>) {
    let device = Device::flex().autodiff();
    let mut layer: Linear = LinearConfig::new(2, 1).init(&device);
    layer.weight = Param::from_tensor(Tensor::from_data(TensorData::new(vec![1.0f32, 2.0], [2, 1]), &device));
    layer.bias = Some(Param::from_tensor(Tensor::from_data(TensorData::new(vec![0.5f32], [1]), &device)));
    let x = Tensor::<2>::from_data(TensorData::new(vec![3.0f32, 4.0], [1, 2]), &device);
    let loss = layer.forward(x).sum();
    let grads = GradientsParams::from_grads(loss.backward(), &layer);
    let mut optim = AdamW::new(OptimizerConfig { kind, ..OptimizerConfig::default() });
    let (layer, norm) = optim.step(layer, grads, 0.1, &|_| 1.0);
    let norm = norm.value();
    assert!((norm - 26f64.sqrt()).abs() < 1e-5, "global norm {norm}");
    let read = |t: Tensor<1>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    (read(layer.weight.val().reshape([2])), read(layer.bias.unwrap().val()))
}

fn close(a: &[f32], b: &[f64]) -> bool {
    a.iter().zip(b).all(|(x, y)| (*x as f64 - y).abs() < 1e-5)
}

#[test]
fn adamw_and_bertadam_follow_their_update_rules() {
    let (lr, wd, eps, b1, b2) = (0.1, 0.01, 1e-6, 0.9f64, 0.999f64);
    // AdamW: all gradients scaled by 1 / (sqrt(26) + 1e-6); bias-corrected
    // moments give m_hat / sqrt(v_hat) = sign(g) (less eps); decay on weights only.
    let (w, b) = step(OptimizerKind::Adamw);
    let unit = |g: f64| g / (g.abs() + eps);
    let c = 1.0 / (26f64.sqrt() + 1e-6);
    let expected_w = [1.0 * (1.0 - lr * wd) - lr * unit(3.0 * c), 2.0 * (1.0 - lr * wd) - lr * unit(4.0 * c)];
    let expected_b = [0.5 - lr * unit(c)];
    assert!(close(&w, &expected_w) && close(&b, &expected_b), "adamw: {w:?} {b:?}");

    // BERTAdam: the weight's gradient clipped to norm 1 on its own, the bias's
    // left (norm 1); no bias correction, so m / sqrt(v) = (1-b1)/sqrt(1-b2) ≈ 3.16.
    let (w, b) = step(OptimizerKind::Bert4doc);
    let raw = |g: f64| (1.0 - b1) * g / (((1.0 - b2) * g * g).sqrt() + eps);
    let cw = 1.0 / (5.0 + 1e-6);
    let cb = 1.0 / (1.0 + 1e-6);
    let expected_w = [1.0 - lr * (raw(3.0 * cw) + wd * 1.0), 2.0 - lr * (raw(4.0 * cw) + wd * 2.0)];
    let expected_b = [0.5 - lr * raw(cb)];
    assert!(close(&w, &expected_w) && close(&b, &expected_b), "bert4doc: {w:?} {b:?}");
}
