//! Further pre-training with masked LM (Section 5.2 of the paper): `bertfit
//! pretrain --config pretrain.toml`, and the stage a run's `[pretrain]` asks
//! for (cached under its identity and shared by every run that needs it).
//!
//! The output folder is a HuggingFace model directory (`config.json` naming
//! `BertForMaskedLM`, `model.safetensors` with the encoder and the MLM head,
//! the tokenizer files) that `bertfit finetune` (as `model = "DIR"`), `bertfit
//! encode` and HF transformers load, plus `metrics.json` (the corpus, the
//! held-out curve, throughput; written last), `snapshots/step-N/` (the kept
//! checkpoints, each a model directory too) and, while it trains,
//! `checkpoints/`, from which a killed run resumes.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use bertfit_data::mlm::{CorpusPart, CorpusTexts, Instance, build_corpus, packed_instances, sentence_pairs};
use bertfit_data::{BertTokenizer, Dataset, DatasetSpec, catalogue};
use bertfit_model::{Backend, BertConfig, BertForMaskedLM, save_hf_weights};
use bertfit_train::{Checkpoints, MlmData, PretrainOutcome, PretrainResult};
use burn::module::Module;
use serde::{Deserialize, Serialize};

use crate::export::copy_tokenizer;
use crate::finetune_config::RunConfig;
use crate::identity::identity;
use crate::model_source::{check_vocab, fingerprint, model_dir};
use crate::options::{RunOptions, resolve_backend, resolve_precision};
use crate::pretrain_config::PretrainRunConfig;
use crate::results::{Finished, commit, finished, write_metrics};
use crate::stage::Stage;

/// A pre-training run ready to go.
pub struct PreparedPretrain {
    pub config: PretrainRunConfig,
    pub backend: Backend,
    pub model_dir: PathBuf,
    pub bert_config: BertConfig,
    pub identity: String,
    specs: Vec<DatasetSpec>,
}

impl PretrainRunConfig {
    /// The pre-training stage that fine-tuning `run` on `backend` starts from,
    /// as a pre-training run of its own; none when its `[pretrain]` is absent
    /// or starts from step 0 (the model as it is).
    pub fn of_run(run: &RunConfig, backend: Backend) -> Result<Option<Self>> {
        let Some(section) = run.pretrain.as_ref().filter(|p| p.from_step != Some(0)) else { return Ok(None) };
        Ok(Some(Self {
            model: run.model.clone(),
            backend: Some(backend.identity()),
            datasets: section.corpus_datasets(&run.data.dataset)?,
            split_seed: run.data.split_seed,
            unlabeled: section.unlabeled,
            training: section.training.clone(),
        }))
    }
}

impl PreparedPretrain {
    /// `config` checked where it was read (`PretrainRunConfig::from_file`) or
    /// built (a run's `[pretrain]`, checked with the run); here only what
    /// needs the model: its window.
    pub fn prepare(config: &PretrainRunConfig, backend: Option<Backend>) -> Result<Self> {
        let backend = resolve_backend(backend, config.backend.as_deref())?;
        let mut config = config.clone();
        config.training.precision = resolve_precision(config.training.precision, backend)?;
        config.backend = Some(backend.identity());
        config.datasets.sort();
        config.datasets.dedup();
        let model_dir = model_dir(config.model.as_deref())?;
        let bert_config = BertConfig::from_file(&model_dir.join("config.json"))?;
        if config.training.max_len > bert_config.max_position_embeddings {
            return Err(bertfit_data::settings::InvalidSetting::new(
                "training.max_len",
                format!(
                    "{} exceeds the model's max_position_embeddings ({})",
                    config.training.max_len, bert_config.max_position_embeddings
                ),
            )
            .into());
        }
        let specs: Vec<DatasetSpec> = config.datasets.iter().map(|d| catalogue::find(d)).collect::<Result<_>>()?;
        let mut keyed = config.clone();
        keyed.model = None;
        let identity = identity(vec![
            ("pretrain", serde_json::json!(keyed)),
            ("model", fingerprint(&model_dir)?.into()),
            ("datasets", serde_json::json!(specs)),
        ]);
        Ok(Self { config, backend, model_dir, bert_config, identity, specs })
    }

    /// The pre-training stage of a run's `[pretrain]`.
    pub fn for_run(run: &RunConfig, backend: Backend) -> Result<Option<Self>> {
        let Some(config) = PretrainRunConfig::of_run(run, backend)? else { return Ok(None) };
        Self::prepare(&config, Some(backend)).map(Some)
    }

    /// The stage this pre-training trains in, shared through the stage cache.
    pub fn stage(&self) -> Stage {
        Stage::new("pretrain", &self.identity)
    }

    /// The stage's metrics when the stage cache holds it finished.
    pub fn finished_stage(&self) -> Result<Option<PretrainMetrics>> {
        finished::<PretrainMetrics>(&self.stage().dir, &self.identity, "pre-training")
    }

    /// The catalogue entries of the corpus's datasets.
    pub fn specs(&self) -> &[DatasetSpec] {
        &self.specs
    }
}

/// What a finished pre-training writes to `metrics.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PretrainMetrics {
    pub identity: String,
    pub config: PretrainRunConfig,
    /// The model it started from (`$BERTFIT_CACHE/...` for a cached one).
    pub model_dir: PathBuf,
    pub backend: String,
    pub commit: String,
    /// Where the text came from, and how much: documents, sentences, tokens.
    pub corpus: Vec<CorpusPart>,
    /// The source model had no MLM head (the default model, trained for
    /// sentence embeddings): the head started untrained, as step 0's held-out
    /// loss shows.
    pub head_initialized: bool,
    pub result: PretrainResult,
    pub wall_seconds: f64,
}

impl Finished for PretrainMetrics {
    fn identity(&self) -> &str {
        &self.identity
    }
}

/// The text of a corpus: each dataset's train split as `split_seed` splits it
/// (its dev and carved test texts left out), and its unlabeled texts.
fn corpus_texts(specs: &[DatasetSpec], split_seed: u64, unlabeled: bool) -> Result<Vec<(String, String, Vec<String>)>> {
    let mut sources = Vec::new();
    for spec in specs {
        let dataset = Dataset::load(spec, split_seed)?;
        sources.push((format!("{} train", spec.name), spec.language.clone(), dataset.train.into_iter().map(|e| e.text).collect()));
        if unlabeled {
            let unlabeled = Dataset::unlabeled_texts(spec)?;
            if !unlabeled.is_empty() {
                sources.push((format!("{} unlabeled", spec.name), spec.language.clone(), unlabeled));
            }
        }
    }
    Ok(sources)
}

/// The corpus's documents cut into training and held-out sequences.
struct Sequences {
    parts: Vec<CorpusPart>,
    train: Vec<Instance>,
    heldout: Vec<Instance>,
}

impl Sequences {
    /// Reads, tokenizes and splits the corpus of `prepared`, held-out documents apart.
    fn build(prepared: &PreparedPretrain, tokenizer: &BertTokenizer, quiet: bool) -> Result<Self> {
        let config = &prepared.config;
        let training = &config.training;
        let texts = corpus_texts(&prepared.specs, config.split_seed, config.unlabeled)?;
        let sources: Vec<CorpusTexts> = texts
            .iter()
            .map(|(source, language, texts)| CorpusTexts {
                source: source.clone(),
                language,
                texts: texts.iter().map(String::as_str).collect(),
            })
            .collect();
        let corpus = build_corpus(&sources, tokenizer, training.heldout_share, training.seed)?;
        let special = tokenizer.special;
        let instances = |docs: &[Vec<Vec<u32>>], seed_purpose: u64| -> Vec<Instance> {
            if training.next_sentence {
                sentence_pairs(docs, training.max_len, &special, training.seed ^ seed_purpose)
            } else {
                packed_instances(docs, training.max_len, &special)
            }
        };
        let (train, heldout) = (instances(&corpus.train, 0), instances(&corpus.heldout, 1));
        if !quiet {
            let tokens: usize = corpus.parts.iter().map(|p| p.tokens).sum();
            eprintln!(
                "pre-training corpus: {} ({tokens} tokens): {} training sequences, {} held out, of at most {} tokens; {} steps of {} on {}",
                corpus.parts.iter().map(|p| format!("{} ({} documents)", p.source, p.documents)).collect::<Vec<_>>().join(", "),
                train.len(),
                heldout.len(),
                training.max_len,
                training.steps,
                training.batch_size * training.grad_accum,
                prepared.model_dir.display()
            );
        }
        Ok(Self { parts: corpus.parts, train, heldout })
    }
}

/// Pre-trains into `out` (resuming from `out/checkpoints/`). `None` when it
/// stopped on request before the end.
pub fn execute_pretrain(prepared: &PreparedPretrain, out: &Path, options: &RunOptions) -> Result<Option<PretrainMetrics>> {
    if let Some(done) = finished(out, &prepared.identity, "pre-training")? {
        return Ok(Some(done));
    }
    let start = Instant::now();
    let config = &prepared.config;
    let training = &config.training;
    let tokenizer = BertTokenizer::from_model_dir(&prepared.model_dir)?;
    check_vocab(&tokenizer, &prepared.bert_config, &prepared.model_dir)?;
    let corpus = Sequences::build(prepared, &tokenizer, options.quiet())?;
    let device = prepared.backend.device()?.autodiff();
    // New heads (the default model ships none) follow the run's seed.
    device.seed(training.seed);
    let (model, report) = BertForMaskedLM::from_pretrained(&prepared.model_dir, &prepared.bert_config, training.next_sentence, &device)?;
    let head_initialized = report.initialized.iter().any(|n| n.starts_with("cls.predictions"));
    if head_initialized && !options.quiet() {
        eprintln!("{} has no MLM head: it starts untrained (BERT's initialisation)", prepared.model_dir.display());
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    std::fs::write(out.join("pretrain.toml"), toml::to_string(config)?)?;
    let write_model_dir = |dir: &Path, model: &BertForMaskedLM| -> Result<()> {
        save_hf_weights(model, dir)?;
        prepared.bert_config.save(&dir.join("config.json"), "BertForMaskedLM")?;
        copy_tokenizer(&prepared.model_dir, dir)
    };
    let snapshot = |step: u64, model: &BertForMaskedLM| write_model_dir(&out.join("snapshots").join(format!("step-{step}")), model);
    let checkpoints = Checkpoints::new(&out.join("checkpoints"));
    let control = options.control(&checkpoints, &prepared.identity);
    let data =
        MlmData { train: &corpus.train, heldout: &corpus.heldout, special: tokenizer.special, vocab_size: prepared.bert_config.vocab_size };
    let (model, result) = match bertfit_train::pretrain(model.train(), &data, training, &device, &control, &snapshot)? {
        PretrainOutcome::Finished { model, result } => (model, result),
        PretrainOutcome::Stopped { .. } => return Ok(None),
    };
    write_model_dir(out, &model)?;
    let metrics = PretrainMetrics {
        identity: prepared.identity.clone(),
        config: config.clone(),
        model_dir: bertfit_data::paths::portable_path(&prepared.model_dir),
        backend: prepared.backend.identity(),
        commit: commit().to_string(),
        corpus: corpus.parts,
        head_initialized,
        result,
        wall_seconds: start.elapsed().as_secs_f64(),
    };
    write_metrics(out, &metrics)?;
    checkpoints.clear()?;
    Ok(Some(metrics))
}

/// A run's pre-training stage: trained (or found) in the shared cache; returns
/// its metrics and the model directory fine-tuning starts from.
pub fn pretrain_stage(
    prepared: &PreparedPretrain,
    from_step: Option<u64>,
    options: &RunOptions,
) -> Result<Option<(PretrainMetrics, PathBuf)>> {
    let stage = prepared.stage();
    // Another worker may be training it: wait for it rather than train it twice.
    let mut done = prepared.finished_stage()?.is_some();
    let _lock = match done {
        true => None,
        false => {
            let lock = stage.claim(options.quiet())?;
            done = prepared.finished_stage()?.is_some();
            Some(lock)
        }
    };
    if !options.quiet() {
        match done {
            true => eprintln!("pre-training stage done already ({})", stage.dir.display()),
            false => eprintln!("pre-training stage on {} ({})", prepared.config.datasets.join(", "), stage.dir.display()),
        }
    }
    let Some(metrics) = execute_pretrain(prepared, &stage.dir, options)? else { return Ok(None) };
    let dir = match from_step {
        Some(step) if step != prepared.config.training.steps => stage.dir.join("snapshots").join(format!("step-{step}")),
        _ => stage.dir.clone(),
    };
    Ok(Some((metrics, dir)))
}

/// One line about a finished pre-training.
pub fn summary(m: &PretrainMetrics) -> String {
    let first = m.result.curve.first();
    let last = m.result.curve.last();
    let point = |r: Option<&bertfit_train::PretrainRecord>| {
        r.map(|r| format!("loss {:.4}, accuracy {:.2}% at step {}", r.heldout_loss, 100.0 * r.heldout_accuracy, r.step)).unwrap_or_default()
    };
    format!(
        "pre-trained {} steps on {}: held-out MLM {} -> {}{}; {:.0} train tokens/s, {:.0} s wall, backend {}, commit {}",
        m.result.steps,
        m.config.datasets.join(", "),
        point(first),
        point(last),
        if m.head_initialized { " (the MLM head started untrained)" } else { "" },
        m.result.tokens_per_second,
        m.wall_seconds,
        m.backend,
        m.commit
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_dev_or_test_text_reaches_a_corpus() {
        let dir = tempfile::tempdir().unwrap();
        let lines = |tag: &str, n: usize| {
            (0..n).map(|i| format!("{}:x {tag} question number {i}\n", if i % 2 == 0 { "A" } else { "B" })).collect::<String>()
        };
        std::fs::write(dir.path().join("train.label"), lines("ordinary", 100)).unwrap();
        std::fs::write(dir.path().join("test.label"), lines("secret", 20)).unwrap();
        let spec: DatasetSpec = toml::from_str(&format!(
            "name = \"toy\"\ndescription = \"toy\"\nclasses = [\"A\", \"B\"]\ndomain = \"question\"\nformat = {{ kind = \"trec_label\" }}\n\
             [train]\nsources = [{{ local = \"{0}/train.label\" }}]\n[test]\nsources = [{{ local = \"{0}/test.label\" }}]\n",
            dir.path().display()
        ))
        .unwrap();
        let texts = corpus_texts(std::slice::from_ref(&spec), 0, true).unwrap();
        assert_eq!(texts.len(), 1, "no unlabeled texts in a TREC file");
        let corpus: Vec<&String> = texts[0].2.iter().collect();
        assert!(corpus.iter().all(|t| !t.contains("secret")), "test text in the corpus");
        // The dev split is carved from train with the same seed: none of it is in the corpus either.
        let dev = Dataset::load(&spec, 0).unwrap().dev;
        assert!(!dev.is_empty());
        assert!(dev.iter().all(|d| !corpus.contains(&&d.text)), "dev text in the corpus");
        assert_eq!(corpus.len() + dev.len(), 100);
    }
}
