#!/usr/bin/env bash
# Reproduce every pretrained checkpoint in this folder and its manifest entry (metrics, config, sha256):
#   bash checkpoints/make_checkpoints.sh            # all; ~40 min on a 2-core CPU (datasets are built first)
#   bash checkpoints/make_checkpoints.sh gnn-cnn_zoo   # only the named ones
# Each run is an ordinary `nnzoo fit` with the default configs; `nnzoo export` slims its best checkpoint
# (state dict + hyperparameters only) into checkpoints/<name>.pt and records the run's test metrics.
set -euo pipefail
cd "$(dirname "$0")/.."
NNZOO=${NNZOO:-.venv/bin/nnzoo}
RUNS=${RUNS:-runs/pretrained}

ONLY=" $* "  # optional: names to (re)make, e.g. `make_checkpoints.sh gnn-cnn_zoo`; default all

fit_and_export() {  # name model data [overrides...]
  local name=$1 model=$2 data=$3; shift 3
  if [ "$ONLY" != "  " ] && [[ "$ONLY" != *" $name "* ]]; then return 0; fi
  "$NNZOO" fit --model "$model" --data "$data" run_dir="$RUNS" name="$name" trainer.enable_progress_bar=false "$@"
  local run
  run=$(ls -d "$RUNS/$name"/version_* | sort -V | tail -1)
  "$NNZOO" export "$run" --name "$name"
}

fit_and_export gnn-mnist_inr gnn mnist_inr
fit_and_export transformer-mnist_inr transformer mnist_inr
fit_and_export gnn-cnn_zoo gnn cnn_zoo trainer.max_epochs=40 data.batch_size=16
fit_and_export transformer-cnn_zoo transformer cnn_zoo trainer.max_epochs=40 data.batch_size=16
fit_and_export gnn-cnn_wild_park gnn cnn_wild_park trainer.max_epochs=40 data.batch_size=16
fit_and_export transformer-cnn_wild_park transformer cnn_wild_park trainer.max_epochs=40 data.batch_size=16
"$NNZOO" list checkpoints
