//! `bertfit finetune --config run.toml`: one fine-tuning run into a folder.

use anyhow::{Context, Result};
use bertfit_run::{PreparedRun, RunConfig, execute, finished, summary};

use crate::job_args::JobArgs;

pub fn run(args: JobArgs) -> Result<()> {
    let config = RunConfig::from_file(&args.config)?;
    let out = args.out("results/runs");
    let prepared = PreparedRun::prepare(&config, args.backend).with_context(|| args.config.display().to_string())?;
    if let Some(done) = finished(&out, &prepared.identity, "run")? {
        eprintln!("{} is done already ({}); delete it to run again", out.display(), out.join("metrics.json").display());
        println!("{}", summary(&done));
        return Ok(());
    }
    match execute(&prepared, &out, &args.options()?)? {
        Some(metrics) => {
            println!("{}", summary(&metrics));
            eprintln!("wrote {}", out.display());
        }
        None => eprintln!("stopped as BERTFIT_STOP_AFTER_STEPS asked; rerun to resume"),
    }
    Ok(())
}
