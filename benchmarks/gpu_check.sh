#!/usr/bin/env bash
# GPU checks in one prepared run (≤ 8 min on one H100/H200): the `gpu`-marked tests; LoRA, QLoRA and GaLore steps on a
# Mistral-7B-shaped model in bf16 (tokens/s, MFU against the card's bf16 dense peak, peak memory), and
# bitsandbytes 4-bit on CUDA (the QLoRA memory fact). Results: benchmarks/results/gpu_*.json.
#
#   bash benchmarks/gpu_check.sh                 # PEAK_TFLOPS defaults to 989 (H100 SXM bf16 dense)
#   PEAK_TFLOPS=989 STEPS=6 bash benchmarks/gpu_check.sh
#
# Each check is its own process with a time limit, so one failure (e.g. a missing CUDA build of a package)
# does not cost the others; the summary at the end says which ran.
set -u
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
PEAK=${PEAK_TFLOPS:-989}
STEPS=${STEPS:-6}
OUT=${OUT:-benchmarks/results}
PY=${PYTHON:-python}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu_device.txt"

run() {  # name, limit seconds, command...
  local name=$1 limit=$2; shift 2
  echo "== $name"
  if timeout "$limit" "$@" > "$OUT/gpu_$name.log" 2>&1; then echo "ok   $name" | tee -a "$OUT/gpu_summary.txt"
  else echo "FAIL $name (exit $?; see gpu_$name.log)" | tee -a "$OUT/gpu_summary.txt"; fi
  tail -3 "$OUT/gpu_$name.log"
}
: > "$OUT/gpu_summary.txt"
run tests_gpu 180 $PY -m pytest -m gpu -q -p no:cacheprovider   # the gpu-marked tests (skipped in CI)
COMMON=(--device cuda --precision bfloat16 --model-shape mistral_7b --task arith --batch-size 8 --grad-accum 1
        --steps "$STEPS" --warmup 2 --repeats 1 --variants lora_lab --peak-tflops "$PEAK")
for method in lora qlora galore; do
  run "train_$method" 150 $PY benchmarks/bench_train.py "${COMMON[@]}" --method "$method" \
      --out "$OUT/gpu_train_mistral7b_shape_$method.json"
done
run memory_4bit 120 $PY benchmarks/bench_memory.py --device cuda --cases lora,qlora --steps 2 --batch-size 4 \
    --model tiny --task arith --override model.tiny.hidden_size=1024 --override model.tiny.intermediate_size=4096 \
    --override model.tiny.num_hidden_layers=8 --out "$OUT/gpu_memory_4bit.json"
cat "$OUT/gpu_summary.txt"
