//! BertForMaskedLM on a tiny random model: the vocabulary projection is the
//! word-embedding matrix itself (its gradient carries both uses, a checkpoint
//! stores it once), logits gathered at the masked positions equal the full
//! logits there, and a saved model reloads to the same outputs.

use bertfit_model::{BertConfig, BertForMaskedLM, BertInput, save_hf_weights};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

const VOCAB: usize = 50;

fn config() -> BertConfig {
    let mut c = BertConfig::tiny(VOCAB);
    c.hidden_dropout_prob = 0.0;
    c.attention_probs_dropout_prob = 0.0;
    c
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Two sequences of length 6, the second padded after 4 tokens; ids 10..20 only.
fn input(device: &Device) -> BertInput {
    let ids = vec![2, 11, 12, 13, 14, 3, 2, 15, 16, 3, 0, 0];
    let mask = vec![1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0];
    BertInput::from_ids(ids, mask, [2, 6], device)
}

fn positions(flat: &[i64], device: &Device) -> Tensor<1, Int> {
    Tensor::from_data(TensorData::new(flat.to_vec(), [flat.len()]), device)
}

#[test]
fn masked_logits_equal_the_full_logits_at_those_positions() {
    let device = Device::flex();
    device.seed(3);
    let model = BertForMaskedLM::new(&config(), true, &device);
    let full = values(model.full_logits(input(&device)));
    let picked = [1i64, 4, 7, 8];
    let out = model.forward(input(&device), positions(&picked, &device));
    assert_eq!(out.mlm_logits.dims(), [4, VOCAB]);
    assert_eq!(out.nsp_logits.as_ref().unwrap().dims(), [2, 2]);
    let masked = values(out.mlm_logits);
    for (k, &p) in picked.iter().enumerate() {
        let row = &full[p as usize * VOCAB..(p as usize + 1) * VOCAB];
        let got = &masked[k * VOCAB..(k + 1) * VOCAB];
        let diff = row.iter().zip(got).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-5, "position {p}: {diff}");
    }
}

#[test]
fn the_decoder_is_the_embedding_matrix_itself() {
    let device = Device::flex().autodiff();
    device.seed(5);
    let model = BertForMaskedLM::new(&config(), false, &device).train();
    let picked = [2i64, 8];
    // Labels 40 and 41: tokens that never occur in the input, so their
    // embedding rows get a gradient through the decoder use alone.
    let labels: Tensor<1, Int> = Tensor::from_data(TensorData::new(vec![40i64, 41], [2]), &device);
    let out = model.forward(input(&device), positions(&picked, &device));
    let logits = out.mlm_logits;
    let log_probs = burn::tensor::activation::log_softmax(logits.clone(), 1);
    let loss = log_probs.gather(1, labels.reshape([2, 1])).mean().neg();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let embedding_grad = values(grads.get::<2>(model.bert.embeddings.word_embeddings.weight.id).expect("the embedding has a gradient"));

    // By hand: d loss / d W[t] = sum over masked m of (p_mt - y_mt) h_m / M,
    // h_m the transformed hidden vector (the decoder's input).
    let plain = model.valid();
    let device = Device::flex();
    let hidden = plain.bert.forward(input(&device)).last().reshape([12, 32]).select(0, positions(&picked, &device));
    let t = &plain.cls.predictions.transform;
    let h = values(t.LayerNorm.forward(gelu(t.dense.forward(hidden))));
    let p = values(softmax(logits.inner(), 1));
    for token in [40usize, 41, 45] {
        for d in 0..32 {
            let mut expected = 0.0f32;
            for m in 0..2 {
                let y = if (m == 0 && token == 40) || (m == 1 && token == 41) { 1.0 } else { 0.0 };
                expected += (p[m * VOCAB + token] - y) * h[m * 32 + d] / 2.0;
            }
            let got = embedding_grad[token * 32 + d];
            assert!((got - expected).abs() < 1e-5, "token {token} dim {d}: {got} vs {expected}");
        }
    }

    // The checkpoint holds the matrix once, under the embedding's name.
    let dir = tempfile::tempdir().unwrap();
    save_hf_weights(&plain, dir.path()).unwrap();
    let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let names = st.names();
    assert!(names.contains(&"bert.embeddings.word_embeddings.weight"));
    assert!(names.contains(&"cls.predictions.bias"));
    assert!(!names.iter().any(|n| n.contains("decoder")), "{names:?}");
}

fn gelu(x: Tensor<2>) -> Tensor<2> {
    burn::tensor::activation::gelu(x)
}

#[test]
fn a_saved_model_reloads_with_identical_outputs() {
    let device = Device::flex();
    device.seed(9);
    let model = BertForMaskedLM::new(&config(), true, &device);
    let dir = tempfile::tempdir().unwrap();
    save_hf_weights(&model, dir.path()).unwrap();
    config().save(&dir.path().join("config.json"), "BertForMaskedLM").unwrap();
    device.seed(1234);
    let (reloaded, report) = BertForMaskedLM::from_pretrained(dir.path(), &config(), true, &device).unwrap();
    assert!(report.initialized.is_empty(), "everything was in the checkpoint: {:?}", report.initialized);
    assert_eq!(values(model.full_logits(input(&device))), values(reloaded.full_logits(input(&device))));
    // An encoder without MLM head (the default model) gets a new one.
    let bare = tempfile::tempdir().unwrap();
    save_hf_weights(&model.bert, bare.path()).unwrap();
    let (_, report) = BertForMaskedLM::from_pretrained(bare.path(), &config(), false, &device).unwrap();
    assert!(report.initialized.iter().any(|n| n.starts_with("cls.predictions.transform")), "{:?}", report.initialized);
}
