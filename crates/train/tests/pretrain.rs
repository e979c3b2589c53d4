//! The masked-LM pre-training loop on a tiny random-weight BERT and a toy
//! corpus whose sentences repeat one id (so a masked token is predictable
//! from its neighbours): the held-out loss falls, and a run
//! stopped and resumed from its checkpoint ends bit-identical to an
//! uninterrupted one, snapshots included.

use bertfit_data::mlm::{Instance, packed_instances, sentence_pairs};
use bertfit_data::splits::SplitMix64;
use bertfit_data::tokenize::SpecialTokens;
use bertfit_model::{BertConfig, BertForMaskedLM, save_hf_weights};
use bertfit_train::progress::ProgressTarget;
use bertfit_train::{Checkpoints, MlmData, PretrainConfig, PretrainOutcome, RunControl, pretrain};
use burn::module::Module;
use burn::tensor::Device;

const VOCAB: usize = 64;
const SPECIAL: SpecialTokens = SpecialTokens { cls: 2, sep: 3, pad: 0, mask: 4, unk: 1 };

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Documents of sentences `a, a, ..., a`, the ids in 10..60 drawn with
/// weights falling as 1/rank (Zipf, as words are).
fn documents(n: usize, seed: u64) -> Vec<Vec<Vec<u32>>> {
    let mut rng = SplitMix64::new(seed);
    let weights: Vec<f64> = (1..=50).map(|r| 1.0 / r as f64).collect();
    let total: f64 = weights.iter().sum();
    let draw = move |rng: &mut SplitMix64| {
        let mut u = rng.unit() * total;
        for (i, w) in weights.iter().enumerate() {
            if u < *w {
                return 10 + i as u32;
            }
            u -= w;
        }
        59
    };
    (0..n)
        .map(|_| {
            (0..3)
                .map(|_| {
                    let len = 4 + rng.below(6);
                    vec![draw(&mut rng); len]
                })
                .collect()
        })
        .collect()
}

fn model(seed: u64, next_sentence: bool) -> BertForMaskedLM {
    let device = Device::flex().autodiff();
    device.seed(seed);
    BertForMaskedLM::new(&BertConfig::tiny(VOCAB), next_sentence, &device).train()
}

fn config() -> PretrainConfig {
    PretrainConfig {
        steps: 200,
        warmup_steps: 10,
        lr: 5e-3,
        batch_size: 8,
        max_len: 24,
        checkpoint_every: 50,
        keep_checkpoints: true,
        heldout_sequences: 64,
        eval_batch_size: 32,
        ..PretrainConfig::default()
    }
}

fn run(
    model: BertForMaskedLM,
    train: &[Instance],
    heldout: &[Instance],
    config: &PretrainConfig,
    control: &RunControl,
    kept: &std::path::Path,
) -> PretrainOutcome {
    let data = MlmData { train, heldout, special: SPECIAL, vocab_size: VOCAB };
    let snapshot = |step: u64, model: &BertForMaskedLM| save_hf_weights(model, &kept.join(format!("step-{step}")));
    pretrain(model, &data, config, &Device::flex().autodiff(), control, &snapshot).unwrap()
}

fn weights(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    names.into_iter().map(|n| (n.clone(), st.tensor(&n).unwrap().data().to_vec())).collect()
}

#[test]
fn held_out_loss_falls_on_a_learnable_corpus() {
    let _serial = serial();
    let train = packed_instances(&documents(200, 1), 24, &SPECIAL);
    let heldout = packed_instances(&documents(20, 2), 24, &SPECIAL);
    let kept = tempfile::tempdir().unwrap();
    let quiet = RunControl { progress: ProgressTarget::Quiet, ..Default::default() };
    let PretrainOutcome::Finished { result, .. } = run(model(7, false), &train, &heldout, &config(), &quiet, kept.path()) else {
        panic!("stopped")
    };
    let first = &result.curve[0];
    let last = result.curve.last().unwrap();
    assert_eq!(result.curve.iter().map(|r| r.step).collect::<Vec<_>>(), vec![0, 50, 100, 150, 200]);
    assert!(first.heldout_loss > 3.5, "an untrained head starts near ln({VOCAB}): {}", first.heldout_loss);
    assert!(last.heldout_loss < first.heldout_loss - 1.0, "{:?}", result.curve);
    assert!(last.heldout_accuracy > first.heldout_accuracy, "{:?}", result.curve);
    assert!(result.train_tokens > 0 && result.tokens_per_second > 0.0);
    for step in [50, 100, 150, 200] {
        assert!(kept.path().join(format!("step-{step}/model.safetensors")).is_file(), "snapshot of step {step}");
    }
}

#[test]
fn a_stopped_run_resumes_to_the_same_result() {
    let _serial = serial();
    // With next-sentence prediction: the pairs, the masks, dropout and both heads must resume.
    let train = sentence_pairs(&documents(120, 3), 24, &SPECIAL, 5);
    let heldout = sentence_pairs(&documents(10, 4), 24, &SPECIAL, 6);
    let config = PretrainConfig { steps: 30, warmup_steps: 3, checkpoint_every: 10, next_sentence: true, ..config() };
    let control = |c| RunControl { checkpoints: c, identity: Some("toy".into()), progress: ProgressTarget::Quiet, ..Default::default() };

    let (whole_dir, whole_kept) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let whole_ck = Checkpoints::new(whole_dir.path());
    let PretrainOutcome::Finished { model: whole, result: whole_result } =
        run(model(7, true), &train, &heldout, &config, &control(Some(&whole_ck)), whole_kept.path())
    else {
        panic!("stopped")
    };

    let (dir, kept) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ck = Checkpoints::new(dir.path());
    // Stops after step 13, between checkpoints: a checkpoint is written there.
    let stopped =
        run(model(7, true), &train, &heldout, &config, &RunControl { stop_after_steps: Some(13), ..control(Some(&ck)) }, kept.path());
    assert!(matches!(stopped, PretrainOutcome::Stopped { step: 13 }));
    // A fresh model with other weights: everything must come from the checkpoint.
    let PretrainOutcome::Finished { model: resumed, result } =
        run(model(99, true), &train, &heldout, &config, &control(Some(&ck)), kept.path())
    else {
        panic!("stopped")
    };
    let untimed = |r: &bertfit_train::PretrainResult| -> Vec<_> {
        r.curve
            .iter()
            .map(|e| (e.step, e.heldout_loss, e.heldout_accuracy, e.heldout_next_sentence_accuracy, e.train_loss, e.train_tokens))
            .collect()
    };
    assert_eq!(untimed(&result), untimed(&whole_result));
    assert!(result.curve.iter().all(|r| r.heldout_next_sentence_accuracy.is_some()));
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    save_hf_weights(&*whole, a.path()).unwrap();
    save_hf_weights(&*resumed, b.path()).unwrap();
    assert_eq!(weights(a.path()), weights(b.path()), "final weights differ after resuming");
    assert_eq!(weights(&whole_kept.path().join("step-30")), weights(&kept.path().join("step-30")));
    // A checkpoint of another run (another identity) is never continued.
    let other = run_result(&train, &heldout, &config, &RunControl { identity: Some("other".into()), ..control(Some(&ck)) });
    let error = other.err().expect("refused").to_string();
    assert!(error.contains("other settings"), "{error}");
}

fn run_result(train: &[Instance], heldout: &[Instance], config: &PretrainConfig, control: &RunControl) -> anyhow::Result<PretrainOutcome> {
    let data = MlmData { train, heldout, special: SPECIAL, vocab_size: VOCAB };
    pretrain(model(1, true), &data, config, &Device::flex().autodiff(), control, &|_, _| Ok(()))
}

/// Masked-LM pre-training in bf16 mixed precision (`precision = "bf16"`), on
/// LibTorch's CPU as fine-tuning's bf16 is tested (`mixed_precision.rs`): the
/// setting reaches the encoder blocks (the curve is not fp32's), and the
/// held-out loss falls as under fp32, to within a few percent.
#[cfg(feature = "tch")]
#[test]
fn pretraining_in_bf16_learns_as_fp32_does() {
    use bertfit_train::Precision;
    let _serial = serial();
    let device = bertfit_model::Backend::Tch.device().unwrap().autodiff();
    let train = packed_instances(&documents(200, 1), 24, &SPECIAL);
    let heldout = packed_instances(&documents(20, 2), 24, &SPECIAL);
    let data = MlmData { train: &train, heldout: &heldout, special: SPECIAL, vocab_size: VOCAB };
    let quiet = RunControl { progress: ProgressTarget::Quiet, ..Default::default() };
    let curve = |precision| {
        device.seed(7);
        let model = BertForMaskedLM::new(&BertConfig::tiny(VOCAB), false, &device).train();
        let config = PretrainConfig { precision, keep_checkpoints: false, ..config() };
        let PretrainOutcome::Finished { result, .. } = pretrain(model, &data, &config, &device, &quiet, &|_, _| Ok(())).unwrap() else {
            panic!("stopped")
        };
        result.curve.iter().map(|r| r.heldout_loss).collect::<Vec<f64>>()
    };
    let (fp32, bf16) = (curve(Precision::Fp32), curve(Precision::Bf16));
    eprintln!("held-out MLM loss at steps 0, 50, ..., 200: fp32 {fp32:?}, bf16 {bf16:?}");
    assert_ne!(fp32[1..], bf16[1..], "bf16 must reach the encoder blocks");
    let (last32, last16) = (fp32[fp32.len() - 1], bf16[bf16.len() - 1]);
    assert!(last16 < bf16[0] - 1.0, "the loss falls under bf16: {bf16:?}");
    assert!((last16 - last32).abs() / last32 < 0.1, "bf16 ends at {last16}, fp32 at {last32}");
}
