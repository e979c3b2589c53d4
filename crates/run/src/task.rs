//! From a `[data]` section to model inputs: the dataset read and split, its
//! texts tokenized (cached) and cut to length by the run's long-text strategy.

use anyhow::Result;
use bertfit_data::{BertTokenizer, Dataset, Example, PadTo, Truncation, catalogue, tokenize_cached};
use bertfit_train::EncodedSplit;
use serde::{Deserialize, Serialize};

use crate::finetune_config::DataConfig;

/// One dataset's splits as model inputs.
pub struct Task {
    pub dataset: Dataset,
    /// Train, dev and test.
    pub splits: [EncodedSplit; 3],
    /// Documents per split that lost middle chunks to `max_chunks` (hierarchical methods).
    pub capped: [usize; 3],
}

/// Split sizes and capped documents, as results record them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitSizes {
    pub train: usize,
    pub dev: usize,
    pub test: usize,
}

impl Task {
    pub fn sizes(&self) -> SplitSizes {
        let [train, dev, test] = &self.splits;
        SplitSizes { train: train.docs.len(), dev: dev.docs.len(), test: test.docs.len() }
    }
}

/// The texts of one split as model inputs, and how many were capped.
pub fn encode(
    tokenizer: &BertTokenizer,
    examples: &[Example],
    truncation: Truncation,
    max_len: usize,
    pad_to_multiple: Option<usize>,
) -> Result<(EncodedSplit, usize)> {
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let ids = tokenize_cached(tokenizer, &texts)?;
    let capped = ids.iter().filter(|c| truncation.caps(c.len(), max_len)).count();
    let split = EncodedSplit {
        docs: ids.iter().map(|c| truncation.apply(c, max_len, &tokenizer.special)).collect(),
        labels: examples.iter().map(|e| e.label).collect(),
        pad: tokenizer.special.pad,
        pad_to: pad_to_multiple.map(|multiple| PadTo { multiple, cap: truncation.sequence_len(max_len) }),
    };
    Ok((split, capped))
}

/// Reads dataset `name` (the run's own, or another task of a multi-task run)
/// with the `[data]` settings: splits, samples, tokens.
pub fn load_task(data: &DataConfig, name: &str, tokenizer: &BertTokenizer) -> Result<Task> {
    let dataset = load_dataset(data, name)?;
    let truncation = data.truncation();
    let mut splits = Vec::with_capacity(3);
    let mut capped = [0; 3];
    for (i, examples) in [&dataset.train, &dataset.dev, &dataset.test].into_iter().enumerate() {
        let (split, n) = encode(tokenizer, examples, truncation, data.max_len, data.pad_to_multiple)?;
        splits.push(split);
        capped[i] = n;
    }
    let splits: [EncodedSplit; 3] = splits.try_into().unwrap_or_else(|_| unreachable!("three splits"));
    Ok(Task { dataset, splits, capped })
}

/// Dataset `name` split and sampled as `[data]` says, before tokenization.
pub fn load_dataset(data: &DataConfig, name: &str) -> Result<Dataset> {
    let spec = catalogue::find(name)?;
    let dataset = Dataset::load(&spec, data.split_seed)?;
    Ok(dataset.sampled(data.train_subset, data.dev_size, data.test_size, data.split_seed))
}
