//! Every compiled backend against flex on a tiny random model, dropout off: the
//! logits, and the gradients of one backward pass at the classifier, through
//! the attention and the residual LayerNorms of the first block, and at the
//! embeddings (LibTorch runs each encoder block as one torch computation, with
//! torch's autograd as its backward: `crates/tch`).

use bertfit_model::features::{Combine, Features, LayerSet, Tokens};
use bertfit_model::{Backend, BertConfig, BertForSequenceClassification, BertInput, EncoderOutput, HeadConfig};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

fn input(device: &Device) -> BertInput {
    BertInput::from_ids(vec![2, 5, 6, 7, 3, 2, 8, 9, 3, 0], vec![1, 1, 1, 1, 1, 1, 1, 1, 1, 0], [2, 5], device)
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Logits (inference), and the gradients of a fixed loss at parameters before,
/// inside and after the encoder, flattened one after the other.
fn run(model: &BertForSequenceClassification, backend: Backend) -> (Vec<f32>, Vec<f32>) {
    let device = backend.device().unwrap();
    let logits = to_vec(model.clone().valid().to_device(&device).forward(input(&device)));
    let train_device = device.clone().autodiff();
    let model = model.clone().to_device(&train_device).train();
    let labels = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 0], [2, 1]), &train_device);
    let loss = log_softmax(model.forward(input(&train_device)), 1).gather(1, labels).mean().neg();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let block = &model.bert.encoder.layer[0];
    let mut grad = to_vec(grads.get::<2>(model.classifier.weight.id).unwrap());
    for id in [
        block.attention.self_attention.query.weight.id,
        block.attention.self_attention.value.weight.id,
        model.bert.embeddings.word_embeddings.weight.id,
    ] {
        grad.extend(to_vec(grads.get::<2>(id).unwrap()));
    }
    for id in [
        block.attention.output.LayerNorm.gamma.id,
        block.output.LayerNorm.beta.as_ref().unwrap().id,
        model.bert.embeddings.LayerNorm.gamma.id,
    ] {
        grad.extend(to_vec(grads.get::<1>(id).unwrap()));
    }
    (logits, grad)
}

#[test]
#[cfg_attr(
    not(any(feature = "tch", feature = "wgpu")),
    ignore = "flex is the only backend compiled in: nothing to compare it with (--features tch,wgpu; `just test` builds them)"
)]
fn every_compiled_backend_matches_flex() {
    let mut config = BertConfig::tiny(16);
    config.hidden_dropout_prob = 0.0;
    config.attention_probs_dropout_prob = 0.0;
    let model = BertForSequenceClassification::new(&config, 3, HeadConfig::default(), &Device::flex());
    let (logits, grad) = run(&model, Backend::Flex);
    let others: Vec<Backend> = Backend::available().into_iter().filter(|b| *b != Backend::Flex).collect();
    eprintln!("backends compiled in: {:?}", Backend::available());
    assert!(!others.is_empty(), "no backend besides flex compiled in");
    for backend in others {
        let (l, g) = run(&model, backend);
        let (dl, dg) = (max_diff(&logits, &l), max_diff(&grad, &g));
        eprintln!("{backend} vs flex: logits {dl:e}, gradients {dg:e}");
        assert!(dl < 1e-4 && dg < 1e-4, "{backend}: logits {dl:e}, gradient {dg:e}");
    }
}

/// The [CLS] vector of every layer of the full encoder's output, [batch, hidden] each.
fn full_cls(output: &EncoderOutput) -> Vec<Vec<f32>> {
    output
        .hidden_states
        .iter()
        .map(|h| {
            let [batch, _, width] = h.dims();
            to_vec(h.clone().slice([0..batch, 0..1, 0..width]))
        })
        .collect()
}

#[test]
fn features_that_read_less_of_the_encoder_equal_the_full_encoder_there() {
    let mut config = BertConfig::tiny(16);
    config.num_hidden_layers = 4;
    config.hidden_dropout_prob = 0.0;
    config.attention_probs_dropout_prob = 0.0;
    for backend in Backend::available() {
        let device = backend.device().unwrap();
        // Inference, and training mode on the autodiff device (LibTorch's fused block as an autodiff node).
        for device in [device.clone(), device.autodiff()] {
            let model = BertForSequenceClassification::new(&config, 3, HeadConfig::default(), &Device::flex()).to_device(&device);
            let full = model.bert.forward(input(&device));
            let cls = full_cls(&full);
            let pooled = to_vec(model.bert.pooler.forward(full.last()));
            let cases: [(Features, Vec<f32>); 5] = [
                (Features::Pooler, pooled),
                (Features::LastLayer, cls[4].clone()),
                (Features::Layer { layer: 2, tokens: Tokens::Cls }, cls[2].clone()),
                (Features::Layer { layer: 0, tokens: Tokens::Cls }, cls[0].clone()),
                // Each sequence's row: its [CLS] of layers 1 to 4, one after the other (width 32).
                (Features::Combine { layers: LayerSet::First4, combine: Combine::Concat, tokens: Tokens::Cls }, {
                    let mut rows = Vec::new();
                    for i in 0..2 {
                        for layer in &cls[1..=4] {
                            rows.extend_from_slice(&layer[i * 32..(i + 1) * 32]);
                        }
                    }
                    rows
                }),
            ];
            for (features, expected) in cases {
                let readout = features.readout(4);
                let got = to_vec(features.compute(&model.bert, input(&device)));
                let diff = max_diff(&got, &expected);
                eprintln!("{backend} {:?} {features:?} ({readout:?}): {diff:e}", device.is_autodiff());
                assert_eq!(got.len(), expected.len());
                assert!(diff < 1e-5, "{backend} {features:?}: {diff:e}");
            }
        }
    }
}
