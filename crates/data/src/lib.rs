//! bertfit-data: the dataset catalogue and readers, splits, tokenization,
//! long-text strategies, batching and MLM masking; and the project's TOML
//! settings files and their errors (`settings`). Knows nothing of models.

pub mod assets;
pub mod batching;
pub mod catalogue;
pub mod dataset;
pub mod dataset_stats;
pub mod download;
pub mod mlm;
pub mod paths;
pub mod readers;
pub mod settings;
pub mod splits;
pub mod tokenize;
pub mod truncation;

pub use catalogue::DatasetSpec;
pub use dataset::{Dataset, Provenance};
pub use readers::{Example, Origin};
pub use tokenize::{BertTokenizer, SpecialTokens, tokenize_cached};
pub use truncation::Truncation;

/// Hex sha256 of some bytes (cache keys, fingerprints).
pub fn hash_bytes(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(bytes))
}

/// Sequences padded to the longest of the batch (dynamic padding), row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaddedBatch {
    pub input_ids: Vec<i64>,
    /// 1 for a real token, 0 for padding.
    pub attention_mask: Vec<i64>,
    pub batch: usize,
    pub len: usize,
}

/// Padded lengths rounded up to a multiple (a GPU then sees a handful of
/// shapes, whose kernels it compiles and caches once), never past `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PadTo {
    pub multiple: usize,
    pub cap: usize,
}

impl PadTo {
    /// The length a batch whose longest sequence has `len` tokens is padded to.
    pub fn length(&self, len: usize) -> usize {
        len.next_multiple_of(self.multiple.max(1)).min(self.cap.max(len))
    }
}

impl PaddedBatch {
    pub fn new<S: AsRef<[u32]>>(sequences: &[S], pad_id: u32) -> Self {
        Self::padded(sequences, pad_id, None)
    }

    /// Padded to the longest sequence, rounded up by `pad_to` when given.
    pub fn padded<S: AsRef<[u32]>>(sequences: &[S], pad_id: u32, pad_to: Option<PadTo>) -> Self {
        let batch = sequences.len();
        let longest = sequences.iter().map(|s| s.as_ref().len()).max().unwrap_or(0);
        let len = pad_to.map_or(longest, |p| p.length(longest));
        let mut input_ids = vec![pad_id as i64; batch * len];
        let mut attention_mask = vec![0; batch * len];
        for (row, seq) in sequences.iter().enumerate() {
            for (col, &id) in seq.as_ref().iter().enumerate() {
                input_ids[row * len + col] = id as i64;
                attention_mask[row * len + col] = 1;
            }
        }
        Self { input_ids, attention_mask, batch, len }
    }

    /// Real (non-padding) tokens in the batch.
    pub fn tokens(&self) -> usize {
        self.attention_mask.iter().filter(|&&m| m == 1).count()
    }
}
