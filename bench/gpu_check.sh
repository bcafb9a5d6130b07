#!/usr/bin/env bash
# Every GPU check in one run, under ~8 minutes on an H100/H200-class GPU:
#   bench/gpu_check.sh [LOG_DIR]        (default: $OUT, else runs/gpu-check)
# 1. pytest -m gpu (the README's GPU promises and the bf16 agreement test), 2. the training
# benchmark (both recipes, real-size random models), 3. the inference benchmark (--quick).
# Logs and the results file land in LOG_DIR; a failed step does not stop the next one.
# A CPU smoke run of the script (collects the GPU tests, a tiny training benchmark, no inference
# benchmark, whose CPU engines take minutes to convert):
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_STEPS=1 GPU_CHECK_SKIP_RUN=1 GPU_CHECK_TRAIN_LIMIT=900 \
#   GPU_CHECK_TRAIN_ARGS="--warmup 1 --max-length 32 --max-target-length 8 --batch-size 2" bench/gpu_check.sh /tmp/check
set -u
cd "$(dirname "$0")/.."
LOG_DIR=${1:-${OUT:-runs/gpu-check}}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
STEPS=${GPU_CHECK_STEPS:-30}
PY=${PYTHON:-.venv/bin/python}
EXTRA=${GPU_CHECK_TRAIN_ARGS:-}
TRAIN_LIMIT=${GPU_CHECK_TRAIN_LIMIT:-180}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$LOG_DIR"
status=0

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to LOG_DIR/NAME.log
    local name=$1 limit=$2
    shift 2
    local started=$SECONDS
    timeout "$limit" "$@" >"$LOG_DIR/$name.log" 2>&1
    local rc=$?
    echo "$name: exit $rc in $((SECONDS - started)) s" | tee -a "$LOG_DIR/summary.txt"
    [ "$rc" -eq 0 ] || status=1
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  "$PY" -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)"
} >"$LOG_DIR/machine.txt" 2>&1

if [ "$DEVICE" = cpu ]; then
    step pytest-gpu 300 "$PY" -m pytest -q -m gpu --collect-only tests/test_gpu.py
else
    step pytest-gpu 180 "$PY" -m pytest -q -m gpu -rs
fi
# shellcheck disable=SC2086  # EXTRA holds several flags
step bench-train "$TRAIN_LIMIT" "$PY" -m bench.train --device "$DEVICE" --steps "$STEPS" --out "$LOG_DIR/results.json" $EXTRA
if [ -z "${GPU_CHECK_SKIP_RUN:-}" ]; then
    step bench-run 100 "$PY" -m bench.run --device "$DEVICE" --quick --no-vocab --out "$LOG_DIR/results.json"
fi
cat "$LOG_DIR/summary.txt"
exit $status
