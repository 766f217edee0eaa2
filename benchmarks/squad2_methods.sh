#!/usr/bin/env bash
# SQuAD 2.0 on the shared half of the dev set, split by article (6 articles train, 2 dev), with
# the offline MiniLM encoder on CPU: finetune vs prompt vs ptv2 EM/F1 on the held-apart
# articles (docs/RESULTS.md). Sized for a 2-core machine: a subset of the training questions,
# short windows, two epochs. Usage: bash benchmarks/squad2_methods.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/squad2_methods}
PTV2=${PTV2:-.venv/bin/ptv2}
PY=${PY:-.venv/bin/python}
TRAIN_QUESTIONS=${TRAIN_QUESTIONS:-600}
EPOCHS=${EPOCHS:-2}
export DS_ACCELERATOR=cpu HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
"$PY" benchmarks/squad2_split.py ../shared/data/squad2/squad2-dev-half-A.json "$OUT/data"
common=(--task squad_v2 --model minilm --train-file "$OUT/data/train.json"
        --validation-file "$OUT/data/dev.json" --max-train-samples "$TRAIN_QUESTIONS"
        --max-seq-len 192 --doc-stride 64 --batch-size 16 --epochs "$EPOCHS" --resume none)
run() {  # name, flags...
  local name=$1; shift
  local t0=$SECONDS
  "$PTV2" train "${common[@]}" --output-dir "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1
  "$PY" - "$OUT/$name/metrics.json" "$name" $((SECONDS - t0)) <<'PY'
import json, sys
b = json.load(open(sys.argv[1]))["best"]
print(f"{sys.argv[2]:10s} dev EM {b['exact']:.2f} F1 {b['f1']:.2f} (HasAns F1 {b['HasAns_f1']:.2f},"
      f" NoAns {b['NoAns_exact']:.2f}; best-threshold F1 {b['best_f1']:.2f}) at step "
      f"{b['step']}, wall {sys.argv[3]} s")
PY
}
for method in ${METHODS:-ptv2 finetune prompt}; do
  case $method in
    ptv2)     run ptv2     --method ptv2 --prefix-len 16 --lr 1e-2 ;;
    finetune) run finetune --method finetune --lr 5e-5 ;;
    prompt)   run prompt   --method prompt --prefix-len 16 --lr 1e-2 ;;
  esac
done
