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

# --- model, task, paths (relative paths are resolved from the repository root) ----------
MODEL=""                                     # no preset: MODEL_PATH is the --model value
: "${MODEL_PATH:=roberta-large}"             # hub name or a local copy (nodes are often offline)
: "${TASK:=rte}"
: "${DATA_DIR:=data/RTE}"                    # SuperGLUE RTE: train.jsonl, val.jsonl
: "${OUT:=runs/roberta-large-rte}"           # metrics.json, artifact/, tb/, checkpoints/
: "${DS_CONFIG:=ds_configs/zero2_fp16.json}"

# --- hyper-parameters: starting points in the spirit of the P-Tuning v2 paper's
# --- RoBERTa-large SuperGLUE runs (long prompt, lr 1e-2), not verified reproductions
: "${PREFIX_LEN:=128}"
: "${LR:=1e-2}"
: "${EPOCHS:=100}"
: "${BATCH_SIZE:=4}"                         # per GPU; global batch = 4 x 8 GPUs = 32
: "${MAX_SEQ_LEN:=128}"
: "${SEED:=11}"
: "${GRADIENT_CHECKPOINTING:=0}"

# --- hand over to ptv2_job in slurm/launch.sh: the other variables, the `ptv2 train` command;
# --- sbatch runs a spooled copy of this file, so the repository may be the submit directory
for dir in ${PTV2_ROOT:+"$PTV2_ROOT"} "$(dirname "${BASH_SOURCE[0]}")/.." \
    ${SLURM_SUBMIT_DIR:+"$SLURM_SUBMIT_DIR" "$SLURM_SUBMIT_DIR/.."}; do
    # shellcheck source-path=SCRIPTDIR source=launch.sh
    if [[ -f "$dir/slurm/launch.sh" ]]; then source "$dir/slurm/launch.sh"; ptv2_job; fi
done
echo "error: cannot find the ptv2_ds repository; submit from it or set PTV2_ROOT" >&2; exit 2
