#!/usr/bin/env python3
"""HF transformers' learning rates, step by step, for the six schedules.

Writes tests/fixtures/schedules.json: for each case (kind, total, warmup, lr and
options) the lr the optimizer uses at every step 0..total-1, from
transformers.get_scheduler on a one-parameter SGD.
"""
import json
from pathlib import Path

import torch
import transformers
from transformers import get_scheduler

CASES = [
    dict(kind="constant", total=50, warmup=0),
    dict(kind="constant_with_warmup", total=50, warmup=7),
    dict(kind="linear", total=100, warmup=10),
    dict(kind="linear", total=37, warmup=0),
    dict(kind="cosine", total=100, warmup=10),
    dict(kind="cosine", total=60, warmup=6, num_cycles=1.5),
    dict(kind="cosine_with_restarts", total=100, warmup=10, num_cycles=3),
    dict(kind="cosine_with_restarts", total=45, warmup=5),
    dict(kind="polynomial", total=100, warmup=10),
    dict(kind="polynomial", total=80, warmup=8, power=2.0, lr_end=1e-6),
]
LR = 2e-5


def main() -> None:
    out = []
    for case in CASES:
        param = torch.nn.Parameter(torch.zeros(1))
        optim = torch.optim.SGD([param], lr=LR)
        specific = {}
        if "num_cycles" in case:
            specific["num_cycles"] = case["num_cycles"]
        if "power" in case:
            specific["power"] = case["power"]
        if "lr_end" in case:
            specific["lr_end"] = case["lr_end"]
        sched = get_scheduler(case["kind"], optim, num_warmup_steps=case["warmup"],
                              num_training_steps=case["total"], scheduler_specific_kwargs=specific or None)
        lrs = []
        for _ in range(case["total"]):
            lrs.append(optim.param_groups[0]["lr"])
            optim.step()
            sched.step()
        out.append({**case, "lr": LR, "lrs": lrs})
    path = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "schedules.json"
    path.write_text(json.dumps({"transformers": transformers.__version__, "cases": out}) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
