//! `bertfit finetune --config run.toml`: one fine-tuning run, from a TOML file,
//! to a directory of results (metrics, curve, resolved config, the model in
//! HF layout). `bertfit predict --model DIR`: that model on new texts.
//!
//! Three kinds of run share the schema: fine-tuning (the default), multi-task
//! fine-tuning then per-task fine-tuning (`[multitask]`), and BERT-Feat
//! (`[bert_feat]`: a classifier on frozen, cached encoder features).
//!
//! A run checkpoints into `OUT/checkpoints/`; rerunning the same command after
//! a kill resumes there. A finished run (or stage) is not redone.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use bertfit_data::splits::Subset;
use bertfit_data::{BertTokenizer, Dataset, Truncation, catalogue, tokenize_cached};
use bertfit_model::{
    Backend, BertConfig, BertFeatClassifier, BertForMultiTask, BertForSequenceClassification, FeatConfig, HeadConfig, save_hf_weights,
};
use bertfit_train::{
    Checkpoints, EncodedSplit, FeatureSplit, FinetuneConfig, FinetuneResult, Finetuned, Examples, Outcome, RunControl, TaskData,
};
use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::ModelArgs;

/// One run, as `run.toml` gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// HF model directory; the embedded all-MiniLM-L6-v2 when left out.
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// flex (default), ndarray, tch, tch-cuda[:N], wgpu; `--backend` overrides it.
    #[serde(default)]
    pub backend: Option<String>,
    pub data: DataConfig,
    #[serde(default)]
    pub head: HeadConfig,
    #[serde(default)]
    pub training: FinetuneConfig,
    /// Multi-task fine-tuning first, on these datasets (the target among them),
    /// then `training` on the target from the shared encoder and its head.
    #[serde(default)]
    pub multitask: Option<MultitaskConfig>,
    /// BERT-Feat instead of fine-tuning: `training` then trains the biLSTM +
    /// self-attention classifier on the frozen encoder's features.
    #[serde(default)]
    pub bert_feat: Option<FeatConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultitaskConfig {
    /// Datasets sharing the encoder; each gets the `[data]` settings but its name.
    pub datasets: Vec<String>,
    /// Settings of the multi-task stage (`task_sampling` among them).
    #[serde(default)]
    pub training: FinetuneConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// A catalogued dataset (datasets/NAME.toml) or a path to a dataset TOML.
    pub dataset: String,
    /// Seed of the dev (and carved test) split.
    #[serde(default)]
    pub split_seed: u64,
    /// A stratified subset of train: `{ count = 2000 }` or `{ fraction = 0.01 }`.
    #[serde(default)]
    pub train_subset: Option<Subset>,
    /// Stratified samples of dev and test of about these sizes.
    #[serde(default)]
    pub dev_size: Option<usize>,
    #[serde(default)]
    pub test_size: Option<usize>,
    /// Tokens per sequence, [CLS] and [SEP] included (512 in the paper).
    #[serde(default = "default_max_len")]
    pub max_len: usize,
    /// Long-text handling; head+tail in the paper's proportion when left out.
    #[serde(default)]
    pub truncation: Option<Truncation>,
}

fn default_max_len() -> usize {
    512
}

impl DataConfig {
    pub fn truncation(&self) -> Truncation {
        self.truncation.unwrap_or_else(|| Truncation::head_tail_for(self.max_len))
    }
}

impl RunConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let config: Self = catalogue::read_toml(path)?;
        config.check().with_context(|| format!("{}", path.display()))?;
        Ok(config)
    }

    /// Settings that do not fit together, named by their keys.
    pub fn check(&self) -> Result<()> {
        self.training.check()?;
        let hierarchical = matches!(self.data.truncation(), Truncation::Hierarchical { .. });
        match (hierarchical, self.head.chunk_pool.is_some()) {
            (true, false) => bail!("data.truncation is hierarchical, so head.chunk_pool (mean, max or self_attention) must be set"),
            (false, true) => bail!("head.chunk_pool is set, but data.truncation is not hierarchical"),
            _ => {}
        }
        if self.data.max_len < 3 {
            bail!("data.max_len must leave room for [CLS], [SEP] and a token");
        }
        if let Truncation::Hierarchical { chunk_len, max_chunks } = self.data.truncation()
            && (chunk_len < 3 || max_chunks == 0)
        {
            bail!("data.truncation: chunk_len must be at least 3 and max_chunks at least 1");
        }
        if let Some(multitask) = &self.multitask {
            multitask.training.check().context("in [multitask]")?;
            if self.bert_feat.is_some() {
                bail!("[multitask] and [bert_feat] do not go together: BERT-Feat does not train the encoder");
            }
            if self.head.chunk_pool.is_some() {
                bail!("[multitask] takes one sequence per text: head.chunk_pool is not supported there");
            }
            if !multitask.datasets.contains(&self.data.dataset) {
                bail!("multitask.datasets must include the target data.dataset = {:?}", self.data.dataset);
            }
        }
        if self.bert_feat.is_some() && (hierarchical || self.head != HeadConfig::default()) {
            bail!("[bert_feat] takes one sequence per text and has its own classifier: leave out [head] and hierarchical truncation");
        }
        Ok(())
    }
}

/// What `model/bertfit.json` records beside the HF files, so that `predict`
/// treats texts as training did.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedHead {
    pub classes: Vec<String>,
    pub head: HeadConfig,
    pub max_len: usize,
    pub truncation: Truncation,
}

/// The texts of one split as model inputs.
fn encode(tokenizer: &BertTokenizer, examples: &[bertfit_data::Example], truncation: Truncation, max_len: usize) -> Result<EncodedSplit> {
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let ids = tokenize_cached(tokenizer, &texts)?;
    Ok(EncodedSplit {
        docs: ids.iter().map(|c| truncation.apply(c, max_len, &tokenizer.special)).collect(),
        labels: examples.iter().map(|e| e.label).collect(),
        pad: tokenizer.special.pad,
    })
}

/// Dataset `name` with the `[data]` settings, and its train, dev and test as model inputs.
fn load_task(data: &DataConfig, name: &str, tokenizer: &BertTokenizer) -> Result<(Dataset, [EncodedSplit; 3])> {
    let spec = catalogue::find(name)?;
    let mut dataset = Dataset::load(&spec, data.split_seed)?;
    if let Some(subset) = data.train_subset {
        dataset = dataset.with_train_subset(subset, data.split_seed);
    }
    dataset = dataset.sampled(None, data.dev_size, data.test_size, data.split_seed);
    let truncation = data.truncation();
    let splits = [&dataset.train, &dataset.dev, &dataset.test].map(|examples| encode(tokenizer, examples, truncation, data.max_len));
    let [train, dev, test] = splits;
    Ok((dataset, [train?, dev?, test?]))
}

/// The model of a finished run; `None` when it stopped on request.
fn finished<M>(outcome: Outcome<M>) -> Option<Finetuned<M>> {
    match outcome {
        Outcome::Finished(finished) => Some(*finished),
        Outcome::Stopped { step } => {
            eprintln!("stopped after step {step} as BERTFIT_STOP_AFTER_STEPS asked; rerun to resume");
            None
        }
    }
}

/// Multi-task stage: the shared encoder and one head per dataset, in
/// `OUT/multitask/` (its own checkpoints, metrics and model). Done once: a
/// rerun reads the finished stage back. `target` is the run's dataset,
/// already loaded; the others are loaded here, only when the stage trains.
#[allow(clippy::too_many_arguments)]
fn multitask_stage(
    config: &RunConfig,
    multitask: &MultitaskConfig,
    target: (&Dataset, &[EncodedSplit; 3]),
    tokenizer: &BertTokenizer,
    model_dir: &Path,
    bert_config: &BertConfig,
    device: &Device,
    out: &Path,
    quiet: bool,
) -> Result<(BertForMultiTask, FinetuneResult)> {
    let stage = out.join("multitask");
    let labels: Vec<usize> =
        multitask.datasets.iter().map(|name| Ok(catalogue::find(name)?.classes.len())).collect::<Result<_>>()?;
    let features = config.head.features;
    let metrics_path = stage.join("metrics.json");
    if metrics_path.is_file() {
        let result: FinetuneResult = serde_json::from_str(&std::fs::read_to_string(&metrics_path)?)
            .with_context(|| format!("{} is not a stage result", metrics_path.display()))?;
        let model = BertForMultiTask::from_finetuned(&stage.join("model"), bert_config, &labels, features, device)?;
        if !quiet {
            eprintln!("multi-task stage done already ({}); fine-tuning on {}", stage.display(), config.data.dataset);
        }
        return Ok((model, result));
    }
    if !quiet {
        eprintln!("multi-task stage on {}", multitask.datasets.join(", "));
    }
    let others: Vec<Option<(Dataset, [EncodedSplit; 3])>> = multitask
        .datasets
        .iter()
        .map(|name| (*name != config.data.dataset).then(|| load_task(&config.data, name, tokenizer)).transpose())
        .collect::<Result<_>>()?;
    let tasks: Vec<TaskData<EncodedSplit>> = others
        .iter()
        .map(|loaded| {
            let (d, [train, dev, test]) = match loaded {
                Some((d, splits)) => (d, splits),
                None => target,
            };
            TaskData { name: d.name.clone(), train, dev, test }
        })
        .collect();
    let model = BertForMultiTask::from_pretrained(model_dir, bert_config, &labels, features, device)?.train();
    let checkpoints = Checkpoints::new(&stage.join("checkpoints"));
    let control = RunControl { checkpoints: Some(&checkpoints), stop_after_steps: None, quiet };
    let Some(done) = finished(bertfit_train::train_tasks(model, &tasks, &multitask.training, device, &control)?) else {
        bail!("the multi-task stage stopped early");
    };
    save_hf_weights(&done.model, &stage.join("model"))?;
    std::fs::write(&metrics_path, serde_json::to_string_pretty(&done.result)? + "\n")?;
    checkpoints.clear()?;
    Ok((done.model, done.result))
}

/// The commit this binary was built from (`-dirty`: with uncommitted changes).
pub fn commit() -> &'static str {
    env!("BERTFIT_COMMIT")
}

/// Everything a finished run writes to `metrics.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunMetrics {
    pub config: RunConfig,
    pub model_dir: PathBuf,
    pub backend: String,
    pub commit: String,
    pub dataset: bertfit_data::Provenance,
    pub sizes: [usize; 3],
    pub result: FinetuneResult,
    /// The multi-task stage's own result (its curve has each task's errors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multitask: Option<FinetuneResult>,
    pub wall_seconds: f64,
}

pub fn run(config_path: &Path, out: Option<PathBuf>, backend: Option<Backend>, quiet: bool) -> Result<()> {
    let start = Instant::now();
    let mut config = RunConfig::from_file(config_path)?;
    let out = out.unwrap_or_else(|| {
        PathBuf::from("results/runs").join(config_path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "run".into()))
    });
    let backend: Backend = match backend {
        Some(b) => b,
        None => config.backend.as_deref().unwrap_or("flex").parse()?,
    };
    config.backend = Some(backend.to_string());
    let metrics_path = out.join("metrics.json");
    if metrics_path.is_file() {
        let done: RunMetrics = serde_json::from_str(&std::fs::read_to_string(&metrics_path)?)
            .with_context(|| format!("{} is not a metrics file", metrics_path.display()))?;
        if done.config == config {
            eprintln!("{} is done already ({}); delete it to run again", out.display(), metrics_path.display());
            print_summary(&done);
            return Ok(());
        }
        bail!("{} holds a finished run with other settings; choose another --out", out.display());
    }

    let model_dir = ModelArgs { model: config.model.clone(), backend }.model_dir()?;
    let bert_config = BertConfig::from_file(&model_dir.join("config.json"))?;
    let max_len = config.data.max_len;
    if max_len > bert_config.max_position_embeddings {
        bail!("data.max_len = {max_len} exceeds the model's max_position_embeddings ({})", bert_config.max_position_embeddings);
    }
    if let Truncation::Hierarchical { chunk_len, .. } = config.data.truncation()
        && chunk_len > bert_config.max_position_embeddings
    {
        bail!("data.truncation.chunk_len = {chunk_len} exceeds the model's max_position_embeddings ({})", bert_config.max_position_embeddings);
    }
    let tokenizer = BertTokenizer::from_model_dir(&model_dir)?;
    let (dataset, splits) = load_task(&config.data, &config.data.dataset, &tokenizer)?;
    let [train, dev, test] = &splits;
    if !quiet {
        eprintln!(
            "{}: train {}, dev {}, test {} on {} ({} layers), {:?} at {max_len}, backend {backend}",
            dataset.name,
            train.len(),
            dev.len(),
            test.len(),
            model_dir.display(),
            bert_config.num_hidden_layers,
            config.data.truncation()
        );
    }

    let device = backend.device()?.autodiff();
    // The new head's initialisation follows the run's seed.
    device.seed(config.training.seed);
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    std::fs::write(out.join("config.toml"), toml::to_string(&config)?)?;
    let checkpoints = Checkpoints::new(&out.join("checkpoints"));
    let control = RunControl { checkpoints: Some(&checkpoints), stop_after_steps: stop_after_steps()?, quiet };
    let classes = dataset.classes.len();
    let mut multitask_result = None;
    let result = if let Some(feat) = config.bert_feat {
        let plain = device.clone().inner();
        let (_, bert, _) = bertfit_model::load_pretrained(&model_dir, &plain)?;
        let layer = feat.layer.unwrap_or(bert_config.num_hidden_layers);
        let fingerprint = bertfit_data::hash_bytes(&std::fs::read(bertfit_model::weights_file(&model_dir)?)?);
        let extract = |split: &EncodedSplit| FeatureSplit::extract(&bert, &fingerprint, split, layer, config.training.eval_batch_size, &plain);
        if !quiet {
            eprintln!("BERT-Feat: features of layer {layer} of the frozen encoder (cached after the first run)");
        }
        let (train, dev, test) = (extract(train)?, extract(dev)?, extract(test)?);
        let classifier = BertFeatClassifier::new(bert_config.hidden_size, classes, feat, &device).train();
        let Some(finished) = finished(bertfit_train::finetune(classifier, &train, &dev, &test, &config.training, &device, &control)?) else {
            return Ok(());
        };
        save_hf_weights(&finished.model, &out.join("bert_feat"))?;
        finished.result
    } else {
        let model = match &config.multitask {
            None => BertForSequenceClassification::from_pretrained(&model_dir, &bert_config, classes, config.head, &device)?.0.train(),
            Some(multitask) => {
                let target = (&dataset, &splits);
                let (shared, result) = multitask_stage(&config, multitask, target, &tokenizer, &model_dir, &bert_config, &device, &out, quiet)?;
                multitask_result = Some(result);
                let target = multitask.datasets.iter().position(|d| *d == config.data.dataset).expect("checked");
                shared.into_task(target).train()
            }
        };
        let Some(finished) = finished(bertfit_train::finetune(model, train, dev, test, &config.training, &device, &control)?) else {
            return Ok(());
        };
        export(&finished.model, &bert_config, &model_dir, &out.join("model"), &dataset.classes, config.head, max_len, config.data.truncation())?;
        finished.result
    };

    let curve = std::iter::once("epoch,steps,train_loss,lr,dev_error,test_error,train_tokens,train_seconds,eval_seconds".to_string())
        .chain(result.curve.iter().map(|r| {
            format!(
                "{},{},{},{:e},{},{},{},{:.3},{:.3}",
                r.epoch, r.steps, r.train_loss, r.lr, r.dev_error, r.test_error, r.train_tokens, r.train_seconds, r.eval_seconds
            )
        }))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(out.join("curve.csv"), curve + "\n")?;
    let metrics = RunMetrics {
        config,
        model_dir,
        backend: backend.to_string(),
        commit: commit().to_string(),
        dataset: dataset.provenance.clone(),
        sizes: [train.len(), dev.len(), test.len()],
        result,
        multitask: multitask_result,
        wall_seconds: start.elapsed().as_secs_f64(),
    };
    let tmp = out.join("metrics.json.partial");
    std::fs::write(&tmp, serde_json::to_string_pretty(&metrics)? + "\n")?;
    std::fs::rename(&tmp, &metrics_path)?;
    checkpoints.clear()?;
    print_summary(&metrics);
    eprintln!("wrote {}", out.display());
    Ok(())
}

/// For tests and for trying resumption by hand: stop after N steps, as a kill would.
fn stop_after_steps() -> Result<Option<u64>> {
    match std::env::var("BERTFIT_STOP_AFTER_STEPS") {
        Ok(v) => Ok(Some(v.parse().map_err(|_| anyhow::anyhow!("BERTFIT_STOP_AFTER_STEPS={v:?} is not a step count"))?)),
        Err(_) => Ok(None),
    }
}

fn print_summary(m: &RunMetrics) {
    let r = &m.result;
    let pct = |x: Option<f64>| x.map(|v| format!("{:.2}%", 100.0 * v)).unwrap_or_else(|| "-".into());
    println!(
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
    );
}

/// Writes the model in HF's layout (+ tokenizer files and `bertfit.json`).
/// With the default head it is HF's `BertForSequenceClassification` as it is.
#[allow(clippy::too_many_arguments)]
fn export(
    model: &BertForSequenceClassification,
    bert_config: &BertConfig,
    source_dir: &Path,
    dir: &Path,
    classes: &[String],
    head: HeadConfig,
    max_len: usize,
    truncation: Truncation,
) -> Result<()> {
    save_hf_weights(model, dir)?;
    let mut config = bert_config.clone();
    config.extra.insert("num_labels".into(), classes.len().into());
    let id2label: serde_json::Map<String, serde_json::Value> = classes.iter().enumerate().map(|(i, c)| (i.to_string(), c.clone().into())).collect();
    let label2id: serde_json::Map<String, serde_json::Value> = classes.iter().enumerate().map(|(i, c)| (c.clone(), i.into())).collect();
    config.extra.insert("id2label".into(), id2label.into());
    config.extra.insert("label2id".into(), label2id.into());
    // HF's class is the pooler head on one sequence; with another head HF
    // loads the encoder (BertModel) and bertfit.json describes the rest.
    let architecture = if head == HeadConfig::default() { "BertForSequenceClassification" } else { "BertModel" };
    config.save(&dir.join("config.json"), architecture)?;
    for name in ["tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"] {
        if source_dir.join(name).is_file() {
            std::fs::copy(source_dir.join(name), dir.join(name))?;
        }
    }
    let exported = ExportedHead { classes: classes.to_vec(), head, max_len, truncation };
    std::fs::write(dir.join("bertfit.json"), serde_json::to_string_pretty(&exported)? + "\n")?;
    Ok(())
}

/// `bertfit predict`: texts (one per line) in, one JSON line per text out:
/// `{"index": i, "label": "pos", "probabilities": {"neg": 0.1, "pos": 0.9}}`.
pub fn predict(dir: &Path, backend: Backend, input: Option<&Path>, batch_size: usize) -> Result<()> {
    let head_path = dir.join("bertfit.json");
    let exported: ExportedHead = serde_json::from_str(
        &std::fs::read_to_string(&head_path).with_context(|| format!("cannot read {} (is {} a model `bertfit finetune` wrote?)", head_path.display(), dir.display()))?,
    )
    .with_context(|| format!("{} is not valid", head_path.display()))?;
    let config = BertConfig::from_file(&dir.join("config.json"))?;
    let device = backend.device()?;
    let model = BertForSequenceClassification::from_finetuned(dir, &config, exported.classes.len(), exported.head, &device)?;
    let tokenizer = BertTokenizer::from_model_dir(dir)?;
    let texts = crate::encode::read_lines(input)?;
    if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
        bail!("line {} of {} is empty", i + 1, input.map(|p| p.display().to_string()).unwrap_or_else(|| "standard input".into()));
    }
    let examples: Vec<bertfit_data::Example> = texts.into_iter().map(|text| bertfit_data::Example { text, label: 0 }).collect();
    let split = encode(&tokenizer, &examples, exported.truncation, exported.max_len)?;
    let probabilities = bertfit_train::predict_probabilities(&model, 0, &split, batch_size, &device);
    let mut stdout = std::io::stdout().lock();
    for (index, p) in probabilities.iter().enumerate() {
        let best = bertfit_train::finetune::argmax(p);
        let probs: serde_json::Map<String, serde_json::Value> =
            exported.classes.iter().zip(p).map(|(c, &v)| (c.clone(), serde_json::json!(v))).collect();
        let line = serde_json::json!({"index": index, "label": exported.classes[best], "probabilities": probs});
        writeln!(stdout, "{line}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_files_in_the_repository_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/runs");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                RunConfig::from_file(&path).unwrap();
                seen += 1;
            }
        }
        assert!(seen > 0);
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.toml");
        std::fs::write(&path, "[data]\ndataset = \"trec\"\n[training]\nepochs = 1\nlearnin_rate = 1\n").unwrap();
        let error = RunConfig::from_file(&path).unwrap_err().to_string();
        assert!(error.contains("run.toml:5:") && error.contains("learnin_rate"), "{error}");
        assert!(!error.contains('\n'), "{error}");
        // Resolved settings survive a round trip through TOML (what config.toml holds).
        let config = RunConfig::from_file(&dir.path().join("missing.toml")).unwrap_err().to_string();
        assert!(config.contains("missing.toml"));
        std::fs::write(&path, "[data]\ndataset = \"trec\"\n[head]\nfeatures = { kind = \"combine\", layers = \"last4\", combine = \"max\" }\n").unwrap();
        let parsed = RunConfig::from_file(&path).unwrap();
        let back: RunConfig = toml::from_str(&toml::to_string(&parsed).unwrap()).unwrap();
        assert_eq!(back, parsed);
    }
}
