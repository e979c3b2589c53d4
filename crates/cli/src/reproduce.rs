//! `bertfit reproduce NAME`: an experiment of the paper into results/NAME/
//! (`bertfit_paper::reproduce` runs it); `--list` lists them.

use std::path::PathBuf;

use anyhow::Result;
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
    /// Overrides every cell's backend: flex, tch, tch-cuda[:N], wgpu.
    #[arg(long)]
    backend: Option<Backend>,
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
    /// Train nothing: print the runs, what they would fetch (with sizes), their
    /// training tokens, the disk they need and an estimated wall time from a
    /// short probe of the backend.
    #[arg(long)]
    plan: bool,
}

pub fn run(args: Args) -> Result<()> {
    let options = ReproduceOptions {
        profile: args.profile,
        backend: args.backend,
        seeds: args.seeds,
        set: args.set,
        results: args.results,
        reference: Some(args.reference),
        experiments: args.experiments,
        keep_models: args.keep_models,
        quiet: args.quiet,
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
