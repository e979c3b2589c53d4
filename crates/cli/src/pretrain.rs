//! `bertfit pretrain --config pretrain.toml`: further pre-training with masked
//! LM, trained in the stage cache that runs with the same settings share (found
//! there when one of them trained it already), then copied to the output folder.

use anyhow::{Context, Result};
use bertfit_run::pretrain::summary;
use bertfit_run::stage::Stage;
use bertfit_run::{PreparedPretrain, PretrainMetrics, PretrainRunConfig, finished, pretrain_stage};

use crate::job_args::JobArgs;

pub fn run(args: JobArgs) -> Result<()> {
    let config = PretrainRunConfig::from_file(&args.config)?;
    let out = args.out("results/pretrain");
    let prepared = PreparedPretrain::prepare(&config, args.backend).with_context(|| args.config.display().to_string())?;
    if let Some(done) = finished::<PretrainMetrics>(&out, &prepared.identity, "pre-training")? {
        eprintln!("{} is done already ({}); delete it to run again", out.display(), out.join("metrics.json").display());
        println!("{}", summary(&done));
        return Ok(());
    }
    match pretrain_stage(&prepared, None, &args.options()?)? {
        Some((metrics, _)) => {
            Stage::new("pretrain", &prepared.identity).copy_to(&out)?;
            println!("{}", summary(&metrics));
            eprintln!("wrote {}", out.display());
        }
        None => eprintln!("stopped as BERTFIT_STOP_AFTER_STEPS asked; rerun to resume"),
    }
    Ok(())
}
