//! `bertfit reproduce --list`: each experiment, what it reproduces, and which
//! cells of a profile can run on this machine (checked without reading the
//! datasets through or downloading anything).

use std::collections::BTreeMap;

use anyhow::Result;
use bertfit_run::PreparedRun;
use bertfit_run::model_source::model_unavailable;

use crate::grid::{Grid, known, load_experiment};
use crate::options::ReproduceOptions;
use crate::plan::dataset_needs;

/// Prints one line per experiment.
pub fn list(args: &ReproduceOptions) -> Result<()> {
    let dirs = &args.experiment_dirs();
    println!("experiment | reproduces | title | {} profile here", args.profile);
    for name in known(dirs) {
        let line = (|| -> Result<String> {
            let (experiment, file) = load_experiment(&name, dirs)?;
            let grid = Grid::build(&name, experiment, file, &args.profile, &args.set, Some(1))?;
            let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
            let mut runnable = 0;
            let mut skipped = 0;
            let mut downloads: BTreeMap<String, Option<u64>> = BTreeMap::new();
            for cell in &grid.cells {
                let Some(config) = &cell.config else {
                    skipped += 1;
                    continue;
                };
                let model = match PreparedRun::prepare(config, args.backend) {
                    Err(e) => Some(model_unavailable(&e).map(|m| m.to_string()).unwrap_or_else(|| format!("{e:#}"))),
                    Ok(_) => None,
                };
                let needs = dataset_needs(config)?;
                downloads.extend(needs.fetch);
                let why = match (model, needs.missing) {
                    (Some(m), Some(d)) => Some(format!("{m}; and {d}")),
                    (m, d) => m.or(d),
                };
                match why {
                    None => runnable += 1,
                    Some(why) => *reasons.entry(why).or_default() += 1,
                }
            }
            let mut text = format!(
                "{} | {} | {runnable} of {} cells run here",
                grid.experiment.reproduces,
                grid.experiment.title,
                grid.cells.len() - skipped
            );
            for (why, n) in reasons {
                text.push_str(&format!("; {n} missing: {why}"));
            }
            if !downloads.is_empty() {
                let known: u64 = downloads.values().flatten().sum();
                text.push_str(&format!("; first fetches {} dataset files ({:.0} MB known)", downloads.len(), known as f64 / 1e6));
            }
            Ok(text)
        })();
        match line {
            Ok(line) => println!("{name} | {line}"),
            Err(e) => println!("{name} | error: {e:#}"),
        }
    }
    Ok(())
}
