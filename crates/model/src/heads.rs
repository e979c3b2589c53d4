//! Classification heads on the encoder (Section 5.3 of the paper).
//!
//! `BertForSequenceClassification` mirrors HF's class of that name: with the
//! default head (pooler output, dropout, linear `classifier`) its checkpoint is
//! HF's, tensor for tensor. The paper's variants are settings of the same
//! module, not other classes:
//!
//! * [`Features`]: which hidden states feed the classifier: BERT's pooler, the
//!   raw [CLS] of one layer, or the [CLS] of a set of layers combined by
//!   concat / mean / max (Table 3).
//! * [`ChunkPool`]: for the hierarchical long-text methods, each chunk of a
//!   document is encoded on its own, and the chunks' features are pooled by
//!   mean, max or learned self-attention before the classifier (Table 2).

use std::path::Path;

use anyhow::{Result, bail};
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::bert::{BertInput, BertModel, EncoderOutput, linear};
use crate::config::BertConfig;
use crate::weights::{EncoderPrefix, LoadReport, load_hf_weights};

/// A set of encoder layers, numbered as `EncoderOutput::hidden_states`: block
/// k is layer k (1..=L); the embeddings (layer 0) are not in any set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerSet {
    /// Blocks 1..=4.
    First4,
    /// The last four blocks.
    Last4,
    /// Every block, 1..=L.
    All,
}

impl LayerSet {
    pub fn layers(&self, num_layers: usize) -> Vec<usize> {
        match self {
            Self::First4 => (1..=num_layers.min(4)).collect(),
            Self::Last4 => (num_layers.saturating_sub(3).max(1)..=num_layers).collect(),
            Self::All => (1..=num_layers).collect(),
        }
    }
}

/// How the [CLS] vectors of several layers become one feature vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    Concat,
    Mean,
    Max,
}

/// Which hidden states feed the classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Features {
    /// tanh(dense([CLS] of the last layer)): BERT's pooler, as HF's
    /// `BertForSequenceClassification` and the paper's default.
    #[default]
    Pooler,
    /// The raw [CLS] vector of layer `layer` (0 = embeddings, k = block k;
    /// the paper's Table 3 numbers blocks from 0, so its "layer 11" is 12 here).
    Layer { layer: usize },
    /// The raw [CLS] vector of the last block, whatever the depth: what the
    /// paper's hierarchical methods pool over chunks.
    LastLayer,
    /// The [CLS] vectors of a set of layers, combined.
    Combine { layers: LayerSet, combine: Combine },
}

impl Features {
    /// The feature vector of each sequence of `input`, [batch, width].
    pub fn compute(&self, bert: &BertModel, input: BertInput) -> Tensor<2> {
        let output = bert.forward(input);
        match *self {
            Features::Pooler => bert.pooler.forward(output.last()),
            Features::Layer { layer } => cls(&output, layer),
            Features::LastLayer => cls(&output, bert.num_layers()),
            Features::Combine { layers, combine } => {
                let vectors: Vec<Tensor<2>> = layers.layers(bert.num_layers()).into_iter().map(|k| cls(&output, k)).collect();
                match combine {
                    Combine::Concat => Tensor::cat(vectors, 1),
                    Combine::Mean => Tensor::stack::<3>(vectors, 0).mean_dim(0).squeeze_dim(0),
                    Combine::Max => Tensor::stack::<3>(vectors, 0).max_dim(0).squeeze_dim(0),
                }
            }
        }
    }

    /// Width of the feature vector.
    pub fn width(&self, hidden: usize, num_layers: usize) -> usize {
        match self {
            Self::Combine { layers, combine: Combine::Concat } => hidden * layers.layers(num_layers).len(),
            _ => hidden,
        }
    }

    /// An error that names the setting when it does not fit the encoder.
    pub fn check(&self, num_layers: usize) -> Result<()> {
        match *self {
            Self::Layer { layer } if layer > num_layers => {
                bail!("features.layer = {layer}, but the encoder has layers 0..={num_layers} (0 = embeddings)")
            }
            Self::Combine { layers: LayerSet::First4 | LayerSet::Last4, .. } if num_layers < 4 => {
                bail!("features.layers first4/last4 need at least 4 encoder blocks; this one has {num_layers}")
            }
            _ => Ok(()),
        }
    }
}

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

/// The head's settings: what `BertForSequenceClassification` needs beyond the encoder config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HeadConfig {
    #[serde(default)]
    pub features: Features,
    /// Set for the hierarchical methods: documents arrive as chunks.
    #[serde(default)]
    pub chunk_pool: Option<ChunkPool>,
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
fn pool_chunks(pool: ChunkPool, attention: Option<&AttentionPool>, chunk_features: Tensor<2>, chunks_per_doc: &[usize]) -> Tensor<2> {
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
        ChunkPool::Mean => {
            let keep = padding.clone().bool_not().float();
            let counts: Vec<f32> = chunks_per_doc.iter().map(|&n| n as f32).collect();
            let counts = Tensor::<2>::from_data(TensorData::new(counts, [docs, 1]), &device);
            (grid * keep.reshape([docs, max, 1])).sum_dim(1).reshape([docs, width]) / counts
        }
        ChunkPool::Max => {
            grid.mask_fill(padding.reshape([docs, max, 1]).expand([docs, max, width]), f32::NEG_INFINITY).max_dim(1).reshape([docs, width])
        }
        ChunkPool::SelfAttention => attention.expect("self-attention pooling has its module").forward(grid, padding),
    }
}

/// BERT with a classification head. With the default [`HeadConfig`] it is HF's
/// `BertForSequenceClassification` (`bert.*`, `classifier.*`).
#[derive(Module, Debug)]
pub struct BertForSequenceClassification {
    pub bert: BertModel,
    pub dropout: Dropout,
    pub classifier: Linear,
    /// Only for `ChunkPool::SelfAttention`.
    pub chunk_attention: Option<AttentionPool>,
    #[module(skip)]
    pub head: HeadConfig,
}

impl BertForSequenceClassification {
    pub fn new(config: &BertConfig, num_labels: usize, head: HeadConfig, device: &Device) -> Self {
        let width = head.features.width(config.hidden_size, config.num_hidden_layers);
        let std = config.initializer_range;
        Self {
            bert: BertModel::new(config, device),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
            classifier: linear(width, num_labels, std, device),
            chunk_attention: (head.chunk_pool == Some(ChunkPool::SelfAttention))
                .then(|| AttentionPool::new(width, config.hidden_size, std, device)),
            head,
        }
    }

    /// A classifier on the pretrained encoder of `dir`. The head is new unless
    /// the checkpoint has one (a model we fine-tuned and exported), in which
    /// case it is loaded and must fit.
    pub fn from_pretrained(
        dir: &Path,
        config: &BertConfig,
        num_labels: usize,
        head: HeadConfig,
        device: &Device,
    ) -> Result<(Self, LoadReport)> {
        head.features.check(config.num_hidden_layers)?;
        let mut model = Self::new(config, num_labels, head, device);
        let report = load_hf_weights(&mut model, dir, EncoderPrefix::Bert, &["classifier.", "chunk_attention."])?;
        Ok((model, report))
    }

    /// A model exported by us: every tensor, head included, must be in the checkpoint.
    pub fn from_finetuned(dir: &Path, config: &BertConfig, num_labels: usize, head: HeadConfig, device: &Device) -> Result<Self> {
        head.features.check(config.num_hidden_layers)?;
        let mut model = Self::new(config, num_labels, head, device);
        load_hf_weights(&mut model, dir, EncoderPrefix::Bert, &[])?;
        Ok(model)
    }

    pub fn num_labels(&self) -> usize {
        self.classifier.weight.dims()[1]
    }

    /// The feature vector of each sequence, [batch, width], per `head.features`.
    pub fn features(&self, input: BertInput) -> Tensor<2> {
        self.head.features.compute(&self.bert, input)
    }

    /// Logits, [batch, num_labels], one sequence per example.
    pub fn forward(&self, input: BertInput) -> Tensor<2> {
        self.classifier.forward(self.dropout.forward(self.features(input)))
    }

    /// Logits, [documents, num_labels], for documents given as chunks (all
    /// chunks of all documents in `input`, each document's consecutive).
    /// Without a `chunk_pool` every document must be one sequence.
    pub fn forward_documents(&self, input: BertInput, chunks_per_doc: &[usize]) -> Tensor<2> {
        let features = self.features(input);
        let pooled = match self.head.chunk_pool {
            Some(pool) => pool_chunks(pool, self.chunk_attention.as_ref(), features, chunks_per_doc),
            None => {
                assert!(chunks_per_doc.iter().all(|&n| n == 1), "documents in chunks need a chunk_pool");
                features
            }
        };
        self.classifier.forward(self.dropout.forward(pooled))
    }
}

/// Multi-task fine-tuning (Section 5.4): one encoder shared by the tasks, one
/// classifier per task (`classifier.K`). `into_task` turns it into task K's
/// `BertForSequenceClassification` for the per-task fine-tuning that follows.
#[derive(Module, Debug)]
pub struct BertForMultiTask {
    pub bert: BertModel,
    pub dropout: Dropout,
    pub classifier: Vec<Linear>,
    #[module(skip)]
    pub features: Features,
}

impl BertForMultiTask {
    pub fn new(config: &BertConfig, labels_per_task: &[usize], features: Features, device: &Device) -> Self {
        let width = features.width(config.hidden_size, config.num_hidden_layers);
        Self {
            bert: BertModel::new(config, device),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
            classifier: labels_per_task.iter().map(|&n| linear(width, n, config.initializer_range, device)).collect(),
            features,
        }
    }

    /// The pretrained encoder of `dir` with new heads.
    pub fn from_pretrained(
        dir: &Path,
        config: &BertConfig,
        labels_per_task: &[usize],
        features: Features,
        device: &Device,
    ) -> Result<Self> {
        features.check(config.num_hidden_layers)?;
        let mut model = Self::new(config, labels_per_task, features, device);
        load_hf_weights(&mut model, dir, EncoderPrefix::Bert, &["classifier."])?;
        Ok(model)
    }

    /// A multi-task model we exported: every head must be in the checkpoint.
    pub fn from_finetuned(dir: &Path, config: &BertConfig, labels_per_task: &[usize], features: Features, device: &Device) -> Result<Self> {
        let mut model = Self::new(config, labels_per_task, features, device);
        load_hf_weights(&mut model, dir, EncoderPrefix::Bert, &[])?;
        Ok(model)
    }

    /// Logits of task `task`, [batch, num_labels of the task].
    pub fn forward(&self, task: usize, input: BertInput) -> Tensor<2> {
        let features = self.features.compute(&self.bert, input);
        self.classifier[task].forward(self.dropout.forward(features))
    }

    /// Task `task`'s classifier on the shared encoder.
    pub fn into_task(mut self, task: usize) -> BertForSequenceClassification {
        BertForSequenceClassification {
            bert: self.bert,
            dropout: self.dropout,
            classifier: self.classifier.swap_remove(task),
            chunk_attention: None,
            head: HeadConfig { features: self.features, chunk_pool: None },
        }
    }
}

/// The [CLS] vector of layer `k`, [batch, hidden].
fn cls(output: &EncoderOutput, k: usize) -> Tensor<2> {
    let hidden = &output.hidden_states[k];
    let [batch, _, width] = hidden.dims();
    hidden.clone().slice([0..batch, 0..1, 0..width]).reshape([batch, width])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_sets_number_blocks_from_one() {
        assert_eq!(LayerSet::First4.layers(12), vec![1, 2, 3, 4]);
        assert_eq!(LayerSet::Last4.layers(12), vec![9, 10, 11, 12]);
        assert_eq!(LayerSet::All.layers(6), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(Features::Combine { layers: LayerSet::Last4, combine: Combine::Concat }.width(384, 6), 4 * 384);
        assert!(Features::Layer { layer: 7 }.check(6).is_err());
        assert!(Features::Layer { layer: 6 }.check(6).is_ok());
    }

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
