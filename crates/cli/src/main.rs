//! `bertfit`: fine-tune BERT-family models for text classification, and
//! reproduce "How to Fine-Tune BERT for Text Classification?" (Sun et al. 2019).
//! One module per command, each with its own arguments.

mod bench;
mod bundle;
mod compare;
mod convert;
mod encode;
mod fetch;
mod finetune;
mod input;
mod job_args;
mod model_args;
mod model_dir;
mod predict;
mod pretrain;
mod reproduce;
mod schedule;
mod stats;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "bertfit", version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("BERTFIT_COMMIT"), ")"), about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    Stats(stats::Args),
    /// Run an experiment of the paper (`--list` shows them) and write its
    /// error-rate table beside the paper's numbers, the paper's claims judged,
    /// and its plots, to results/NAME/. Finished runs are kept and skipped; a
    /// killed run continues from its checkpoint.
    Reproduce(reproduce::Args),
    /// Compare two result sets of one experiment cell by cell (two results
    /// folders, profiles, backends, or a commit's committed results as
    /// REV:PATH): each pair's test-error difference with its paired 95%
    /// interval, and whether they agree; markdown and CSV.
    Compare(compare::Args),
    /// Fine-tune a classifier as `run.toml` says (dataset, long-text handling,
    /// head, optimizer, schedule, epochs). Writes metrics.json, curve.csv,
    /// config.toml and model/ (HF layout) to --out; a killed run resumes from
    /// its last checkpoint when rerun, a finished one is not redone.
    Finetune(job_args::JobArgs),
    /// Further pre-training with masked LM as `pretrain.toml` says (datasets
    /// whose train text is read, steps, batch, sequence length, lr). Writes a
    /// HF model directory (BertForMaskedLM) with metrics.json and the kept
    /// snapshots to --out. Trains in the stage cache that runs with the same
    /// pre-training settings share ($BERTFIT_CACHE/stages/pretrain/ID; found
    /// there when one of them trained it already); a killed run resumes from
    /// its last checkpoint.
    Pretrain(job_args::JobArgs),
    /// Classify texts (one per line, stdin or --input) with a model `finetune`
    /// wrote: one JSON line per text with the label and the class probabilities.
    Predict(predict::Args),
    /// Print a learning-rate schedule as `step,lr` CSV, one row per step 0..N-1.
    Schedule(schedule::Args),
    /// Load a HF BERT directory (safetensors or pytorch_model.bin, any naming we
    /// read) and write it back as HF `model.safetensors` + `config.json` + tokenizer files.
    Convert(convert::Args),
    /// Pack an experiment's profile (`gpu` by default) into one folder that runs
    /// it on a machine with PyTorch but no Rust and no internet: the binary,
    /// the models and data its grid reads, and run.sh.
    Bundle(bundle::Args),
    /// Print the model directory in use (fetching the embedded default if needed).
    ModelDir(model_dir::Args),
    /// Fetch catalogued datasets into the cache now (pinned downloads, checked
    /// and unpacked); prints each split's file.
    Fetch(fetch::Args),
}

fn main() -> ExitCode {
    keep_freed_memory();
    bertfit_run::set_commit(env!("BERTFIT_COMMIT"));
    let result = match Cli::parse().command {
        Command::Encode(args) => encode::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Stats(args) => stats::run(args),
        Command::Reproduce(args) => reproduce::run(args),
        Command::Compare(args) => compare::run(args),
        Command::Finetune(args) => finetune::run(args),
        Command::Pretrain(args) => pretrain::run(args),
        Command::Predict(args) => predict::run(args),
        Command::Schedule(args) => schedule::run(args),
        Command::Convert(args) => convert::run(args),
        Command::ModelDir(args) => model_dir::run(args),
        Command::Bundle(args) => bundle::run(args),
        Command::Fetch(args) => fetch::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Keeps the memory a step frees for the next step to reuse. glibc's malloc
/// hands every block above its mmap threshold (dynamic, at most 32 MiB) back
/// to the kernel on free, so at 512 tokens, where one activation is 50-200
/// MiB, each step faulted its memory in anew, zeroed page by page: a third of
/// the CPU time was the kernel's (`just bench`, measured in
/// `results/bench/bench.md`). Blocks up to 1 GiB now come from the heap, which
/// is trimmed only when 1 GiB lies free at its top. LibTorch allocates through
/// the same malloc. Elsewhere than glibc: nothing to do.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's thresholds; called first thing in
    // main, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
