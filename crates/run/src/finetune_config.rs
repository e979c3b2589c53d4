//! The schema of one fine-tuning run: `bertfit finetune --config run.toml`,
//! and every cell of an experiment (the base run of `experiments/NAME.toml`
//! with the cell's settings). One schema, with its checks and its identity.
//!
//! Three kinds of run share it: fine-tuning (the default), multi-task
//! fine-tuning then per-task fine-tuning (`[multitask]`), and BERT-Feat
//! (`[bert_feat]`: a classifier on frozen, cached encoder features).

use std::path::Path;

use anyhow::{Context, Result};
use bertfit_data::settings::InvalidSetting;
use bertfit_data::splits::Subset;
use bertfit_data::{DatasetSpec, Truncation};
use bertfit_model::{BertConfig, FeatConfig, Features, HeadConfig};
use bertfit_train::FinetuneConfig;
use serde::{Deserialize, Serialize};

use crate::identity::identity;
use crate::pretrain_config::PretrainSection;

/// One run, as `run.toml` gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// A HF model directory, or `hf:NAME` for a model of the HuggingFace hub
    /// (fetched once into the cache; needs internet). The embedded
    /// all-MiniLM-L6-v2 when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// auto (default: tch when compiled in, else flex), flex, tch,
    /// tch-cuda[:N], wgpu; `--backend` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    pub data: DataConfig,
    #[serde(default)]
    pub head: HeadConfig,
    #[serde(default)]
    pub training: FinetuneConfig,
    /// Multi-task fine-tuning first, on these datasets (the target among them),
    /// then `training` on the target from the shared encoder and its head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multitask: Option<MultitaskConfig>,
    /// BERT-Feat instead of fine-tuning: `training` then trains the biLSTM +
    /// self-attention classifier on the frozen encoder's features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bert_feat: Option<FeatConfig>,
    /// Further pre-training (masked LM) of the model before everything else;
    /// the stage is cached and shared by every run that needs the same one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretrain: Option<PretrainSection>,
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
    /// A catalogued dataset (`bertfit reproduce --list` shows them) or a path to a dataset TOML.
    pub dataset: String,
    /// Seed of the dev (and carved test) split.
    #[serde(default)]
    pub split_seed: u64,
    /// A stratified subset of train: `{ count = 2000 }` or `{ fraction = 0.01 }`.
    /// Without `dev_size`, dev shrinks in the same proportion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_subset: Option<Subset>,
    /// Stratified samples of dev and test of about these sizes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_size: Option<usize>,
    /// Tokens per sequence, [CLS] and [SEP] included (512 in the paper).
    #[serde(default = "default_max_len")]
    pub max_len: usize,
    /// Long-text handling; head+tail in the paper's proportion when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncation: Option<Truncation>,
    /// Pad each batch to a multiple of this many tokens (never past the
    /// window), so that a GPU sees a handful of shapes; left out: to the
    /// longest sequence of the batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_to_multiple: Option<usize>,
}

fn default_max_len() -> usize {
    512
}

impl DataConfig {
    /// The long-text strategy with its sizes spelled out for `max_len`.
    pub fn truncation(&self) -> Truncation {
        self.truncation.unwrap_or(Truncation::HeadTail { head: None }).resolved(self.max_len)
    }
}

type Checked = std::result::Result<(), InvalidSetting>;

impl DataConfig {
    /// Sizes out of range, by key under `[data]`.
    fn check(&self) -> Checked {
        let data = self;
        let truncation = data.truncation();
        if data.pad_to_multiple == Some(0) {
            return Err(InvalidSetting::new("data.pad_to_multiple", "must be at least 1 (or left out)"));
        }
        if data.max_len < 3 {
            return Err(InvalidSetting::new("data.max_len", "must leave room for [CLS], [SEP] and a token (at least 3)"));
        }
        match truncation {
            Truncation::HeadTail { head: Some(head) } if head > data.max_len - 2 => {
                return Err(InvalidSetting::new(
                    "data.truncation.head",
                    format!("{head} head tokens do not fit in max_len {} ({} content tokens)", data.max_len, data.max_len - 2),
                ));
            }
            Truncation::Hierarchical { chunk_len, max_chunks } => {
                if chunk_len.is_some_and(|len| len < 3) {
                    return Err(InvalidSetting::new("data.truncation.chunk_len", "must be at least 3"));
                }
                if max_chunks == 0 {
                    return Err(InvalidSetting::new("data.truncation.max_chunks", "must be at least 1"));
                }
            }
            _ => {}
        }
        if data.dev_size == Some(0) {
            return Err(InvalidSetting::new("data.dev_size", "an empty dev set cannot select the best epoch"));
        }
        if data.test_size == Some(0) {
            return Err(InvalidSetting::new("data.test_size", "an empty test set measures nothing"));
        }
        match data.train_subset {
            Some(Subset::Count(0)) => return Err(InvalidSetting::new("data.train_subset.count", "must be at least 1")),
            Some(Subset::Fraction(f)) if !(f > 0.0 && f <= 1.0) => {
                return Err(InvalidSetting::new("data.train_subset.fraction", format!("must be in (0, 1], not {f}")));
            }
            _ => {}
        }
        Ok(())
    }
}

impl MultitaskConfig {
    /// What a multi-task stage needs of its run.
    fn check(&self, data: &DataConfig, run: &RunConfig) -> Checked {
        self.training.check().map_err(|e| e.within("multitask.training"))?;
        if run.bert_feat.is_some() {
            return Err(InvalidSetting::new(
                "multitask",
                "[multitask] and [bert_feat] do not go together: BERT-Feat does not train the encoder",
            ));
        }
        if run.head.chunk_pool.is_some() {
            return Err(InvalidSetting::new("multitask", "takes one sequence per text: head.chunk_pool is not supported there"));
        }
        if !self.datasets.contains(&data.dataset) {
            return Err(InvalidSetting::new("multitask.datasets", format!("must include the target data.dataset = {:?}", data.dataset)));
        }
        Ok(())
    }
}

impl RunConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let config: Self = bertfit_data::settings::read_toml(path)?;
        config.check().with_context(|| path.display().to_string())?;
        Ok(config)
    }

    /// Settings that are out of range or do not fit together, named by their keys.
    pub fn check(&self) -> Checked {
        self.training.check().map_err(|e| e.within("training"))?;
        let data = &self.data;
        let truncation = data.truncation();
        let hierarchical = matches!(truncation, Truncation::Hierarchical { .. });
        match (hierarchical, self.head.chunk_pool.is_some()) {
            (true, false) => {
                return Err(InvalidSetting::new(
                    "head.chunk_pool",
                    "data.truncation is hierarchical, so this must be set (mean, max or self_attention)",
                ));
            }
            (false, true) => return Err(InvalidSetting::new("head.chunk_pool", "is set, but data.truncation is not hierarchical")),
            _ => {}
        }
        if hierarchical && self.head.features == Features::Pooler {
            return Err(InvalidSetting::new(
                "head.features",
                "the hierarchical methods pool each chunk's raw [CLS] vector, not the pooler output: set { kind = \"last_layer\" } (the paper's) or { kind = \"layer\", layer = L }",
            ));
        }
        data.check()?;
        if let Some(multitask) = &self.multitask {
            multitask.check(data, self)?;
        }
        if let Some(pretrain) = &self.pretrain {
            pretrain.check(&data.dataset)?;
        }
        if self.bert_feat.is_some() && (hierarchical || self.head != HeadConfig::default()) {
            return Err(InvalidSetting::new(
                "bert_feat",
                "takes one sequence per text and has its own classifier: leave out [head] and hierarchical truncation",
            ));
        }
        Ok(())
    }

    /// What only the model can tell: layers past its depth, sequences past its positions.
    pub fn check_against(&self, model: &BertConfig) -> Checked {
        let layers = model.num_hidden_layers;
        self.head.features.check(layers).map_err(|e| InvalidSetting::new("head.features", e.to_string()))?;
        if let Some(feat) = &self.bert_feat
            && feat.layer.is_some_and(|l| l > layers)
        {
            return Err(InvalidSetting::new("bert_feat.layer", format!("the encoder has layers 0..={layers}")));
        }
        let positions = model.max_position_embeddings;
        if self.data.max_len > positions {
            return Err(InvalidSetting::new(
                "data.max_len",
                format!("{} exceeds the model's max_position_embeddings ({positions})", self.data.max_len),
            ));
        }
        if let Truncation::Hierarchical { chunk_len: Some(len), .. } = self.data.truncation()
            && len > positions
        {
            return Err(InvalidSetting::new(
                "data.truncation.chunk_len",
                format!("{len} exceeds the model's max_position_embeddings ({positions})"),
            ));
        }
        Ok(())
    }

    /// The same run with every default spelled out: what results record.
    pub fn resolved(&self) -> Self {
        let mut config = self.clone();
        config.data.truncation = Some(self.data.truncation());
        config
    }

    /// A hash of everything that decides the run's result: the resolved
    /// settings, the model (weights, config.json and tokenizer files; not where
    /// they lie), the code's results version, and the catalogue
    /// entries of its datasets. Any change makes another run.
    pub fn identity(&self, model_fingerprint: &str, datasets: &[DatasetSpec]) -> String {
        let mut config = self.resolved();
        config.model = None;
        identity(vec![("run", serde_json::json!(config)), ("model", model_fingerprint.into()), ("datasets", serde_json::json!(datasets))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RunConfig> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.toml");
        std::fs::write(&path, text).unwrap();
        RunConfig::from_file(&path)
    }

    /// `experiments/runs/pretrain-*.toml` are `bertfit pretrain` runs; the rest are `bertfit finetune` runs.
    #[test]
    fn the_run_files_in_the_repository_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/runs");
        let (mut finetune, mut pretrain) = (0, 0);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            if path.file_name().unwrap().to_string_lossy().starts_with("pretrain-") {
                let _: crate::pretrain_config::PretrainRunConfig = bertfit_data::settings::read_toml(&path).unwrap();
                pretrain += 1;
            } else {
                RunConfig::from_file(&path).unwrap();
                finetune += 1;
            }
        }
        assert!(finetune > 0 && pretrain > 0, "{finetune} fine-tuning and {pretrain} pre-training run files");
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let error = parse("[data]\ndataset = \"trec\"\n[training]\nepochs = 1\nlearnin_rate = 1\n").unwrap_err().to_string();
        assert!(error.contains("run.toml:5:") && error.contains("learnin_rate"), "{error}");
        assert!(!error.contains('\n'), "{error}");
        let missing = RunConfig::from_file(Path::new("/nonexistent/missing.toml")).unwrap_err().to_string();
        assert!(missing.contains("missing.toml"));
        // Resolved settings survive a round trip through TOML (what config.toml holds).
        let parsed =
            parse("[data]\ndataset = \"trec\"\n[head]\nfeatures = { kind = \"combine\", layers = \"last4\", combine = \"max\" }\n")
                .unwrap();
        let back: RunConfig = toml::from_str(&toml::to_string(&parsed.resolved()).unwrap()).unwrap();
        assert_eq!(back, parsed.resolved());
    }

    #[test]
    fn out_of_range_settings_name_their_key() {
        let key = |text: &str| {
            let e = parse(text).unwrap_err();
            bertfit_data::settings::invalid_setting(&e).map(|s| s.key.clone()).unwrap_or_else(|| panic!("{e:#}"))
        };
        let data = "[data]\ndataset = \"trec\"\n";
        assert_eq!(key(&format!("{data}[training]\nlayerwise = {{ xi = 1.5 }}\n")), "training.layerwise.xi");
        assert_eq!(key(&format!("{data}[training]\nlayerwise = {{ xi = 0.0 }}\n")), "training.layerwise.xi");
        assert_eq!(
            key("[data]\ndataset = \"trec\"\nmax_len = 64\ntruncation = { kind = \"head_tail\", head = 63 }\n"),
            "data.truncation.head"
        );
        assert_eq!(key(&format!("{data}dev_size = 0\n")), "data.dev_size");
        assert_eq!(
            key("[data]\ndataset = \"trec\"\ntruncation = { kind = \"hierarchical\", max_chunks = 4 }\n[head]\nchunk_pool = \"mean\"\n"),
            "head.features"
        );
        assert_eq!(
            key(&format!("{data}[training]\nschedule = {{ kind = \"linear\", warmup = {{ proportion = 2.0 }} }}\n")),
            "training.schedule.warmup.proportion"
        );
    }

    #[test]
    fn identity_covers_every_setting_but_not_the_model_path() {
        let base = parse("[data]\ndataset = \"trec\"\n").unwrap();
        let id = base.identity("weights", &[]);
        assert_eq!(id, base.identity("weights", &[]));
        assert_ne!(id, base.identity("other weights", &[]));
        let mut changed = base.clone();
        changed.data.max_len = 256;
        assert_ne!(id, changed.identity("weights", &[]));
        let mut seed = base.clone();
        seed.training.seed = 1;
        assert_ne!(id, seed.identity("weights", &[]));
        let mut moved = base.clone();
        moved.model = Some("/elsewhere/same-weights".into());
        assert_eq!(id, moved.identity("weights", &[]));
        // A default spelled out is the same run.
        let mut explicit = base.clone();
        explicit.data.truncation = Some(Truncation::HeadTail { head: Some(128) });
        assert_eq!(id, explicit.identity("weights", &[]));
    }
}
