#!/usr/bin/env python3
"""HF transformers throughput on the shapes `bertfit bench` measures.

Training: forward + backward + AdamW (eps 1e-6, weight decay 0.01, global
clipping at 1.0), train mode; inference: eval mode, inference_mode. Two tasks,
as `bertfit bench`: `classify` (BertForSequenceClassification, 2 labels) and
`mlm` (BertForMaskedLM with labels at 15% of the positions, at most 20 a
sequence, the same positions as the Rust bench; HF projects every position
onto the vocabulary and ignores the unlabelled ones). Same synthetic inputs,
batch and thread count as the Rust bench.

`bertfit bench --python PYTHON` runs this script's worker itself, one case per
process, alternating with its own backends in the same sitting; run alone, it
prints PyTorch's figures for every case.

Usage: python tools/bench_pytorch.py MODEL_DIR [--batch 16] [--seq-lens 32,128,512]
       [--mlm-batch 32] [--mlm-seq-lens 128] [--steps 5]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch


def mlm_positions(seq_len: int) -> list:
    """As `bertfit bench`: 15% of the tokens, at most 20, spread, never position 0."""
    n = min(max(round(seq_len * 0.15), 1), 20)
    return [1 + k * (seq_len - 1) // n for k in range(n)]


def perf_control(phase: str, command: str) -> None:
    """As `bertfit bench`: `enable` / `disable` to `perf record --control fifo:CTL,ACK`
    when BERTFIT_PERF_CTL and BERTFIT_PERF_ACK name its fifos (tools/profile_step.py),
    around the phase (`train` or `infer`) that BERTFIT_PERF_PHASE names (default `train`)."""
    ctl, ack = os.environ.get("BERTFIT_PERF_CTL"), os.environ.get("BERTFIT_PERF_ACK")
    if ctl and ack and os.environ.get("BERTFIT_PERF_PHASE", "train") == phase:
        with open(ctl, "w") as f:
            f.write(command + "\n")
        with open(ack) as f:
            f.readline()


def measure(model_dir: str, task: str, batch: int, seq_len: int, steps: int) -> dict:
    from transformers import BertForMaskedLM, BertForSequenceClassification

    torch.manual_seed(0)
    if task == "mlm":
        model = BertForMaskedLM.from_pretrained(model_dir)
    else:
        model = BertForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    vocab = model.config.vocab_size
    ids = torch.randint(1000, vocab, (batch, seq_len))
    mask = torch.ones_like(ids)
    if task == "mlm":
        labels = torch.full_like(ids, -100)
        for p in mlm_positions(seq_len):
            labels[:, p] = ids[:, p]
            ids[:, p] = 103
    else:
        labels = torch.arange(batch) % 2
    no_decay = ["bias", "LayerNorm.weight"]
    groups = [
        {"params": [p for n, p in model.named_parameters() if not any(nd in n for nd in no_decay)], "weight_decay": 0.01},
        {"params": [p for n, p in model.named_parameters() if any(nd in n for nd in no_decay)], "weight_decay": 0.0},
    ]
    optim = torch.optim.AdamW(groups, lr=2e-5, eps=1e-6)
    model.train()

    phases = [0.0, 0.0, 0.0]

    def step(phases):
        t0 = time.perf_counter()
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        loss = out.loss.item()
        t1 = time.perf_counter()
        out.loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        optim.zero_grad()
        t3 = time.perf_counter()
        for i, d in enumerate((t1 - t0, t2 - t1, t3 - t2)):
            phases[i] += d
        return loss

    step([0.0, 0.0, 0.0])
    perf_control("train", "enable")
    start = time.perf_counter()
    for _ in range(steps):
        step(phases)
    train_secs = time.perf_counter() - start
    perf_control("train", "disable")

    model.eval()
    with torch.inference_mode():
        model(input_ids=ids, attention_mask=mask)
        perf_control("infer", "enable")
        start = time.perf_counter()
        for _ in range(steps * 2):
            model(input_ids=ids, attention_mask=mask).logits.numpy()
        infer_secs = time.perf_counter() - start
        perf_control("infer", "disable")
    tokens = batch * seq_len
    return {
        "task": task,
        "backend": "pytorch",
        "seq_len": seq_len,
        "batch": batch,
        "train_tokens_per_s": tokens * steps / train_secs,
        "infer_tokens_per_s": tokens * steps * 2 / infer_secs,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "phase_ms": [1000.0 * p / steps for p in phases],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq-lens", default="32,128,512")
    parser.add_argument("--mlm-batch", type=int, default=32)
    parser.add_argument("--mlm-seq-lens", default="128")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    if args.worker:
        task, batch, seq_len = args.worker.split("@")
        print(json.dumps(measure(args.model_dir, task, int(batch), int(seq_len), args.steps)))
        return
    cases = [("classify", args.batch, int(s)) for s in args.seq_lens.split(",") if s]
    cases += [("mlm", args.mlm_batch, int(s)) for s in args.mlm_seq_lens.split(",") if s]
    for task, batch, seq_len in cases:
        # One process per case, so that peak memory is its own (as in the Rust bench).
        out = subprocess.run(
            [sys.executable, __file__, args.model_dir, "--steps", str(args.steps), "--worker", f"{task}@{batch}@{seq_len}"],
            check=True, capture_output=True, text=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"pytorch {torch.__version__} {r['task']} batch {r['batch']} seq {r['seq_len']}: train {r['train_tokens_per_s']:.0f} tok/s, "
              f"inference {r['infer_tokens_per_s']:.0f} tok/s, peak {r['peak_rss_mb']:.0f} MiB")

if __name__ == "__main__":
    main()
