//! `bertfit fetch NAME...`: each catalogued dataset's splits fetched into the
//! cache now (a download with a progress bar, checked and unpacked), so that a
//! machine goes offline, or a GPU session starts, with its data in place.
//! Prints one tab-separated line per split: dataset, split, path, origin.

use anyhow::Result;
use bertfit_data::catalogue;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Catalogued datasets (`bertfit reproduce --list` names them), or paths to dataset TOMLs.
    #[arg(required = true)]
    names: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    for name in &args.names {
        let spec = catalogue::find(name)?;
        for (split, sources) in spec.splits() {
            let file = sources.resolve(&spec.name, split)?;
            println!("{}\t{split}\t{}\t{}", spec.name, file.path.display(), file.origin);
        }
    }
    Ok(())
}
