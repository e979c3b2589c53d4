#!/usr/bin/env bash
# The device check (issue 16): on a GPU machine with PyTorch but no Rust and
# no internet, run the bertfit binary built here (`just device-bundle`, which
# fills the git-ignored device/ folder: a compressed LibTorch build of bertfit,
# the reference scripts of shared/gpu, tokenizer files, TREC) against PyTorch
# on the same GPU in one sitting:
#   1. whether the binary (built against LibTorch 2.9) loads against this
#      machine's torch, and sees CUDA;
#   2. the bench at BERT-base shape (random weights), batch 24, 512 tokens,
#      fp32 and bf16: PyTorch (shared/gpu/bench_cuda.py) and bertfit tch-cuda
#      (AdamW fused over parameter groups, CUDA's default); and bf16 with the
#      per-tensor AdamW, for what fusing the optimizer saves;
#   3. one TREC epoch with the paper's settings: PyTorch (trec_cuda.py, fp32)
#      and `bertfit finetune` (tools/device/trec.toml, bf16).
# Every output goes to $OUT (or device/out). Run from the checkout's root:
#   bash tools/device_check.sh            (about 9 minutes at most)
# Offline and with a CPU's LibTorch, `DEVICE_BACKEND=tch DEVICE_SMALL=1` runs
# the same steps on the CPU at a small shape, which is how it was tried here.
set -uo pipefail
cd "$(dirname "$0")/.."
bundle=device
out="${OUT:-$bundle/out}"
backend="${DEVICE_BACKEND:-tch-cuda}"
mkdir -p "$out"
log() { echo "== $*" | tee -a "$out/summary.txt"; }

python="${PYTHON:-python3}"
torch_lib="$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')" || {
  log "no torch in $python"; exit 1; }
"$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")' \
  | tee -a "$out/summary.txt"

bin="$bundle/bertfit"
[ -x "$bin" ] || xz -dc "$bundle/bertfit.xz" > "$bin" && chmod +x "$bin"
# 1. The binary links LibTorch 2.9 by rpath to where it was built; here the
# dynamic loader takes this machine's torch instead.
export LD_LIBRARY_PATH="$torch_lib:${LD_LIBRARY_PATH:-}"
if ! "$bin" --version > "$out/load.txt" 2>&1; then
  log "LibTorch route failed: the binary built against LibTorch 2.9 does not load against $torch_lib: $(grep -m1 -i 'error\|undefined' "$out/load.txt")"
  exit 2
fi
log "binary loads: $(cat "$out/load.txt")"

shape=bertbase; batch=24; seq=512; steps=10
if [ -n "${DEVICE_SMALL:-}" ]; then shape=minilm; batch=4; seq=128; steps=2; fi
[ -d "$bundle/models/$shape" ] || "$python" "$bundle/gpu/make_models.py" "$bundle/models" > "$out/make_models.txt" 2>&1 \
  || { log "make_models.py failed: $(tail -1 "$out/make_models.txt")"; exit 1; }
ln -sfn "$shape" "$bundle/models/model"   # what tools/device/trec.toml names

# 2. The bench, both sides in one sitting.
log "bench $shape b$batch s$seq: PyTorch"
timeout 200 "$python" "$bundle/gpu/bench_cuda.py" "$bundle/models/$shape" "$batch" "$seq" "$steps" 2>&1 | tee -a "$out/summary.txt"
for precision in fp32 bf16; do
  flag=""; [ "$precision" = bf16 ] && flag="--bf16"
  log "bench $shape b$batch s$seq: bertfit $backend $precision"
  timeout 150 "$bin" bench --model "$bundle/models/$shape" --backends "$backend" --batch "$batch" --seq-lens "$seq" \
    --mlm-seq-lens "$seq" --mlm-batch "$batch" --steps "$steps" --rounds 1 $flag --out "$out/bench_$precision.md" > "$out/bench_$precision.log" 2>&1 \
    || log "bertfit bench $precision failed (exit $?): $(tail -1 "$out/bench_$precision.log")"
  grep -A3 '^| task' "$out/bench_$precision.md" 2>/dev/null | tee -a "$out/summary.txt"
done
log "bench $shape b$batch s$seq: bertfit $backend bf16, AdamW one tensor at a time (the classify case only)"
timeout 90 "$bin" bench --model "$bundle/models/$shape" --backends "$backend" --batch "$batch" --seq-lens "$seq" \
  --mlm-seq-lens --steps "$steps" --rounds 1 --bf16 --adamw per-tensor --out "$out/bench_bf16_per_tensor.md" > "$out/bench_bf16_per_tensor.log" 2>&1 \
  || log "bertfit bench per-tensor failed (exit $?): $(tail -1 "$out/bench_bf16_per_tensor.log")"
grep -A3 '^| task' "$out/bench_bf16_per_tensor.md" 2>/dev/null | tee -a "$out/summary.txt"
grep -A4 '^Where a training step' "$out"/bench_bf16*.md 2>/dev/null | tee -a "$out/summary.txt"

# 3. One TREC epoch, the paper's settings.
log "TREC 1 epoch, $shape: PyTorch fp32"
timeout 120 "$python" "$bundle/gpu/trec_cuda.py" "$bundle/models/$shape" "$bundle/data/trec/train_5500.label" 2>&1 | tee -a "$out/summary.txt"
log "TREC 1 epoch, $shape: bertfit $backend bf16"
start=$(date +%s.%N)
BERTFIT_DATA_ROOT="$bundle/data" BERTFIT_CACHE="$bundle/cache" timeout 150 "$bin" finetune --config tools/device/trec.toml \
  --backend "$backend" --out "$out/trec" --quiet > "$out/trec.log" 2>&1 || log "bertfit finetune failed (exit $?; 124: past its timeout): $(tail -1 "$out/trec.log")"
log "bertfit TREC wall time $(echo "$(date +%s.%N) - $start" | bc) s (start-up and tokenization included); metrics in $out/trec/metrics.json"
