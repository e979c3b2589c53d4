//! `bertfit schedule`: a learning-rate schedule as `step,lr` CSV, one row per step.

use anyhow::{Result, bail};
use bertfit_train::{Schedule, ScheduleConfig, ScheduleKind, Warmup};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// constant, constant_with_warmup, linear, cosine, cosine_with_restarts, polynomial.
    #[arg(long)]
    kind: ScheduleKind,
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
}

pub fn run(args: Args) -> Result<()> {
    let warmup = parse_warmup(&args.warmup)?;
    let config = ScheduleConfig { kind: args.kind, warmup, num_cycles: args.cycles, power: args.power, lr_end: args.lr_end };
    let schedule = config.build(args.lr, args.total);
    let mut out = String::from("step,lr\n");
    for step in 0..args.total {
        out.push_str(&format!("{step},{:e}\n", schedule.lr(step)));
    }
    print!("{out}");
    Ok(())
}

/// `--warmup`: a step count, or a share of the steps when it has a decimal point.
fn parse_warmup(warmup: &str) -> Result<Warmup> {
    if warmup.contains('.') {
        let p: f64 = warmup.parse().map_err(|_| anyhow::anyhow!("--warmup {warmup:?} is not a number"))?;
        if !(0.0..=1.0).contains(&p) {
            bail!("--warmup {p} as a share must be in [0, 1]");
        }
        Ok(Warmup::Proportion(p))
    } else {
        Ok(Warmup::Steps(warmup.parse().map_err(|_| anyhow::anyhow!("--warmup {warmup:?} is not a step count or a share"))?))
    }
}
