#!/usr/bin/env bash
# One-GPU check (finishes in a few minutes on one H100): GLM-shaped ptv2 vs finetune in fp16,
# then the same with activation checkpointing. Results go to stdout and, when $OUT is set, to
# $OUT/gpu_check*.json. Usage: bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
out=${OUT:-/tmp}
PYTHONUNBUFFERED=1 "$PY" benchmarks/gpu_check.py --json "$out/gpu_check.json"
PYTHONUNBUFFERED=1 "$PY" benchmarks/gpu_check.py --shapes glm-10b --batch 8 --seq 512 \
    --checkpointing --json "$out/gpu_check_ckpt.json"
