//! How `reproduce` runs an experiment: its options, checked before anything
//! is read or trained.

use std::ffi::OsString;
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
    /// What this invocation does with the grid.
    pub action: Action,
}

/// What `reproduce` does with an experiment's grid.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Action {
    /// Train the runs still to do (here, or in `jobs` workers), then render.
    #[default]
    TrainAndRender,
    /// Train only the run of this identity (a worker's, or a Slurm array
    /// task's job), and render nothing.
    OnlyRun(String),
    /// Train only the further pre-training stage of this identity that runs of
    /// the grid start from (a Slurm stage job), and render nothing.
    OnlyStage(String),
    /// Render the table, claims and plots from the finished runs; train nothing.
    Render,
    /// Say which runs are done, running, queued, failed or missing.
    Status,
    /// Hand the runs still to do to Slurm as a job array.
    Slurm(SlurmOptions),
}

/// What `--slurm` asks of the cluster for each run (each array task).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SlurmOptions {
    pub partition: Option<String>,
    /// GPUs of each run (`--gres=gpu:N`); none when 0.
    pub gpus_per_run: u32,
    pub cpus_per_run: Option<u32>,
    /// Each task's time limit, in Slurm's format (`2:00:00`, `1-00:00:00`).
    pub time: Option<String>,
    /// At most this many tasks of the array at once (Slurm's `%K`).
    pub array_max: Option<u32>,
    pub account: Option<String>,
    /// Further `#SBATCH` arguments, as given (`--mem=32G`, `--qos=long`).
    pub sbatch_args: Vec<String>,
    /// Print the scripts and the submissions; submit and write nothing.
    pub dry_run: bool,
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
            action: Action::TrainAndRender,
        }
    }
}

impl ReproduceOptions {
    /// Folders whose experiment files add to or override the built-in ones.
    pub fn experiment_dirs(&self) -> Vec<PathBuf> {
        experiment_dirs(self.experiments.as_ref())
    }

    /// The arguments after `reproduce NAME` that give another bertfit process
    /// this grid (the same run identities): profile, results folder, backend,
    /// seeds, settings, experiment files, kept models. What a worker of
    /// `--jobs` and a Slurm job are started with.
    pub fn grid_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> =
            vec!["--profile".into(), self.profile.clone().into(), "--results".into(), self.results.clone().into()];
        if let Some(backend) = self.backend {
            args.extend(["--backend".into(), backend.to_string().into()]);
        }
        if let Some(seeds) = self.seeds {
            args.extend(["--seeds".into(), seeds.to_string().into()]);
        }
        for set in &self.set {
            args.extend(["--set".into(), set.into()]);
        }
        if let Some(dir) = &self.experiments {
            args.extend(["--experiments".into(), dir.clone().into()]);
        }
        if self.keep_models {
            args.push("--keep-models".into());
        }
        args
    }

    /// Options that cannot run, in one line, before anything is read or trained.
    pub fn check(&self) -> Result<()> {
        if self.seeds == Some(0) {
            bail!("--seeds 0: a cell needs at least one seed");
        }
        if self.jobs == 0 {
            bail!("--jobs 0: at least one run at a time");
        }
        if let Action::Slurm(slurm) = &self.action {
            if slurm.array_max == Some(0) {
                bail!("--array-max 0: at least one task at a time");
            }
            if self.jobs > 1 || !self.devices.is_empty() {
                bail!("--slurm gives each run its own job: --jobs and --devices are for one machine");
            }
        }
        if let Some(dir) = &self.experiments
            && !dir.is_dir()
        {
            bail!("--experiments {}: no such folder", dir.display());
        }
        Ok(())
    }
}
