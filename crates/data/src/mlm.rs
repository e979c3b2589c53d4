//! Further pre-training data: sentence splitting, packing into sequences, and
//! BERT's masking (15% of tokens, at most 20 per sequence; of those 80% [MASK],
//! 10% a random token, 10% unchanged; never a special token), seeded.

use crate::splits::SplitMix64;
use crate::tokenize::SpecialTokens;

/// Label of a position that is not predicted (as PyTorch's ignore_index).
pub const IGNORE: i64 = -100;

const ABBREVIATIONS: &[&str] = &["mr.", "mrs.", "ms.", "dr.", "st.", "vs.", "e.g.", "i.e.", "etc.", "u.s.", "no.", "jr.", "sr."];

/// Splits a text into sentences: English after `.`, `!` or `?` (and closing
/// quotes) before whitespace, not after common abbreviations or a single
/// initial; Chinese after `。`, `！`, `？`.
pub fn split_sentences(text: &str, language: &str) -> Vec<String> {
    let mut sentences = Vec::new();
    let mut current = String::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        current.push(c);
        let end = if language == "zh" {
            matches!(c, '。' | '！' | '？')
        } else if matches!(c, '.' | '!' | '?') {
            while i + 1 < chars.len() && matches!(chars[i + 1], '"' | '\'' | ')' | '”' | '’') {
                i += 1;
                current.push(chars[i]);
            }
            let next_is_space = chars.get(i + 1).is_none_or(|n| n.is_whitespace());
            let last_word = current.split_whitespace().last().unwrap_or("").to_lowercase();
            let initial = last_word.len() == 2 && last_word.starts_with(|ch: char| ch.is_alphabetic());
            next_is_space && !(c == '.' && (ABBREVIATIONS.contains(&last_word.as_str()) || initial))
        } else {
            false
        };
        if end {
            let s = current.trim();
            if !s.is_empty() {
                sentences.push(s.to_string());
            }
            current.clear();
        }
        i += 1;
    }
    let s = current.trim();
    if !s.is_empty() {
        sentences.push(s.to_string());
    }
    sentences
}

/// Packs the sentences of each document into `[CLS] ... [SEP]` sequences of at
/// most `max_len` tokens, whole sentences where they fit (a longer sentence is
/// cut); sequences never cross documents.
pub fn pack(documents: &[Vec<Vec<u32>>], max_len: usize, special: &SpecialTokens) -> Vec<Vec<u32>> {
    let budget = max_len.saturating_sub(2).max(1);
    let mut out = Vec::new();
    for doc in documents {
        let mut current: Vec<u32> = Vec::new();
        for sentence in doc {
            for piece in sentence.chunks(budget) {
                if !current.is_empty() && current.len() + piece.len() > budget {
                    out.push(wrap(&current, special));
                    current.clear();
                }
                current.extend_from_slice(piece);
            }
        }
        if !current.is_empty() {
            out.push(wrap(&current, special));
        }
    }
    out
}

fn wrap(content: &[u32], special: &SpecialTokens) -> Vec<u32> {
    let mut ids = Vec::with_capacity(content.len() + 2);
    ids.push(special.cls);
    ids.extend_from_slice(content);
    ids.push(special.sep);
    ids
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaskingConfig {
    pub probability: f64,
    pub max_predictions: usize,
    pub mask_share: f64,
    pub random_share: f64,
}

impl Default for MaskingConfig {
    fn default() -> Self {
        Self { probability: 0.15, max_predictions: 20, mask_share: 0.8, random_share: 0.1 }
    }
}

/// One masked sequence: the input ids and the label of each position
/// (the original id where predicted, `IGNORE` elsewhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Masked {
    pub input_ids: Vec<u32>,
    pub labels: Vec<i64>,
}

/// Masks one sequence as BERT's `create_pretraining_data.py`: n = min(max,
/// max(1, round(len * p))) positions among the non-special tokens.
pub fn mask(sequence: &[u32], config: &MaskingConfig, special: &SpecialTokens, vocab_size: usize, rng: &mut SplitMix64) -> Masked {
    let is_special = |id: u32| [special.cls, special.sep, special.pad, special.mask].contains(&id);
    let mut candidates: Vec<usize> = (0..sequence.len()).filter(|&i| !is_special(sequence[i])).collect();
    rng.shuffle(&mut candidates);
    let n = ((sequence.len() as f64 * config.probability).round() as usize).max(1).min(config.max_predictions).min(candidates.len());
    let mut input_ids = sequence.to_vec();
    let mut labels = vec![IGNORE; sequence.len()];
    for &pos in &candidates[..n] {
        labels[pos] = sequence[pos] as i64;
        let r = rng.unit();
        if r < config.mask_share {
            input_ids[pos] = special.mask;
        } else if r < config.mask_share + config.random_share {
            input_ids[pos] = rng.below(vocab_size) as u32;
        }
    }
    Masked { input_ids, labels }
}

/// Where one part of a pre-training corpus comes from, and how much of it there is.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CorpusPart {
    /// `DATASET train` or `DATASET unlabeled`.
    pub source: String,
    pub documents: usize,
    pub sentences: usize,
    /// WordPiece tokens, special tokens not counted.
    pub tokens: usize,
}

/// A further pre-training corpus: documents as tokenized sentences, most for
/// training and a seeded share of whole documents held out for evaluation
/// (text the model never trains on).
#[derive(Debug, Clone)]
pub struct MlmCorpus {
    pub train: Vec<Vec<Vec<u32>>>,
    pub heldout: Vec<Vec<Vec<u32>>>,
    pub parts: Vec<CorpusPart>,
}

/// Texts of one source of a corpus.
pub struct CorpusTexts<'a> {
    pub source: String,
    pub language: &'a str,
    pub texts: Vec<&'a str>,
}

/// The further pre-training corpus of some sources: each text split into
/// sentences and tokenized (cached). Callers pass train text only, never dev
/// or test text (the original code leaked the test set into its corpus).
/// `heldout` documents (a share, seeded) are kept apart for evaluation.
pub fn build_corpus(sources: &[CorpusTexts], tokenizer: &crate::BertTokenizer, heldout_share: f64, seed: u64) -> anyhow::Result<MlmCorpus> {
    let mut documents: Vec<Vec<Vec<u32>>> = Vec::new();
    let mut parts = Vec::new();
    for source in sources {
        let split: Vec<Vec<String>> = source.texts.iter().map(|t| split_sentences(t, source.language)).collect();
        let sentences: Vec<&str> = split.iter().flatten().map(|s| s.as_str()).collect();
        let mut ids = crate::tokenize_cached(tokenizer, &sentences)?.into_iter();
        let docs: Vec<Vec<Vec<u32>>> =
            split.iter().map(|doc| doc.iter().map(|_| ids.next().expect("one per sentence")).collect()).collect();
        parts.push(CorpusPart {
            source: source.source.clone(),
            documents: docs.len(),
            sentences: sentences.len(),
            tokens: docs.iter().flatten().map(Vec::len).sum(),
        });
        documents.extend(docs.into_iter().filter(|d| !d.is_empty()));
    }
    let mut order: Vec<usize> = (0..documents.len()).collect();
    SplitMix64::new(crate::splits::derive_seed(seed, "mlm/heldout")).shuffle(&mut order);
    let held = ((documents.len() as f64 * heldout_share).round() as usize).min(documents.len().saturating_sub(1));
    let mut is_held = vec![false; documents.len()];
    for &i in &order[..held] {
        is_held[i] = true;
    }
    let (mut train, mut heldout) = (Vec::new(), Vec::new());
    for (doc, held) in documents.into_iter().zip(is_held) {
        if held { heldout.push(doc) } else { train.push(doc) }
    }
    Ok(MlmCorpus { train, heldout, parts })
}

/// One pre-training sequence: ids, segment of each token, and for
/// next-sentence prediction whether segment B follows segment A.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub ids: Vec<u32>,
    pub token_types: Vec<u32>,
    pub is_next: Option<bool>,
}

/// Sentence pairs for next-sentence prediction, as BERT's
/// `create_pretraining_data.py` makes them: sentences of a document fill a
/// sequence of at most `max_len`; they are cut at a random sentence into A and
/// B, and half of the time B is replaced by sentences of another document.
/// Seeded; `[CLS] A [SEP] B [SEP]`, segments 0 and 1.
pub fn sentence_pairs(documents: &[Vec<Vec<u32>>], max_len: usize, special: &SpecialTokens, seed: u64) -> Vec<Instance> {
    let budget = max_len.saturating_sub(3).max(2);
    let mut rng = SplitMix64::new(crate::splits::derive_seed(seed, "mlm/pairs"));
    let mut out = Vec::new();
    for (d, doc) in documents.iter().enumerate() {
        let mut i = 0;
        while i < doc.len() {
            // Sentences that fill the budget (a longer sentence alone, cut).
            let mut chunk: Vec<&[u32]> = Vec::new();
            let mut len = 0;
            while i < doc.len() && (chunk.is_empty() || len + doc[i].len() <= budget) {
                chunk.push(&doc[i]);
                len += doc[i].len();
                i += 1;
            }
            let cut = if chunk.len() >= 2 { 1 + rng.below(chunk.len() - 1) } else { 1 };
            let mut a: Vec<u32> = chunk[..cut].concat();
            let random_next = chunk.len() < 2 || (documents.len() > 1 && rng.unit() < 0.5);
            let mut b: Vec<u32> = if random_next && documents.len() > 1 {
                let mut other = rng.below(documents.len() - 1);
                if other >= d {
                    other += 1;
                }
                let source = &documents[other];
                let start = rng.below(source.len().max(1));
                source[start.min(source.len().saturating_sub(1))..].concat()
            } else {
                chunk[cut..].concat()
            };
            if b.is_empty() {
                continue;
            }
            // Trim the longer segment until both fit (as the original, from the end).
            while a.len() + b.len() > budget {
                if a.len() > b.len() {
                    a.pop()
                } else {
                    b.pop()
                };
            }
            let mut ids = Vec::with_capacity(a.len() + b.len() + 3);
            ids.push(special.cls);
            ids.extend_from_slice(&a);
            ids.push(special.sep);
            let first = ids.len();
            ids.extend_from_slice(&b);
            ids.push(special.sep);
            let token_types = (0..ids.len()).map(|k| u32::from(k >= first)).collect();
            out.push(Instance { ids, token_types, is_next: Some(!(random_next && documents.len() > 1)) });
        }
    }
    out
}

/// Masked-LM sequences: each document's sentences packed into `[CLS] ... [SEP]`
/// sequences of at most `max_len` (segment 0 throughout).
pub fn packed_instances(documents: &[Vec<Vec<u32>>], max_len: usize, special: &SpecialTokens) -> Vec<Instance> {
    pack(documents, max_len, special).into_iter().map(|ids| Instance { token_types: vec![0; ids.len()], ids, is_next: None }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECIAL: SpecialTokens = SpecialTokens { cls: 101, sep: 102, pad: 0, mask: 103, unk: 100 };

    #[test]
    fn english_and_chinese_sentences() {
        let s = split_sentences("Mr. Smith went to Washington. He said \"hi!\" Then J. Doe left? Yes", "en");
        assert_eq!(s, vec!["Mr. Smith went to Washington.", "He said \"hi!\"", "Then J. Doe left?", "Yes"]);
        let z = split_sentences("今天很好。你呢？我很好！好", "zh");
        assert_eq!(z, vec!["今天很好。", "你呢？", "我很好！", "好"]);
    }

    #[test]
    fn packing_fills_sequences_within_documents() {
        let docs = vec![vec![vec![1, 2, 3], vec![4, 5], vec![6, 7, 8, 9, 10, 11, 12]], vec![vec![20]]];
        let packed = pack(&docs, 7, &SPECIAL);
        assert_eq!(packed, vec![vec![101, 1, 2, 3, 4, 5, 102], vec![101, 6, 7, 8, 9, 10, 102], vec![101, 11, 12, 102], vec![101, 20, 102]]);
    }

    #[test]
    fn sentence_pairs_mix_true_and_random_continuations() {
        let docs: Vec<Vec<Vec<u32>>> = (0..40).map(|d| (0..6).map(|s| vec![1000 + d * 10 + s; 3]).collect()).collect();
        let pairs = sentence_pairs(&docs, 16, &SPECIAL, 3);
        assert!(!pairs.is_empty());
        let next = pairs.iter().filter(|p| p.is_next == Some(true)).count();
        let share = next as f64 / pairs.len() as f64;
        assert!((0.3..0.7).contains(&share), "is-next share {share}");
        for p in &pairs {
            assert!(p.ids.len() <= 16 && p.ids[0] == SPECIAL.cls && *p.ids.last().unwrap() == SPECIAL.sep);
            let seps = p.ids.iter().filter(|&&id| id == SPECIAL.sep).count();
            assert_eq!(seps, 2);
            assert_eq!(p.token_types.len(), p.ids.len());
            assert_eq!(p.token_types[0], 0);
            assert_eq!(*p.token_types.last().unwrap(), 1);
            // A true continuation comes from the same document (ids 1000 + 10 d + s).
            if p.is_next == Some(true) {
                let docs_seen: std::collections::BTreeSet<u32> =
                    p.ids.iter().filter(|&&id| id >= 1000).map(|id| (id - 1000) / 10).collect();
                assert_eq!(docs_seen.len(), 1, "{p:?}");
            }
        }
        assert_eq!(pairs, sentence_pairs(&docs, 16, &SPECIAL, 3), "seeded");
    }

    #[test]
    fn masking_statistics() {
        let mut rng = SplitMix64::new(42);
        let (mut predicted, mut masked, mut random, mut kept, mut tokens) = (0usize, 0usize, 0usize, 0usize, 0usize);
        for s in 0..4000 {
            let len = 10 + s % 100;
            let mut seq = vec![SPECIAL.cls];
            seq.extend((0..len as u32).map(|i| 1000 + (i * 7 + s as u32) % 5000));
            seq.push(SPECIAL.sep);
            let m = mask(&seq, &MaskingConfig::default(), &SPECIAL, 30522, &mut rng);
            let n = m.labels.iter().filter(|&&l| l != IGNORE).count();
            assert!((1..=20).contains(&n));
            assert_eq!(m.labels[0], IGNORE);
            assert_eq!(*m.labels.last().unwrap(), IGNORE);
            assert_eq!((m.input_ids[0], *m.input_ids.last().unwrap()), (SPECIAL.cls, SPECIAL.sep));
            if seq.len() <= 120 {
                // Under the cap: 15% of the sequence.
                let expected = ((seq.len() as f64 * 0.15).round() as usize).clamp(1, 20);
                assert_eq!(n, expected);
                tokens += seq.len();
            }
            for (i, &l) in m.labels.iter().enumerate() {
                if l == IGNORE {
                    assert_eq!(m.input_ids[i], seq[i]);
                    continue;
                }
                predicted += 1;
                match m.input_ids[i] {
                    id if id == SPECIAL.mask => masked += 1,
                    id if id == seq[i] => kept += 1,
                    _ => random += 1,
                }
            }
        }
        let share = |x: usize| x as f64 / predicted as f64;
        assert!((share(masked) - 0.8).abs() < 0.01, "mask {}", share(masked));
        assert!((share(random) - 0.1).abs() < 0.01, "random {}", share(random));
        assert!((share(kept) - 0.1).abs() < 0.01, "kept {}", share(kept));
        assert!(tokens > 0);
    }
}
