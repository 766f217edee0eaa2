#!/usr/bin/env bash
# P-Tuning v2 on RTE with RoBERTa-large: 1 node x 8 GPUs, DeepSpeed ZeRO-2, fp16, resumable.
#
#   mkdir -p logs && sbatch slurm/roberta_large_rte.sh
#   MODEL_PATH=/data/roberta-large LR=5e-3 sbatch slurm/roberta_large_rte.sh  # override
#   DRY_RUN=1 SLURM_JOB_NODELIST=... bash slurm/roberta_large_rte.sh  # print the command only
#
# Partition, account, module loads: see slurm/README.md.
#SBATCH --job-name=ptv2-roberta-large-rte
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --time=06:00:00
#SBATCH --output=logs/%x-%j.out
#SBATCH --error=logs/%x-%j.err
#SBATCH --signal=B:USR1@180
#SBATCH --requeue
#SBATCH --open-mode=append
##SBATCH --partition=gpu
##SBATCH --account=my-account
##SBATCH --mem=0
set -euo pipefail

# --- paths (relative paths are resolved from the repository root) -----------------------
: "${MODEL_PATH:=roberta-large}"             # hub name or a local copy (nodes are often offline)
: "${DATA_DIR:=data/RTE}"                    # SuperGLUE RTE: train.jsonl, val.jsonl
: "${TRAIN_FILE:=$DATA_DIR/train.jsonl}"
: "${VALIDATION_FILE:=$DATA_DIR/val.jsonl}"
: "${OUT:=runs/roberta-large-rte}"           # metrics.json, artifact/, tb/, checkpoints/
: "${DS_CONFIG:=ds_configs/zero2_fp16.json}"
: "${PRECISION:=fp16}"
: "${SETUP_SCRIPT:=}"                        # sourced first: module loads, venv (README)
export SETUP_SCRIPT

# --- hyper-parameters: starting points in the spirit of the P-Tuning v2 paper's
# --- RoBERTa-large SuperGLUE runs (long prompt, lr 1e-2), not verified reproductions
: "${PREFIX_LEN:=128}"
: "${PREFIX_LAYERS:=all}"
: "${REPARAM:=embedding}"                    # or mlp (the paper's reparameterisation)
: "${HEAD:=linear}"                          # the paper's default; verbalizer = Table 5
: "${LR:=1e-2}"
: "${EPOCHS:=100}"
: "${BATCH_SIZE:=4}"                         # per GPU; global batch = 4 x 8 GPUs = 32
: "${GRAD_ACCUM:=1}"
: "${MAX_SEQ_LEN:=128}"
: "${SEED:=11}"
: "${GRADIENT_CHECKPOINTING:=0}"
: "${RESUME:=auto}"                          # auto: continue from OUT/checkpoints after a requeue
: "${EXTRA_ARGS:=}"                          # more `ptv2 train` flags, e.g. "--eval-every 100"

# --- the repository: sbatch runs a copy of this file, so prefer the submit directory ----
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT=""
for candidate in "${PTV2_ROOT:-}" "$here/.." "${SLURM_SUBMIT_DIR:-}" \
    "${SLURM_SUBMIT_DIR:+$SLURM_SUBMIT_DIR/..}"; do
    if [[ -n "$candidate" && -f "$candidate/slurm/launch.sh" ]]; then
        REPO_ROOT="$(cd "$candidate" && pwd)"
        break
    fi
done
if [[ -z "$REPO_ROOT" ]]; then
    echo "error: cannot find the ptv2_ds repository; submit from it or set PTV2_ROOT" >&2
    exit 2
fi

args=(--model "$MODEL_PATH" --task rte
      --train-file "$TRAIN_FILE" --validation-file "$VALIDATION_FILE" --output-dir "$OUT"
      --deepspeed "$DS_CONFIG" --precision "$PRECISION"
      --method ptv2 --prefix-len "$PREFIX_LEN" --prefix-layers "$PREFIX_LAYERS"
      --reparam "$REPARAM" --head "$HEAD"
      --lr "$LR" --epochs "$EPOCHS" --batch-size "$BATCH_SIZE" --grad-accum "$GRAD_ACCUM"
      --max-seq-len "$MAX_SEQ_LEN" --seed "$SEED" --resume "$RESUME")
if [[ "$GRADIENT_CHECKPOINTING" == 1 ]]; then
    args+=(--gradient-checkpointing)
else
    args+=(--no-gradient-checkpointing)
fi
read -r -a extra <<<"$EXTRA_ARGS"
args+=(${extra[@]+"${extra[@]}"})

exec "${BASH:-bash}" "$REPO_ROOT/slurm/launch.sh" "${args[@]}"
