//! BERT with its pre-training heads, mirroring HuggingFace
//! `BertForMaskedLM` / `BertForPreTraining` (`modeling_bert.py`): the masked-LM
//! head `cls.predictions` (dense + activation + LayerNorm, then a projection
//! onto the vocabulary and a bias) and, for next-sentence prediction, the
//! `cls.seq_relationship` classifier on the pooler output.
//!
//! The projection onto the vocabulary has no weight of its own: it is the
//! word-embedding matrix itself (HF ties `cls.predictions.decoder.weight` to
//! `bert.embeddings.word_embeddings.weight`), one parameter used twice, so
//! its gradient is the sum of both uses and a checkpoint stores it once.
//!
//! Logits are computed only at the masked positions: the positions are
//! gathered from the last hidden state before the 30,522-wide projection,
//! the most expensive layer, instead of projecting every token.

#![allow(non_snake_case)] // `LayerNorm` fields carry the checkpoint's name.

use std::path::Path;

use anyhow::Result;
use burn::module::{Module, Param};
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Device, Int, Tensor};

use crate::bert::{BertInput, BertModel, activate, layer_norm, linear};
use crate::config::{Activation, BertConfig};
use crate::weights::{EncoderPrefix, LoadReport, load_hf_weights};

/// `BertPredictionHeadTransform`: dense, activation, LayerNorm.
#[derive(Module, Debug)]
pub struct BertPredictionHeadTransform {
    pub dense: Linear,
    /// `hidden_act`: no weights, a setting of the module.
    #[module(skip)]
    pub transform_act_fn: Activation,
    pub LayerNorm: LayerNorm,
}

/// `BertLMPredictionHead`: the transform, then the (tied) projection onto the
/// vocabulary plus `bias`.
#[derive(Module, Debug)]
pub struct BertLMPredictionHead {
    pub transform: BertPredictionHeadTransform,
    pub bias: Param<Tensor<1>>,
}

/// `BertPreTrainingHeads` (`cls`): the masked-LM head, and the next-sentence
/// classifier when next-sentence prediction is trained.
#[derive(Module, Debug)]
pub struct BertPreTrainingHeads {
    pub predictions: BertLMPredictionHead,
    pub seq_relationship: Option<Linear>,
}

/// `BertForMaskedLM` (and `BertForPreTraining` with `seq_relationship`).
#[derive(Module, Debug)]
pub struct BertForMaskedLM {
    pub bert: BertModel,
    pub cls: BertPreTrainingHeads,
}

/// What a pre-training forward pass gives.
pub struct PretrainingOutput {
    /// Vocabulary logits at the masked positions, [masked, vocab].
    pub mlm_logits: Tensor<2>,
    /// Is-next logits per sequence, [batch, 2], with next-sentence prediction.
    pub nsp_logits: Option<Tensor<2>>,
}

impl BertForMaskedLM {
    /// Random weights as HF's `_init_weights` (normal 0.02, LayerNorm 1 and 0, bias 0).
    pub fn new(config: &BertConfig, next_sentence: bool, device: &Device) -> Self {
        let (h, std) = (config.hidden_size, config.initializer_range);
        Self {
            bert: BertModel::new(config, device),
            cls: BertPreTrainingHeads {
                predictions: BertLMPredictionHead {
                    transform: BertPredictionHeadTransform {
                        dense: linear(h, h, std, device),
                        transform_act_fn: config.hidden_act,
                        LayerNorm: layer_norm(config, device),
                    },
                    bias: Param::from_tensor(Tensor::zeros([config.vocab_size], device)),
                },
                seq_relationship: next_sentence.then(|| linear(h, 2, std, device)),
            },
        }
    }

    /// The encoder of `dir` with its pre-training heads where the checkpoint
    /// has them (`cls.*`), initialised as BERT does where it has not (the
    /// default model, trained for sentence embeddings, ships none). A checkpoint
    /// without a pooler (HF's `BertForMaskedLM` has none) keeps a new one.
    pub fn from_pretrained(dir: &Path, config: &BertConfig, next_sentence: bool, device: &Device) -> Result<(Self, LoadReport)> {
        let mut model = Self::new(config, next_sentence, device);
        let report = load_hf_weights(&mut model, dir, EncoderPrefix::Bert, &["cls.", "bert.pooler."])?;
        Ok((model, report))
    }

    /// The word-embedding matrix that the vocabulary projection shares, [vocab, hidden].
    pub fn decoder_weight(&self) -> Tensor<2> {
        self.bert.embeddings.word_embeddings.weight.val()
    }

    /// Vocabulary logits of hidden vectors, [n, hidden] -> [n, vocab].
    fn project(&self, hidden: Tensor<2>) -> Tensor<2> {
        let p = &self.cls.predictions;
        let t = &p.transform;
        let x = t.LayerNorm.forward(activate(t.transform_act_fn, t.dense.forward(hidden)));
        let [n, _] = x.dims();
        let vocab = p.bias.dims()[0];
        x.matmul(self.decoder_weight().transpose()) + p.bias.val().reshape([1, vocab]).expand([n, vocab])
    }

    /// Logits at `positions` only: flat indices `row * len + column` into the
    /// batch of `input`.
    pub fn forward(&self, input: BertInput, positions: Tensor<1, Int>) -> PretrainingOutput {
        let output = self.bert.forward(input);
        let last = output.last();
        let [batch, len, hidden] = last.dims();
        let masked = last.clone().reshape([batch * len, hidden]).select(0, positions);
        let nsp_logits = self.cls.seq_relationship.as_ref().map(|classifier| classifier.forward(self.bert.pooler.forward(last)));
        PretrainingOutput { mlm_logits: self.project(masked), nsp_logits }
    }

    /// Logits at every position, [batch, len, vocab] (what HF computes; for checks).
    pub fn full_logits(&self, input: BertInput) -> Tensor<3> {
        let last = self.bert.forward(input).last();
        let [batch, len, hidden] = last.dims();
        let vocab = self.cls.predictions.bias.dims()[0];
        self.project(last.reshape([batch * len, hidden])).reshape([batch, len, vocab])
    }
}
