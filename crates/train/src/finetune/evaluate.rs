//! Evaluation without autodiff: class probabilities of a split and its error rate.

use burn::tensor::Device;

use super::trainee::{Examples, Trainee};

/// Class probabilities of each example of `split` for `task`, [examples][classes].
/// `model` on a plain device.
pub fn predict_probabilities<M: Trainee>(model: &M, task: usize, split: &M::Split, batch_size: usize, device: &Device) -> Vec<Vec<f32>> {
    let mut probabilities = vec![Vec::new(); split.len()];
    for idx in &evaluation_batches(split, batch_size) {
        let probs = model.probabilities(task, split, idx, device);
        let classes = probs.dims()[1];
        let values = probs.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 probabilities");
        for (row, &i) in idx.iter().enumerate() {
            probabilities[i] = values[row * classes..(row + 1) * classes].to_vec();
        }
    }
    probabilities
}

/// The batches evaluation reads a split in: longest first, so that batches
/// pad little and memory peaks at once.
pub fn evaluation_batches<S: Examples>(split: &S, batch_size: usize) -> Vec<Vec<usize>> {
    let lengths = split.lengths();
    let mut order: Vec<usize> = (0..split.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    order.chunks(batch_size.max(1)).map(|c| c.to_vec()).collect()
}

/// The index of the largest probability (the first, on ties).
pub fn argmax(p: &[f32]) -> usize {
    p.iter().enumerate().fold(0, |best, (i, &v)| if v > p[best] { i } else { best })
}

/// Error rate of `model` (plain device) on `split` for `task`.
pub fn error_rate<M: Trainee>(model: &M, task: usize, split: &M::Split, batch_size: usize, device: &Device) -> f64 {
    wrong_share(&predict_probabilities(model, task, split, batch_size, device), split.labels())
}

/// The share of `probabilities` whose most likely class is not the label; NaN when there are none.
pub fn wrong_share(probabilities: &[Vec<f32>], labels: &[usize]) -> f64 {
    if probabilities.is_empty() {
        return f64::NAN;
    }
    let wrong = probabilities.iter().zip(labels).filter(|(p, label)| argmax(p) != **label).count();
    wrong as f64 / probabilities.len() as f64
}
