//! `bertfit stats`: Table 1 of the paper for catalogued datasets (classes,
//! sizes, lengths in WordPiece tokens of the model's tokenizer), printed and
//! written under results/datasets/.

use std::path::PathBuf;

use anyhow::Result;
use bertfit_data::{BertTokenizer, Dataset, catalogue, dataset_stats};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Dataset names (datasets/NAME.toml) or paths to dataset TOML files.
    #[arg(required = true)]
    datasets: Vec<String>,
    /// Tokenizer of this HF model directory (default: the embedded model).
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    split_seed: u64,
    #[arg(long, default_value = "results/datasets")]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let start = std::time::Instant::now();
    let dir = crate::model_args::model_dir(args.model.as_ref())?;
    let tokenizer = BertTokenizer::from_model_dir(&dir)?;
    let mut rows = Vec::new();
    for name in &args.datasets {
        let spec = catalogue::find(name)?;
        let dataset = Dataset::load(&spec, args.split_seed)?;
        if dataset.provenance.skipped_empty > 0 {
            eprintln!("{name}: skipped {} empty texts", dataset.provenance.skipped_empty);
        }
        rows.push(dataset_stats::compute(&dataset, &tokenizer)?);
    }
    let tokenizer_name = match &args.model {
        Some(dir) => dir.display().to_string(),
        None => "all-MiniLM-L6-v2 (BERT-base uncased vocabulary)".to_string(),
    };
    let table = dataset_stats::markdown(&rows, &tokenizer_name);
    print!("{table}");
    std::fs::create_dir_all(&args.out)?;
    let path = args.out.join(format!("{}.md", args.datasets.iter().map(|n| n.replace(['/', '.'], "_")).collect::<Vec<_>>().join("+")));
    std::fs::write(&path, &table)?;
    eprintln!("wrote {} in {:.1} s", path.display(), start.elapsed().as_secs_f64());
    Ok(())
}
