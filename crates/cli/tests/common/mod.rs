//! Helpers of the `bertfit` binary's tests: a tiny random-weight model, a toy
//! dataset, and running the binary.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use bertfit_model::{BertConfig, BertModel, save_hf_weights};
use burn::tensor::Device;

const WORDS: &[&str] = &["the", "a", "movie", "was", "good", "bad", "very", "plot", "!", ".", ",", "it", "is"];

/// A tiny model directory: random weights, config.json, vocab.txt.
pub fn tiny_model(dir: &Path) {
    tiny_model_seeded(dir, None)
}

/// The tiny model, its weights drawn from `seed` when given.
pub fn tiny_model_seeded(dir: &Path, seed: Option<u64>) {
    let mut vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].iter().map(|s| s.to_string()).collect();
    vocab.extend(WORDS.iter().map(|s| s.to_string()));
    vocab.extend(('a'..='z').map(|c| format!("##{c}")));
    std::fs::write(dir.join("vocab.txt"), vocab.join("\n") + "\n").unwrap();
    let config = BertConfig::tiny(vocab.len());
    let device = Device::flex();
    if let Some(seed) = seed {
        device.seed(seed);
    }
    save_hf_weights(&BertModel::new(&config, &device), dir).unwrap();
    config.save(&dir.join("config.json"), "BertModel").unwrap();
}

pub fn bertfit(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bertfit"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

const GOOD: &[&str] = &["good", "very", "!", "it", "is"];
const BAD: &[&str] = &["bad", "plot", ".", ",", "was"];

/// A two-class dataset (TREC's `LABEL:fine text` format) whose classes use
/// different words; returns the dataset TOML.
pub fn toy_dataset(dir: &Path) -> std::path::PathBuf {
    let mut state = 17u64;
    let mut lines = |n: usize| {
        (0..n)
            .map(|i| {
                let (label, words) = if i % 2 == 0 { ("GOOD", GOOD) } else { ("BAD", BAD) };
                let text: Vec<&str> = (0..3 + i % 5)
                    .map(|_| {
                        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        words[(state >> 33) as usize % words.len()]
                    })
                    .collect();
                format!("{label}:x the movie {}\n", text.join(" "))
            })
            .collect::<String>()
    };
    std::fs::write(dir.join("train.label"), lines(80)).unwrap();
    std::fs::write(dir.join("test.label"), lines(20)).unwrap();
    let toml = format!(
        "name = \"toy\"\ndescription = \"two made-up classes\"\nclasses = [\"GOOD\", \"BAD\"]\ndomain = \"sentiment\"\nformat = {{ kind = \"trec_label\" }}\ncarve = {{ dev = 0.25 }}\n\
         [train]\nsources = [{{ local = \"{0}/train.label\" }}]\n[test]\nsources = [{{ local = \"{0}/test.label\" }}]\n",
        dir.display()
    );
    let path = dir.join("toy.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// The text of a gzipped file's bytes (a run's `predictions/*.csv.gz`).
pub fn gunzip(bytes: &[u8]) -> String {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(bytes), &mut text).unwrap();
    text
}
