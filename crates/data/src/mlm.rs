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
    let n = ((sequence.len() as f64 * config.probability).round() as usize)
        .max(1)
        .min(config.max_predictions)
        .min(candidates.len());
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

/// The further pre-training corpus of some datasets: the texts of their train
/// splits only (never dev or test, which the original code leaked into its
/// corpus), split into sentences, tokenized and packed into sequences of at
/// most `max_len`. Extra unlabeled texts (IMDb's `unsup`) may be added.
pub fn build_corpus(
    datasets: &[&crate::Dataset],
    extra_texts: &[String],
    tokenizer: &crate::BertTokenizer,
    max_len: usize,
) -> anyhow::Result<Vec<Vec<u32>>> {
    let mut documents: Vec<Vec<String>> = Vec::new();
    for dataset in datasets {
        for example in &dataset.train {
            documents.push(split_sentences(&example.text, &dataset.language));
        }
    }
    let language = datasets.first().map(|d| d.language.as_str()).unwrap_or("en");
    for text in extra_texts {
        documents.push(split_sentences(text, language));
    }
    let sentences: Vec<&str> = documents.iter().flatten().map(|s| s.as_str()).collect();
    let mut ids = crate::tokenize_cached(tokenizer, &sentences)?.into_iter();
    let tokenized: Vec<Vec<Vec<u32>>> =
        documents.iter().map(|doc| doc.iter().map(|_| ids.next().expect("one per sentence")).collect()).collect();
    Ok(pack(&tokenized, max_len, &tokenizer.special))
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
        assert_eq!(
            packed,
            vec![
                vec![101, 1, 2, 3, 4, 5, 102],
                vec![101, 6, 7, 8, 9, 10, 102],
                vec![101, 11, 12, 102],
                vec![101, 20, 102]
            ]
        );
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
