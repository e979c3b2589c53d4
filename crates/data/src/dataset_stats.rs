//! Table 1 of the paper for any catalogued dataset: classes, split sizes, and
//! text lengths in WordPiece tokens of the given tokenizer.

use anyhow::Result;
use serde::Serialize;

use crate::dataset::Dataset;
use crate::tokenize::{BertTokenizer, tokenize_cached};

#[derive(Debug, Clone, Serialize)]
pub struct DatasetStats {
    pub name: String,
    pub classes: usize,
    /// Train as read (our train + dev), and test (given or carved).
    pub train: usize,
    pub test: usize,
    pub test_carved: bool,
    pub avg_len: f64,
    pub max_len: usize,
    /// Share of texts whose tokens do not fit one 512-token input (more than 510).
    pub over_512: f64,
}

/// Lengths count WordPiece tokens of a text without [CLS] and [SEP], over all splits.
pub fn compute(dataset: &Dataset, tokenizer: &BertTokenizer) -> Result<DatasetStats> {
    let texts: Vec<&str> = dataset.train.iter().chain(&dataset.dev).chain(&dataset.test).map(|e| e.text.as_str()).collect();
    let lengths: Vec<usize> = tokenize_cached(tokenizer, &texts)?.iter().map(|ids| ids.len()).collect();
    let n = lengths.len().max(1) as f64;
    Ok(DatasetStats {
        name: dataset.name.clone(),
        classes: dataset.classes.len(),
        train: dataset.train.len() + dataset.dev.len(),
        test: dataset.test.len(),
        test_carved: dataset.provenance.test_carved.is_some(),
        avg_len: lengths.iter().sum::<usize>() as f64 / n,
        max_len: lengths.iter().copied().max().unwrap_or(0),
        over_512: lengths.iter().filter(|&&l| l > 510).count() as f64 / n,
    })
}

pub fn markdown(rows: &[DatasetStats], tokenizer_name: &str) -> String {
    let mut out = format!(
        "Lengths in WordPiece tokens of {tokenizer_name} ([CLS]/[SEP] not counted), over train and test; \
         >512: share of texts over 510 tokens (not fitting one 512-token input). \
         Train is the split as read (bertfit carves dev from it); * marks a test split carved from train.\n\n\
         | Dataset | Classes | Avg len | Max len | >512 | Train | Test |\n|---|---|---|---|---|---|---|\n"
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {:.0} | {} | {:.2}% | {} | {}{} |\n",
            r.name,
            r.classes,
            r.avg_len,
            r.max_len,
            100.0 * r.over_512,
            r.train,
            r.test,
            if r.test_carved { "*" } else { "" }
        ));
    }
    out
}
