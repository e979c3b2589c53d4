#!/usr/bin/env python3
"""Checks that HF transformers loads a model directory bertfit wrote, with no
missing or unexpected weights, and gives the same hidden states as the source.

Usage: python tools/check_hf_load.py SOURCE_DIR WRITTEN_DIR
"""
import sys

import torch
from transformers import AutoTokenizer, BertModel

src, written = sys.argv[1], sys.argv[2]
model, info = BertModel.from_pretrained(written, output_loading_info=True)
problems = {k: v for k, v in info.items() if v}
assert not problems, f"HF loading reported: {problems}"
ref = BertModel.from_pretrained(src).eval()
tok = AutoTokenizer.from_pretrained(written)
enc = tok(["a quick check", "of the written model, with padding"], padding=True, return_tensors="pt")
with torch.no_grad():
    a = model.eval()(**enc).last_hidden_state
    b = ref(**enc).last_hidden_state
diff = (a - b).abs().max().item()
assert diff == 0.0, diff
print(f"HF transformers loads {written}: no missing/unexpected keys, max abs diff to source {diff}")
