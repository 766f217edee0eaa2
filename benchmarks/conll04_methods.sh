#!/usr/bin/env bash
# CoNLL-04 NER with the offline MiniLM encoder on CPU: finetune vs prompt vs ptv2, best dev F1
# and wall time of each (docs/RESULTS.md). Usage: bash benchmarks/conll04_methods.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/conll04_methods}
DATA=${DATA:-../shared/data/conll04}
EPOCHS=${EPOCHS:-20}          # ptv2 and prompt
FT_EPOCHS=${FT_EPOCHS:-$EPOCHS}  # finetune
PTV2=${PTV2:-.venv/bin/ptv2}
export DS_ACCELERATOR=cpu HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
common=(--task conll04 --model minilm --train-file "$DATA/train.txt"
        --validation-file "$DATA/dev.txt" --batch-size 32 --max-seq-len 128 --resume none)
run() {  # name, flags...
  local name=$1; shift
  local t0=$SECONDS
  "$PTV2" train "${common[@]}" --output-dir "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1
  python3 - "$OUT/$name/metrics.json" "$name" $((SECONDS - t0)) <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:10s} best dev f1 {m['best']['f1']:.4f} at step {m['best']['step']}, "
      f"trainable {m['trainable_params']:,}, wall {sys.argv[3]} s")
PY
}
mkdir -p "$OUT"
for method in ${METHODS:-ptv2 finetune prompt}; do
  case $method in
    ptv2)     run ptv2     --method ptv2 --prefix-len 64 --lr 2e-2 --epochs "$EPOCHS" ;;
    finetune) run finetune --method finetune --lr 5e-5 --epochs "$FT_EPOCHS" ;;
    prompt)   run prompt   --method prompt --prefix-len 16 --lr 1e-2 --epochs "$EPOCHS" ;;
  esac
done
