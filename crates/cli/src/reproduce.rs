//! `bertfit reproduce NAME`: an experiment of the paper into results/NAME/
//! (`bertfit_paper::reproduce` runs it); `--list` lists them.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use bertfit_model::Backend;
use bertfit_paper::{Action, ReproduceOptions, SlurmOptions};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The experiment (`--list` shows them), or `all` for every one in turn.
    #[arg(required_unless_present = "list")]
    name: Option<String>,
    /// Each experiment, the paper's artefact it reproduces, and which of its
    /// cells can run on this machine.
    #[arg(long)]
    list: bool,
    /// `quick` (2-core CPU, embedded model and data) or `paper` (the paper's settings, for a GPU).
    #[arg(long, default_value = "quick")]
    profile: String,
    /// Overrides every cell's backend: flex, tch, tch-cuda[:N], wgpu;
    /// `tch-cuda:all` spreads the runs over every GPU here (as `--devices`).
    #[arg(long)]
    backend: Option<String>,
    /// Training seeds per cell (default: the profile's).
    #[arg(long)]
    seeds: Option<usize>,
    /// A setting of every cell's run, applied last: `--set training.lr=3e-5`.
    /// Part of each run's identity.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Where results go: your own runs, kept apart from the committed ones.
    #[arg(long, default_value = "results/local")]
    results: PathBuf,
    /// The committed results the table is compared with once written
    /// (`reference.md` beside it: runs equal bit for bit, or each cell's
    /// paired difference); `--results results` writes the reference itself.
    #[arg(long, default_value = "results")]
    reference: PathBuf,
    /// A folder of experiment files that add to or override the built-in ones.
    #[arg(long, value_name = "DIR")]
    experiments: Option<PathBuf>,
    /// Also write each run's fine-tuned model (HF layout) to its run folder.
    #[arg(long)]
    keep_models: bool,
    /// No progress bars or log lines.
    #[arg(long)]
    quiet: bool,
    /// Runs trained at once, each by a worker process (`bertfit reproduce NAME
    /// --run ID`, its log in the run's folder); with `--devices`, this many on each GPU.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// CUDA devices to spread the runs over, `--jobs` on each (`--devices 0,1`).
    #[arg(long, value_delimiter = ',')]
    devices: Vec<usize>,
    /// Train only the run of this identity (`runs/ID/`) and render nothing: what
    /// each worker of `--jobs`, or a cluster's array task, runs.
    #[arg(long, value_name = "ID", conflicts_with_all = ["plan", "list", "jobs", "devices"])]
    run: Option<String>,
    /// Train only the further pre-training stage of this identity that runs of
    /// the grid start from, and render nothing: a Slurm stage job's work.
    #[arg(long, value_name = "ID", conflicts_with_all = ["plan", "list", "jobs", "devices", "run"])]
    pretrain_stage: Option<String>,
    /// Write the table, claims and plots from the runs finished so far; train
    /// nothing (what the render job of `--slurm` runs).
    #[arg(long, conflicts_with_all = ["plan", "list", "run", "pretrain_stage"])]
    render: bool,
    /// Where each run of the grid stands: done, running (where, which Slurm
    /// job), queued, failed (its log's path and last line), missing.
    #[arg(long, conflicts_with_all = ["plan", "list", "run", "pretrain_stage", "render"])]
    status: bool,
    /// Hand the runs still to do to Slurm: a job array with one task per run
    /// (after the further pre-training stages they start from), then a job
    /// that renders the table once every task succeeded. Writes the scripts
    /// to results/NAME/slurm/ and prints the job ids.
    #[arg(long, conflicts_with_all = ["plan", "list", "run", "pretrain_stage", "render", "status"])]
    slurm: bool,
    #[command(flatten)]
    cluster: SlurmArgs,
    /// Train nothing: print the runs, what they would fetch (with sizes), their
    /// training tokens, the disk they need and an estimated wall time from a
    /// short probe of the backend.
    #[arg(long)]
    plan: bool,
}

/// What `--slurm` asks of the cluster for each run.
#[derive(clap::Args, Debug, Clone)]
struct SlurmArgs {
    /// With --slurm: the partition to run in.
    #[arg(long, requires = "slurm")]
    partition: Option<String>,
    /// With --slurm: GPUs for each run (`--gres=gpu:N`; use with `--backend tch-cuda`).
    #[arg(long, requires = "slurm", default_value_t = 0)]
    gpus_per_run: u32,
    /// With --slurm: CPU cores for each run.
    #[arg(long, requires = "slurm")]
    cpus_per_run: Option<u32>,
    /// With --slurm: each run's time limit, in Slurm's format (`4:00:00`).
    #[arg(long, requires = "slurm")]
    time: Option<String>,
    /// With --slurm: at most K runs at once (Slurm's `--array=...%K`).
    #[arg(long, requires = "slurm", value_name = "K")]
    array_max: Option<u32>,
    /// With --slurm: the account to charge.
    #[arg(long, requires = "slurm")]
    account: Option<String>,
    /// With --slurm: a further `#SBATCH` argument for every job, as sbatch
    /// takes it (`--sbatch-arg=--mem=32G`); repeatable.
    #[arg(long = "sbatch-arg", requires = "slurm", value_name = "ARG", allow_hyphen_values = true)]
    sbatch_args: Vec<String>,
    /// With --slurm: print the scripts and the submissions; write and submit nothing.
    #[arg(long, requires = "slurm")]
    dry_run: bool,
}

/// What the invocation does with the grid, from its flags (clap keeps them apart).
fn action(run: Option<String>, stage: Option<String>, render: bool, status: bool, slurm: Option<SlurmArgs>) -> Action {
    match (run, stage, slurm) {
        (Some(id), _, _) => Action::OnlyRun(id),
        (_, Some(id), _) => Action::OnlyStage(id),
        (_, _, Some(s)) => Action::Slurm(SlurmOptions {
            partition: s.partition,
            gpus_per_run: s.gpus_per_run,
            cpus_per_run: s.cpus_per_run,
            time: s.time,
            array_max: s.array_max,
            account: s.account,
            sbatch_args: s.sbatch_args,
            dry_run: s.dry_run,
        }),
        _ if status => Action::Status,
        _ if render => Action::Render,
        _ => Action::TrainAndRender,
    }
}

/// `--backend` and `--devices`: the backend of every cell, and the GPUs to
/// spread runs over (`tch-cuda:all`: every one LibTorch sees).
fn backend_and_devices(backend: Option<&str>, devices: Vec<usize>) -> Result<(Option<Backend>, Vec<usize>)> {
    let Some(name) = backend else {
        if devices.is_empty() {
            return Ok((None, devices));
        }
        return Ok((Some(Backend::TchCuda(devices[0])), devices));
    };
    if name == "tch-cuda:all" {
        let count = Backend::cuda_devices()?;
        if count == 0 {
            bail!("--backend tch-cuda:all: LibTorch sees no CUDA device here (no NVIDIA GPU or driver)");
        }
        return Ok((Some(Backend::TchCuda(0)), (0..count).collect()));
    }
    let backend: Backend = name.parse().context("--backend")?;
    if !devices.is_empty() && !matches!(backend, Backend::TchCuda(_)) {
        bail!("--devices spreads runs over CUDA devices: it goes with --backend tch-cuda, not {backend}");
    }
    Ok((Some(backend), devices))
}

pub fn run(args: Args) -> Result<()> {
    let (backend, devices) = backend_and_devices(args.backend.as_deref(), args.devices)?;
    for &device in &devices {
        Backend::TchCuda(device).check()?;
    }
    let options = ReproduceOptions {
        profile: args.profile,
        backend,
        seeds: args.seeds,
        set: args.set,
        results: args.results,
        reference: Some(args.reference),
        experiments: args.experiments,
        keep_models: args.keep_models,
        quiet: args.quiet,
        jobs: args.jobs,
        devices,
        action: action(args.run, args.pretrain_stage, args.render, args.status, args.slurm.then_some(args.cluster)),
    };
    options.check()?;
    match args.name {
        _ if args.list => bertfit_paper::list(&options),
        Some(name) if args.plan => {
            print!("{}", bertfit_paper::plan_report(&name, &options)?);
            Ok(())
        }
        Some(name) => bertfit_paper::reproduce(&name, &options),
        None => unreachable!("clap requires a name without --list"),
    }
}
