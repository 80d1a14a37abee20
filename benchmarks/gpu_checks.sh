#!/usr/bin/env bash
# GPU checks in one go (issue 14): short `nnzoo fit` runs in bf16-mixed and 32-true, then benchmarks/speed.py
# at several batch sizes. Run from the repository root of a checkout with a working .venv:
#
#     OUT=/some/folder bash benchmarks/gpu_checks.sh              # on a CUDA machine (< 10 min on one H100)
#     OUT=/some/folder COMPILED_ONLY=1 bash benchmarks/gpu_checks.sh   # only (c), eager vs compiled (~5 min)
#     DEVICE=cpu OUT=/tmp/dry bash benchmarks/gpu_checks.sh       # dry run of the same logic on CPU, tiny sizes
#
# Everything it produces goes to $OUT: fit-<model>-<precision>.json (each run's metrics.json), speed-<device>.json
# (rows per batch size under by_batch_size; on CUDA also written to benchmarks/results/speed-cuda.json), one
# log per phase, timings.txt and summary.txt. A phase that fails or runs out of time is recorded and the next
# one still runs; the exit status is 1 if any phase failed. Whole-run budget: BUDGET_S seconds (570 on CUDA).
#
# Knobs (environment): DEVICE (cuda | cpu), BATCH_SIZES, SPEED_MODELS, SPEED_REPEATS, FIT_MODELS, PRECISIONS,
# BUILD_SIZE (INRs fitted for the dataset, on the CPU), FIT_EPOCHS, FIT_BATCH, FIT_TRAIN_BATCHES, COMPILED_BATCHES,
# COMPILED_MODELS, COMPILED_ONLY (1: phase (c) alone), BUDGET_S.
set -euo pipefail

cd "$(dirname "$0")/.."
DEVICE="${DEVICE:-cuda}"
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
PY="${PY:-.venv/bin/python}"
NNZOO="${NNZOO:-.venv/bin/nnzoo}"
WORK="$(mktemp -d)"
export NNZOO_HOME="${NNZOO_HOME:-$WORK/home}" PYTHONUNBUFFERED=1  # dataset cache: the first fit builds it

if [[ "$DEVICE" == cuda ]]; then
  BATCH_SIZES="${BATCH_SIZES:-64 128 512}"
  SPEED_MODELS="${SPEED_MODELS:-}"          # empty: every registered model
  SPEED_REPEATS="${SPEED_REPEATS:-20}"
  BUILD_SIZE="${BUILD_SIZE:-300}"           # 240/30/30 INRs; the build fits SIRENs on the CPU (~10 s)
  FIT_EPOCHS="${FIT_EPOCHS:-2}"
  FIT_BATCH="${FIT_BATCH:-32}"
  FIT_TRAIN_BATCHES="${FIT_TRAIN_BATCHES:-null}"
  SPEED_JSON="benchmarks/results/speed-cuda.json"
  SPEED_FLAGS=(--device cuda)
  ACCELERATOR=cuda
  FIT_MODELS="${FIT_MODELS:-gnn transformer}"
  COMPILED_BATCHES="${COMPILED_BATCHES:-128 512}"
  COMPILED_MODELS="${COMPILED_MODELS:-gnn}"   # the GPU goals are NG-GNN's; add transformer dwsnet with time to spare
  BUDGET_S="${BUDGET_S:-570}"
else  # dry run: the same phases, small enough for 2 CPU cores
  BATCH_SIZES="${BATCH_SIZES:-4 8}"
  SPEED_MODELS="${SPEED_MODELS:-mlp gnn}"
  SPEED_REPEATS="${SPEED_REPEATS:-1}"
  BUILD_SIZE="${BUILD_SIZE:-60}"
  FIT_EPOCHS="${FIT_EPOCHS:-1}"
  FIT_BATCH="${FIT_BATCH:-8}"
  FIT_TRAIN_BATCHES="${FIT_TRAIN_BATCHES:-2}"
  SPEED_JSON="$OUT/speed-$DEVICE.json"      # never overwrite the committed benchmarks/results/speed-cpu.json
  SPEED_FLAGS=(--device "$DEVICE" --bf16)
  ACCELERATOR=cpu
  FIT_MODELS="${FIT_MODELS:-gnn}"           # bfloat16 is emulated on most CPUs: the transformer takes minutes
  COMPILED_BATCHES="${COMPILED_BATCHES:-}"  # compiling takes minutes a model on 2 cores: CPU figures come from
  BUDGET_S="${BUDGET_S:-900}"                 # `speed.py --compiled` itself
fi
PRECISIONS="${PRECISIONS:-bf16-mixed 32-true}"
COMPILED_ONLY="${COMPILED_ONLY:-0}"
if ((COMPILED_ONLY)); then FIT_MODELS="" BATCH_SIZES=""; fi  # phase (c) alone
DEADLINE=$((SECONDS + BUDGET_S))
FAILED=()

# run_phase NAME CMD...: CMD with what is left of the budget, its output in $OUT/NAME.log; failures recorded
run_phase() {
  local name="$1" left=$((DEADLINE - SECONDS)) start=$SECONDS rc=0
  shift
  if ((left < 15)); then
    echo "$name: skipped (budget spent)" | tee -a "$OUT/summary.txt"
    FAILED+=("$name")
    return 0
  fi
  timeout -k 10 "$left" "$@" >"$OUT/$name.log" 2>&1 || rc=$?
  echo "$name $((SECONDS - start)) s rc=$rc" >>"$OUT/timings.txt"
  if ((rc != 0)); then
    echo "$name: FAILED (rc $rc; 124 = out of time); last lines:" | tee -a "$OUT/summary.txt"
    tail -n 15 "$OUT/$name.log" | tee -a "$OUT/summary.txt"
    FAILED+=("$name")
  else
    echo "$name: ok ($((SECONDS - start)) s)" | tee -a "$OUT/summary.txt"
  fi
}

{
  echo "device=$DEVICE batch_sizes=[$BATCH_SIZES] fit_models=[$FIT_MODELS] precisions=[$PRECISIONS]"
  echo "build_size=$BUILD_SIZE fit_epochs=$FIT_EPOCHS fit_batch=$FIT_BATCH budget_s=$BUDGET_S"
  echo "git=$(git rev-parse --short HEAD 2>/dev/null || echo '?') started=$(date -u +%FT%TZ)"
} | tee "$OUT/summary.txt"
command -v nvidia-smi >/dev/null && nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 || true
run_phase env "$PY" -c "import torch, lightning; print(torch.__version__, lightning.__version__, \
torch.cuda.is_available() and torch.cuda.get_device_name(), torch.get_num_threads())"

# (b) short fits on mnist_inr: each model in each precision; the first one builds the dataset
for model in $FIT_MODELS; do
  for precision in $PRECISIONS; do
    run="$model-$precision"
    run_phase "fit-$run" "$NNZOO" fit --model "$model" --data mnist_inr "run_dir=$WORK/runs" "name=$run" \
      "data.build.size=$BUILD_SIZE" "data.batch_size=$FIT_BATCH" "optim.warmup_steps=10" \
      "trainer.accelerator=$ACCELERATOR" "trainer.precision=$precision" "trainer.max_epochs=$FIT_EPOCHS" \
      "trainer.limit_train_batches=$FIT_TRAIN_BATCHES" "trainer.enable_progress_bar=false"
    metrics=$(ls "$WORK/runs/$run"/version_*/metrics.json 2>/dev/null | tail -n 1 || true)
    if [[ -n "$metrics" ]]; then
      cp "$metrics" "$OUT/fit-$run.json"
      "$PY" -c "import json, sys; m = json.load(open(sys.argv[1])); print(sys.argv[2], {k: m.get(k) for k in \
('steps', 'train_seconds', 'train_networks_per_s', 'best_val/acc', 'test/loss', 'test/acc')})" \
        "$metrics" "$run" | tee -a "$OUT/summary.txt"
    fi
  done
done

# (a) speed at each batch size, merged into one JSON (no SIREN fitting / peak-RSS fit: --skip-fit)
((COMPILED_ONLY)) || rm -f "$SPEED_JSON"
for batch in $BATCH_SIZES; do
  # shellcheck disable=SC2086  # SPEED_MODELS is a list of names
  run_phase "speed-b$batch" "$PY" benchmarks/speed.py "${SPEED_FLAGS[@]}" --batch-size "$batch" --skip-fit \
    --repeats "$SPEED_REPEATS" --merge --out "$SPEED_JSON" ${SPEED_MODELS:+--models $SPEED_MODELS}
done
[[ -f "$SPEED_JSON" && "$SPEED_JSON" != "$OUT/"* ]] && cp "$SPEED_JSON" "$OUT/"

# (c) eager vs compiled (issue 30): COMPILED_MODELS at COMPILED_BATCHES, float32 and TF32 matmuls, and CUDA graphs
# (torch.compile mode reduce-overhead) at the smallest batch, where launch cost dominates; CPU dry run: none
for batch in $COMPILED_BATCHES; do
  for variant in fp32 tf32 cudagraphs; do
    [[ $variant == cudagraphs && $batch != "${COMPILED_BATCHES%% *}" ]] && continue
    flags=()
    [[ $variant == tf32 ]] && flags=(--tf32)
    [[ $variant == cudagraphs ]] && flags=(--compile-mode reduce-overhead)
    # shellcheck disable=SC2086  # COMPILED_MODELS is a list of names
    run_phase "compiled-b$batch-$variant" "$PY" benchmarks/speed.py "${SPEED_FLAGS[@]}" --compiled "${flags[@]}" \
      --batch-size "$batch" --repeats "$SPEED_REPEATS" --models $COMPILED_MODELS \
      --out "$OUT/speed-b$batch-$variant.json"
  done
done

echo "total $SECONDS s; failed phases: ${FAILED[*]:-none}" | tee -a "$OUT/summary.txt"
rm -rf "$WORK"
((${#FAILED[@]} == 0))
