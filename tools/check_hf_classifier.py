#!/usr/bin/env python3
"""Checks a classifier `bertfit finetune` exported against HF transformers:
`BertForSequenceClassification.from_pretrained` loads it with no missing or
unexpected weights, and its class probabilities on the given texts equal the
ones `bertfit predict` printed.

Usage: python tools/check_hf_classifier.py MODEL_DIR TEXTS_FILE PREDICTIONS_JSONL
(texts one per line; predictions as `bertfit predict` writes them; texts short
enough that no truncation applies).
"""
import json
import sys

import torch
from transformers import AutoTokenizer, BertForSequenceClassification

model_dir, texts_file, predictions_file = sys.argv[1:4]
model, info = BertForSequenceClassification.from_pretrained(model_dir, output_loading_info=True)
problems = {k: v for k, v in info.items() if v}
assert not problems, f"HF loading reported: {problems}"
texts = open(texts_file, encoding="utf-8").read().splitlines()
ours = [json.loads(line) for line in open(predictions_file, encoding="utf-8")]
assert len(ours) == len(texts), (len(ours), len(texts))
tok = AutoTokenizer.from_pretrained(model_dir)
enc = tok(texts, padding=True, return_tensors="pt")
with torch.no_grad():
    probs = torch.softmax(model.eval()(**enc).logits, dim=-1)
labels = [model.config.id2label[i] for i in range(probs.shape[1])]
worst = 0.0
for row, line in zip(probs.tolist(), ours):
    assert line["label"] == labels[max(range(len(row)), key=row.__getitem__)], (line, row)
    for label, p in zip(labels, row):
        worst = max(worst, abs(p - line["probabilities"][label]))
assert worst < 1e-5, worst
print(f"HF transformers loads {model_dir} as BertForSequenceClassification; "
      f"probabilities on {len(texts)} texts within {worst:.1e} of bertfit predict")
