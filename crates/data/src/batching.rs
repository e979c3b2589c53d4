//! Batches: dynamic padding (`PaddedBatch`), optional length bucketing, and
//! documents × chunks for the hierarchical methods.

use crate::splits::{SplitMix64, derive_seed};
use crate::{PadTo, PaddedBatch};

/// The order of one epoch as batches of example indices. Every example appears
/// exactly once. With `bucketed`, examples are shuffled, cut into pools of 50
/// batches, sorted by length inside each pool and batched, and the batches
/// shuffled: less padding, the same examples per epoch and a random order.
pub fn epoch_batches(lengths: &[usize], batch_size: usize, seed: u64, epoch: usize, bucketed: bool) -> Vec<Vec<usize>> {
    let batch_size = batch_size.max(1);
    let mut rng = SplitMix64::new(derive_seed(seed, &format!("epoch/{epoch}")));
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    rng.shuffle(&mut order);
    if !bucketed {
        return order.chunks(batch_size).map(|c| c.to_vec()).collect();
    }
    let mut batches: Vec<Vec<usize>> = Vec::new();
    for pool in order.chunks(batch_size * 50) {
        let mut pool = pool.to_vec();
        pool.sort_by_key(|&i| lengths[i]);
        batches.extend(pool.chunks(batch_size).map(|c| c.to_vec()));
    }
    rng.shuffle(&mut batches);
    batches
}

/// Padding tokens a batching would carry (for reporting what bucketing saves).
pub fn padding_tokens(lengths: &[usize], batches: &[Vec<usize>]) -> usize {
    batches
        .iter()
        .map(|b| {
            let max = b.iter().map(|&i| lengths[i]).max().unwrap_or(0);
            b.iter().map(|&i| max - lengths[i]).sum::<usize>()
        })
        .sum()
}

/// A batch of documents for the hierarchical methods: every chunk of every
/// document padded together, and how many chunks each document has (in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkBatch {
    pub chunks: PaddedBatch,
    pub chunks_per_doc: Vec<usize>,
}

impl ChunkBatch {
    pub fn new<S: AsRef<[u32]>>(documents: &[&[S]], pad_id: u32, pad_to: Option<PadTo>) -> Self {
        let flat: Vec<&[u32]> = documents.iter().flat_map(|d| d.iter().map(|c| c.as_ref())).collect();
        Self { chunks: PaddedBatch::padded(&flat, pad_id, pad_to), chunks_per_doc: documents.iter().map(|d| d.len()).collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_once_per_epoch_and_bucketing_pads_less() {
        let lengths: Vec<usize> = (0..1000).map(|i| 5 + (i * 37) % 200).collect();
        for bucketed in [false, true] {
            let batches = epoch_batches(&lengths, 16, 3, 0, bucketed);
            let mut seen: Vec<usize> = batches.concat();
            seen.sort_unstable();
            assert_eq!(seen, (0..1000).collect::<Vec<_>>());
            assert!(batches.iter().all(|b| b.len() <= 16));
        }
        let plain = padding_tokens(&lengths, &epoch_batches(&lengths, 16, 3, 0, false));
        let bucketed = padding_tokens(&lengths, &epoch_batches(&lengths, 16, 3, 0, true));
        assert!(bucketed * 5 < plain, "bucketed {bucketed} vs plain {plain}");
        assert_ne!(epoch_batches(&lengths, 16, 3, 0, true), epoch_batches(&lengths, 16, 3, 1, true));
    }

    #[test]
    fn chunk_batches_keep_document_boundaries() {
        let a = [vec![101u32, 5, 102], vec![101, 6, 7, 102]];
        let b = [vec![101u32, 8, 102]];
        let batch = ChunkBatch::new(&[&a[..], &b[..]], 0, None);
        assert_eq!(batch.chunks_per_doc, vec![2, 1]);
        assert_eq!((batch.chunks.batch, batch.chunks.len), (3, 4));
        assert_eq!(batch.chunks.attention_mask, vec![1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0]);
        // Rounded up to a multiple of 3, capped at 5: length 4 -> 5 (6 is past the cap).
        let rounded = ChunkBatch::new(&[&a[..], &b[..]], 0, Some(PadTo { multiple: 3, cap: 5 }));
        assert_eq!(rounded.chunks.len, 5);
        assert_eq!(rounded.chunks.input_ids[..5], [101, 5, 102, 0, 0]);
        assert_eq!(PadTo { multiple: 64, cap: 512 }.length(65), 128);
        assert_eq!(PadTo { multiple: 64, cap: 500 }.length(490), 500);
    }
}
