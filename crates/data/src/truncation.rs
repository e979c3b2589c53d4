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
    /// Keep the first `head` and the last `max_len - 2 - head` tokens; without
    /// `head`, the paper's proportion (128 of 510) at the run's `max_len`.
    HeadTail {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        head: Option<usize>,
    },
    /// Split into k = ceil(L / (chunk_len - 2)) chunks, each its own
    /// `[CLS] ... [SEP]` sequence of at most `chunk_len` (the run's `max_len`
    /// when left out). A document of more than `max_chunks` chunks keeps its
    /// first and its last chunks, in the paper's head:tail proportion (see
    /// [`Truncation::capped_split`]).
    Hierarchical {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chunk_len: Option<usize>,
        max_chunks: usize,
    },
}

impl Truncation {
    /// Head+tail with the paper's proportion (128 of 510) kept at any `max_len`.
    pub fn head_tail_for(max_len: usize) -> Self {
        Self::HeadTail { head: Some(paper_head(max_len)) }
    }

    /// The same strategy with every size spelled out for `max_len`: what a run
    /// records and is identified by.
    pub fn resolved(&self, max_len: usize) -> Self {
        match *self {
            Self::HeadTail { head: None } => Self::head_tail_for(max_len),
            Self::Hierarchical { chunk_len: None, max_chunks } => Self::Hierarchical { chunk_len: Some(max_len), max_chunks },
            other => other,
        }
    }

    /// Tokens one sequence may hold, [CLS] and [SEP] included.
    pub fn sequence_len(&self, max_len: usize) -> usize {
        match *self {
            Self::Hierarchical { chunk_len: Some(len), .. } => len,
            _ => max_len,
        }
    }

    /// For the hierarchical methods: how many of `max_chunks` chunks come from
    /// the start of a capped document (the rest from its end): the paper's
    /// head:tail proportion (128 : 382), at least one.
    pub fn capped_split(max_chunks: usize) -> (usize, usize) {
        let head = ((max_chunks * PAPER_HEAD) as f64 / PAPER_CONTENT as f64).round().max(1.0) as usize;
        let head = head.min(max_chunks);
        (head, max_chunks - head)
    }

    /// Whether a text of `content_len` tokens loses chunks to `max_chunks`.
    pub fn caps(&self, content_len: usize, max_len: usize) -> bool {
        match *self {
            Self::Hierarchical { chunk_len, max_chunks } => {
                let per_chunk = chunk_len.unwrap_or(max_len).saturating_sub(2).max(1);
                content_len.div_ceil(per_chunk) > max_chunks.max(1)
            }
            _ => false,
        }
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
                let head = head.unwrap_or_else(|| paper_head(max_len)).min(budget);
                let tail = budget - head;
                vec![&content[..head], &content[n - tail..]]
            }
            Self::Hierarchical { chunk_len, max_chunks } => {
                let per_chunk = chunk_len.unwrap_or(max_len).saturating_sub(2).max(1);
                let max_chunks = max_chunks.max(1);
                if content.is_empty() {
                    return vec![content];
                }
                if n.div_ceil(per_chunk) <= max_chunks {
                    return content.chunks(per_chunk).collect();
                }
                // Too long: the first chunks from the start, the last ones
                // aligned on the end (full chunks, no short remainder).
                let (head, tail) = Self::capped_split(max_chunks);
                let mut chunks: Vec<&[u32]> = content.chunks(per_chunk).take(head).collect();
                chunks.extend(content[n - tail * per_chunk..].chunks(per_chunk));
                chunks
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

/// The paper's head length (128 of 510 content tokens) scaled to `max_len`.
fn paper_head(max_len: usize) -> usize {
    let content = max_len.saturating_sub(2);
    (PAPER_HEAD * content + PAPER_CONTENT / 2) / PAPER_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECIAL: SpecialTokens = SpecialTokens { cls: 101, sep: 102, pad: 0, mask: 103, unk: 100 };

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
        let out = Truncation::HeadTail { head: Some(1) }.apply(&ids(10), 6, &SPECIAL);
        assert_eq!(out, vec![vec![101, 1000, 1007, 1008, 1009, 102]]);
    }

    #[test]
    fn short_texts_are_kept_whole() {
        for t in [Truncation::HeadOnly, Truncation::TailOnly, Truncation::HeadTail { head: Some(2) }] {
            assert_eq!(t.apply(&ids(3), 6, &SPECIAL), vec![vec![101, 1000, 1001, 1002, 102]]);
        }
    }

    #[test]
    fn paper_proportion_at_512_and_shorter() {
        assert_eq!(Truncation::head_tail_for(512), Truncation::HeadTail { head: Some(128) });
        // 254 content tokens at 256: 128/510 of them is 63.7 -> 64.
        assert_eq!(Truncation::head_tail_for(256), Truncation::HeadTail { head: Some(64) });
    }

    #[test]
    fn hierarchical_chunk_count_is_ceil_of_length_over_chunk_content() {
        let t = Truncation::Hierarchical { chunk_len: Some(6), max_chunks: 100 };
        for (len, chunks) in [(1, 1), (4, 1), (5, 2), (8, 2), (9, 3), (0, 1)] {
            let out = t.apply(&ids(len), 512, &SPECIAL);
            assert_eq!(out.len(), chunks, "length {len}");
            assert!(out.iter().all(|c| c.len() <= 6 && c[0] == 101 && *c.last().unwrap() == 102));
        }
    }

    #[test]
    fn a_capped_document_keeps_its_first_and_last_chunks() {
        // 4 content tokens per chunk; 22 tokens would be 6 chunks, capped at 4:
        // one from the start, three aligned on the end.
        let t = Truncation::Hierarchical { chunk_len: Some(6), max_chunks: 4 };
        assert_eq!(Truncation::capped_split(4), (1, 3));
        assert_eq!(Truncation::capped_split(2), (1, 1));
        assert_eq!(Truncation::capped_split(8), (2, 6));
        let out = t.apply(&ids(22), 512, &SPECIAL);
        let content: Vec<Vec<u32>> = out.iter().map(|c| c[1..c.len() - 1].to_vec()).collect();
        assert_eq!(content, vec![(1000..1004).collect::<Vec<_>>(), (1010..1014).collect(), (1014..1018).collect(), (1018..1022).collect()]);
        assert!(t.caps(22, 512) && !t.caps(16, 512));
        // Sizes left out come from the run's max_len.
        assert_eq!(
            Truncation::Hierarchical { chunk_len: None, max_chunks: 4 }.resolved(128),
            Truncation::Hierarchical { chunk_len: Some(128), max_chunks: 4 }
        );
        assert_eq!(Truncation::HeadTail { head: None }.resolved(512), Truncation::HeadTail { head: Some(128) });
        assert_eq!(
            Truncation::HeadTail { head: None }.apply(&ids(600), 512, &SPECIAL),
            Truncation::HeadTail { head: Some(128) }.apply(&ids(600), 512, &SPECIAL)
        );
    }
}
