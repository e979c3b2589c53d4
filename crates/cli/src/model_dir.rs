//! `bertfit model-dir`: the model directory in use (fetching the embedded default if needed).

use std::path::PathBuf;

use anyhow::Result;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    println!("{}", crate::model_args::model_dir(args.model.as_ref())?.display());
    Ok(())
}
