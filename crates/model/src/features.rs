//! Which hidden states feed the classifier (Section 5.3, Table 3 of the paper):
//! BERT's pooler, the raw [CLS] of one layer, or the [CLS] vectors of a set of
//! layers combined by concat / mean / max.

use anyhow::{Result, bail};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::bert::{BertInput, BertModel, EncoderOutput};

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
}
