"""HF transformers masked-LM training on CUDA at the shape `bertfit bench`'s mlm case measures:
BertForMaskedLM, 15% of the positions labelled (at most 20 a sequence, the bench's positions),
AdamW (eps 1e-6, weight decay 0.01) with clipping at 1.0; fp32 (TF32 off) and bf16 autocast.
HF projects every position onto the vocabulary and ignores the unlabelled ones.
Usage: mlm_cuda.py MODEL_DIR BATCH SEQ [STEPS]"""
import sys, time, torch
from transformers import BertForMaskedLM

d, B, S = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
steps = int(sys.argv[4]) if len(sys.argv) > 4 else 10
torch.backends.cuda.matmul.allow_tf32 = False; torch.backends.cudnn.allow_tf32 = False
n = min(max(round(S * 0.15), 1), 20)
positions = [1 + k * (S - 1) // n for k in range(n)]
for prec in ("fp32", "bf16"):
    torch.manual_seed(0)
    m = BertForMaskedLM.from_pretrained(d).cuda().train()
    opt = torch.optim.AdamW(m.parameters(), lr=5e-5, eps=1e-6, weight_decay=0.01)
    ids = torch.randint(1000, m.config.vocab_size, (B, S), device="cuda"); mask = torch.ones_like(ids)
    labels = torch.full_like(ids, -100)
    for p in positions:
        labels[:, p] = ids[:, p]; ids[:, p] = 103
    ctx = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if prec == "bf16" else (lambda: torch.autocast("cuda", enabled=False))
    def step():
        with ctx():
            loss = m(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step(); opt.zero_grad()
    for _ in range(3): step()
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(steps): step()
    torch.cuda.synchronize(); s = time.perf_counter() - t
    print(f"pytorch-cuda {prec} mlm {d.rstrip('/').split('/')[-1]} b{B} s{S}: train {B * S * steps / s:.0f} tok/s, "
          f"{1000 * s / steps:.1f} ms/step, peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB", flush=True)
    del m, opt; torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
