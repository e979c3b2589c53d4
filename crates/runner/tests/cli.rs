//! The `bertfit` binary on bad input and on a tiny random-weight model:
//! one-line errors, non-zero exits, no panics.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use bertfit_model::{BertConfig, BertModel, save_hf_weights};
use burn::tensor::Device;

const WORDS: &[&str] = &["the", "a", "movie", "was", "good", "bad", "very", "plot", "!", ".", ",", "it", "is"];

/// A tiny model directory: random weights, config.json, vocab.txt.
fn tiny_model(dir: &Path) {
    let mut vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].iter().map(|s| s.to_string()).collect();
    vocab.extend(WORDS.iter().map(|s| s.to_string()));
    vocab.extend(('a'..='z').map(|c| format!("##{c}")));
    std::fs::write(dir.join("vocab.txt"), vocab.join("\n") + "\n").unwrap();
    let config = BertConfig::tiny(vocab.len());
    save_hf_weights(&BertModel::new(&config, &Device::flex()), dir).unwrap();
    config.save(&dir.join("config.json"), "BertModel").unwrap();
}

fn bertfit(args: &[&str], stdin: &[u8]) -> Output {
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

/// Fails with one line on stderr that contains `needle`.
fn assert_clean_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, got success; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic instead of an error: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "expected one line: {stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
}

#[test]
fn encode_outputs_one_json_line_per_text() {
    let dir = tempfile::tempdir().unwrap();
    tiny_model(dir.path());
    let model = dir.path().to_str().unwrap();
    let out = bertfit(&["encode", "--model", model, "--layers", "0,2", "--pool", "mean"], b"the movie was good\nbad plot !\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["index"], i);
        let layers = line["layers"].as_object().unwrap();
        assert_eq!(layers.keys().collect::<Vec<_>>(), vec!["0", "2"]);
        assert_eq!(layers["2"].as_array().unwrap().len(), 32);
    }
    // Mean pooling of layer 0 differs from [CLS] of layer 0.
    let out = bertfit(&["encode", "--model", model, "--layers", "0"], b"the movie was good\n");
    let cls: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_ne!(cls["layers"]["0"], lines[0]["layers"]["0"]);
}

#[test]
fn bad_inputs_get_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    tiny_model(dir.path());
    let model = dir.path().to_str().unwrap();

    // --backend foo: rejected by the argument parser, which names the value.
    let out = bertfit(&["encode", "--model", model, "--backend", "foo"], b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("unknown backend \"foo\""), "{stderr}");

    assert_clean_error(&bertfit(&["encode", "--model", "/nonexistent/model"], b"hi\n"), "/nonexistent/model");

    let out = bertfit(&["encode", "--model", model], b"good\n\xff\xfe bad\n");
    assert_clean_error(&out, "line 2 of standard input is not valid UTF-8");

    let out = bertfit(&["encode", "--model", model, "--layers", "9"], b"good\n");
    assert_clean_error(&out, "layer 9 does not exist");

    let bad_act = tempfile::tempdir().unwrap();
    tiny_model(bad_act.path());
    let text = std::fs::read_to_string(bad_act.path().join("config.json")).unwrap();
    std::fs::write(bad_act.path().join("config.json"), text.replace("\"gelu\"", "\"swish\"")).unwrap();
    assert_clean_error(&bertfit(&["encode", "--model", bad_act.path().to_str().unwrap()], b"a\n"), "hidden_act");

    let truncated = tempfile::tempdir().unwrap();
    tiny_model(truncated.path());
    let weights = truncated.path().join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 3]).unwrap();
    assert_clean_error(&bertfit(&["encode", "--model", truncated.path().to_str().unwrap()], b"a\n"), "model.safetensors");

    if !cfg!(feature = "wgpu") {
        assert_clean_error(&bertfit(&["encode", "--model", model, "--backend", "wgpu"], b"a\n"), "just build-wgpu");
    }
    if !cfg!(feature = "tch") {
        assert_clean_error(&bertfit(&["encode", "--model", model, "--backend", "tch"], b"a\n"), "just build-tch");
    }
}
