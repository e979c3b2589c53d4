//! Classification heads on the encoder (Section 5.3 of the paper).
//!
//! `BertForSequenceClassification` mirrors HF's class of that name: with the
//! default head (pooler output, dropout, linear `classifier`) its checkpoint is
//! HF's, tensor for tensor. The paper's variants are settings of the same
//! module, not other classes: which hidden states feed it ([`Features`]) and,
//! for the hierarchical long-text methods, how a document's chunks are pooled
//! ([`ChunkPool`]). `BertForMultiTask` shares one encoder among several tasks,
//! one classifier each (Section 5.4).

use std::path::Path;

use anyhow::Result;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::bert::{BertInput, BertModel, linear};
use crate::chunk_pool::{AttentionPool, ChunkPool, pool_chunks};
use crate::config::BertConfig;
use crate::features::Features;
use crate::weights::{EncoderPrefix, LoadReport, load_hf_weights};

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
