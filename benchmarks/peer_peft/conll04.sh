#!/usr/bin/env bash
# PEFT 0.17 prefix tuning on CoNLL-04, dev F1 after every epoch (see conll04.py's docstring).
#   bash benchmarks/peer_peft/conll04.sh [conll04.py options, e.g. --seed 1 --out F.json]
# The first run makes benchmarks/peer_peft/.venv (env.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
model="$("$python" -c 'from ptv2_ds.backbones import resolve_model_path as r; print(r("minilm"))')"
exec "$peer/bin/python" "$here/conll04.py" --model "$model" "$@"
