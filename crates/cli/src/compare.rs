//! `bertfit compare A B`: two result sets of one experiment, cell by cell
//! (`bertfit_paper::compare` does it), printed as markdown and, with `--out`,
//! written as `compare.md` and `compare.csv`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use bertfit_paper::compare::{ResultSet, compare, locate, same_experiment};
use bertfit_run::write_atomic;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// A table folder (`results/truncation`, `results/truncation/paper`), or
    /// `REV:PATH` for that folder as a commit holds it (`HEAD~3:results/truncation`).
    a: String,
    /// The other side, named the same ways.
    b: String,
    /// Also write compare.md and compare.csv into this folder.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let scratch = tempfile::tempdir().context("cannot create a scratch folder")?;
    let (dir_a, dir_b) = (locate(&args.a, scratch.path())?, locate(&args.b, scratch.path())?);
    same_experiment((&dir_a, &args.a), (&dir_b, &args.b))?;
    let a = ResultSet::read(&dir_a, &args.a)?;
    let b = ResultSet::read(&dir_b, &args.b)?;
    let comparison = compare(&a, &b)?;
    for note in &comparison.notes {
        eprintln!("note: {note}");
    }
    let md = comparison.markdown();
    print!("{md}");
    if let Some(out) = &args.out {
        write_atomic(&out.join("compare.md"), &md)?;
        write_atomic(&out.join("compare.csv"), comparison.csv())?;
        eprintln!("wrote {} and compare.csv", out.join("compare.md").display());
    }
    Ok(())
}
