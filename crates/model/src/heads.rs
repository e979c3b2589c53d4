//! Heads on the encoder. `BertForSequenceClassification` mirrors HF's class of
//! that name: pooler output, dropout, linear (`classifier`).

use std::path::Path;

use anyhow::Result;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::{Device, Tensor};

use crate::bert::{BertInput, BertModel, linear};
use crate::config::BertConfig;
use crate::weights::{EncoderPrefix, LoadReport, load_hf_weights};

#[derive(Module, Debug)]
pub struct BertForSequenceClassification {
    pub bert: BertModel,
    pub dropout: Dropout,
    pub classifier: Linear,
}

impl BertForSequenceClassification {
    pub fn new(config: &BertConfig, num_labels: usize, device: &Device) -> Self {
        Self {
            bert: BertModel::new(config, device),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
            classifier: linear(config.hidden_size, num_labels, config.initializer_range, device),
        }
    }

    /// A classifier on the pretrained encoder of `dir`; the head is new unless
    /// the checkpoint has one of the same shape.
    pub fn from_pretrained(
        dir: &Path,
        config: &BertConfig,
        num_labels: usize,
        device: &Device,
    ) -> Result<(Self, LoadReport)> {
        let mut model = Self::new(config, num_labels, device);
        let report = load_hf_weights(&mut model, dir, EncoderPrefix::Bert, &["classifier."])?;
        Ok((model, report))
    }

    /// Logits, [batch, num_labels].
    pub fn forward(&self, input: BertInput) -> Tensor<2> {
        let hidden = self.bert.forward(input).last();
        let pooled = self.bert.pooler.forward(hidden);
        self.classifier.forward(self.dropout.forward(pooled))
    }
}
