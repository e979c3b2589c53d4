//! The schema of further pre-training (Section 5.2 of the paper): a
//! `bertfit pretrain --config pretrain.toml` run, and the `[pretrain]` section
//! of a fine-tuning run, with the choice of corpus: within-task (ITPT),
//! in-domain (IDPT), cross-domain (CDPT) or named datasets.

use anyhow::{Context, Result};
use bertfit_data::catalogue;
use bertfit_data::settings::InvalidSetting;
use bertfit_train::PretrainConfig;
use serde::{Deserialize, Serialize};

/// `pretrain.toml`: one further pre-training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainRunConfig {
    /// A HF model directory or `hf:NAME`; the embedded all-MiniLM-L6-v2 when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Datasets whose train text is read: their train split after the dev
    /// split (and a carved test split) are taken out with `split_seed`, so
    /// that no text a fine-tuning run evaluates on is pre-trained on.
    pub datasets: Vec<String>,
    #[serde(default)]
    pub split_seed: u64,
    /// Add the unlabeled texts a dataset ships (aclImdb's `unsup`).
    #[serde(default = "yes")]
    pub unlabeled: bool,
    #[serde(default)]
    pub training: PretrainConfig,
}

fn yes() -> bool {
    true
}

impl PretrainRunConfig {
    /// Reads `pretrain.toml` and checks it: the one check of its settings.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let config: Self = bertfit_data::settings::read_toml(path)?;
        config.check().with_context(|| path.display().to_string())?;
        Ok(config)
    }

    /// Settings that are out of range, named by their keys. Made where a
    /// config is parsed or built (`from_file`, a run's `[pretrain]` checked
    /// with the run); what trains from it checks nothing again.
    pub fn check(&self) -> Checked {
        self.training.check().map_err(|e| e.within("training"))?;
        if self.datasets.is_empty() {
            return Err(InvalidSetting::new("datasets", "names no dataset"));
        }
        Ok(())
    }
}

/// `[pretrain]` of a run: which text, which settings, which checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainSection {
    pub corpus: Corpus,
    /// The datasets in-domain and cross-domain corpora draw from: those of the
    /// target's domain (in-domain), or all of them (cross-domain).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pool: Vec<String>,
    /// Add the unlabeled texts a dataset ships (aclImdb's 50,000 `unsup` reviews).
    #[serde(default = "yes")]
    pub unlabeled: bool,
    /// Fine-tune from the checkpoint of this step (Figure 3: error against
    /// pre-training steps; needs `training.keep_checkpoints`); the last step
    /// when left out; 0 is the model before pre-training (no stage runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_step: Option<u64>,
    #[serde(default)]
    pub training: PretrainConfig,
}

/// Whose train text a further pre-training reads (Section 5.2 of the paper).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Corpus {
    /// The target dataset's own (ITPT).
    WithinTask,
    /// Every dataset of `pool` in the target's domain (IDPT).
    InDomain,
    /// Every dataset of `pool` (CDPT).
    CrossDomain,
    /// These datasets'.
    Datasets { datasets: Vec<String> },
}

impl PretrainSection {
    /// The datasets whose train text the corpus reads, for target `dataset`, sorted.
    pub fn corpus_datasets(&self, dataset: &str) -> Result<Vec<String>> {
        let mut names = match &self.corpus {
            Corpus::WithinTask => vec![dataset.to_string()],
            Corpus::Datasets { datasets } => datasets.clone(),
            Corpus::CrossDomain => self.pool.clone(),
            Corpus::InDomain => {
                let domain = catalogue::find(dataset)?.domain;
                let mut same = Vec::new();
                for name in &self.pool {
                    if catalogue::find(name)?.domain == domain {
                        same.push(name.clone());
                    }
                }
                same
            }
        };
        names.sort();
        names.dedup();
        Ok(names)
    }

    pub(crate) fn check(&self, target: &str) -> Checked {
        self.training.check().map_err(|e| e.within("pretrain.training"))?;
        match &self.corpus {
            Corpus::InDomain | Corpus::CrossDomain if self.pool.is_empty() => {
                return Err(InvalidSetting::new(
                    "pretrain.pool",
                    "in-domain and cross-domain corpora draw from this list of datasets; it is empty",
                ));
            }
            Corpus::InDomain if !self.pool.iter().any(|d| d == target) => {
                return Err(InvalidSetting::new("pretrain.pool", format!("must include the target data.dataset = {target:?}")));
            }
            Corpus::Datasets { datasets } if datasets.is_empty() => {
                return Err(InvalidSetting::new("pretrain.corpus.datasets", "names no dataset"));
            }
            _ => {}
        }
        if let Some(step) = self.from_step.filter(|&s| s > 0) {
            let t = &self.training;
            if step > t.steps {
                return Err(InvalidSetting::new("pretrain.from_step", format!("must be a step of the run, 0..={}", t.steps)));
            }
            if step != t.steps && (!t.keep_checkpoints || !step.is_multiple_of(t.checkpoint_every)) {
                return Err(InvalidSetting::new(
                    "pretrain.from_step",
                    format!(
                        "{step} is not a kept checkpoint: set pretrain.training.keep_checkpoints = true and a step that is a multiple of checkpoint_every ({})",
                        t.checkpoint_every
                    ),
                ));
            }
        }
        Ok(())
    }
}

type Checked = std::result::Result<(), InvalidSetting>;
