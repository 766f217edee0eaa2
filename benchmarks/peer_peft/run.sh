#!/usr/bin/env bash
# ptv2_ds vs PEFT 0.17 prefix tuning on identical batches (see bench.py's docstring).
#   bash benchmarks/peer_peft/run.sh [bench.py options, e.g. --rounds 10 --json peer.json]
# The first run makes benchmarks/peer_peft/.venv with the project's torch version,
# transformers 4.57 and peft 0.17 (the newest pair where PEFT prefix-tunes BERT).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
peer="$here/.venv"
if [[ ! -x "$peer/bin/python" ]]; then
    torch_version="$("$python" -c 'import torch; print(torch.__version__.split("+")[0])')"
    echo "making the peer environment $peer (torch $torch_version, transformers 4.57, peft 0.17)"
    "$python" -m venv "$peer"
    "$peer/bin/pip" install -q "torch==$torch_version" "transformers==4.57.*" "peft==0.17.*"
fi
export DS_ACCELERATOR="${DS_ACCELERATOR:-cpu}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "$python" "$here/bench.py" --peer-python "$peer/bin/python" "$@"
