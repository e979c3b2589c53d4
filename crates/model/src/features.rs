//! Which hidden states feed the classifier (Section 5.3, Table 3 of the paper):
//! BERT's pooler, the raw [CLS] of one layer, or the [CLS] vectors of a set of
//! layers combined by concat / mean / max. A layer's vector may instead be the
//! mean of its real tokens' states (`tokens = "mean"`), for checkpoints trained
//! to be read that way (sentence-transformers' mean pooling) rather than by [CLS].

use anyhow::{Result, bail};
use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::bert::{BertInput, BertModel, EncoderOutput, Positions, Readout};

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

/// Which token states of a layer make that layer's vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Tokens {
    /// The [CLS] token's state, as the paper (and BERT's pooler) reads a layer.
    #[default]
    Cls,
    /// The mean of the states of the real (unpadded) tokens, [CLS] and [SEP]
    /// included: sentence-transformers' mean pooling.
    Mean,
}

impl Tokens {
    fn is_cls(&self) -> bool {
        *self == Tokens::Cls
    }
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
    /// the paper's Table 3 numbers blocks from 0, so its "layer 11" is 12 here),
    /// or its tokens' mean. (`tokens` is left out of the serialized form at its
    /// default, so the identities of runs from before it existed still hold.)
    Layer {
        layer: usize,
        #[serde(default, skip_serializing_if = "Tokens::is_cls")]
        tokens: Tokens,
    },
    /// The raw [CLS] vector of the last block, whatever the depth: what the
    /// paper's hierarchical methods pool over chunks.
    LastLayer,
    /// The [CLS] vectors (or token means) of a set of layers, combined.
    Combine {
        layers: LayerSet,
        combine: Combine,
        #[serde(default, skip_serializing_if = "Tokens::is_cls")]
        tokens: Tokens,
    },
}

impl Features {
    /// The feature vector of each sequence of `input`, [batch, width].
    pub fn compute(&self, bert: &BertModel, input: BertInput) -> Tensor<2> {
        let mask = input.padded.then(|| input.attention_mask.clone());
        let output = bert.forward_readout(input, self.readout(bert.num_layers()));
        let layer_vector = |k: usize, tokens: Tokens| match tokens {
            Tokens::Cls => cls(&output, k),
            Tokens::Mean => token_mean(&output.hidden_states[k], mask.clone()),
        };
        match *self {
            Features::Pooler => bert.pooler.forward(output.last()),
            Features::Layer { layer, tokens } => layer_vector(layer, tokens),
            Features::LastLayer => cls(&output, bert.num_layers()),
            Features::Combine { layers, combine, tokens } => {
                let vectors: Vec<Tensor<2>> = layers.layers(bert.num_layers()).into_iter().map(|k| layer_vector(k, tokens)).collect();
                match combine {
                    Combine::Concat => Tensor::cat(vectors, 1),
                    Combine::Mean => Tensor::stack::<3>(vectors, 0).mean_dim(0).squeeze_dim(0),
                    Combine::Max => Tensor::stack::<3>(vectors, 0).max_dim(0).squeeze_dim(0),
                }
            }
        }
    }

    /// What of the encoder these features read: up to their deepest layer,
    /// and of it [CLS] alone unless they average its tokens.
    pub fn readout(&self, num_layers: usize) -> Readout {
        let (depth, tokens) = match *self {
            Features::Pooler | Features::LastLayer => (num_layers, Tokens::Cls),
            Features::Layer { layer, tokens } => (layer, tokens),
            Features::Combine { layers, tokens, .. } => (layers.layers(num_layers).into_iter().max().unwrap_or(0), tokens),
        };
        let positions = match tokens {
            Tokens::Cls => Positions::Cls,
            Tokens::Mean => Positions::All,
        };
        Readout { depth, positions }
    }

    /// Width of the feature vector.
    pub fn width(&self, hidden: usize, num_layers: usize) -> usize {
        match self {
            Self::Combine { layers, combine: Combine::Concat, .. } => hidden * layers.layers(num_layers).len(),
            _ => hidden,
        }
    }

    /// An error that names the setting when it does not fit the encoder.
    pub fn check(&self, num_layers: usize) -> Result<()> {
        match *self {
            Self::Layer { layer, .. } if layer > num_layers => {
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

/// The mean of `hidden`'s states over the real tokens, [batch, hidden]: over
/// every position when the batch has no padding (`mask` is None), else over
/// the positions whose mask is 1 (sentence-transformers' `Pooling` mean).
fn token_mean(hidden: &Tensor<3>, mask: Option<Tensor<2, Int>>) -> Tensor<2> {
    let [batch, _, width] = hidden.dims();
    match mask {
        None => hidden.clone().mean_dim(1).reshape([batch, width]),
        Some(mask) => masked_mean(hidden.clone(), mask.float()),
    }
}

/// The mean of `x` [batch, n, width] over the positions whose `keep` [batch, n]
/// is 1 (0 elsewhere), [batch, width]: tokens here, chunks in `chunk_pool`.
pub(crate) fn masked_mean(x: Tensor<3>, keep: Tensor<2>) -> Tensor<2> {
    let [batch, n, width] = x.dims();
    let sum = (x * keep.clone().reshape([batch, n, 1])).sum_dim(1).reshape([batch, width]);
    sum / keep.sum_dim(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_sets_number_blocks_from_one() {
        assert_eq!(LayerSet::First4.layers(12), vec![1, 2, 3, 4]);
        assert_eq!(LayerSet::Last4.layers(12), vec![9, 10, 11, 12]);
        assert_eq!(LayerSet::All.layers(6), vec![1, 2, 3, 4, 5, 6]);
        let last4 = Features::Combine { layers: LayerSet::Last4, combine: Combine::Concat, tokens: Tokens::Cls };
        assert_eq!(last4.width(384, 6), 4 * 384);
        assert!(Features::Layer { layer: 7, tokens: Tokens::Cls }.check(6).is_err());
        assert!(Features::Layer { layer: 6, tokens: Tokens::Mean }.check(6).is_ok());
    }

    #[test]
    fn tokens_are_left_out_of_the_serialized_form_at_their_default() {
        let cls: Features = serde_json::from_str(r#"{"kind":"layer","layer":2}"#).unwrap();
        assert_eq!(cls, Features::Layer { layer: 2, tokens: Tokens::Cls });
        assert_eq!(serde_json::to_string(&cls).unwrap(), r#"{"kind":"layer","layer":2}"#);
        let json = r#"{"kind":"combine","layers":"all","combine":"max","tokens":"mean"}"#;
        let mean: Features = serde_json::from_str(json).unwrap();
        assert_eq!(mean, Features::Combine { layers: LayerSet::All, combine: Combine::Max, tokens: Tokens::Mean });
        assert_eq!(serde_json::to_string(&mean).unwrap(), json);
        assert!(serde_json::from_str::<Features>(r#"{"kind":"layer","layer":2,"tokens":"first"}"#).is_err());
    }

    #[test]
    fn token_mean_reads_only_real_tokens() {
        let device = burn::tensor::Device::flex();
        // Two sequences of three positions, width 2; the second has one pad.
        let hidden = Tensor::<3>::from_data(
            burn::tensor::TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 1.0, 1.0, 3.0, 3.0, 100.0, 100.0], [2, 3, 2]),
            &device,
        );
        let mask = Tensor::<2, Int>::from_data(burn::tensor::TensorData::new(vec![1i64, 1, 1, 1, 1, 0], [2, 3]), &device);
        let mean = token_mean(&hidden, Some(mask)).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(mean, vec![3.0, 4.0, 2.0, 2.0]);
        let unmasked = token_mean(&hidden.slice([0..1, 0..3, 0..2]), None).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(unmasked, vec![3.0, 4.0]);
    }
}
