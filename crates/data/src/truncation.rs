//! Long-text strategies of the paper (Section 5.3.1), one enum.
//!
//! Each takes a text's content ids (no special tokens) and returns the model
//! inputs: one `[CLS] ... [SEP]` sequence, or for `Hierarchical` one per chunk.

use serde::{Deserialize, Serialize};

use crate::tokenize::SpecialTokens;

/// The paper's head length at max_len 512 (first 128 and last 382 tokens).
pub const PAPER_HEAD: usize = 128;
/// Content tokens at max_len 512: 510 = 512 - [CLS] - [SEP].
pub const PAPER_CONTENT: usize = 510;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Truncation {
    /// Keep the first `max_len - 2` tokens.
    HeadOnly,
    /// Keep the last `max_len - 2` tokens.
    TailOnly,
    /// Keep the first `head` and the last `max_len - 2 - head` tokens.
    HeadTail { head: usize },
    /// Split into k = ceil(L / (chunk_len - 2)) chunks (at most `max_chunks`),
    /// each its own `[CLS] ... [SEP]` sequence of at most `chunk_len`.
    Hierarchical { chunk_len: usize, max_chunks: usize },
}

impl Truncation {
    /// Head+tail with the paper's proportion (128 of 510) kept at any `max_len`.
    pub fn head_tail_for(max_len: usize) -> Self {
        let content = max_len.saturating_sub(2);
        let head = (PAPER_HEAD * content + PAPER_CONTENT / 2) / PAPER_CONTENT;
        Self::HeadTail { head }
    }

    /// The content ids kept, in order, for a sequence of at most `max_len`.
    pub fn select<'a>(&self, content: &'a [u32], max_len: usize) -> Vec<&'a [u32]> {
        let budget = max_len.saturating_sub(2);
        let n = content.len();
        match *self {
            _ if n <= budget && !matches!(self, Self::Hierarchical { .. }) => vec![content],
            Self::HeadOnly => vec![&content[..budget]],
            Self::TailOnly => vec![&content[n - budget..]],
            Self::HeadTail { head } => {
                let head = head.min(budget);
                let tail = budget - head;
                vec![&content[..head], &content[n - tail..]]
            }
            Self::Hierarchical { chunk_len, max_chunks } => {
                let per_chunk = chunk_len.saturating_sub(2).max(1);
                if content.is_empty() {
                    return vec![content];
                }
                content.chunks(per_chunk).take(max_chunks.max(1)).collect()
            }
        }
    }

    /// Model inputs for one text: one sequence, or one per chunk for `Hierarchical`.
    pub fn apply(&self, content: &[u32], max_len: usize, special: &SpecialTokens) -> Vec<Vec<u32>> {
        let wrap = |parts: &[&[u32]]| {
            let mut ids = Vec::with_capacity(parts.iter().map(|p| p.len()).sum::<usize>() + 2);
            ids.push(special.cls);
            for part in parts {
                ids.extend_from_slice(part);
            }
            ids.push(special.sep);
            ids
        };
        let parts = self.select(content, max_len);
        match self {
            Self::Hierarchical { .. } => parts.iter().map(|chunk| wrap(&[chunk])).collect(),
            _ => vec![wrap(&parts)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECIAL: SpecialTokens = SpecialTokens {
        cls: 101,
        sep: 102,
        pad: 0,
        mask: 103,
        unk: 100,
    };

    fn ids(n: u32) -> Vec<u32> {
        (1000..1000 + n).collect()
    }

    #[test]
    fn head_only_keeps_the_first_tokens() {
        let out = Truncation::HeadOnly.apply(&ids(10), 6, &SPECIAL);
        assert_eq!(out, vec![vec![101, 1000, 1001, 1002, 1003, 102]]);
    }

    #[test]
    fn tail_only_keeps_the_last_tokens() {
        let out = Truncation::TailOnly.apply(&ids(10), 6, &SPECIAL);
        assert_eq!(out, vec![vec![101, 1006, 1007, 1008, 1009, 102]]);
    }

    #[test]
    fn head_tail_keeps_head_then_tail() {
        let out = Truncation::HeadTail { head: 1 }.apply(&ids(10), 6, &SPECIAL);
        assert_eq!(out, vec![vec![101, 1000, 1007, 1008, 1009, 102]]);
    }

    #[test]
    fn short_texts_are_kept_whole() {
        for t in [Truncation::HeadOnly, Truncation::TailOnly, Truncation::HeadTail { head: 2 }] {
            assert_eq!(t.apply(&ids(3), 6, &SPECIAL), vec![vec![101, 1000, 1001, 1002, 102]]);
        }
    }

    #[test]
    fn paper_proportion_at_512_and_shorter() {
        assert_eq!(Truncation::head_tail_for(512), Truncation::HeadTail { head: 128 });
        // 254 content tokens at 256: 128/510 of them is 63.7 -> 64.
        assert_eq!(Truncation::head_tail_for(256), Truncation::HeadTail { head: 64 });
    }

    #[test]
    fn hierarchical_chunk_count_is_ceil_of_length_over_chunk_content() {
        let t = Truncation::Hierarchical { chunk_len: 6, max_chunks: 100 };
        for (len, chunks) in [(1, 1), (4, 1), (5, 2), (8, 2), (9, 3), (0, 1)] {
            let out = t.apply(&ids(len), 512, &SPECIAL);
            assert_eq!(out.len(), chunks, "length {len}");
            assert!(out.iter().all(|c| c.len() <= 6 && c[0] == 101 && *c.last().unwrap() == 102));
        }
        let capped = Truncation::Hierarchical { chunk_len: 6, max_chunks: 2 }.apply(&ids(20), 512, &SPECIAL);
        assert_eq!(capped.len(), 2);
    }
}
