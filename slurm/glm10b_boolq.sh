#!/usr/bin/env bash
# P-Tuning v2 on BoolQ with GLM-10B: 2 nodes x 8 GPUs, DeepSpeed ZeRO-3, fp16, resumable.
#
#   mkdir -p logs && sbatch slurm/glm10b_boolq.sh
#   MODEL_PATH=/data/glm-10b LR=1e-2 sbatch slurm/glm10b_boolq.sh    # override variables
#   DRY_RUN=1 SLURM_JOB_NODELIST=... bash slurm/glm10b_boolq.sh      # print the command only
#
# Partition, account, module loads: see slurm/README.md.
#SBATCH --job-name=ptv2-glm10b-boolq
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --time=12:00:00
#SBATCH --output=logs/%x-%j.out
#SBATCH --error=logs/%x-%j.err
#SBATCH --signal=B:USR1@300
#SBATCH --requeue
#SBATCH --open-mode=append
##SBATCH --partition=gpu
##SBATCH --account=my-account
##SBATCH --mem=0
set -euo pipefail

# --- model, task, paths (relative paths are resolved from the repository root) ----------
: "${MODEL:=glm-10b}"                        # a GLM preset, loaded from MODEL_PATH
: "${MODEL_PATH:=/path/to/glm-10b}"          # THUDM release directory or hub layout
: "${TASK:=boolq}"
: "${DATA_DIR:=data/BoolQ}"                  # SuperGLUE BoolQ: train.jsonl, val.jsonl
: "${OUT:=runs/glm10b-boolq}"                # metrics.json, artifact/, tb/, checkpoints/
: "${DS_CONFIG:=ds_configs/zero3_fp16.json}"

# --- hyper-parameters: starting points in the spirit of the P-Tuning v2 paper's GLM runs,
# --- not verified reproductions of its numbers
: "${PREFIX_LEN:=16}"
: "${LR:=5e-3}"
: "${EPOCHS:=20}"
: "${BATCH_SIZE:=4}"                         # per GPU; global = BATCH_SIZE x 16 GPUs x GRAD_ACCUM
: "${MAX_SEQ_LEN:=384}"                      # passages are long
: "${SEED:=42}"
: "${GRADIENT_CHECKPOINTING:=1}"

# --- hand over to ptv2_job in slurm/launch.sh: the other variables, the `ptv2 train` command;
# --- sbatch runs a spooled copy of this file, so the repository may be the submit directory
for dir in ${PTV2_ROOT:+"$PTV2_ROOT"} "$(dirname "${BASH_SOURCE[0]}")/.." \
    ${SLURM_SUBMIT_DIR:+"$SLURM_SUBMIT_DIR" "$SLURM_SUBMIT_DIR/.."}; do
    # shellcheck source-path=SCRIPTDIR source=launch.sh
    if [[ -f "$dir/slurm/launch.sh" ]]; then source "$dir/slurm/launch.sh"; ptv2_job; fi
done
echo "error: cannot find the ptv2_ds repository; submit from it or set PTV2_ROOT" >&2; exit 2
