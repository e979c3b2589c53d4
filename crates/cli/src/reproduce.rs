//! `bertfit reproduce NAME`: an experiment of the paper into results/NAME/
//! (`bertfit_paper::reproduce` runs it); `--list` lists them.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use bertfit_model::Backend;
use bertfit_paper::ReproduceOptions;

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
    /// Train nothing: print the runs, what they would fetch (with sizes), their
    /// training tokens, the disk they need and an estimated wall time from a
    /// short probe of the backend.
    #[arg(long)]
    plan: bool,
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
        only_run: args.run,
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
