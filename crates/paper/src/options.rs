//! How `reproduce` runs an experiment: its options, checked before anything
//! is read or trained.

use std::path::PathBuf;

use anyhow::{Result, bail};
use bertfit_model::Backend;

use crate::grid::experiment_dirs;

/// How `reproduce` runs an experiment.
#[derive(Debug, Clone)]
pub struct ReproduceOptions {
    /// `quick` (2-core CPU, embedded model and data) or `paper` (the paper's settings, for a GPU).
    pub profile: String,
    /// Overrides every cell's backend.
    pub backend: Option<Backend>,
    /// Training seeds per cell (default: the profile's).
    pub seeds: Option<usize>,
    /// Settings of every cell's run, applied last (`training.lr=3e-5`); part of each run's identity.
    pub set: Vec<String>,
    /// Where results go.
    pub results: PathBuf,
    /// Committed results to compare with once the table is written (skipped
    /// when it is `results` itself or holds no table of this experiment and profile).
    pub reference: Option<PathBuf>,
    /// A folder of experiment files that add to or override the built-in ones.
    pub experiments: Option<PathBuf>,
    /// Also write each run's fine-tuned model (HF layout) to its run folder.
    pub keep_models: bool,
    /// No progress bars or log lines.
    pub quiet: bool,
    /// Runs trained at once, each by a worker process (per device with `devices`).
    pub jobs: usize,
    /// CUDA devices to spread the workers over (`tch-cuda:N` each); empty: the backend as given.
    pub devices: Vec<usize>,
    /// Train only the run of this identity (a worker's, or a Slurm array
    /// task's job), and render nothing.
    pub only_run: Option<String>,
}

impl Default for ReproduceOptions {
    fn default() -> Self {
        Self {
            profile: "quick".into(),
            backend: None,
            seeds: None,
            set: Vec::new(),
            results: PathBuf::from("results/local"),
            reference: None,
            experiments: None,
            keep_models: false,
            quiet: false,
            jobs: 1,
            devices: Vec::new(),
            only_run: None,
        }
    }
}

impl ReproduceOptions {
    /// Folders whose experiment files add to or override the built-in ones.
    pub fn experiment_dirs(&self) -> Vec<PathBuf> {
        experiment_dirs(self.experiments.as_ref())
    }

    /// Options that cannot run, in one line, before anything is read or trained.
    pub fn check(&self) -> Result<()> {
        if self.seeds == Some(0) {
            bail!("--seeds 0: a cell needs at least one seed");
        }
        if self.jobs == 0 {
            bail!("--jobs 0: at least one run at a time");
        }
        if let Some(dir) = &self.experiments
            && !dir.is_dir()
        {
            bail!("--experiments {}: no such folder", dir.display());
        }
        Ok(())
    }
}
