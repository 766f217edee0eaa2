#!/usr/bin/env bash
# Issue 11's GPU checks in one call (about 6-8 minutes on one H100/H200), for the device
# tool: run(command="bash benchmarks/gpu_deepspeed.sh", carry=[".whl"], timeout_s=600) after
# `bash benchmarks/gpu_wheels.sh` here. Writes $OUT/*.json (or /tmp) and prints a summary:
#   1. the real DeepSpeed engine, ZeRO-3 fp16, GLM-2B shape, ptv2 vs finetune (both keep
#      fp16 weights for compute and fp32 masters only for what trains: like for like), and
#      the attention kernels the prefix attention launches (gpu_deepspeed.py);
#   2. benchmarks/gpu_check.py (plain PyTorch, GLM-2B / 10B-8-layer / 10B shapes) again,
#      after DeepPrompt's unbind change; GLM-10B-shape ptv2 MFU is its last line.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
out=${OUT:-/tmp}
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c 'import torch, deepspeed, transformers; print("torch", torch.__version__,
"deepspeed", deepspeed.__version__, "transformers", transformers.__version__)'
timeout 330 python3 benchmarks/gpu_deepspeed.py --shape glm-2b --batch 8 --seq 512 --steps 30 \
    --out /tmp/gds --json "$out/gpu_deepspeed.json" 2>&1 | tail -40
timeout 200 python3 benchmarks/gpu_check.py --json "$out/gpu_check.json" 2>&1 | tail -20
