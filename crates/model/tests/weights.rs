//! Weight I/O: HF .bin with `bert.` prefix and legacy names (against HF's own
//! outputs), save -> load round trip, and strictness errors that list names.

use std::path::{Path, PathBuf};

use bertfit_model::{
    BertConfig, BertForSequenceClassification, BertInput, BertModel, EncoderPrefix, HeadConfig, load_hf_weights, load_pretrained,
    save_hf_weights,
};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use safetensors::SafeTensors;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn device() -> Device {
    Device::flex()
}

fn read_f32(st: &SafeTensors, name: &str) -> Vec<f32> {
    st.tensor(name).unwrap().data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

fn read_i64(st: &SafeTensors, name: &str) -> Vec<i64> {
    st.tensor(name).unwrap().data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect()
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn pytorch_bin_with_bert_prefix_and_gamma_beta_matches_hf() {
    let dir = fixtures().join("tiny_bert_pt");
    let bytes = std::fs::read(fixtures().join("tiny_bert_pt_outputs.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let config = BertConfig::from_file(&dir.join("config.json")).unwrap();
    let (model, report) = BertForSequenceClassification::from_pretrained(&dir, &config, 3, HeadConfig::default(), &device()).unwrap();
    assert!(report.initialized.is_empty(), "the checkpoint has a classifier: {:?}", report.initialized);
    let input = BertInput::from_ids(read_i64(&st, "input_ids"), read_i64(&st, "attention_mask"), [2, 6], &device());
    let logits = to_vec(model.valid().forward(input));
    let d = max_diff(&logits, &read_f32(&st, "logits"));
    assert!(d < 1e-5, "logits differ from HF by {d}");

    // The same checkpoint into a bare encoder: the `bert.` prefix is dropped and
    // the classifier is reported as skipped, not an error.
    let (_, encoder, report) = load_pretrained(&dir, &device()).unwrap();
    assert_eq!(report.skipped.len(), 2, "{:?}", report.skipped);
    let input = BertInput::from_ids(read_i64(&st, "input_ids"), read_i64(&st, "attention_mask"), [2, 6], &device());
    let hidden = to_vec(encoder.valid().forward(input).last());
    let hf = read_f32(&st, "hidden");
    let last = &hf[hf.len() - hidden.len()..];
    let mask = read_i64(&st, "attention_mask");
    let h = config.hidden_size;
    for (pos, m) in mask.iter().enumerate() {
        if *m == 1 {
            let d = max_diff(&hidden[pos * h..(pos + 1) * h], &last[pos * h..(pos + 1) * h]);
            assert!(d < 1e-5, "position {pos} differs by {d}");
        }
    }
}

fn tiny_ids() -> BertInput {
    BertInput::from_ids(vec![2, 5, 6, 7, 3, 2, 8, 3, 0, 0], vec![1, 1, 1, 1, 1, 1, 1, 1, 0, 0], [2, 5], &device())
}

#[test]
fn save_then_load_round_trips_and_is_hf_layout() {
    let config = BertConfig::tiny(40);
    let model = BertModel::new(&config, &device());
    let dir = tempfile::tempdir().unwrap();
    save_hf_weights(&model, dir.path()).unwrap();
    config.save(&dir.path().join("config.json"), "BertModel").unwrap();

    let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
    names.sort();
    assert!(names.contains(&"encoder.layer.0.attention.self.query.weight".to_string()), "{names:?}");
    assert!(names.contains(&"embeddings.LayerNorm.weight".to_string()), "{names:?}");
    // PyTorch layout: Linear weights are [out, in].
    assert_eq!(st.tensor("encoder.layer.0.intermediate.dense.weight").unwrap().shape(), &[64, 32]);
    assert_eq!(names.len(), 5 + 16 * 2 + 2, "{names:?}");

    let (loaded_config, loaded, _) = load_pretrained(dir.path(), &device()).unwrap();
    assert_eq!(loaded_config.hidden_size, 32);
    let a = to_vec(model.valid().forward(tiny_ids()).last());
    let b = to_vec(loaded.valid().forward(tiny_ids()).last());
    assert_eq!(max_diff(&a, &b), 0.0);
}

/// Writes a safetensors file with `edit` applied to the tensors of a saved tiny model.
fn edited_checkpoint(edit: impl Fn(&mut Vec<(String, Vec<usize>, Vec<u8>)>)) -> tempfile::TempDir {
    let config = BertConfig::tiny(40);
    let dir = tempfile::tempdir().unwrap();
    save_hf_weights(&BertModel::new(&config, &device()), dir.path()).unwrap();
    config.save(&dir.path().join("config.json"), "BertModel").unwrap();
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> =
        st.tensors().into_iter().map(|(n, t)| (n, t.shape().to_vec(), t.data().to_vec())).collect();
    edit(&mut tensors);
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, s, d)| (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, &path).unwrap();
    dir
}

fn load_error(dir: &Path) -> String {
    let config = BertConfig::tiny(40);
    let mut model = BertModel::new(&config, &device());
    format!("{:#}", load_hf_weights(&mut model, dir, EncoderPrefix::Bare, &[]).unwrap_err())
}

#[test]
fn missing_unexpected_and_misshaped_tensors_are_named() {
    let dir = edited_checkpoint(|t| t.retain(|(n, _, _)| n != "pooler.dense.bias"));
    let err = load_error(dir.path());
    assert!(err.contains("missing") && err.contains("pooler.dense.bias"), "{err}");

    let dir = edited_checkpoint(|t| t.push(("encoder.extra.weight".into(), vec![2], vec![0; 8])));
    let err = load_error(dir.path());
    assert!(err.contains("unexpected") && err.contains("encoder.extra.weight"), "{err}");

    let dir = edited_checkpoint(|t| {
        let e = t.iter_mut().find(|(n, _, _)| n == "pooler.dense.bias").unwrap();
        e.1 = vec![16];
        e.2.truncate(16 * 4);
    });
    let err = load_error(dir.path());
    assert!(err.contains("pooler.dense.bias"), "{err}");

    // Buffers without learned state are ignored, as HF does.
    let dir = edited_checkpoint(|t| t.push(("embeddings.position_ids".into(), vec![1], vec![0; 4])));
    let config = BertConfig::tiny(40);
    let mut model = BertModel::new(&config, &device());
    load_hf_weights(&mut model, dir.path(), EncoderPrefix::Bare, &[]).unwrap();
}

#[test]
fn truncated_file_and_missing_directory_are_clear_errors() {
    let dir = edited_checkpoint(|_| {});
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_error(dir.path());
    assert!(err.contains("model.safetensors"), "{err}");

    let err = load_error(Path::new("/nonexistent/model"));
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    BertConfig::tiny(40).save(&path, "BertModel").unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("\"gelu\"", "\"swish\"")).unwrap();
    let err = format!("{:#}", BertConfig::from_file(&path).unwrap_err());
    assert!(err.contains("hidden_act") && err.contains("swish") && err.contains("config.json"), "{err}");

    // Every name HF gives an activation reads, and is written back as it was.
    for name in ["gelu", "gelu_new", "gelu_pytorch_tanh", "relu"] {
        std::fs::write(&path, text.replace("\"gelu\"", &format!("{name:?}"))).unwrap();
        let config = BertConfig::from_file(&path).unwrap();
        assert_eq!(config.hidden_act.name(), name);
        config.save(&path, "BertModel").unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().contains(&format!("\"hidden_act\": {name:?}")));
    }

    let mut config = BertConfig::tiny(40);
    config.num_attention_heads = 5;
    config.save(&path, "BertModel").unwrap();
    let err = format!("{:#}", BertConfig::from_file(&path).unwrap_err());
    assert!(err.contains("num_attention_heads"), "{err}");
}
