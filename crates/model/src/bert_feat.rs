//! BERT-Feat, the paper's feature-based baseline (Table 6): a frozen BERT's
//! last-layer token vectors are the input of a biLSTM with structured
//! self-attention (Lin et al. 2017, "A Structured Self-attentive Sentence
//! Embedding"), then a small MLP classifier.
//!
//! The biLSTM honours each sequence's length: the backward direction reads
//! the real tokens from the last one to the first, as PyTorch's packed
//! sequences do, never the padding.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, Lstm, LstmConfig};
use burn::tensor::activation::{relu, softmax};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// Sizes of the BERT-Feat classifier (Lin et al.'s defaults, scaled to BERT inputs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeatConfig {
    /// Encoder layer whose token vectors are the features (0 = embeddings;
    /// `None`: the last).
    pub layer: Option<usize>,
    /// Hidden units per LSTM direction.
    pub lstm_hidden: usize,
    /// d_a: width of the attention MLP.
    pub attention_hidden: usize,
    /// r: attention hops (rows of the annotation matrix).
    pub hops: usize,
    /// Width of the MLP between the sentence embedding and the logits.
    pub mlp_hidden: usize,
    /// Coefficient of the penalty ‖AAᵀ − I‖²_F in the loss (Lin et al.: 1.0).
    pub penalty: f64,
    /// Dropout on the features and in the MLP.
    pub dropout: f64,
}

impl Default for FeatConfig {
    fn default() -> Self {
        Self { layer: None, lstm_hidden: 300, attention_hidden: 350, hops: 4, mlp_hidden: 512, penalty: 1.0, dropout: 0.1 }
    }
}

#[derive(Module, Debug)]
pub struct BertFeatClassifier {
    pub forward_lstm: Lstm,
    pub backward_lstm: Lstm,
    /// W_s1 (no bias, as in Lin et al.).
    pub ws1: Linear,
    /// W_s2 (no bias).
    pub ws2: Linear,
    pub mlp: Linear,
    pub classifier: Linear,
    pub dropout: Dropout,
    #[module(skip)]
    pub penalty: f64,
}

/// Output of the classifier: logits and the attention (for the penalty term).
pub struct FeatOutput {
    pub logits: Tensor<2>,
    /// A: [batch, hops, len], each row a distribution over the real tokens.
    pub attention: Tensor<3>,
}

/// For each row, positions 0..len-1 reversed within its own length; padding stays.
fn reverse_index(lengths: &[usize], len: usize) -> Vec<i64> {
    lengths.iter().flat_map(|&n| (0..len).map(move |t| if t < n { (n - 1 - t) as i64 } else { t as i64 })).collect()
}

impl BertFeatClassifier {
    pub fn new(input_width: usize, num_labels: usize, config: FeatConfig, device: &Device) -> Self {
        let lstm = || LstmConfig::new(input_width, config.lstm_hidden, true).init(device);
        let width = 2 * config.lstm_hidden;
        Self {
            forward_lstm: lstm(),
            backward_lstm: lstm(),
            ws1: LinearConfig::new(width, config.attention_hidden).with_bias(false).init(device),
            ws2: LinearConfig::new(config.attention_hidden, config.hops).with_bias(false).init(device),
            mlp: LinearConfig::new(width * config.hops, config.mlp_hidden).init(device),
            classifier: LinearConfig::new(config.mlp_hidden, num_labels).init(device),
            dropout: DropoutConfig::new(config.dropout).init(),
            penalty: config.penalty,
        }
    }

    /// `x`: [batch, len, input_width] token features; `lengths`: real tokens per row.
    pub fn forward(&self, x: Tensor<3>, lengths: &[usize]) -> FeatOutput {
        let [batch, len, _] = x.dims();
        let device = x.device();
        let index =
            Tensor::<1, Int>::from_data(TensorData::new(reverse_index(lengths, len), [batch * len]), &device).reshape([batch, len, 1]);
        let reverse = |t: Tensor<3>| {
            let w = t.dims()[2];
            t.gather(1, index.clone().expand([batch, len, w]))
        };
        let x = self.dropout.forward(x);
        let (forward, _) = self.forward_lstm.forward(x.clone(), None);
        let (backward, _) = self.backward_lstm.forward(reverse(x), None);
        let h = Tensor::cat(vec![forward, reverse(backward)], 2); // [batch, len, 2u]
        // A = softmax(W_s2 tanh(W_s1 H^T)) over the real tokens.
        let scores = self.ws2.forward(self.ws1.forward(h.clone()).tanh()).swap_dims(1, 2); // [batch, hops, len]
        let hops = scores.dims()[1];
        let padding: Vec<bool> = lengths.iter().flat_map(|&n| (0..len).map(move |t| t >= n)).collect();
        let padding = Tensor::<2, Bool>::from_data(TensorData::new(padding, [batch, len]), &device)
            .reshape([batch, 1, len])
            .expand([batch, hops, len]);
        let attention = softmax(scores.mask_fill(padding, f32::NEG_INFINITY), 2);
        let m = attention.clone().matmul(h); // [batch, hops, 2u]
        let flat = m.reshape([batch, hops * self.ws1.weight.dims()[0]]);
        let hidden = relu(self.mlp.forward(self.dropout.forward(flat)));
        FeatOutput { logits: self.classifier.forward(self.dropout.forward(hidden)), attention }
    }
}

/// Lin et al.'s penalty ‖A Aᵀ − I‖²_F, averaged over the batch: it pushes the
/// hops to attend to different tokens.
pub fn attention_penalty(attention: Tensor<3>) -> Tensor<1> {
    let [batch, hops, _] = attention.dims();
    let device = attention.device();
    let gram = attention.clone().matmul(attention.swap_dims(1, 2));
    let eye = Tensor::<2>::eye(hops, &device).reshape([1, hops, hops]).expand([batch, hops, hops]);
    (gram - eye).square().sum().div_scalar(batch as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backward_direction_reads_only_real_tokens() {
        assert_eq!(reverse_index(&[3, 1], 4), vec![2, 1, 0, 3, 0, 1, 2, 3]);
        // The same sequence alone and padded in a batch gives the same logits.
        let device = Device::flex();
        device.seed(1);
        let model = BertFeatClassifier::new(
            6,
            3,
            FeatConfig { lstm_hidden: 5, attention_hidden: 4, hops: 2, mlp_hidden: 7, dropout: 0.0, ..Default::default() },
            &device,
        );
        let values: Vec<f32> = (0..18).map(|i| ((i * 7) % 11) as f32 / 11.0 - 0.5).collect();
        let alone = Tensor::<3>::from_data(TensorData::new(values.clone(), [1, 3, 6]), &device);
        let mut padded_values = values.clone();
        padded_values.extend(std::iter::repeat_n(0.3f32, 12));
        let padded = Tensor::<3>::from_data(TensorData::new(padded_values, [1, 5, 6]), &device);
        let a = model.forward(alone, &[3]).logits.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let b = model.forward(padded, &[3]).logits.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }
}
