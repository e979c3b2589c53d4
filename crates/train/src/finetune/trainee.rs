//! What the fine-tuning loop trains and on what: a [`Trainee`] is a model with
//! a loss on a batch of one task's examples and class probabilities for
//! evaluation; [`Examples`] a split it can batch.

use bertfit_data::PadTo;
use bertfit_data::batching::ChunkBatch;
use bertfit_model::{BertForMultiTask, BertForSequenceClassification, BertInput};
use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::cross_entropy;

/// A split the loop can batch: examples with a size (tokens) and a label.
pub trait Examples {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Tokens of each example (batching by length, tokens/s).
    fn lengths(&self) -> Vec<usize>;
    fn labels(&self) -> &[usize];
}

/// A model the loop trains: a loss on a batch of one task's examples, and
/// class probabilities for evaluation.
pub trait Trainee: Module {
    type Split: Examples;
    /// Encoder blocks, for the layer-wise learning rate (0 when there is no encoder).
    fn num_layers(&self) -> usize;
    /// Mean cross-entropy (plus any regulariser) over the examples `idx` of `split`.
    fn loss(&self, task: usize, split: &Self::Split, idx: &[usize], device: &Device) -> Tensor<1>;
    /// Class probabilities, [idx.len(), classes].
    fn probabilities(&self, task: usize, split: &Self::Split, idx: &[usize], device: &Device) -> Tensor<2>;
}

/// Token ids of one split, ready for the model: each document is one sequence
/// (`[CLS] ... [SEP]`), or several chunks for the hierarchical methods.
#[derive(Debug, Clone, Default)]
pub struct EncodedSplit {
    pub docs: Vec<Vec<Vec<u32>>>,
    pub labels: Vec<usize>,
    /// The tokenizer's [PAD] id.
    pub pad: u32,
    /// Batches padded to a multiple of a length (few shapes on a GPU); `None`:
    /// to the longest sequence of each batch.
    pub pad_to: Option<PadTo>,
}

impl Examples for EncodedSplit {
    fn len(&self) -> usize {
        self.docs.len()
    }

    fn lengths(&self) -> Vec<usize> {
        self.docs.iter().map(|d| d.iter().map(Vec::len).sum()).collect()
    }

    fn labels(&self) -> &[usize] {
        &self.labels
    }
}

impl EncodedSplit {
    /// Tokens the model reads for these batches, padding included: each batch
    /// is every chunk of its documents at the batch's padded length.
    pub fn padded_tokens(&self, batches: &[Vec<usize>]) -> u64 {
        let mut tokens = 0;
        for idx in batches {
            let chunks: Vec<&Vec<u32>> = idx.iter().flat_map(|&i| self.docs[i].iter()).collect();
            let longest = chunks.iter().map(|c| c.len()).max().unwrap_or(0);
            let len = self.pad_to.map_or(longest, |p| p.length(longest));
            tokens += (chunks.len() * len) as u64;
        }
        tokens
    }

    /// The documents `idx` as one model input, with their chunk counts.
    pub fn input(&self, idx: &[usize], device: &Device) -> (BertInput, Vec<usize>) {
        let docs: Vec<&[Vec<u32>]> = idx.iter().map(|&i| self.docs[i].as_slice()).collect();
        let batch = ChunkBatch::new(&docs, self.pad, self.pad_to);
        let chunks = batch.chunks;
        let input = BertInput::from_ids(chunks.input_ids, chunks.attention_mask, [chunks.batch, chunks.len], device);
        (input, batch.chunks_per_doc)
    }
}

/// Labels of the examples `idx`, as a tensor.
pub fn label_tensor<S: Examples>(split: &S, idx: &[usize], device: &Device) -> Tensor<1, Int> {
    let labels: Vec<i64> = idx.iter().map(|&i| split.labels()[i] as i64).collect();
    Tensor::from_data(TensorData::new(labels, [idx.len()]), device)
}

impl Trainee for BertForSequenceClassification {
    type Split = EncodedSplit;

    fn num_layers(&self) -> usize {
        self.bert.num_layers()
    }

    fn loss(&self, _task: usize, split: &EncodedSplit, idx: &[usize], device: &Device) -> Tensor<1> {
        let (input, chunks) = split.input(idx, device);
        cross_entropy(self.forward_documents(input, &chunks), label_tensor(split, idx, device))
    }

    fn probabilities(&self, _task: usize, split: &EncodedSplit, idx: &[usize], device: &Device) -> Tensor<2> {
        let (input, chunks) = split.input(idx, device);
        softmax(self.forward_documents(input, &chunks), 1)
    }
}

impl Trainee for BertForMultiTask {
    type Split = EncodedSplit;

    fn num_layers(&self) -> usize {
        self.bert.num_layers()
    }

    fn loss(&self, task: usize, split: &EncodedSplit, idx: &[usize], device: &Device) -> Tensor<1> {
        let (input, _) = split.input(idx, device);
        cross_entropy(self.forward(task, input), label_tensor(split, idx, device))
    }

    fn probabilities(&self, task: usize, split: &EncodedSplit, idx: &[usize], device: &Device) -> Tensor<2> {
        let (input, _) = split.input(idx, device);
        softmax(self.forward(task, input), 1)
    }
}

/// One task's splits.
pub struct TaskData<'a, S> {
    pub name: String,
    pub train: &'a S,
    pub dev: &'a S,
    pub test: &'a S,
}
