#!/usr/bin/env bash
# slurm/local_cluster.sh - a two-node Slurm cluster on this one machine, to try the job scripts
# and to run the end-to-end tests (tests/slurm/test_slurm_e2e.py) against real Slurm.
#
#   slurm/local_cluster.sh start     install slurm-wlm + munge if missing (apt-get, as root),
#                                    write the configuration, start munged, slurmctld and two
#                                    slurmd nodes (n1, n2: 1 CPU each), wait until both are idle
#   slurm/local_cluster.sh stop      cancel the cluster's jobs, stop exactly the daemons that
#                                    start started (by their pid files)
#   slurm/local_cluster.sh status    the daemons' state and sinfo
#   slurm/local_cluster.sh env       the line to paste into a shell: export SLURM_CONF=...
#
# Everything lives in PTV2_SLURM_DIR (default ${TMPDIR:-/tmp}/ptv2-slurm): slurm.conf, a fresh
# munge key, spool, pid and log files. Slurm's commands find this cluster through SLURM_CONF
# (`eval "$(slurm/local_cluster.sh env)"`). Needs root: slurmd starts jobs as their users.
# Start and stop are idempotent. Variables:
#   PTV2_SLURM_DIR       state directory (see above)
#   PTV2_SLURM_PORT      slurmctld's port (default 16817); the nodes use the next two
#   PTV2_SLURM_MEM       RealMemory of each node in MB (default 10000)
#   PTV2_SLURM_INSTALL   0: never run apt-get (default 1)
#   PTV2_SLURM_TIMEOUT   seconds to wait for the nodes to be idle (default 60)
set -euo pipefail

STATE="${PTV2_SLURM_DIR:-${TMPDIR:-/tmp}/ptv2-slurm}"
CONF="$STATE/etc/slurm.conf"
PORT="${PTV2_SLURM_PORT:-16817}"
MEM="${PTV2_SLURM_MEM:-10000}"
TIMEOUT="${PTV2_SLURM_TIMEOUT:-60}"
NODES=(n1 n2)
export SLURM_CONF="$CONF"

log() { printf 'local_cluster.sh: %s\n' "$*" >&2; }
die() { printf 'local_cluster.sh: error: %s\n' "$*" >&2; exit 1; }

# pid files of the daemons start launches, in start order
pid_files() {
    local node
    echo "$STATE/munge/munged.pid"
    echo "$STATE/run/slurmctld.pid"
    for node in "${NODES[@]}"; do echo "$STATE/run/slurmd-$node.pid"; done
}

# alive PIDFILE: the pid in the file is a running process (not a zombie)
alive() {
    local pid state
    [[ -s "$1" ]] || return 1
    pid="$(<"$1")"
    [[ "$pid" =~ ^[0-9]+$ && -r "/proc/$pid/stat" ]] || return 1
    state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" || return 1
    [[ -n "$state" && "$state" != Z ]]
}

running_count() {
    local n=0 file
    while IFS= read -r file; do
        if alive "$file"; then n=$((n + 1)); fi
    done < <(pid_files)
    echo "$n"
}

need_root() {
    if [[ "$(id -u)" != 0 ]]; then
        die "the local Slurm cluster needs root (slurmd runs jobs as their users, munged" \
            "as the munge user): run 'sudo $0 $1'. The end-to-end Slurm tests skip" \
            "without it (and fail when CI=true)."
    fi
}

install_packages() {
    local missing=() tool
    for tool in munged slurmctld slurmd sbatch scontrol sinfo; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    ((${#missing[@]} == 0)) && return 0
    if [[ "${PTV2_SLURM_INSTALL:-1}" == 0 ]]; then
        die "missing ${missing[*]}: install the Debian/Ubuntu packages slurm-wlm and munge" \
            "(apt-get install slurm-wlm munge), or unset PTV2_SLURM_INSTALL=0"
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        die "missing ${missing[*]} and no apt-get here: install Slurm (slurmctld, slurmd," \
            "client commands) and munge with your package manager, then run '$0 start' again"
    fi
    log "installing slurm-wlm and munge with apt-get (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2 || die "apt-get update failed"
    apt-get install -y -q --no-install-recommends slurm-wlm munge >&2 \
        || die "apt-get install slurm-wlm munge failed"
}

# n1 and n2 must resolve: they are the rendezvous host (MASTER_ADDR) of the jobs' ranks
ensure_hosts() {
    local node
    for node in "${NODES[@]}"; do
        if ! getent hosts "$node" >/dev/null 2>&1; then
            log "adding '127.0.0.1 $node' to /etc/hosts"
            printf '127.0.0.1 %s\n' "$node" >>/etc/hosts
        fi
    done
}

write_config() {
    local host node port=$((PORT + 1))
    host="$(hostname -s)"
    {
        echo "# written by slurm/local_cluster.sh: two nodes on one host ($host)"
        echo "ClusterName=ptv2local"
        echo "SlurmctldHost=$host(127.0.0.1)"
        echo "SlurmctldPort=$PORT"
        echo "SlurmUser=root"
        echo "SlurmdUser=root"
        echo "AuthType=auth/munge"
        echo "CredType=cred/munge"
        # cred_expire: a requeued job may start again only after its old credentials
        # expire (begin time = requeue + cred_expire + 1 s; starting it sooner kills it with
        # "Job credential revoked"). 120 s by default; 20 s keeps the requeue test short.
        echo "AuthInfo=socket=$STATE/munge/munge.socket,cred_expire=20"
        echo "StateSaveLocation=$STATE/spool/ctld"
        echo "SlurmdSpoolDir=$STATE/spool/%n"
        echo "SlurmctldPidFile=$STATE/run/slurmctld.pid"
        echo "SlurmdPidFile=$STATE/run/slurmd-%n.pid"
        echo "SlurmctldLogFile=$STATE/log/slurmctld.log"
        echo "SlurmdLogFile=$STATE/log/slurmd-%n.log"
        # no cgroups: plain process tracking, no task binding, no accounting daemon
        echo "ProctrackType=proctrack/linuxproc"
        echo "TaskPlugin=task/none"
        echo "JobAcctGatherType=jobacct_gather/none"
        echo "AccountingStorageType=accounting_storage/none"
        echo "SelectType=select/cons_tres"
        echo "SelectTypeParameters=CR_CPU_Memory"
        echo "SchedulerType=sched/backfill"
        echo "MpiDefault=none"
        echo "SlurmdParameters=config_overrides"
        echo "ReturnToService=2"
        echo "MinJobAge=600"
        echo "KillWait=30"
        echo "MailProg=/bin/true"
        for node in "${NODES[@]}"; do
            echo "NodeName=$node NodeHostname=$host NodeAddr=127.0.0.1 Port=$port CPUs=1" \
                "RealMemory=$MEM State=UNKNOWN"
            port=$((port + 1))
        done
        echo "PartitionName=local Nodes=$(IFS=,; echo "${NODES[*]}") Default=YES" \
            "MaxTime=INFINITE State=UP"
    } >"$CONF"
}

start_munge() {
    local dir="$STATE/munge" user=root
    local -a as=()
    if id munge >/dev/null 2>&1; then user=munge; as=(runuser -u munge --); fi
    mkdir -p "$dir"
    chmod 0755 "$dir"       # clients need to reach the socket; the key itself is 0400
    # a fresh key for every cluster; munged insists on 0400/0600 and its own user
    dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 status=none
    chmod 0400 "$dir/munge.key"
    chown -R "$user:" "$dir"
    local -a args=(--socket="$dir/munge.socket" --key-file="$dir/munge.key"
                   --pid-file="$dir/munged.pid" --log-file="$dir/munged.log"
                   --seed-file="$dir/munged.seed")
    if [[ "$user" == root ]]; then args+=(--force); fi
    "${as[@]}" munged "${args[@]}" || die "munged did not start: see $dir/munged.log"
}

wait_idle() {
    local deadline=$((SECONDS + TIMEOUT)) idle out
    while ((SECONDS < deadline)); do
        out="$(sinfo -h -N -o '%N %t' 2>/dev/null)" || out=""
        idle="$(awk '$2 == "idle"' <<<"$out" | wc -l)"
        if ((idle == ${#NODES[@]})); then return 0; fi
        sleep 1
    done
    die "the nodes are not idle after ${TIMEOUT}s (sinfo: ${out:-no answer}); see the logs" \
        "in $STATE/log and $STATE/munge/munged.log"
}

cmd_start() {
    need_root start
    local running
    running="$(running_count)"
    if ((running == ${#NODES[@]} + 2)); then
        log "already running ($STATE)"
        return 0
    fi
    if ((running > 0)); then
        log "partly running: stopping what is left first"
        cmd_stop
    fi
    install_packages
    ensure_hosts
    # a clean state every time: fresh key, spool, pid and log files
    rm -rf "${STATE:?}"/{etc,run,log,spool,munge}     # only what start itself creates
    mkdir -p "$STATE"/{etc,run,log,spool/ctld}
    local node
    for node in "${NODES[@]}"; do mkdir -p "$STATE/spool/$node"; done
    write_config
    start_munge
    slurmctld -f "$CONF" -i || die "slurmctld did not start: see $STATE/log/slurmctld.log"
    for node in "${NODES[@]}"; do
        slurmd -f "$CONF" -N "$node" \
            || die "slurmd $node did not start: see $STATE/log/slurmd-$node.log"
    done
    wait_idle
    log "running: nodes ${NODES[*]} idle; to use it: export SLURM_CONF=$CONF"
}

# stop PIDFILE NAME: TERM the pid in the file, wait for it, KILL after 20 s
stop_one() {
    local file=$1 name=$2 pid i
    alive "$file" || { rm -f "$file"; return 0; }
    pid="$(<"$file")"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do
        alive "$file" || break
        sleep 0.1
    done
    if alive "$file"; then
        log "$name (pid $pid) ignored SIGTERM: killing it"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$file"
}

cmd_stop() {
    if (($(running_count) == 0)); then
        log "not running"
        return 0
    fi
    need_root stop
    # end the jobs first, so that no job step outlives its slurmd
    if alive "$STATE/run/slurmctld.pid"; then
        local i
        scancel --full --quiet --partition=local 2>/dev/null || true
        for ((i = 0; i < 60; i++)); do
            [[ -z "$(squeue -h -t R,CG,S -o %i 2>/dev/null)" ]] && break
            sleep 1
        done
        scancel --quiet --partition=local 2>/dev/null || true    # pending/requeued ones
    fi
    local node
    for node in "${NODES[@]}"; do stop_one "$STATE/run/slurmd-$node.pid" "slurmd $node"; done
    stop_one "$STATE/run/slurmctld.pid" slurmctld
    stop_one "$STATE/munge/munged.pid" munged
    log "stopped"
}

cmd_status() {
    local file name
    while IFS= read -r file; do
        name="$(basename "$file" .pid)"
        if alive "$file"; then
            echo "$name: running (pid $(<"$file"))"
        else
            echo "$name: stopped"
        fi
    done < <(pid_files)
    if alive "$STATE/run/slurmctld.pid"; then
        sinfo -N -o '%N %t %c %m' || true
        echo "export SLURM_CONF=$CONF"
        return 0
    fi
    return 3
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
