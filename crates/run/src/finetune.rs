//! One run, top to bottom: a run's settings to a folder of results. Used by
//! `bertfit finetune` (one run) and by the experiment runner (every cell).
//!
//! A run's folder holds `metrics.json` (written last, atomically: its presence
//! means the run is finished), `curve.csv`, `predictions/dev.csv.gz` and
//! `predictions/test.csv.gz` (the best epoch's model on every example), the
//! resolved `config.toml`, and while it trains `checkpoints/`; a killed run resumes from there when run
//! again, and a finished one is not redone. The folder belongs to one run
//! identity: another run's checkpoints or results are never continued.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use bertfit_data::{BertTokenizer, DatasetSpec, Provenance, catalogue};
use bertfit_model::{Backend, BertConfig, BertFeatClassifier, BertForSequenceClassification, FeatConfig, save_hf_weights};
use bertfit_train::{Checkpoints, FeatureSplit, FinetuneResult, Finetuned, Outcome, Precision, RunControl, SplitPredictions};
use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::export::export;
use crate::finetune_config::RunConfig;
use crate::identity::RESULTS_VERSION;
use crate::model_source::{check_vocab, fingerprint, model_dir};
use crate::multitask::{multitask_stage, stage_identity};
use crate::options::{RunOptions, resolve_backend, resolve_precision};
use crate::predictions::write_predictions;
use crate::pretrain::{PreparedPretrain, PretrainMetrics, pretrain_stage};
use crate::results::{Finished, commit, finished, write_atomic, write_metrics};
use crate::task::{SplitSizes, Task, load_task};

/// A run ready to go: settings resolved and checked against its model.
#[derive(Debug, Clone)]
pub struct PreparedRun {
    /// Every default spelled out, the backend among them.
    pub config: RunConfig,
    pub backend: Backend,
    pub model_dir: PathBuf,
    pub bert_config: BertConfig,
    /// Hash of everything that decides the result (see `RunConfig::identity`).
    pub identity: String,
    model_fingerprint: String,
}

impl PreparedRun {
    /// Finds the model (fetching the default if needed), checks the settings
    /// against it and computes the run's identity. `backend` overrides the
    /// config's. `config` was checked where it was read (`RunConfig::from_file`)
    /// or built (an experiment's grid); here only what needs the model.
    pub fn prepare(config: &RunConfig, backend: Option<Backend>) -> Result<Self> {
        let backend = resolve_backend(backend, config.backend.as_deref())?;
        let mut config = config.resolved();
        config.training.precision = resolve_precision(config.training.precision, backend)?;
        config.backend = Some(backend.identity());
        let model_dir = model_dir(config.model.as_deref())?;
        let bert_config = BertConfig::from_file(&model_dir.join("config.json"))?;
        config.check_against(&bert_config)?;
        let model_fingerprint = fingerprint(&model_dir)?;
        let mut names = vec![config.data.dataset.clone()];
        if let Some(multitask) = &config.multitask {
            names.extend(multitask.datasets.iter().cloned());
        }
        let mut specs: Vec<DatasetSpec> = names.iter().map(|n| catalogue::find(n)).collect::<Result<_>>()?;
        if let Some(pretrain) = PreparedPretrain::for_run(&config, backend)? {
            specs.extend(pretrain.specs().iter().cloned());
        }
        let identity = config.identity(&model_fingerprint, &specs);
        Ok(Self { config, backend, model_dir, bert_config, identity, model_fingerprint })
    }
}

/// Everything a finished run writes to `metrics.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunMetrics {
    pub identity: String,
    /// The code's results version (see `identity::RESULTS_VERSION`); 0 for
    /// runs written before it was recorded.
    #[serde(default)]
    pub results_version: u64,
    pub config: RunConfig,
    /// The model it started from (`$BERTFIT_CACHE/...` for a cached one).
    pub model_dir: PathBuf,
    pub backend: String,
    /// The commit the binary was built from (`-dirty`: with uncommitted changes).
    pub commit: String,
    pub dataset: Provenance,
    pub sizes: SplitSizes,
    /// Documents per split (train, dev, test) that lost middle chunks to
    /// `max_chunks` (hierarchical methods only).
    pub capped: [usize; 3],
    /// Test error of always predicting the test set's most frequent class.
    pub majority_error: f64,
    pub result: FinetuneResult,
    /// The multi-task stage's own result (its curve has each task's errors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multitask: Option<FinetuneResult>,
    /// The further pre-training the run started from (its corpus and curve).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretrain: Option<PretrainMetrics>,
    /// Wall time of the process that finished the run (a resumed run's
    /// earlier sessions are in `result.train_seconds`, not here).
    pub wall_seconds: f64,
}

impl Finished for RunMetrics {
    fn identity(&self) -> &str {
        &self.identity
    }
}

/// Trains the run into `out` (resuming from `out/checkpoints/` if a killed
/// run left one). `None` when it stopped on request before the end.
pub fn execute(run: &PreparedRun, out: &Path, options: &RunOptions) -> Result<Option<RunMetrics>> {
    if let Some(done) = finished(out, &run.identity, "run")? {
        return Ok(Some(done));
    }
    let start = Instant::now();
    let config = &run.config;
    let tokenizer = BertTokenizer::from_model_dir(&run.model_dir)?;
    check_vocab(&tokenizer, &run.bert_config, &run.model_dir)?;
    let task = load_task(&config.data, &config.data.dataset, &tokenizer)?;
    if task.splits[1].docs.is_empty() {
        return Err(bertfit_data::settings::InvalidSetting::new(
            "data.dev_size",
            format!("the dev set of {} is empty: no epoch can be selected", task.dataset.name),
        )
        .into());
    }
    if !options.quiet() {
        eprintln!("{}", describe(run, &task));
    }
    // Further pre-training first, when asked: fine-tuning starts from its model.
    let Some((model_dir, pretrain)) = starting_model(run, options)? else { return Ok(None) };
    let device = run.backend.device()?.autodiff();
    // The new head's initialisation follows the run's seed.
    device.seed(config.training.seed);
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    write_atomic(&out.join("config.toml"), toml::to_string(config)?)?;
    let checkpoints = Checkpoints::new(&out.join("checkpoints"));
    let job = Job {
        run,
        task: &task,
        model_dir: &model_dir,
        device: &device,
        control: options.control(&checkpoints, &run.identity),
        out,
        options,
    };
    let trained = match config.bert_feat {
        Some(feat) => job.train_bert_feat(feat)?.map(|(result, predictions)| (result, None, predictions)),
        None => job.train_classifier(&tokenizer)?,
    };
    let Some((result, multitask, predictions)) = trained else { return Ok(None) };
    write_curve(&out.join("curve.csv"), &result)?;
    let dataset = &task.dataset;
    if let Some(p) = predictions.first() {
        write_predictions(out, "dev", &dataset.name, &dataset.classes, &dataset.dev, &p.dev)?;
        write_predictions(out, "test", &dataset.name, &dataset.classes, &dataset.test, &p.test)?;
    }
    let [.., test] = &task.splits;
    let metrics = RunMetrics {
        identity: run.identity.clone(),
        results_version: RESULTS_VERSION,
        config: config.clone(),
        model_dir: bertfit_data::paths::portable_path(&run.model_dir),
        backend: run.backend.identity(),
        commit: commit().to_string(),
        dataset: dataset.provenance.portable(),
        sizes: task.sizes(),
        capped: task.capped,
        majority_error: majority_error(&test.labels),
        result,
        multitask,
        pretrain,
        wall_seconds: start.elapsed().as_secs_f64(),
    };
    write_metrics(out, &metrics)?;
    checkpoints.clear()?;
    Ok(Some(metrics))
}

/// One line about the run about to train.
fn describe(run: &PreparedRun, task: &Task) -> String {
    let [train, dev, test] = &task.splits;
    let data = &run.config.data;
    format!(
        "{}: train {}, dev {}, test {} on {} ({} layers), {:?} at {}, backend {}",
        task.dataset.name,
        train.docs.len(),
        dev.docs.len(),
        test.docs.len(),
        run.model_dir.display(),
        run.bert_config.num_hidden_layers,
        data.truncation(),
        data.max_len,
        run.backend
    )
}

/// The model fine-tuning starts from: the run's own, or its further
/// pre-training's (trained first, or found in the stage cache) with that
/// stage's metrics. `None` when the stage stopped on request.
fn starting_model(run: &PreparedRun, options: &RunOptions) -> Result<Option<(PathBuf, Option<PretrainMetrics>)>> {
    let Some(pretrain) = PreparedPretrain::for_run(&run.config, run.backend)? else { return Ok(Some((run.model_dir.clone(), None))) };
    let from_step = run.config.pretrain.as_ref().and_then(|p| p.from_step);
    Ok(pretrain_stage(&pretrain, from_step, options)?.map(|(metrics, dir)| (dir, Some(metrics))))
}

/// A run's training, once its data, model and device are set.
struct Job<'a> {
    run: &'a PreparedRun,
    task: &'a Task,
    /// The model fine-tuning starts from.
    model_dir: &'a Path,
    device: &'a Device,
    control: RunControl<'a>,
    out: &'a Path,
    options: &'a RunOptions,
}

impl Job<'_> {
    fn fingerprint(&self) -> Result<String> {
        if self.model_dir == self.run.model_dir { Ok(self.run.model_fingerprint.clone()) } else { fingerprint(self.model_dir) }
    }

    /// BERT-Feat: the biLSTM + self-attention classifier on the frozen encoder's
    /// features (cached after the first run), with the best epoch's
    /// predictions. `None` when stopped on request.
    fn train_bert_feat(&self, feat: FeatConfig) -> Result<Option<(FinetuneResult, Vec<SplitPredictions>)>> {
        let (run, config, [train, dev, test]) = (self.run, &self.run.config, &self.task.splits);
        let plain = self.device.clone().inner();
        let (_, bert, _) = bertfit_model::load_pretrained(self.model_dir, &plain)?;
        let layer = feat.layer.unwrap_or(run.bert_config.num_hidden_layers);
        let model_fingerprint = self.fingerprint()?;
        let extract = |split| FeatureSplit::extract(&bert, &model_fingerprint, split, layer, config.training.eval_batch_size, &plain);
        if !self.options.quiet() {
            eprintln!("BERT-Feat: features of layer {layer} of the frozen encoder (cached after the first run)");
        }
        let (train, dev, test) = (extract(train)?, extract(dev)?, extract(test)?);
        let classes = self.task.dataset.classes.len();
        let classifier = BertFeatClassifier::new(run.bert_config.hidden_size, classes, feat, self.device).train();
        let outcome = bertfit_train::finetune(classifier, &train, &dev, &test, &config.training, self.device, &self.control)?;
        let Some(finished) = stopped(outcome) else { return Ok(None) };
        if self.options.export_model {
            save_hf_weights(&finished.model, &self.out.join("bert_feat"))?;
        }
        Ok(Some((finished.result, finished.predictions)))
    }

    /// The classifier fine-tuned on the task, after the multi-task stage when
    /// the run has one (its result beside), with the best epoch's
    /// predictions. `None` when stopped on request.
    fn train_classifier(&self, tokenizer: &BertTokenizer) -> Result<Option<Trained>> {
        let (run, config, [train, dev, test]) = (self.run, &self.run.config, &self.task.splits);
        let classes = self.task.dataset.classes.len();
        let mut multitask_result = None;
        let model = match &config.multitask {
            None => BertForSequenceClassification::from_pretrained(self.model_dir, &run.bert_config, classes, config.head, self.device)?
                .0
                .train(),
            Some(multitask) => {
                let identity = stage_identity(config, multitask, &self.fingerprint()?, &run.backend.identity())?;
                let (shared, result) = multitask_stage(
                    config,
                    multitask,
                    &identity,
                    self.task,
                    tokenizer,
                    self.model_dir,
                    &run.bert_config,
                    self.device,
                    &self.options.progress,
                )?;
                multitask_result = Some(result);
                let target = multitask.datasets.iter().position(|d| *d == config.data.dataset).expect("checked");
                shared.into_task(target).train()
            }
        };
        let mut model = model;
        model.bert.set_bf16(config.training.precision == Precision::Bf16);
        let outcome = bertfit_train::finetune(model, train, dev, test, &config.training, self.device, &self.control)?;
        let Some(finished) = stopped(outcome) else { return Ok(None) };
        if self.options.export_model {
            let data = &config.data;
            let classes = &self.task.dataset.classes;
            export(
                &finished.model,
                &run.bert_config,
                self.model_dir,
                &self.out.join("model"),
                classes,
                config.head,
                data.max_len,
                data.truncation(),
            )?;
        }
        Ok(Some((finished.result, multitask_result, finished.predictions)))
    }
}

/// A fine-tuning's result, its multi-task stage's, and its predictions.
type Trained = (FinetuneResult, Option<FinetuneResult>, Vec<SplitPredictions>);

/// Error of always predicting the most frequent label.
fn majority_error(labels: &[usize]) -> f64 {
    let mut counts = std::collections::HashMap::new();
    for &l in labels {
        *counts.entry(l).or_insert(0usize) += 1;
    }
    let most = counts.values().copied().max().unwrap_or(0);
    1.0 - most as f64 / labels.len().max(1) as f64
}

/// The model of a finished run; `None` when it stopped on request.
fn stopped<M>(outcome: Outcome<M>) -> Option<Finetuned<M>> {
    match outcome {
        Outcome::Finished(finished) => Some(*finished),
        Outcome::Stopped { .. } => None,
    }
}

fn write_curve(path: &Path, result: &FinetuneResult) -> Result<()> {
    let mut csv = String::from("epoch,steps,train_loss,lr,dev_error,test_error,train_tokens,train_seconds,eval_seconds\n");
    for r in &result.curve {
        let test = r.test_error.map(|e| e.to_string()).unwrap_or_default();
        csv.push_str(&format!(
            "{},{},{},{:e},{},{test},{},{:.3},{:.3}\n",
            r.epoch, r.steps, r.train_loss, r.lr, r.dev_error, r.train_tokens, r.train_seconds, r.eval_seconds
        ));
    }
    write_atomic(path, csv)
}

/// One line about a finished run.
pub fn summary(m: &RunMetrics) -> String {
    let r = &m.result;
    let pct = |x: Option<f64>| x.map(|v| format!("{:.2}%", 100.0 * v)).unwrap_or_else(|| "-".into());
    format!(
        "{}: test error {} (best epoch {} on dev, dev error {}){}; {} steps, {:.0} train tokens/s, {:.0} s wall, backend {}, commit {}",
        m.dataset.dataset,
        pct(r.test_error),
        r.best_epoch.map(|e| e.to_string()).unwrap_or_else(|| "-".into()),
        pct(r.dev_error),
        r.diverged.as_ref().map(|d| format!(", diverged: {d}")).unwrap_or_default(),
        r.steps,
        r.tokens_per_second,
        m.wall_seconds,
        m.backend,
        m.commit
    )
}
