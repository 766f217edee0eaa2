#!/usr/bin/env bash
# slurm/launch.sh - the one launch helper behind every sbatch script in slurm/.
#
#   bash slurm/launch.sh TRAIN_ARGS...        (by hand, e.g. inside salloc)
#   source slurm/launch.sh && ptv2_job        (what the job scripts do: see ptv2_job below)
#
# runs `ptv2 train TRAIN_ARGS...` as one process per GPU on every node of the Slurm
# allocation, forwards Slurm's warning signal to the training processes so they can write a
# checkpoint, and requeues the job when training stopped for preemption (exit code 75).
# slurm/README.md explains the choices; the variables it reads:
#
#   LAUNCHER=deepspeed  (default) the DeepSpeed launcher with a hostfile built from the
#                       allocation; more than one node needs pdsh + passwordless ssh
#   LAUNCHER=srun       one Slurm task per GPU (slurm/task_env.sh maps SLURM_PROCID,
#                       SLURM_LOCALID, SLURM_NTASKS to RANK, LOCAL_RANK, WORLD_SIZE); no ssh
#   DRY_RUN=1           print the hostfile and the exact command instead of running anything
#   HOSTS               "host1 host2" (or comma-separated): use these nodes instead of
#                       expanding SLURM_JOB_NODELIST with scontrol (e.g. outside Slurm)
#   GPUS_PER_NODE       GPUs per node; default: SLURM_GPUS_ON_NODE, else SLURM_GPUS_PER_NODE
#                       (8, gpu:8 and a100:8 are all read as 8)
#   MASTER_ADDR         rendezvous host; default: the first node of the allocation
#   MASTER_PORT         rendezvous port; default: 20000 + SLURM_JOB_ID % 20000 (29500 outside)
#   SETUP_SCRIPT        a file sourced before launching (module loads, venv activation); with
#                       LAUNCHER=deepspeed on several nodes also sourced on every node
#                       (DeepSpeed's --venv_script)
#   HOSTFILE            where the DeepSpeed hostfile is written
#                       (default: ${TMPDIR:-/tmp}/ptv2_ds-hostfile-$SLURM_JOB_ID)
#   DEEPSPEED_ARGS      extra launcher flags, e.g. "--ssh_port 2222" or "--no_ssh_check"
#   SRUN_ARGS           extra srun flags, e.g. "--cpu-bind=cores --mpi=none"
#   SRUN_WAIT           seconds srun lets the other ranks finish after the first one exits
#                       (default 120)
#   TASK_CPUS           --cpus-per-task for LAUNCHER=srun (default: SLURM_CPUS_ON_NODE / GPUs)
#   MAX_REQUEUES        stop requeueing once SLURM_RESTART_COUNT reaches this (default 50)
#   DEEPSPEED, SRUN, SCONTROL, PYTHON   the programs used (defaults: from PATH)
#
# Exit status: the training command's, except that a preempted run (exit code 75, or a
# non-zero exit after the Slurm warning signal) that could be requeued exits 0.
set -euo pipefail

PTV2_EXIT_PREEMPTED=75   # EX_TEMPFAIL, ptv2_ds.trainer.guards.EXIT_PREEMPTED

ptv2_log() { printf 'launch.sh: %s\n' "$*" >&2; }
ptv2_die() { printf 'launch.sh: error: %s\n' "$*" >&2; exit 2; }

# PTV2_HOSTS=(node names, first = rank-0 node) from HOSTS or SLURM_JOB_NODELIST + scontrol.
ptv2_resolve_hosts() {
    PTV2_HOSTS=()
    local out host
    if [[ -n "${HOSTS:-}" ]]; then
        read -r -a PTV2_HOSTS <<<"${HOSTS//,/ }"
    else
        local nodelist="${SLURM_JOB_NODELIST:-${SLURM_NODELIST:-}}"
        local scontrol="${SCONTROL:-scontrol}"
        if [[ -z "$nodelist" ]]; then
            ptv2_die "no nodes: SLURM_JOB_NODELIST is not set (not inside a Slurm job?);" \
                "submit with sbatch, or set HOSTS='host1 host2' (and GPUS_PER_NODE)"
        fi
        if ! command -v "$scontrol" >/dev/null 2>&1; then
            ptv2_die "'$scontrol' not found on PATH: it is needed to expand" \
                "SLURM_JOB_NODELIST=$nodelist into host names; load Slurm (SETUP_SCRIPT)" \
                "or set HOSTS='host1 host2'"
        fi
        out="$("$scontrol" show hostnames "$nodelist")" \
            || ptv2_die "'$scontrol show hostnames $nodelist' failed"
        while IFS= read -r host; do
            if [[ -n "$host" ]]; then PTV2_HOSTS+=("$host"); fi
        done <<<"$out"
    fi
    if [[ ${#PTV2_HOSTS[@]} -eq 0 ]]; then
        ptv2_die "the node list is empty"
    fi
}

# PTV2_GPUS=GPUs per node.
ptv2_resolve_gpus() {
    local src value
    for src in GPUS_PER_NODE SLURM_GPUS_ON_NODE SLURM_GPUS_PER_NODE; do
        value="${!src:-}"
        [[ -n "$value" ]] || continue
        value="${value%%(*}"     # 8(IDX:0-7)
        value="${value##*:}"     # gpu:8, a100:8, gpu:a100:8
        if [[ ! "$value" =~ ^[1-9][0-9]*$ ]]; then
            ptv2_die "cannot read a GPU count from $src=${!src} (expected 8, gpu:8 or" \
                "a100:8); set GPUS_PER_NODE"
        fi
        PTV2_GPUS="$value"
        return 0
    done
    ptv2_die "GPUs per node unknown: request them with '#SBATCH --gpus-per-node=N' or set" \
        "GPUS_PER_NODE"
}

# PTV2_PORT: MASTER_PORT, else derived from the job id so that jobs sharing a node differ.
ptv2_resolve_port() {
    if [[ -n "${MASTER_PORT:-}" ]]; then
        PTV2_PORT="$MASTER_PORT"
    elif [[ "${SLURM_JOB_ID:-}" =~ ^[0-9]+$ ]]; then
        PTV2_PORT=$((20000 + SLURM_JOB_ID % 20000))
    else
        PTV2_PORT=29500
    fi
}

# Per-task environment for LAUNCHER=srun (called by slurm/task_env.sh inside each task):
# deepspeed.comm reads RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT and no SLURM_*.
ptv2_task_env() {
    : "${SLURM_PROCID:?not a Slurm task (SLURM_PROCID unset); start it with srun}"
    : "${SLURM_LOCALID:?not a Slurm task (SLURM_LOCALID unset)}"
    : "${SLURM_NTASKS:?not a Slurm task (SLURM_NTASKS unset)}"
    export RANK="$SLURM_PROCID" LOCAL_RANK="$SLURM_LOCALID" WORLD_SIZE="$SLURM_NTASKS"
    if [[ -n "${SLURM_NODEID:-}" ]]; then export NODE_RANK="$SLURM_NODEID"; fi
    if [[ "${SLURM_NTASKS_PER_NODE:-}" =~ ^[0-9]+$ ]]; then
        export LOCAL_WORLD_SIZE="$SLURM_NTASKS_PER_NODE"
    fi
    if [[ -z "${MASTER_ADDR:-}" ]]; then   # launch.sh exports it; recompute if it was lost
        ptv2_resolve_hosts
        export MASTER_ADDR="${PTV2_HOSTS[0]}"
    fi
    ptv2_resolve_port
    export MASTER_PORT="$PTV2_PORT"
    # every rank must see all GPUs of its node and pick GPU LOCAL_RANK
    if [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then
        local visible
        IFS=, read -r -a visible <<<"$CUDA_VISIBLE_DEVICES"
        if ((LOCAL_RANK >= ${#visible[@]})); then
            ptv2_log "warning: rank $RANK has LOCAL_RANK=$LOCAL_RANK but" \
                "CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES; Slurm is binding GPUs per task:" \
                "add --gpu-bind=none to SRUN_ARGS"
        fi
    fi
}

# --- signal forwarding -----------------------------------------------------------------
PTV2_CHILD=""           # pid of the launcher (its own process group in deepspeed mode)
PTV2_GROUP=0            # 1: deepspeed mode (find the trainers; else signal the group)
PTV2_SIGNALS=0          # signals received (to tell an interrupted `wait` from an exit)
PTV2_GOT_WARNING=0      # SIGUSR1: Slurm's time-limit warning (--signal=B:USR1@secs)
PTV2_GOT_STOP=0         # SIGTERM/SIGINT: Slurm or the user is ending the job
PTV2_INTS=0
PTV2_TRAIN_ARGS=()

# PTV2_TRAINERS=(pids of this launch's training processes on this node): our own processes
# whose command line is `python ... -m ptv2_ds.cli.main [--local_rank=N] train ARGS` with
# exactly our ARGS. DeepSpeed's runner, pdsh and launch.py carry `--module ptv2_ds.cli.main`
# instead of `-m`, so they never match (they would die of a SIGUSR1 not meant for them).
ptv2_find_trainers() {
    PTV2_TRAINERS=()
    local files file pid arg i j k same
    local -a argv want=("$@")
    files="$(grep -l -a -F -e ptv2_ds.cli.main /proc/[0-9]*/cmdline 2>/dev/null)" || true
    while IFS= read -r file; do
        [[ -n "$file" ]] || continue
        pid="${file#/proc/}"
        pid="${pid%/cmdline}"
        if [[ ! -O "/proc/$pid" ]]; then continue; fi
        argv=()
        { while IFS= read -r -d '' arg; do argv+=("$arg"); done; } 2>/dev/null <"$file" \
            || continue
        for ((i = 0; i + 1 < ${#argv[@]}; i++)); do
            if [[ "${argv[i]}" == -m && "${argv[i + 1]}" == ptv2_ds.cli.main ]]; then break; fi
        done
        if ((i + 1 >= ${#argv[@]})); then continue; fi
        j=$((i + 2))
        if [[ "${argv[j]:-}" == --local_rank=* ]]; then j=$((j + 1)); fi
        if [[ "${argv[j]:-}" != train ]]; then continue; fi
        j=$((j + 1))
        if ((${#argv[@]} - j != ${#want[@]})); then continue; fi
        same=1
        for ((k = 0; k < ${#want[@]}; k++)); do
            if [[ "${argv[j + k]}" != "${want[k]}" ]]; then same=0; break; fi
        done
        if ((same)); then PTV2_TRAINERS+=("$pid"); fi
    done <<<"$files"
}

ptv2_forward() {        # ptv2_forward SIGNAL
    [[ -n "$PTV2_CHILD" ]] || return 0
    if ((!PTV2_GROUP)); then
        kill -s "$1" "$PTV2_CHILD" 2>/dev/null || true     # srun passes it to every task
        return 0
    fi
    # deepspeed mode: with several nodes pdsh starts even this node's ranks through ssh, so
    # they are not our children; find them by their command line. The other nodes' ranks
    # learn it from the trainer's all-reduce of the stop flag at the next step.
    ptv2_find_trainers "${PTV2_TRAIN_ARGS[@]}"
    if ((${#PTV2_TRAINERS[@]})); then
        ptv2_log "sending SIG$1 to ${#PTV2_TRAINERS[@]} training process(es) on this node"
        kill -s "$1" "${PTV2_TRAINERS[@]}" 2>/dev/null || true
    fi
    if ((${#PTV2_TRAINERS[@]} == 0)) || [[ "$1" == KILL ]]; then
        # none found (yet): the launcher's process group, in which the launchers ignore USR1
        kill -s "$1" -- "-$PTV2_CHILD" 2>/dev/null || true
    fi
}

ptv2_on_signal() {      # trap handler: ptv2_on_signal USR1|TERM|INT
    PTV2_SIGNALS=$((PTV2_SIGNALS + 1))
    case "$1" in
        USR1) PTV2_GOT_WARNING=1 ;;
        INT) PTV2_GOT_STOP=1; PTV2_INTS=$((PTV2_INTS + 1)) ;;
        *) PTV2_GOT_STOP=1 ;;
    esac
    if [[ "$1" == INT && $PTV2_INTS -ge 2 ]]; then
        ptv2_log "second SIGINT: killing the training processes"
        ptv2_forward KILL
        return 0
    fi
    ptv2_log "received SIG$1: asking the training processes to checkpoint and exit (SIGUSR1)"
    ptv2_forward USR1
}

# Run "$@" in the background, forward signals to it, and wait for its real exit status.
ptv2_run_and_wait() {
    trap 'ptv2_on_signal USR1' USR1
    trap 'ptv2_on_signal TERM' TERM
    trap 'ptv2_on_signal INT' INT
    if ((PTV2_GROUP)); then
        # Own process group, so one kill reaches the launcher and, on one node, every rank.
        # SIGUSR1 is ignored in the launcher processes (an ignored signal stays ignored
        # across exec) so it does not kill them; the trainers install their own handler.
        set -m
        (trap '' USR1; exec "$@") &
        PTV2_CHILD=$!
        set +m
    else
        "$@" &          # srun forwards the signals it receives to all of its tasks
        PTV2_CHILD=$!
    fi
    if ((PTV2_SIGNALS)); then ptv2_forward USR1; fi     # a signal beat the fork
    local rc seen previous=""
    while :; do
        seen=$PTV2_SIGNALS
        rc=0
        wait "$PTV2_CHILD" || rc=$?
        if [[ $rc -eq 127 && -n "$previous" ]]; then rc=$previous; break; fi
        # a trapped signal makes `wait` return >128 while the child still runs: wait again
        if ((rc > 128 && seen != PTV2_SIGNALS)); then previous=$rc; continue; fi
        break
    done
    trap - USR1 TERM INT
    PTV2_RC=$rc
}

# After the run: requeue on preemption, else pass the exit status through.
ptv2_finish() {
    local rc=$1
    if ((rc == 0)); then
        ptv2_log "training finished"
        exit 0
    fi
    if ((rc != PTV2_EXIT_PREEMPTED && !PTV2_GOT_WARNING)); then
        ptv2_log "training failed with exit code $rc"
        exit "$rc"
    fi
    ptv2_log "training stopped for preemption (exit code $rc); its checkpoint is in" \
        "OUTPUT_DIR/checkpoints and --resume auto continues from it"
    if ((PTV2_GOT_STOP)); then
        ptv2_log "not requeueing: SIGTERM/SIGINT means Slurm (time limit, scancel) or you" \
            "are ending the job; a preemption with PreemptMode=REQUEUE requeues it by itself"
        exit "$rc"
    fi
    if [[ -z "${SLURM_JOB_ID:-}" ]]; then
        ptv2_log "not inside a Slurm job: run the same command again to resume"
        exit "$rc"
    fi
    local restarts="${SLURM_RESTART_COUNT:-0}" max="${MAX_REQUEUES:-50}"
    if ((restarts >= max)); then
        ptv2_log "not requeueing: SLURM_RESTART_COUNT=$restarts reached MAX_REQUEUES=$max"
        exit "$rc"
    fi
    ptv2_log "requeueing job $SLURM_JOB_ID (restart $((restarts + 1)))"
    if "${SCONTROL:-scontrol}" requeue "$SLURM_JOB_ID"; then
        exit 0
    fi
    ptv2_log "'scontrol requeue $SLURM_JOB_ID' failed (was the job submitted with" \
        "--requeue?); resubmit the script to resume"
    exit "$rc"
}

ptv2_print_cmd() {
    printf '%q' "$1"
    shift
    if (($#)); then printf ' %q' "$@"; fi
    printf '\n'
}

ptv2_launch_main() {
    local launcher="${LAUNCHER:-deepspeed}" dry=0
    case "${DRY_RUN:-0}" in 0 | "" | false | no) dry=0 ;; *) dry=1 ;; esac
    case "$launcher" in deepspeed | srun) ;;
        *) ptv2_die "LAUNCHER=$launcher: choose deepspeed or srun" ;; esac
    if (($# == 0)); then
        ptv2_die "usage: launch.sh TRAIN_ARGS... (the arguments of 'ptv2 train')"
    fi

    local slurm_dir repo_root
    slurm_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
    repo_root="$(dirname "$slurm_dir")"
    cd "$repo_root"       # relative paths (ds_configs/...) and the package resolve from here
    export PYTHONPATH="$repo_root${PYTHONPATH:+:$PYTHONPATH}"

    local setup=""
    if [[ -n "${SETUP_SCRIPT:-}" ]]; then
        [[ -e "$SETUP_SCRIPT" ]] || ptv2_die "SETUP_SCRIPT=$SETUP_SCRIPT does not exist"
        setup="$(cd "$(dirname "$SETUP_SCRIPT")" && pwd)/$(basename "$SETUP_SCRIPT")"
        if ((dry)); then
            echo "# setup: source $setup"
        else
            ptv2_log "sourcing $setup"
            set +eu     # module systems and activate scripts are rarely -eu clean
            # shellcheck disable=SC1090
            source "$setup"
            set -eu
        fi
    fi

    ptv2_resolve_hosts
    ptv2_resolve_gpus
    ptv2_resolve_port
    local nnodes=${#PTV2_HOSTS[@]} gpus=$PTV2_GPUS
    local master_addr="${MASTER_ADDR:-${PTV2_HOSTS[0]}}"
    if [[ -n "${SLURM_NNODES:-}" && "$SLURM_NNODES" != "$nnodes" ]]; then
        ptv2_log "warning: SLURM_NNODES=$SLURM_NNODES but the node list has $nnodes hosts"
    fi

    local -a cmd extra
    if [[ "$launcher" == deepspeed ]]; then
        local hostfile="${HOSTFILE:-${TMPDIR:-/tmp}/ptv2_ds-hostfile-${SLURM_JOB_ID:-$$}}"
        cmd=("${DEEPSPEED:-deepspeed}" --hostfile "$hostfile" --num_nodes "$nnodes"
             --num_gpus "$gpus" --master_addr "$master_addr" --master_port "$PTV2_PORT")
        if ((nnodes == 1)); then
            cmd+=(--no_ssh_check)   # one node runs locally: no reason to ssh to ourselves
        elif [[ -n "$setup" ]]; then
            cmd+=(--venv_script "$setup")   # the other nodes' shells start bare
        fi
        read -r -a extra <<<"${DEEPSPEED_ARGS:-}"
        cmd+=(${extra[@]+"${extra[@]}"} --module ptv2_ds.cli.main train "$@")
        local host
        if ((dry)); then
            echo "# hostfile $hostfile:"
            for host in "${PTV2_HOSTS[@]}"; do printf '%s slots=%s\n' "$host" "$gpus"; done
            echo "# end hostfile"
        else
            mkdir -p "$(dirname "$hostfile")"
            : >"$hostfile"
            for host in "${PTV2_HOSTS[@]}"; do
                printf '%s slots=%s\n' "$host" "$gpus" >>"$hostfile"
            done
            if ! command -v "${cmd[0]}" >/dev/null 2>&1; then
                ptv2_die "'${cmd[0]}' not found on PATH: activate the environment with" \
                    "DeepSpeed installed (SETUP_SCRIPT)"
            fi
            if ((nnodes > 1)) && ! command -v pdsh >/dev/null 2>&1 \
                && [[ " ${DEEPSPEED_ARGS:-} " != *" --launcher "* ]]; then
                ptv2_die "pdsh not found: the DeepSpeed launcher starts the other nodes with" \
                    "pdsh over ssh; install it, or use LAUNCHER=srun"
            fi
        fi
        PTV2_GROUP=1
    else
        local ntasks=$((nnodes * gpus)) task_cpus="${TASK_CPUS:-}"
        if [[ -z "$task_cpus" && "${SLURM_CPUS_ON_NODE:-}" =~ ^[0-9]+$ ]]; then
            task_cpus=$((SLURM_CPUS_ON_NODE / gpus))
        fi
        # srun does not inherit sbatch's task layout (SLURM_NTASKS etc. would be 1 per node):
        # say everything explicitly. --kill-on-bad-exit=0 + --wait: a rank that exits first
        # (e.g. with 75 after the checkpoint) must not cut the others' last writes short.
        cmd=("${SRUN:-srun}" --nodes="$nnodes" --ntasks="$ntasks" --ntasks-per-node="$gpus"
             --kill-on-bad-exit=0 --wait="${SRUN_WAIT:-120}")
        if [[ -n "$task_cpus" && "$task_cpus" != 0 ]]; then cmd+=(--cpus-per-task="$task_cpus"); fi
        read -r -a extra <<<"${SRUN_ARGS:-}"
        cmd+=(${extra[@]+"${extra[@]}"} bash "$slurm_dir/task_env.sh" "$@")
        export MASTER_ADDR="$master_addr" MASTER_PORT="$PTV2_PORT"
        if ((dry)); then
            echo "# each task: RANK=\$SLURM_PROCID LOCAL_RANK=\$SLURM_LOCALID" \
                "WORLD_SIZE=\$SLURM_NTASKS MASTER_ADDR=$master_addr MASTER_PORT=$PTV2_PORT"
        elif ! command -v "${cmd[0]}" >/dev/null 2>&1; then
            ptv2_die "'${cmd[0]}' not found on PATH: LAUNCHER=srun runs inside a Slurm job"
        fi
        PTV2_GROUP=0
    fi

    if ((dry)); then
        ptv2_print_cmd "${cmd[@]}"
        return 0
    fi
    ptv2_log "job ${SLURM_JOB_ID:-none} restart ${SLURM_RESTART_COUNT:-0}: $nnodes node(s) x" \
        "$gpus GPU(s), launcher $launcher, master $master_addr:$PTV2_PORT"
    ptv2_log "running: ${cmd[*]}"
    PTV2_TRAIN_ARGS=("$@")
    ptv2_run_and_wait "${cmd[@]}"
    ptv2_finish "$PTV2_RC"
}

# --- the job scripts' common part --------------------------------------------------------
# ptv2_job: the end of every slurm/*.sh job script, which sources this file and calls it once
# it has set its own variables. It fills in the defaults that all the job scripts share, turns
# the variables into `ptv2 train` arguments and execs this file with them (so the batch shell
# becomes launch.sh, which gets Slurm's signals). The variables:
#
#   MODEL            a GLM preset (glm-10b, glm-2b): --model MODEL --model-path MODEL_PATH;
#                    empty: a Hugging Face model named by MODEL_PATH (--model MODEL_PATH)
#   MODEL_PATH TASK DATA_DIR OUT DS_CONFIG PREFIX_LEN LR EPOCHS BATCH_SIZE MAX_SEQ_LEN SEED
#   GRADIENT_CHECKPOINTING (1 or 0)                   set by every job script
#   TRAIN_FILE VALIDATION_FILE PRECISION PREFIX_LAYERS REPARAM HEAD GRAD_ACCUM RESUME
#   EXTRA_ARGS SETUP_SCRIPT                           defaults below, the same for all scripts
ptv2_job() {
    local name
    for name in MODEL_PATH TASK DATA_DIR OUT DS_CONFIG PREFIX_LEN LR EPOCHS BATCH_SIZE \
        MAX_SEQ_LEN SEED GRADIENT_CHECKPOINTING; do
        [[ -n "${!name:-}" ]] || ptv2_die "$name is empty: set it (the job script gives a default)"
    done
    : "${TRAIN_FILE:=$DATA_DIR/train.jsonl}"
    : "${VALIDATION_FILE:=$DATA_DIR/val.jsonl}"
    : "${PRECISION:=fp16}"
    : "${PREFIX_LAYERS:=all}"
    : "${REPARAM:=embedding}"        # or mlp (the paper's reparameterisation)
    : "${HEAD:=linear}"              # the paper's default; verbalizer = Table 5
    : "${GRAD_ACCUM:=1}"
    : "${RESUME:=auto}"              # auto: continue from OUT/checkpoints after a requeue
    : "${EXTRA_ARGS:=}"              # more `ptv2 train` flags, e.g. "--eval-every 100"
    export SETUP_SCRIPT="${SETUP_SCRIPT:-}"   # sourced first: module loads, venv (README)

    local -a args extra
    if [[ -n "${MODEL:-}" ]]; then
        args=(--model "$MODEL" --model-path "$MODEL_PATH")
    else
        args=(--model "$MODEL_PATH")
    fi
    args+=(--task "$TASK"
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

    local slurm_dir
    slurm_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
    exec "${BASH:-bash}" "$slurm_dir/launch.sh" "${args[@]}"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    ptv2_launch_main "$@"
fi
