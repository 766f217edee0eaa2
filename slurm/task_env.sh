#!/usr/bin/env bash
# slurm/task_env.sh - one Slurm task = one training rank (LAUNCHER=srun in slurm/launch.sh).
#
#   srun --ntasks-per-node=G ... bash slurm/task_env.sh TRAIN_ARGS...
#
# deepspeed.comm reads RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT and no SLURM_*
# variable, so map SLURM_PROCID -> RANK, SLURM_LOCALID -> LOCAL_RANK, SLURM_NTASKS ->
# WORLD_SIZE (MASTER_ADDR/MASTER_PORT come from launch.sh, else the first node of
# SLURM_JOB_NODELIST and 20000 + SLURM_JOB_ID % 20000), then become the training process
# itself (exec), so that the signals srun forwards reach its handlers.
# PYTHON overrides the interpreter (default: python from PATH).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=launch.sh
source "$(dirname "${BASH_SOURCE[0]}")/launch.sh"
ptv2_task_env
exec "${PYTHON:-python}" -u -m ptv2_ds.cli.main train "$@"
