#!/usr/bin/env bash
# CoNLL-04 NER with the offline MiniLM encoder on CPU: finetune vs prompt vs ptv2, best dev F1
# and wall time of each (docs/RESULTS.md). Usage: bash benchmarks/conll04_methods.sh [OUT]
# With no variables set each method runs with `ptv2 train`'s own per-task defaults
# (ptv2_ds/recipes.py: ptv2 P 64, lr 2e-2, 40 epochs, batch 8, activations init, no prefix
# dropout; prompt P 16, lr 1e-2, 40 epochs, batch 32; finetune lr 5e-5, 10 epochs, batch 8;
# max length 256, longer sentences windowed).
#   EPOCHS=N       epochs of ptv2 and prompt      FT_EPOCHS=N   epochs of finetune
#   MAX_LEN=N      --max-seq-len                  METHODS="ptv2 finetune prompt"
#   EXTRA="..."    more `ptv2 train` flags for every run (e.g. "--prefix-init activations")
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/conll04_methods}
DATA=${DATA:-../shared/data/conll04}
PTV2=${PTV2:-.venv/bin/ptv2}
export DS_ACCELERATOR=cpu HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
common=(--task conll04 --model minilm --train-file "$DATA/train.txt"
        --validation-file "$DATA/dev.txt" --seed 42 --resume none
        ${MAX_LEN:+--max-seq-len "$MAX_LEN"})
# shellcheck disable=SC2206  # EXTRA is a list of flags
extra=(${EXTRA:-})
run() {  # name, flags...
  local name=$1; shift
  local t0=$SECONDS
  "$PTV2" train "${common[@]}" --output-dir "$OUT/$name" "$@" "${extra[@]}" \
    > "$OUT/$name.log" 2>&1
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
    ptv2|prompt) run "$method" --method "$method" ${EPOCHS:+--epochs "$EPOCHS"} ;;
    finetune)    run finetune --method finetune ${FT_EPOCHS:+--epochs "$FT_EPOCHS"} ;;
  esac
done
