#!/usr/bin/env python3
"""Where the CPU time of bertfit's training steps goes, by kind of work.

Samples `bertfit bench --worker classify@BACKEND@LEN` (one warm-up step, then
the timed steps and the inference batches of `bertfit bench`) with
`perf record -e cpu-clock` (software clock: works in VMs without hardware
counters), then sorts the samples' symbols into kinds of work: matrix
products, elementwise and reductions, memory (allocation and copies),
autodiff bookkeeping, threading and waiting, other. Writes a Markdown table.

Usage: python tools/profile_step.py BERTFIT_BIN [--backends flex,tch] [--seq-lens 32,128,512]
       [--steps 3] [--out results/bench/profile.md]
"""
import argparse
import collections
import re
import subprocess
import sys
import tempfile
from pathlib import Path

# First match wins; patterns are tried against the demangled symbol and its DSO.
KINDS = [
    ("matrix products", r"gemm|sgemm|matmul|mkl_blas|dnnl|brgemm|jit_avx|xbyak|cblas|openblas|Gemm"),
    ("elementwise, reductions, softmax, norms", r"burn_flex::ops|burn_ndarray|ndarray::|binary|unary|elementwise|reduce|softmax|exp|erf|tanh|layer_norm|vml|vectorized|at::native|Sleef|_ZN2at"),
    ("random numbers (dropout)", r"rand|bernoulli|Rng|mt19937|philox"),
    ("memory: allocation, copies, zeroing", r"malloc|free|memcpy|memmove|memset|alloc|page_fault|clear_page|mmap|munmap|realloc"),
    ("autodiff bookkeeping", r"burn_autodiff"),
    ("threads: scheduling, spinning, waiting", r"rayon|crossbeam|gomp|omp_|kmp|futex|sched_yield|spin|park|__pthread|do_syscall"),
    ("kernel (other)", r"\[kernel|\[k\]"),
]


def classify(symbol: str, dso: str) -> str:
    text = f"{symbol} {dso}"
    for kind, pattern in KINDS:
        if re.search(pattern, text):
            return kind
    return "other"


def profile(binary: str, backend: str, seq_len: int, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "perf.data"
        cmd = ["perf", "record", "-q", "-e", "cpu-clock", "-F", "999", "-o", str(data), "--",
               binary, "bench", "--worker", f"classify@{backend}@{seq_len}", "--steps", str(steps)]
        subprocess.run(cmd, check=True, capture_output=True)
        report = subprocess.run(
            ["perf", "report", "-i", str(data), "--stdio", "--no-children", "--sort", "dso,symbol", "-q", "--percent-limit", "0"],
            check=True, capture_output=True, text=True).stdout
    kinds = collections.Counter()
    for line in report.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+(\[.\])\s+(.*)", line)
        if m:
            share, dso, level, symbol = float(m.group(1)), m.group(2), m.group(3), m.group(4)
            kinds[classify(symbol + " " + level, dso)] += share
    return kinds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--backends", default="flex,tch")
    parser.add_argument("--seq-lens", default="32,128,512")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", default="results/bench/profile.md")
    args = parser.parse_args()
    kinds = [k for k, _ in KINDS] + ["other"]
    rows = []
    for backend in args.backends.split(","):
        for seq_len in [int(s) for s in args.seq_lens.split(",")]:
            print(f"profiling {backend} at seq {seq_len} ...", file=sys.stderr)
            shares = profile(args.binary, backend, seq_len, args.steps)
            rows.append((backend, seq_len, shares))
    out = ["Share of CPU samples (perf record -e cpu-clock, 999 Hz) of `bertfit bench --worker classify@BACKEND@LEN` "
           f"(batch 16, one warm-up step, {args.steps} timed training steps, {2 * args.steps} inference batches; model loading included), "
           "by kind of work (tools/profile_step.py sorts symbols by name).", "",
           "| backend | seq | " + " | ".join(kinds) + " |", "|---|---|" + "---|" * len(kinds)]
    for backend, seq_len, shares in rows:
        out.append(f"| {backend} | {seq_len} | " + " | ".join(f"{shares.get(k, 0.0):.1f}%" for k in kinds) + " |")
    text = "\n".join(out) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
