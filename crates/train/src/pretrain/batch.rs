//! Masked-LM batches: which sequences a micro-batch takes, masked as BERT
//! masks them, as model inputs; their losses; the held-out evaluation.

use bertfit_data::mlm::{IGNORE, Instance, mask};
use bertfit_data::splits::{SplitMix64, derive_seed};
use bertfit_model::{BertForMaskedLM, BertInput};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::{MlmData, PretrainConfig};
use crate::cross_entropy;

/// The sequences of global micro-batch `g`: consecutive slices of the epochs'
/// shuffled orders (epoch e's order: the seed and e).
pub(super) fn micro_batch(n: usize, batch: usize, seed: u64, g: u64, order: &mut (usize, Vec<usize>)) -> Vec<usize> {
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

/// Each sequence masked as BERT masks it (input ids, labels), in order from `rng`.
pub(super) fn mask_all(
    instances: &[&Instance],
    data: &MlmData,
    config: &PretrainConfig,
    rng: &mut SplitMix64,
) -> Vec<(Vec<u32>, Vec<i64>)> {
    instances
        .iter()
        .map(|i| {
            let m = mask(&i.ids, &config.masking, &data.special, data.vocab_size, rng);
            (m.input_ids, m.labels)
        })
        .collect()
}

/// A masked batch as model inputs: input, flat masked positions, their labels,
/// is-next labels, and the real tokens in it.
pub(super) struct Batch {
    input: BertInput,
    positions: Tensor<1, Int>,
    labels: Tensor<1, Int>,
    is_next: Option<Tensor<1, Int>>,
    pub(super) tokens: u64,
}

pub(super) fn make_batch(instances: &[&Instance], masked: &[(Vec<u32>, Vec<i64>)], pad: u32, device: &Device) -> Batch {
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
pub(super) fn losses(model: &BertForMaskedLM, batch: Batch) -> (Tensor<1>, u64, u64, Option<(u64, u64)>) {
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
pub(super) fn evaluate(model: &BertForMaskedLM, data: &MlmData, config: &PretrainConfig, device: &Device) -> (f64, f64, Option<f64>) {
    let instances: Vec<&Instance> = data.heldout.iter().take(config.heldout_sequences).collect();
    let masked = mask_all(&instances, data, config, &mut SplitMix64::new(derive_seed(config.seed, "mlm/heldout-masks")));
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
