#!/usr/bin/env python3
"""Checks a model `bertfit pretrain` wrote against HF transformers:
`BertForMaskedLM.from_pretrained` loads its encoder and MLM head (the decoder
tied to the word embeddings, as HF ties it), and its logits at the masked
positions equal ours.

Usage: python tools/check_hf_mlm.py MODEL_DIR FIXTURE_JSON
FIXTURE_JSON: {"input_ids", "attention_mask" (row-major), "shape": [batch, len],
"masked": flat positions to compare, "logits": ours, [batch, len, vocab] row-major}.
"""
import json
import sys

import torch
from transformers import BertForMaskedLM

model_dir, fixture_file = sys.argv[1:3]
model, info = BertForMaskedLM.from_pretrained(model_dir, output_loading_info=True)
# bertfit keeps the pooler of the model it started from (fine-tuning needs
# it); HF's BertForMaskedLM has none, so those two tensors are unexpected.
unexpected = [k for k in info["unexpected_keys"] if not k.startswith("bert.pooler.")]
missing = [k for k in info["missing_keys"] if k not in ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")]
assert not unexpected and not missing and not info["mismatched_keys"], info
assert model.cls.predictions.decoder.weight.data_ptr() == model.bert.embeddings.word_embeddings.weight.data_ptr(), "decoder not tied"
f = json.load(open(fixture_file))
batch, length = f["shape"]
ids = torch.tensor(f["input_ids"]).reshape(batch, length)
mask = torch.tensor(f["attention_mask"]).reshape(batch, length)
with torch.no_grad():
    logits = model.eval()(input_ids=ids, attention_mask=mask).logits.reshape(batch * length, -1)
ours = torch.tensor(f["logits"]).reshape(batch * length, -1)
worst = max((logits[p] - ours[p]).abs().max().item() for p in f["masked"])
scale = max(ours[p].abs().max().item() for p in f["masked"])
assert worst < 1e-4 * max(1.0, scale), (worst, scale)
print(f"HF transformers loads {model_dir} as BertForMaskedLM (decoder tied to the embeddings); "
      f"logits at {len(f['masked'])} masked positions within {worst:.1e} of bertfit's")
