#!/usr/bin/env bash
# ptv2_ds vs PEFT 0.17 prefix tuning on identical batches (see bench.py's docstring).
#   bash benchmarks/peer_peft/run.sh [bench.py options, e.g. --rounds 10 --json peer.json]
# The first run makes benchmarks/peer_peft/.venv (env.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
exec "$python" "$here/bench.py" --peer-python "$peer/bin/python" "$@"
