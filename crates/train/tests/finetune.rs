//! The fine-tuning loop on a tiny random-weight BERT and a toy task whose
//! classes use disjoint vocabularies: it learns; a run stopped and resumed from
//! its checkpoint ends bit-identical to an uninterrupted one; gradient
//! accumulation equals the larger batch; a diverging run is recorded, not a
//! crash; the hierarchical heads train end to end.

use bertfit_data::splits::SplitMix64;
use bertfit_model::{
    BertConfig, BertFeatClassifier, BertForMultiTask, BertForSequenceClassification, ChunkPool, FeatConfig, Features, HeadConfig,
    save_hf_weights,
};
use bertfit_train::progress::ProgressTarget;
use bertfit_train::{
    Checkpoints, EncodedSplit, FeatureSplit, FinetuneConfig, Finetuned, Outcome, RunControl, ScheduleConfig, TaskData, TaskSampling,
    finetune, train_tasks,
};
use burn::module::Module;
use burn::tensor::Device;

const VOCAB: usize = 40;

/// burn seeds one generator per backend, shared by threads: the tests here
/// seed it and depend on its sequence, so they take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}
const PAD: u32 = 0;

/// Class c draws its tokens from its own range; lengths vary from 3 to 14.
fn toy_split(n: usize, seed: u64, chunk: Option<usize>) -> EncodedSplit {
    let mut rng = SplitMix64::new(seed);
    let mut split = EncodedSplit { pad: PAD, ..Default::default() };
    for i in 0..n {
        let label = i % 2;
        let len = 3 + rng.below(12);
        let content: Vec<u32> = (0..len).map(|_| (5 + 17 * label + rng.below(17)) as u32).collect();
        let wrap = |part: &[u32]| [&[2u32][..], part, &[3u32][..]].concat();
        let doc = match chunk {
            None => vec![wrap(&content)],
            Some(size) => content.chunks(size).map(wrap).collect(),
        };
        split.docs.push(doc);
        split.labels.push(label);
    }
    split
}

fn model_seeded(head: HeadConfig, dropout: bool, seed: u64) -> BertForSequenceClassification {
    let mut config = BertConfig::tiny(VOCAB);
    if !dropout {
        config.hidden_dropout_prob = 0.0;
        config.attention_probs_dropout_prob = 0.0;
    }
    let device = Device::flex().autodiff();
    device.seed(seed);
    BertForSequenceClassification::new(&config, 2, head, &device).train()
}

fn model(head: HeadConfig, dropout: bool) -> BertForSequenceClassification {
    model_seeded(head, dropout, 7)
}

fn config() -> FinetuneConfig {
    FinetuneConfig {
        epochs: 3,
        batch_size: 8,
        eval_batch_size: 16,
        lr: 1e-2,
        schedule: ScheduleConfig::paper(),
        seed: 11,
        ..FinetuneConfig::default()
    }
}

type Classifier = BertForSequenceClassification;

fn run(model: Classifier, config: &FinetuneConfig, control: &RunControl) -> Outcome<Classifier> {
    let (train, dev, test) = (toy_split(64, 1, None), toy_split(32, 2, None), toy_split(32, 3, None));
    finetune(model, &train, &dev, &test, config, &Device::flex().autodiff(), control).unwrap()
}

fn finished<M>(outcome: Outcome<M>) -> Finetuned<M> {
    match outcome {
        Outcome::Finished(f) => *f,
        Outcome::Stopped { step } => panic!("stopped at {step}"),
    }
}

/// Every parameter, by name (safetensors headers order their metadata freely).
fn weights<M: burn::module::Module>(model: &M) -> Vec<(String, Vec<f32>)> {
    let dir = tempfile::tempdir().unwrap();
    save_hf_weights(model, dir.path()).unwrap();
    let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let values = st.tensor(&n).unwrap().data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
            (n, values)
        })
        .collect()
}

#[test]
fn learns_the_toy_task_and_keeps_the_curve() {
    let _serial = serial();
    let quiet = RunControl { progress: ProgressTarget::Quiet, ..Default::default() };
    let every_epoch = FinetuneConfig { test_every_epoch: true, ..config() };
    let done = finished(run(model(HeadConfig::default(), true), &every_epoch, &quiet));
    let r = &done.result;
    assert_eq!(r.curve.len(), 3);
    assert_eq!(r.steps, 3 * 8);
    assert!(r.diverged.is_none());
    let best = r.best_epoch.unwrap();
    // Test evaluated once after training, with the kept best-epoch model: the
    // same error as that epoch's own evaluation, and its predictions kept.
    assert_eq!(r.test_error, r.curve[best - 1].test_error);
    assert_eq!(done.predictions.len(), 1);
    let p = &done.predictions[0];
    let (dev, test) = (toy_split(32, 2, None), toy_split(32, 3, None));
    assert_eq!((p.dev.len(), p.test.len()), (32, 32));
    assert_eq!(bertfit_train::wrong_share(&p.dev, &dev.labels), r.dev_error.unwrap());
    assert_eq!(bertfit_train::wrong_share(&p.test, &test.labels), r.test_error.unwrap());
    assert!(p.test.iter().all(|row| (row.iter().sum::<f32>() - 1.0).abs() < 1e-5));
    // By default test is not evaluated per epoch.
    let plain = finished(run(model(HeadConfig::default(), true), &config(), &quiet));
    assert!(plain.result.curve.iter().all(|e| e.test_error.is_none()));
    assert_eq!(plain.result.test_error, r.test_error);
    assert!(r.curve.iter().all(|e| e.dev_error >= r.dev_error.unwrap()), "best epoch has the lowest dev error");
    assert!(r.test_error.unwrap() <= 0.1, "toy task not learned: {:?}", r.curve);
    assert!(r.curve[2].train_loss < r.curve[0].train_loss, "{:?}", r.curve);
    assert!(r.train_tokens > 0 && r.tokens_per_second > 0.0);
}

#[test]
fn a_stopped_run_resumes_to_the_same_result() {
    let _serial = serial();
    // Dropout on, a checkpoint mid-epoch: what resumption must restore is the
    // model, the Adam moments, the step (schedule), the data order and the
    // dropout masks.
    let config = FinetuneConfig { checkpoint_every: Some(5), ..config() };
    let quiet = |c| RunControl { checkpoints: c, progress: ProgressTarget::Quiet, ..Default::default() };

    let whole_dir = tempfile::tempdir().unwrap();
    let whole_ck = Checkpoints::new(whole_dir.path());
    let whole = finished(run(model(HeadConfig::default(), true), &config, &quiet(Some(&whole_ck))));

    let dir = tempfile::tempdir().unwrap();
    let ck = Checkpoints::new(dir.path());
    // Stops after step 11 of 24: in epoch 2, after its first checkpoint.
    let stopped = run(model(HeadConfig::default(), true), &config, &RunControl { stop_after_steps: Some(11), ..quiet(Some(&ck)) });
    assert!(matches!(stopped, Outcome::Stopped { step: 11 }));
    assert!(ck.latest().unwrap().unwrap().ends_with("step-11"));
    // A fresh model (other initial weights): everything must come from the checkpoint.
    let fresh = model_seeded(HeadConfig::default(), true, 99);
    let resumed = finished(run(fresh, &config, &quiet(Some(&ck))));

    let untimed = |curve: &[bertfit_train::EpochRecord]| -> Vec<_> {
        curve.iter().map(|e| (e.epoch, e.steps, e.train_loss, e.lr, e.dev_error, e.test_error, e.train_tokens)).collect()
    };
    assert_eq!(untimed(&resumed.result.curve), untimed(&whole.result.curve));
    assert_eq!(resumed.result.best_epoch, whole.result.best_epoch);
    assert_eq!(weights(&resumed.model), weights(&whole.model), "best-epoch weights differ after resuming");
}

#[test]
fn gradient_accumulation_equals_the_larger_batch() {
    let _serial = serial();
    let quiet = RunControl { progress: ProgressTarget::Quiet, ..Default::default() };
    let one = FinetuneConfig { epochs: 1, batch_size: 8, ..config() };
    let two = FinetuneConfig { batch_size: 4, grad_accum: 2, ..one.clone() };
    let a = finished(run(model(HeadConfig::default(), false), &one, &quiet));
    let b = finished(run(model(HeadConfig::default(), false), &two, &quiet));
    assert_eq!(a.result.steps, b.result.steps);
    let flat = |w: Vec<(String, Vec<f32>)>| w.into_iter().flat_map(|(_, v)| v).collect::<Vec<f32>>();
    let (wa, wb) = (flat(weights(&a.model)), flat(weights(&b.model)));
    let worst = wa.iter().zip(&wb).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(worst < 2e-5, "accumulated and full batches differ by {worst:e}");
}

#[test]
fn an_incomplete_accumulation_group_is_the_mean_of_its_own_micro_batches() {
    let _serial = serial();
    let quiet = RunControl { progress: ProgressTarget::Quiet, ..Default::default() };
    // A large eps makes Adam's step proportional to the gradient, so a
    // gradient divided by the wrong count shows in the weights.
    let optimizer = bertfit_train::OptimizerConfig { eps: 10.0, max_grad_norm: None, ..Default::default() };
    let constant =
        ScheduleConfig { kind: bertfit_train::ScheduleKind::Constant, warmup: bertfit_train::Warmup::Steps(0), ..ScheduleConfig::paper() };
    let whole = FinetuneConfig { epochs: 1, batch_size: 64, lr: 1.0, schedule: constant, optimizer, ..config() };
    // 8 micro-batches per epoch, in a group meant for 16: one step over all 8.
    let leftover = FinetuneConfig { batch_size: 8, grad_accum: 16, ..whole.clone() };
    let a = finished(run(model(HeadConfig::default(), false), &whole, &quiet));
    let b = finished(run(model(HeadConfig::default(), false), &leftover, &quiet));
    assert_eq!((a.result.steps, b.result.steps), (1, 1));
    let flat = |w: Vec<(String, Vec<f32>)>| w.into_iter().flat_map(|(_, v)| v).collect::<Vec<f32>>();
    let (wa, wb) = (flat(weights(&a.model)), flat(weights(&b.model)));
    let worst = wa.iter().zip(&wb).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-6, "the leftover group differs from the full batch by {worst:e}");
}

#[test]
fn a_diverging_run_is_recorded_not_a_crash() {
    let _serial = serial();
    let quiet = RunControl { progress: ProgressTarget::Quiet, ..Default::default() };
    let wild = FinetuneConfig { lr: 50.0, divergence_loss: 3.0, ..config() };
    let done = finished(run(model(HeadConfig::default(), true), &wild, &quiet));
    let why = done.result.diverged.expect("lr 50 diverges");
    assert!(why.contains("training loss"), "{why}");
    assert!(done.result.steps < 24);
}

#[test]
fn hierarchical_heads_train_end_to_end() {
    let _serial = serial();
    let quiet = RunControl { progress: ProgressTarget::Quiet, ..Default::default() };
    for pool in [ChunkPool::Mean, ChunkPool::Max, ChunkPool::SelfAttention] {
        let head = HeadConfig { features: Features::LastLayer, chunk_pool: Some(pool) };
        let (train, dev, test) = (toy_split(64, 1, Some(4)), toy_split(32, 2, Some(4)), toy_split(32, 3, Some(4)));
        assert!(train.docs.iter().any(|d| d.len() > 2));
        let done = finished(finetune(model(head, true), &train, &dev, &test, &config(), &Device::flex().autodiff(), &quiet).unwrap());
        assert!(done.result.test_error.unwrap() <= 0.1, "{pool:?}: {:?}", done.result.curve);
        if pool == ChunkPool::SelfAttention {
            assert!(done.model.chunk_attention.is_some());
        }
    }
}

#[test]
fn multi_task_shares_the_encoder_then_splits_per_task() {
    let _serial = serial();
    // Task 1 is task 0 with the labels swapped: one encoder serves both heads.
    let (train, dev, test) = (toy_split(64, 1, None), toy_split(32, 2, None), toy_split(32, 3, None));
    let flip = |s: &EncodedSplit| EncodedSplit { labels: s.labels.iter().map(|l| 1 - l).collect(), ..s.clone() };
    let (train1, dev1, test1) = (flip(&train), flip(&dev), flip(&test));
    let tasks = [
        TaskData { name: "a".into(), train: &train, dev: &dev, test: &test },
        TaskData { name: "b".into(), train: &train1, dev: &dev1, test: &test1 },
    ];
    let device = Device::flex().autodiff();
    device.seed(5);
    let quiet = RunControl { progress: ProgressTarget::Quiet, ..Default::default() };
    for sampling in [TaskSampling::Proportional, TaskSampling::Uniform] {
        let model = BertForMultiTask::new(&BertConfig::tiny(VOCAB), &[2, 2], Features::Pooler, &device).train();
        let config = FinetuneConfig { task_sampling: sampling, ..config() };
        let done = finished(train_tasks(model, &tasks, &config, &device, &quiet).unwrap());
        let last = done.result.curve.last().unwrap();
        assert_eq!(last.tasks.len(), 2);
        assert_eq!(done.result.steps, 3 * 16, "an epoch has every task's batches");
        assert_eq!(last.tasks.iter().filter(|t| t.test_error.is_some()).count(), 0, "test is evaluated once, after training");
        assert_eq!(done.result.task_test_errors.len(), 2);
        for e in &done.result.task_test_errors {
            assert!(*e <= 0.1, "{sampling:?}: {:?}", done.result);
        }
        // Per-task fine-tuning starts from the shared encoder and that task's head.
        let second = done.model.into_task(1);
        let split_error = bertfit_train::error_rate(&second, 0, &test1, 16, &Device::flex());
        assert!(split_error <= 0.1, "task b's head on the shared encoder: {split_error}");
    }
}

#[test]
fn bert_feat_trains_on_cached_frozen_features() {
    let _serial = serial();
    let cache = tempfile::tempdir().unwrap();
    // SAFETY: set before any thread of this test reads it; the cache path is only read here.
    unsafe { std::env::set_var("BERTFIT_CACHE", cache.path()) };
    let device = Device::flex();
    device.seed(3);
    let bert = bertfit_model::BertModel::new(&BertConfig::tiny(VOCAB), &device);
    let splits: Vec<EncodedSplit> = (1..=3).map(|s| toy_split(if s == 1 { 64 } else { 32 }, s, None)).collect();
    let extract = |s: &EncodedSplit| FeatureSplit::extract(&bert, "tiny", s, 2, 16, &device).unwrap();
    let (train, dev, test) = (extract(&splits[0]), extract(&splits[1]), extract(&splits[2]));
    assert_eq!(train.features[0].len(), train.lengths[0] * 32);
    let cached = std::fs::read_dir(cache.path().join("features")).unwrap().count();
    assert_eq!(cached, 3);
    let again = extract(&splits[0]);
    assert_eq!(again.features, train.features, "read back from the cache");

    let ad = device.clone().autodiff();
    let feat = FeatConfig { lstm_hidden: 16, attention_hidden: 8, hops: 2, mlp_hidden: 16, ..Default::default() };
    let model = BertFeatClassifier::new(32, 2, feat, &ad).train();
    let config = FinetuneConfig { lr: 3e-3, epochs: 4, ..config() };
    let quiet = RunControl { progress: ProgressTarget::Quiet, ..Default::default() };
    let done = finished(finetune(model, &train, &dev, &test, &config, &ad, &quiet).unwrap());
    assert!(done.result.test_error.unwrap() <= 0.15, "{:?}", done.result.curve);
}
