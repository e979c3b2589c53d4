#!/usr/bin/env bash
# The device check (issues 16 and 28): on a GPU machine with PyTorch but no
# Rust and no internet, run the bertfit binary built here for that machine's
# torch (`just device-bundle` fills the git-ignored device/ folder: bertfit
# built against LibTorch 2.11, compressed; shared/gpu's reference scripts and
# tokenizer files; TREC) against PyTorch on the same GPU in one sitting:
#   1. the binary loads this machine's LibTorch (it refuses, in one line,
#      one it was not built for) and takes one real training step on the CPU,
#      then on CUDA;
#   2. BERT-base shape (random weights), batch 24, 512 tokens, fp32 and bf16:
#      classification (shared/gpu/bench_cuda.py) and masked LM
#      (tools/device/mlm_cuda.py) on PyTorch, the same on bertfit tch-cuda;
#   3. the real training loops against their bare steps at TREC's shape
#      (batch 24, 64 tokens; `bertfit bench --loop`);
#   4. one TREC epoch with the paper's settings: PyTorch (trec_cuda.py, fp32)
#      and `bertfit finetune` (tools/device/trec.toml, bf16; fp32 too);
#   5. four TREC runs one after another and at once (`reproduce --jobs 4`,
#      tools/device/experiments/trec-seeds.toml): equal tables, wall times.
# Everything goes to $OUT (or device/out); the figures with the GPU's name,
# driver and torch version to $OUT/results/gpu/check.md, for results/gpu/.
# Run from the checkout's root:   bash tools/device_check.sh   (at most 9 minutes)
# Offline and on a CPU, `DEVICE_BACKEND=tch DEVICE_SMALL=1` runs the same steps
# at a small shape with the CPU's LibTorch, which is how it is tried without a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
bundle=device
out="${OUT:-$bundle/out}"
backend="${DEVICE_BACKEND:-tch-cuda}"
report="$out/results/gpu/check.md"
mkdir -p "$out/results/gpu"
started=$(date +%s)
log() { echo "== $*" | tee -a "$out/summary.txt"; }
record() { echo "$*" >> "$report"; }
section() { log "$*"; printf '\n## %s\n\n' "$*" >> "$report"; }
quote() { sed 's/^/    /' >> "$report"; }

python="${PYTHON:-python3}"
torch_lib="$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')" || {
  log "no torch in $python"; exit 1; }
torch_info="$("$python" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)')"
gpu="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
gpu="${gpu:-no GPU (nvidia-smi not found)}"
{
  echo "# Device check: bertfit against PyTorch on one machine, in one sitting"
  echo
  echo "- GPU: $gpu (name, driver, memory)"
  echo "- $torch_info; bertfit backend $backend"
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPU cores"
} > "$report"
log "$torch_info; GPU: $gpu"

bin="$bundle/bertfit"
[ -x "$bin" ] || { xz -dc "$bundle/bertfit.xz" > "$bin" && chmod +x "$bin"; }
export LD_LIBRARY_PATH="$torch_lib:${LD_LIBRARY_PATH:-}"
record "- bertfit: $("$bin" --version 2>&1)"

shape=bertbase; batch=24; seq=512; steps=10; loop_steps=30; trec_timeout=150; small_set=()
if [ -n "${DEVICE_SMALL:-}" ]; then
  # A CPU's trial: the MiniLM shape, short loops, and TREC cut to 240 questions.
  shape=minilm; batch=4; seq=64; steps=2; loop_steps=3; trec_timeout=600; small_set=(--set "data.train_subset={ count = 240 }")
fi
# PyTorch's lines of figures (or its error), not its warnings and tracebacks (those stay in summary.txt).
figures() { grep -E '^pytorch|Error' | sed 's/^/    /' >> "$report"; }
[ -d "$bundle/models/$shape" ] || "$python" "$bundle/gpu/make_models.py" "$bundle/models" > "$out/make_models.txt" 2>&1 \
  || { log "make_models.py failed: $(tail -1 "$out/make_models.txt")"; exit 1; }
ln -sfn "$shape" "$bundle/models/model"   # what tools/device/*.toml name
model="$bundle/models/$shape"

# 1. Load, and one real step on the CPU, then on the GPU.
section "1. The binary on this machine's LibTorch: one training step on the CPU, then on $backend"
for b in tch "$backend"; do
  if timeout 120 "$bin" bench --model "$bundle/models/minilm" --backends "$b" --batch 2 --seq-lens 16 --mlm-seq-lens \
      --steps 1 --rounds 1 --out "$out/load_$b.md" > "$out/load_$b.log" 2>&1; then
    record "- $b: a forward, backward and AdamW step ran"
  else
    record "- $b: FAILED: $(grep -m1 'error' "$out/load_$b.log" || tail -1 "$out/load_$b.log")"
    log "step on $b failed: $(tail -1 "$out/load_$b.log")"
    [ "$b" = tch ] && exit 2
  fi
done

# 2. BERT-base b24 s512, both sides.
section "2. $shape, batch $batch, $seq tokens: classification and masked LM, fp32 and bf16"
record "PyTorch (HF transformers; TF32 off):"
timeout 150 "$python" "$bundle/gpu/bench_cuda.py" "$model" "$batch" "$seq" "$steps" 2>&1 | tee -a "$out/summary.txt" | figures
timeout 120 "$python" tools/device/mlm_cuda.py "$model" "$batch" "$seq" "$steps" 2>&1 | tee -a "$out/summary.txt" | figures
record ""
record "bertfit $backend (AdamW fused over parameter groups on CUDA; medians of one round):"
for precision in fp32 bf16; do
  flag=""; [ "$precision" = bf16 ] && flag="--bf16"
  timeout 150 "$bin" bench --model "$model" --backends "$backend" --batch "$batch" --seq-lens "$seq" \
    --mlm-batch "$batch" --mlm-seq-lens "$seq" --steps "$steps" --rounds 1 $flag --out "$out/bench_$precision.md" > "$out/bench_$precision.log" 2>&1 \
    || record "- $precision: bench failed (exit $?): $(tail -1 "$out/bench_$precision.log")"
  record "$precision:"
  sed -n '/^| task | backend | batch | seq | train/,/^$/p' "$out/bench_$precision.md" 2>/dev/null | grep '^| \(classify\|mlm\) ' | quote
done

# 3. The loops against their bare steps, at TREC's shape.
section "3. The real training loop against its bare step (batch 24, 64 tokens)"
for precision in fp32 bf16; do
  flag=""; [ "$precision" = bf16 ] && flag="--bf16"
  timeout 120 "$bin" bench --model "$model" --backends "$backend" --batch 24 --seq-lens 64 --mlm-batch 24 --mlm-seq-lens 64 \
    --steps "$loop_steps" --rounds 1 --loop $flag --out "$out/loop_$precision.md" > "$out/loop_$precision.log" 2>&1 \
    || record "- $precision: bench --loop failed (exit $?): $(tail -1 "$out/loop_$precision.log")"
  record "$precision (ms per step):"
  sed -n '/^| task | backend | batch | seq | bare step/,/^$/p' "$out/loop_$precision.md" 2>/dev/null | grep '^| \(classify\|mlm\)' | quote
done

# 4. One TREC epoch.
section "4. One TREC epoch, $shape, batch 24, max_len 64"
timeout 120 "$python" "$bundle/gpu/trec_cuda.py" "$model" "$bundle/data/trec/train_5500.label" 2>&1 | tee -a "$out/summary.txt" | figures
for precision in bf16 fp32; do
  config="$out/trec_$precision.toml"
  sed "s/^precision = \"bf16\"/precision = \"$precision\"/" tools/device/trec.toml > "$config"
  [ -n "${DEVICE_SMALL:-}" ] && sed -i 's/^max_len = 64$/max_len = 64\ntrain_subset = { count = 240 }/' "$config"
  start=$(date +%s.%N)
  BERTFIT_DATA_ROOT="$bundle/data" BERTFIT_CACHE="$bundle/cache" timeout "$trec_timeout" "$bin" finetune --config "$config" \
    --backend "$backend" --out "$out/trec_$precision" --quiet > "$out/trec_$precision.log" 2>&1 \
    || record "- bertfit $precision failed (exit $?; 124: past its timeout): $(tail -1 "$out/trec_$precision.log")"
  wall=$(echo "$(date +%s.%N) - $start" | bc)
  train=$(grep -o '"train_seconds": [0-9.]*' "$out/trec_$precision/metrics.json" 2>/dev/null | tail -1 | cut -d' ' -f2)
  record "- bertfit $backend $precision: ${train:-?} s of training (the loop's own clock), ${wall} s wall with start-up, tokenization and evaluation"
done

# 5. Four runs, one after another and at once.
section "5. Four TREC runs on one device: --jobs 1, then --jobs 4"
for jobs in 1 4; do
  start=$(date +%s.%N)
  BERTFIT_DATA_ROOT="$bundle/data" BERTFIT_CACHE="$bundle/cache" timeout 240 "$bin" reproduce trec-seeds --experiments tools/device/experiments \
    --backend "$backend" --results "$out/jobs$jobs" --jobs "$jobs" "${small_set[@]}" --quiet > "$out/jobs$jobs.log" 2>&1 \
    || record "- --jobs $jobs failed (exit $?): $(tail -1 "$out/jobs$jobs.log")"
  record "- --jobs $jobs: $(echo "$(date +%s.%N) - $start" | bc) s wall for 4 runs"
done
if cmp -s "$out/jobs1/trec-seeds/table.csv" "$out/jobs4/trec-seeds/table.csv"; then
  record "- the two tables are equal"
else
  record "- the two tables DIFFER (see $out/jobs1 and $out/jobs4)"
fi
record ""
record "The whole check took $(( $(date +%s) - started )) s."
log "wrote $report"
cat "$report"
