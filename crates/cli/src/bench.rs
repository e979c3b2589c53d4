//! `bertfit bench`: training tokens/s (forward + backward + AdamW), inference
//! tokens/s and peak memory for each compiled backend, beside HF transformers
//! on the same shapes (`tools/bench_pytorch.py`, run by the bench itself in the
//! same sitting: rounds alternate the two sides case by case, and the table
//! gives medians, since PyTorch's own figure moves with the machine's load). Two tasks: `classify` (a
//! 2-class head, batch 16 at several lengths) and `mlm` (masked LM, batch 32
//! at 128 tokens, 15% of the tokens masked, at most 20 a sequence: the paper's
//! further pre-training).
//!
//! Each (side, case, round) runs in a child process so that its peak resident
//! memory is its own.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use bertfit_model::{Backend, BertConfig, BertForMaskedLM, BertForSequenceClassification, BertInput, HeadConfig};
use bertfit_train::cross_entropy;
use bertfit_train::progress::ProgressTarget;
use bertfit_train::throughput::{LoopShape, Phase, Timing, time_case, time_finetune_loop, time_pretrain_loop};
use burn::module::Module;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::model_args::ModelArgs;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Backends to measure (comma list); default: every compiled one.
    #[arg(long, value_delimiter = ',')]
    pub backends: Vec<Backend>,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    #[arg(long, value_delimiter = ',', default_value = "32,128,512")]
    pub seq_lens: Vec<usize>,
    /// Batch and lengths of the masked-LM case (`--mlm-seq-lens` with no
    /// value: no MLM case).
    #[arg(long, default_value_t = 32)]
    pub mlm_batch: usize,
    #[arg(long, value_delimiter = ',', num_args = 0.., default_value = "128")]
    pub mlm_seq_lens: Vec<usize>,
    /// Timed training steps (after one untimed warm-up step).
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Rounds: each runs every case on every side (PyTorch first), so that the
    /// two sides see the same load; the table gives the medians.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// A Python with torch and transformers: measures HF transformers on the
    /// same shapes in the same sitting (no PyTorch column without it).
    #[arg(long, value_name = "PYTHON")]
    pub python: Option<PathBuf>,
    /// The PyTorch side's worker.
    #[arg(long, default_value = "tools/bench_pytorch.py")]
    pub pytorch_script: PathBuf,
    /// Where the Markdown table goes.
    #[arg(long, default_value = "results/bench/bench.md")]
    pub out: PathBuf,
    /// The encoder blocks in bf16 mixed precision, classification and masked
    /// LM (LibTorch only; `training.precision = "bf16"` of a run or a pre-training).
    #[arg(long)]
    pub bf16: bool,
    /// AdamW's kernels: `auto` (the device's default: fused over parameter
    /// groups on CUDA, one tensor at a time elsewhere), `fused`
    /// (`torch.optim.AdamW(fused=True)`, LibTorch only) or `per-tensor`.
    #[arg(long, value_enum, default_value_t = AdamWKernels::Auto)]
    pub adamw: AdamWKernels,
    /// Also time the real training loop at each shape (fine-tuning for
    /// `classify`, masked-LM pre-training for `mlm`: batching, masking, the
    /// schedule, clipping, the loss read back, logging and progress), beside
    /// the bare step: milliseconds per step of both.
    #[arg(long = "loop")]
    pub time_loop: bool,
    /// Internal: measure one backend and length, print one JSON line.
    #[arg(long, hide = true)]
    pub worker: Option<String>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdamWKernels {
    Auto,
    Fused,
    PerTensor,
}

impl AdamWKernels {
    /// [`bertfit_train::AdamW::fused`].
    fn fused(self) -> Option<bool> {
        match self {
            Self::Auto => None,
            Self::Fused => Some(true),
            Self::PerTensor => Some(false),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Auto => "the device's default (fused over parameter groups on CUDA, one tensor at a time elsewhere)",
            Self::Fused => "fused over parameter groups (`torch.optim.AdamW(fused=True)`, the clipping norm by `_foreach_norm`)",
            Self::PerTensor => "one tensor at a time",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    /// `classify` or `mlm`.
    #[serde(default = "classify")]
    pub task: String,
    pub backend: String,
    pub seq_len: usize,
    pub batch: usize,
    pub train_tokens_per_s: f64,
    pub infer_tokens_per_s: f64,
    pub peak_rss_mb: f64,
    /// Milliseconds per timed training step in forward (with the loss),
    /// backward, and the optimizer update (clipping included).
    #[serde(default)]
    pub phase_ms: Option<[f64; 3]>,
    /// Milliseconds per step of the bare step and, with `--loop`, of the real
    /// training loop at the same shape.
    #[serde(default)]
    pub step_ms: Option<f64>,
    #[serde(default)]
    pub loop_ms: Option<f64>,
}

fn classify() -> String {
    "classify".into()
}

/// Peak resident set size of this process, in MiB (Linux `VmHWM`).
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Deterministic token ids in [1000, vocab) (no special tokens).
fn synthetic_ids(batch: usize, len: usize, vocab: usize) -> Vec<i64> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..batch * len)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            1000 + ((state >> 33) as usize % (vocab - 1000)) as i64
        })
        .collect()
}

/// Positions masked in each sequence of the MLM case: 15% of the tokens, at
/// most 20, spread over the sequence, never [CLS] (position 0); the same as
/// tools/bench_pytorch.py.
pub fn mlm_positions(seq_len: usize) -> Vec<usize> {
    let n = ((seq_len as f64 * 0.15).round() as usize).clamp(1, 20);
    (0..n).map(|k| 1 + k * (seq_len - 1) / n).collect()
}

fn mlm_worker(args: &BenchArgs, backend: Backend, seq_len: usize) -> Result<Measurement> {
    let dir = ModelArgs { model: args.model.clone(), backend }.model_dir()?;
    let config = BertConfig::from_file(&dir.join("config.json"))?;
    let device = backend.device()?;
    let train_device = device.clone().autodiff();
    let (mut model, _) = BertForMaskedLM::from_pretrained(&dir, &config, false, &train_device)?;
    model.bert.set_bf16(args.bf16);
    let batch = args.mlm_batch;
    let mut ids = synthetic_ids(batch, seq_len, config.vocab_size);
    let positions: Vec<i64> = (0..batch).flat_map(|b| mlm_positions(seq_len).into_iter().map(move |p| (b * seq_len + p) as i64)).collect();
    let labels: Vec<i64> = positions.iter().map(|&p| ids[p as usize]).collect();
    for &p in &positions {
        ids[p as usize] = 103; // [MASK] of the BERT uncased vocabulary
    }
    let n = positions.len();
    let input = |device| BertInput::from_ids(ids.clone(), vec![1; batch * seq_len], [batch, seq_len], device);
    let at = |device| Tensor::<1, Int>::from_data(TensorData::new(positions.clone(), [n]), device);
    let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), &train_device);
    let timing = time_case(
        model,
        &device,
        args.steps,
        5e-5,
        args.adamw.fused(),
        |model: &BertForMaskedLM| cross_entropy(model.forward(input(&train_device), at(&train_device)).mlm_logits, targets.clone()),
        |model: &BertForMaskedLM| {
            let _ = model.forward(input(&device), at(&device)).mlm_logits.into_data();
        },
        &perf_control,
    );
    let mut m = measurement(&timing, "mlm", backend, seq_len, batch);
    if args.time_loop {
        let (mut model, _) = BertForMaskedLM::from_pretrained(&dir, &config, false, &train_device)?;
        model.bert.set_bf16(args.bf16);
        let ms = time_pretrain_loop(model.train(), loop_shape(&config, batch, seq_len, args), &device, ProgressTarget::Stderr)?;
        m.loop_ms = Some(ms);
    }
    Ok(m)
}

/// Sends `enable` or `disable` to `perf record --control fifo:CTL,ACK` when
/// `BERTFIT_PERF_CTL` and `BERTFIT_PERF_ACK` name its fifos
/// (`tools/profile_step.py`, which samples only the timed training steps, or
/// only the timed inference batches when `BERTFIT_PERF_PHASE` is `infer`), and
/// waits for perf's acknowledgement.
fn perf_control(phase: Phase, command: &str) {
    let (Ok(ctl), Ok(ack)) = (std::env::var("BERTFIT_PERF_CTL"), std::env::var("BERTFIT_PERF_ACK")) else { return };
    if std::env::var("BERTFIT_PERF_PHASE").as_deref().unwrap_or("train") != phase.name() {
        return;
    }
    let sent = std::fs::OpenOptions::new().write(true).open(&ctl).and_then(|mut f| writeln!(f, "{command}"));
    let acked = sent.and_then(|_| std::fs::File::open(&ack)).and_then(|f| std::io::BufReader::new(f).read_line(&mut String::new()));
    if let Err(e) = acked {
        eprintln!("warning: perf control {command} via {ctl}: {e}");
    }
}

fn worker(args: &BenchArgs, backend: Backend, seq_len: usize) -> Result<Measurement> {
    let dir = ModelArgs { model: args.model.clone(), backend }.model_dir()?;
    let config = BertConfig::from_file(&dir.join("config.json"))?;
    let device = backend.device()?;
    let train_device = device.clone().autodiff();
    let (mut model, _) = BertForSequenceClassification::from_pretrained(&dir, &config, 2, HeadConfig::default(), &train_device)?;
    model.bert.set_bf16(args.bf16);
    let batch = args.batch;
    let ids = synthetic_ids(batch, seq_len, config.vocab_size);
    let input = |device| BertInput::from_ids(ids.clone(), vec![1; batch * seq_len], [batch, seq_len], device);
    let labels = Tensor::<1, Int>::from_data(TensorData::new((0..batch as i64).map(|i| i % 2).collect::<Vec<_>>(), [batch]), &train_device);
    let timing = time_case(
        model,
        &device,
        args.steps,
        2e-5,
        args.adamw.fused(),
        |model: &BertForSequenceClassification| cross_entropy(model.forward(input(&train_device)), labels.clone()),
        |model: &BertForSequenceClassification| {
            let _ = model.forward(input(&device)).into_data();
        },
        &perf_control,
    );
    let mut m = measurement(&timing, &classify(), backend, seq_len, batch);
    if args.time_loop {
        let (mut model, _) = BertForSequenceClassification::from_pretrained(&dir, &config, 2, HeadConfig::default(), &train_device)?;
        model.bert.set_bf16(args.bf16);
        let ms = time_finetune_loop(model.train(), loop_shape(&config, batch, seq_len, args), &device, ProgressTarget::Stderr)?;
        m.loop_ms = Some(ms);
    }
    Ok(m)
}

/// The loops are timed at the bare step's shape, over as many steps.
fn loop_shape(config: &BertConfig, batch: usize, seq_len: usize, args: &BenchArgs) -> LoopShape {
    LoopShape { vocab: config.vocab_size, batch, seq_len, steps: args.steps }
}

fn measurement(timing: &Timing, task: &str, backend: Backend, seq_len: usize, batch: usize) -> Measurement {
    let (train_tokens_per_s, infer_tokens_per_s) = timing.tokens_per_s(batch * seq_len);
    Measurement {
        task: task.into(),
        backend: backend.to_string(),
        seq_len,
        batch,
        train_tokens_per_s,
        infer_tokens_per_s,
        peak_rss_mb: peak_rss_mb(),
        phase_ms: Some(timing.phases.map(|p| 1000.0 * p / timing.steps as f64)),
        step_ms: Some(1000.0 * timing.train_secs / timing.steps as f64),
        loop_ms: None,
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|m| m.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("{cores} cores, {cpu}")
}

/// One child process: a Rust backend (`bertfit bench --worker`) or PyTorch
/// (`tools/bench_pytorch.py --worker`) on one case.
fn measure_in_child(args: &BenchArgs, model_dir: &Path, side: &str, (task, batch, len): Case) -> Result<Measurement> {
    let mut cmd = if side == PYTORCH {
        let python = args.python.as_ref().expect("PyTorch side only with --python");
        let mut cmd = Command::new(python);
        cmd.arg(&args.pytorch_script).arg(model_dir).args(["--worker", &format!("{task}@{batch}@{len}")]);
        cmd
    } else {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["bench", "--worker", &format!("{task}@{side}@{len}")]).arg("--model").arg(model_dir).args([
            "--batch",
            &args.batch.to_string(),
            "--mlm-batch",
            &args.mlm_batch.to_string(),
        ]);
        if args.bf16 {
            cmd.arg("--bf16");
        }
        let adamw = clap::ValueEnum::to_possible_value(&args.adamw).expect("every kind has a name");
        cmd.args(["--adamw", adamw.get_name()]);
        if args.time_loop {
            cmd.arg("--loop");
        }
        cmd
    };
    let out = cmd.args(["--steps", &args.steps.to_string()]).output().with_context(|| format!("cannot start the {side} bench worker"))?;
    if !out.status.success() {
        bail!("bench of {task} on {side} at seq {len} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let last = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().to_string();
    serde_json::from_str(&last).with_context(|| format!("bad output from the {side} bench worker: {last}"))
}

const PYTORCH: &str = "pytorch";

/// (task, batch, sequence length).
type Case<'a> = (&'a str, usize, usize);

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 }
}

/// The medians of one side's rounds on one case (peak memory: the largest).
fn summarize(rounds: &[Measurement]) -> Measurement {
    let first = &rounds[0];
    let phase = |i: usize| median(rounds.iter().filter_map(|m| m.phase_ms.map(|p| p[i])).collect());
    Measurement {
        task: first.task.clone(),
        backend: first.backend.clone(),
        seq_len: first.seq_len,
        batch: first.batch,
        train_tokens_per_s: median(rounds.iter().map(|m| m.train_tokens_per_s).collect()),
        infer_tokens_per_s: median(rounds.iter().map(|m| m.infer_tokens_per_s).collect()),
        peak_rss_mb: rounds.iter().map(|m| m.peak_rss_mb).fold(f64::NAN, f64::max),
        phase_ms: first.phase_ms.map(|_| [phase(0), phase(1), phase(2)]),
        step_ms: first.step_ms.map(|_| median(rounds.iter().filter_map(|m| m.step_ms).collect())),
        loop_ms: first.loop_ms.map(|_| median(rounds.iter().filter_map(|m| m.loop_ms).collect())),
    }
}

/// "min-max" of a figure over the rounds.
fn spread(rounds: &[Measurement], figure: impl Fn(&Measurement) -> f64) -> String {
    let values: Vec<f64> = rounds.iter().map(figure).collect();
    let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    format!("{lo:.0}-{hi:.0}")
}

pub fn run(args: BenchArgs) -> Result<()> {
    if let Some(spec) = &args.worker {
        return run_worker(&args, spec);
    }
    for (flag, value) in [("--rounds", args.rounds), ("--steps", args.steps), ("--batch", args.batch), ("--mlm-batch", args.mlm_batch)] {
        if value == 0 {
            bail!("{flag} must be at least 1");
        }
    }
    if let Some(len) = args.seq_lens.iter().chain(&args.mlm_seq_lens).find(|&&len| len < 3) {
        bail!("sequence length {len}: a bench sequence needs [CLS], [SEP] and at least one token");
    }
    // Fetch the default model once, before the children start.
    let model_dir = ModelArgs { model: args.model.clone(), backend: Backend::Flex }.model_dir()?;
    let backends = if args.backends.is_empty() { Backend::available() } else { args.backends.clone() };
    for b in &backends {
        b.check()?; // a backend not compiled in (or a CUDA device not here) fails here, before any work
        if args.bf16 && !b.has_bf16() {
            bail!("--bf16: backend {b} has no bf16 path (LibTorch only: tch, tch-cuda)");
        }
        if args.adamw == AdamWKernels::Fused && !b.is_libtorch() {
            bail!("--adamw fused: backend {b} has no fused AdamW (LibTorch only: tch, tch-cuda)");
        }
    }
    let torch_version = torch_version(&args)?;
    let sides: Vec<String> = torch_version.iter().map(|_| PYTORCH.to_string()).chain(backends.iter().map(|b| b.to_string())).collect();
    let cases: Vec<Case> = args
        .seq_lens
        .iter()
        .map(|&len| ("classify", args.batch, len))
        .chain(args.mlm_seq_lens.iter().map(|&len| ("mlm", args.mlm_batch, len)))
        .collect();
    let measured = measure_all(&args, &model_dir, &sides, &cases)?;
    let table = render(&args, torch_version.as_deref(), &sides, &cases, &measured);
    print!("{table}");
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, &table).with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

/// `--worker TASK@BACKEND@LEN`: one case measured in this process, as a JSON line.
fn run_worker(args: &BenchArgs, spec: &str) -> Result<()> {
    let mut parts = spec.split('@');
    let (Some(task), Some(backend), Some(len)) = (parts.next(), parts.next(), parts.next()) else {
        bail!("worker spec is TASK@BACKEND@LEN");
    };
    let m = match task {
        "mlm" => mlm_worker(args, backend.parse()?, len.parse()?)?,
        _ => worker(args, backend.parse()?, len.parse()?)?,
    };
    println!("{}", serde_json::to_string(&m)?);
    Ok(())
}

/// The version of torch that `--python` has (with transformers), if given.
fn torch_version(args: &BenchArgs) -> Result<Option<String>> {
    let Some(python) = &args.python else { return Ok(None) };
    if !args.pytorch_script.is_file() {
        bail!("{} not found (--pytorch-script; run the bench from the checkout's root)", args.pytorch_script.display());
    }
    let out = Command::new(python)
        .args(["-c", "import torch, transformers; print(torch.__version__)"])
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !out.status.success() {
        bail!("{} has no torch and transformers: {}", python.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(Some(String::from_utf8_lossy(&out.stdout).trim().to_string()))
}

/// Every case on every side, one child process each, in alternating rounds:
/// `measured[case * sides + side]` holds one measurement per round.
fn measure_all(args: &BenchArgs, model_dir: &Path, sides: &[String], cases: &[Case]) -> Result<Vec<Vec<Measurement>>> {
    let mut measured: Vec<Vec<Measurement>> = vec![Vec::new(); cases.len() * sides.len()];
    for round in 1..=args.rounds {
        for (c, &case) in cases.iter().enumerate() {
            for (s, side) in sides.iter().enumerate() {
                let (task, batch, len) = case;
                eprintln!("bench round {round}/{}: {task}, {side}, batch {batch}, seq {len} ...", args.rounds);
                let m = measure_in_child(args, model_dir, side, case)?;
                eprintln!("  train {:.0} tokens/s, inference {:.0} tokens/s", m.train_tokens_per_s, m.infer_tokens_per_s);
                measured[c * sides.len() + s].push(m);
            }
        }
    }
    Ok(measured)
}

/// The markdown table of medians (min-max), ratios to PyTorch, and where a step's time goes.
fn render(args: &BenchArgs, torch_version: Option<&str>, sides: &[String], cases: &[Case], measured: &[Vec<Measurement>]) -> String {
    let mut table = String::new();
    table.push_str(&format!(
        "Machine: {}. Model: {}. {} timed training steps (forward + backward + AdamW) after one warm-up; inference: eval mode, {} batches. `classify`: a 2-class head, batch {}; `mlm`: masked LM, batch {}, 15% of the tokens masked (at most 20 a sequence), logits at the masked positions (PyTorch: HF BertForMaskedLM with labels, which projects every position).\n",
        machine(),
        args.model.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "all-MiniLM-L6-v2 (embedded default)".into()),
        args.steps,
        args.steps * 2,
        args.batch,
        args.mlm_batch,
    ));
    table.push_str(&format!("Our AdamW: {}.\n", args.adamw.describe()));
    match torch_version {
        Some(v) => table.push_str(&format!(
            "PyTorch: HF transformers on torch {v}, as many threads as cores (tools/bench_pytorch.py), measured in the same sitting: {} rounds, each running every case on PyTorch and then on each backend; figures are medians over the rounds (min-max beside tokens/s), peak RSS the largest.\n",
            args.rounds
        )),
        None => table.push_str(&format!("No PyTorch column (`--python` not given). Figures are medians over {} rounds.\n", args.rounds)),
    }
    table.push_str(
        "\n| task | backend | batch | seq | train tokens/s | × PyTorch | inference tokens/s | × PyTorch | peak RSS MiB |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut phased = Vec::new();
    for (c, &(task, batch, len)) in cases.iter().enumerate() {
        let reference = torch_version.map(|_| summarize(&measured[c * sides.len()]));
        for (s, _) in sides.iter().enumerate() {
            let rounds = &measured[c * sides.len() + s];
            let m = summarize(rounds);
            let ratio = |ours: f64, theirs: Option<f64>| theirs.map(|t| format!("{:.2}", ours / t)).unwrap_or_else(|| "-".into());
            table.push_str(&format!(
                "| {task} | {} | {batch} | {len} | {:.0} ({}) | {} | {:.0} ({}) | {} | {:.0} |\n",
                m.backend,
                m.train_tokens_per_s,
                spread(rounds, |m| m.train_tokens_per_s),
                ratio(m.train_tokens_per_s, reference.as_ref().map(|r| r.train_tokens_per_s)),
                m.infer_tokens_per_s,
                spread(rounds, |m| m.infer_tokens_per_s),
                ratio(m.infer_tokens_per_s, reference.as_ref().map(|r| r.infer_tokens_per_s)),
                m.peak_rss_mb
            ));
            if m.phase_ms.is_some() {
                phased.push(m);
            }
        }
    }
    let looped: Vec<Measurement> = (0..cases.len())
        .flat_map(|c| (0..sides.len()).map(move |s| (c, s)))
        .map(|(c, s)| summarize(&measured[c * sides.len() + s]))
        .filter(|m| m.loop_ms.is_some())
        .collect();
    if !looped.is_empty() {
        table.push_str("\nThe real training loop against its bare step at the same shape (milliseconds per step, medians): the loop is `finetune` (`classify`) or `pretrain` (`mlm`) with its batching, masking, schedule, clipping, loss read back, logging and progress, timed over its second epoch (or second half of the steps), evaluation apart.\n\n| task | backend | batch | seq | bare step | loop | loop / step |\n|---|---|---|---|---|---|---|\n");
        for m in &looped {
            let (step, lp) = (m.step_ms.unwrap_or(f64::NAN), m.loop_ms.unwrap_or(f64::NAN));
            table.push_str(&format!(
                "| {} | {} | {} | {} | {step:.1} | {lp:.1} | {:.2} |\n",
                m.task,
                m.backend,
                m.batch,
                m.seq_len,
                lp / step
            ));
        }
    }
    if !phased.is_empty() {
        phased.sort_by_key(|m| (m.task != classify(), m.seq_len, m.backend != PYTORCH));
        table.push_str("\nWhere a training step's time goes (milliseconds per step, medians):\n\n| task | backend | seq | forward + loss | backward | optimizer (AdamW, clipping) | optimizer share |\n|---|---|---|---|---|---|---|\n");
        for m in phased {
            let [f, b, o] = m.phase_ms.expect("filtered");
            table.push_str(&format!(
                "| {} | {} | {} | {f:.0} | {b:.0} | {o:.0} | {:.0}% |\n",
                m.task,
                m.backend,
                m.seq_len,
                100.0 * o / (f + b + o)
            ));
        }
    }
    table
}
