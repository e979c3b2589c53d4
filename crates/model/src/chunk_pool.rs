//! Chunk pooling for the hierarchical long-text methods (Section 5.3, Table 2
//! of the paper): each chunk of a document is encoded on its own, and the
//! chunks' feature vectors are pooled by mean, max or learned self-attention
//! before the classifier.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::bert::linear;

/// How the chunks of one document are pooled (hierarchical methods).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkPool {
    Mean,
    Max,
    /// Learned attention over the chunks: softmax over chunks of
    /// `w2 · tanh(W1 h)` weights their sum (Lin et al. 2017, one hop).
    SelfAttention,
}

/// Structured self-attention pooling over a set of vectors (Lin et al. 2017):
/// `a = softmax(w2 · tanh(W1 h))`, output `Σ a_i h_i`.
#[derive(Module, Debug)]
pub struct AttentionPool {
    pub proj: Linear,
    pub score: Linear,
}

impl AttentionPool {
    pub fn new(width: usize, attention_width: usize, std: f64, device: &Device) -> Self {
        Self { proj: linear(width, attention_width, std, device), score: linear(attention_width, 1, std, device) }
    }

    /// `x`: [batch, n, width]; `mask`: [batch, n], true where the slot is padding.
    pub fn forward(&self, x: Tensor<3>, mask: Tensor<2, Bool>) -> Tensor<2> {
        let [batch, n, width] = x.dims();
        let scores = self.score.forward(self.proj.forward(x.clone()).tanh()).reshape([batch, n]);
        let weights = softmax(scores.mask_fill(mask, f32::NEG_INFINITY), 1);
        (x * weights.reshape([batch, n, 1])).sum_dim(1).reshape([batch, width])
    }
}

/// Pools the chunk features of each document. `chunk_features`: [chunks,
/// width], documents' chunks consecutive; `chunks_per_doc` their counts.
pub(crate) fn pool_chunks(
    pool: ChunkPool,
    attention: Option<&AttentionPool>,
    chunk_features: Tensor<2>,
    chunks_per_doc: &[usize],
) -> Tensor<2> {
    let [total, width] = chunk_features.dims();
    let docs = chunks_per_doc.len();
    assert_eq!(chunks_per_doc.iter().sum::<usize>(), total, "chunk counts do not add up to the chunks");
    let max = chunks_per_doc.iter().copied().max().unwrap_or(1).max(1);
    let device = chunk_features.device();
    // [docs, max] grid of chunk rows; padding slots point at row 0 and are masked.
    let mut rows = Vec::with_capacity(docs * max);
    let mut padding = Vec::with_capacity(docs * max);
    let mut start = 0;
    for &n in chunks_per_doc {
        assert!(n > 0, "a document has no chunks");
        for slot in 0..max {
            rows.push(if slot < n { (start + slot) as i64 } else { 0 });
            padding.push(slot >= n);
        }
        start += n;
    }
    let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [docs * max]), &device);
    let padding = Tensor::<2, Bool>::from_data(TensorData::new(padding, [docs, max]), &device);
    let grid = chunk_features.select(0, rows).reshape([docs, max, width]);
    match pool {
        ChunkPool::Mean => crate::features::masked_mean(grid, padding.bool_not().float()),
        ChunkPool::Max => {
            grid.mask_fill(padding.reshape([docs, max, 1]).expand([docs, max, width]), f32::NEG_INFINITY).max_dim(1).reshape([docs, width])
        }
        ChunkPool::SelfAttention => attention.expect("self-attention pooling has its module").forward(grid, padding),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_pooling_respects_document_boundaries() {
        let device = Device::flex();
        // Three chunks: doc 0 has rows 0 and 1, doc 1 has row 2.
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, -4.0, 3.0, 2.0, -5.0, 7.0], [3, 2]), &device);
        let values = |t: Tensor<2>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        assert_eq!(values(pool_chunks(ChunkPool::Mean, None, x.clone(), &[2, 1])), vec![2.0, -1.0, -5.0, 7.0]);
        assert_eq!(values(pool_chunks(ChunkPool::Max, None, x.clone(), &[2, 1])), vec![3.0, 2.0, -5.0, 7.0]);
        // Attention weights sum to one over a document's own chunks: a one-chunk
        // document gets its chunk back, a two-chunk one a convex combination.
        let attention = AttentionPool::new(2, 4, 0.5, &device);
        let out = values(pool_chunks(ChunkPool::SelfAttention, Some(&attention), x, &[2, 1]));
        assert!((out[2] + 5.0).abs() < 1e-6 && (out[3] - 7.0).abs() < 1e-6, "{out:?}");
        assert!((1.0..=3.0).contains(&out[0]) && (-4.0..=2.0).contains(&out[1]), "{out:?}");
        let a = (out[0] - 1.0) / 2.0;
        assert!((out[1] - (-4.0 + 6.0 * a)).abs() < 1e-5, "one weight per chunk, shared across features: {out:?}");
    }
}
