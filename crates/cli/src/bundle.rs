//! `bertfit bundle NAME --out DIR`: an experiment's profile packed to run on
//! a machine with PyTorch but no Rust and no internet
//! (`bertfit_paper::bundle`); `just device-bundle NAME --profile gpu` makes one
//! with a binary built for the device machine's torch.

use std::path::PathBuf;

use anyhow::Result;
use bertfit_paper::ReproduceOptions;
use bertfit_paper::bundle::{BundleOptions, bundle};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The experiment (`bertfit reproduce --list` shows them).
    name: String,
    /// The profile the bundle runs (`gpu`: the paper's lengths on one GPU in minutes).
    #[arg(long, default_value = "gpu")]
    profile: String,
    /// Where the bundle goes (emptied first): bertfit.xz, payload.tar.xz, run.sh.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The bertfit binary to carry, built against the target machine's
    /// LibTorch (default: this one).
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
    /// The backend the bundle trains on.
    #[arg(long, default_value = "tch-cuda")]
    backend: String,
    /// Runs the bundle trains at once (`reproduce --jobs`).
    #[arg(long, default_value_t = 4)]
    jobs: usize,
    /// Training seeds per cell (default: the profile's).
    #[arg(long)]
    seeds: Option<usize>,
    /// A setting of every cell's run, as `reproduce --set`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// A folder of experiment files that add to or override the built-in ones.
    #[arg(long, value_name = "DIR")]
    experiments: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let binary = match args.binary {
        Some(path) => path,
        None => std::env::current_exe()?,
    };
    let reproduce = ReproduceOptions {
        profile: args.profile,
        seeds: args.seeds,
        set: args.set,
        experiments: args.experiments,
        jobs: args.jobs,
        ..ReproduceOptions::default()
    };
    let options = BundleOptions { reproduce, out: args.out, binary, backend: args.backend, jobs: args.jobs };
    let bundled = bundle(&args.name, &options)?;
    for (file, bytes) in &bundled.files {
        eprintln!("{:>8.1} MB  {}", *bytes as f64 / 1e6, file.display());
    }
    eprintln!(
        "{}: {} runnable runs; {} models, datasets and files carried; {:.1} MB in all. Run it with `bash {}/run.sh` there.",
        args.name,
        bundled.runnable,
        bundled.carried,
        bundled.bytes() as f64 / 1e6,
        options.out.display()
    );
    Ok(())
}
