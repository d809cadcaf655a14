#!/usr/bin/env bash
# Start a one-node Slurm cluster with 2 fake GPUs for the Slurm integration tests (issue 10), if none
# is up. The recipe and the Slurm 22.05 pitfalls behind it: shared/reference/sweeps-and-slurm.md §B.2.
#
#   - Config in /etc/slurm (the Debian build's default), not in a temp dir behind $SLURM_CONF: clients
#     reached through the test sshd, and the jobs themselves, must find it without any environment.
#     An /etc/slurm/slurm.conf that this script did not write (a real cluster's) is never touched.
#   - State, spool, logs, pid files and the fake GPU device nodes live in $TAOREMOTE_SLURM_DIR.
#   - GPUs are GRES backed by character devices (mknod c 1 3, /dev/null's numbers): regular files are
#     rejected and then CUDA_VISIBLE_DEVICES stays empty. Jobs get SLURM_JOB_GPUS/CUDA_VISIBLE_DEVICES.
#   - SlurmdParameters=config_overrides: the node is what slurm.conf says (8 CPUs, 2 GPUs) whatever the
#     machine has, so a small CI machine still runs two array tasks side by side and never drains for
#     "Low RealMemory".
#   - No cgroups (proctrack/linuxproc, task/none), no slurmdbd (jobcomp/filetxt): nothing systemd-only.
#   - Jobs run as their submitter (root on CI) with the submitter's environment, so `docker` in a job
#     talks to the same dockerd as everything else (/var/run/docker.sock).
#
# No systemd here: munged, slurmctld and slurmd daemonise themselves, started with a clean environment
# (no venv, no CI variables leak into the daemons). Idempotent: with the same config and the node up,
# it only runs `sinfo` and exits.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
D=${TAOREMOTE_SLURM_DIR:-/var/lib/taoremote-slurm}
CONF_DIR=/etc/slurm
WAIT_S=${TAOREMOTE_SLURM_WAIT_S:-60}
MARK="# taoremote test rig: written by scripts/start-slurm.sh"
NODE=$(hostname -s)
CLEAN_ENV=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8)

# Is PID $1 a live (not zombie) process named $2?
live_proc() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    [[ $stat == *"($2) "* ]] || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}
pidfile_live() { [[ -f $1 ]] && live_proc "$(cat "$1" 2>/dev/null || echo 0)" "$2"; }
node_state() { sinfo -h -N -n "$NODE" -o %t 2>/dev/null | head -n 1 || true; }
node_up() { [[ $(node_state) =~ ^(idle|mix|mixed|alloc|allocated|comp|completing)$ ]]; }

slurm_conf() {
    cat <<EOF
$MARK
ClusterName=taolab
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$D/log/jobcomp.txt
MinJobAge=300
ReturnToService=2
MpiDefault=none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=8 RealMemory=8000 Gres=gpu:2 State=UNKNOWN
PartitionName=gpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}
gres_conf() {
    printf '%s\nAutoDetect=off\nNodeName=%s Name=gpu File=%s/fakedev/nvidia[0-1]\n' "$MARK" "$NODE" "$D"
}

want_slurm=$(slurm_conf)
want_gres=$(gres_conf)
same_conf() {
    [[ -f $CONF_DIR/slurm.conf && "$(cat "$CONF_DIR/slurm.conf")" == "$want_slurm" ]] &&
        [[ -f $CONF_DIR/gres.conf && "$(cat "$CONF_DIR/gres.conf")" == "$want_gres" ]]
}

# Fast path: our config, our daemons, the node schedulable.
if command -v sinfo >/dev/null && same_conf && pidfile_live "$D/slurmctld.pid" slurmctld &&
    pidfile_live "$D/slurmd.pid" slurmd && node_up; then
    echo "start-slurm: cluster already up (node $NODE $(node_state))"
    exit 0
fi

if ((EUID != 0)); then
    echo "start-slurm: no Slurm cluster up and not root; cannot start one" >&2
    exit 1
fi
if ! command -v slurmd >/dev/null || ! command -v slurmctld >/dev/null || ! command -v sinfo >/dev/null ||
    ! command -v munged >/dev/null; then
    bash "$HERE/install-deps.sh"
fi
if [[ -f $CONF_DIR/slurm.conf ]] && ! grep -qxF "$MARK" "$CONF_DIR/slurm.conf"; then
    echo "start-slurm: $CONF_DIR/slurm.conf was not written by this script (a real cluster?); leaving it alone" >&2
    exit 1
fi

# --- munge: the credential daemon every Slurm call authenticates through
if [[ ! -s /etc/munge/munge.key ]]; then
    echo "start-slurm: creating /etc/munge/munge.key"
    mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
fi
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    echo "start-slurm: starting munged"
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    rm -f /run/munge/munged.pid  # a stale one from a snapshot makes munged refuse to start
    "${CLEAN_ENV[@]}" runuser -u munge -- /usr/sbin/munged --force </dev/null
    for _ in $(seq 50); do
        munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.1
    done
fi

# --- config and the fake GPU devices
mkdir -p "$D"/{state,spool,log,fakedev} "$CONF_DIR"
for i in 0 1; do
    [[ -c $D/fakedev/nvidia$i ]] || { rm -f "$D/fakedev/nvidia$i"; mknod "$D/fakedev/nvidia$i" c 1 3; }
done
if ! same_conf; then
    echo "start-slurm: writing $CONF_DIR/slurm.conf and gres.conf (node $NODE, 2 fake GPUs)"
    printf '%s\n' "$want_slurm" >"$CONF_DIR/slurm.conf.tmp" && mv "$CONF_DIR/slurm.conf.tmp" "$CONF_DIR/slurm.conf"
    printf '%s\n' "$want_gres" >"$CONF_DIR/gres.conf.tmp" && mv "$CONF_DIR/gres.conf.tmp" "$CONF_DIR/gres.conf"
    # daemons of ours that run an older config restart (they read it only at start)
    for daemon in slurmd slurmctld; do
        if pidfile_live "$D/$daemon.pid" "$daemon"; then
            pid=$(cat "$D/$daemon.pid")
            kill "$pid" || true
            for _ in $(seq 50); do live_proc "$pid" "$daemon" || break; sleep 0.1; done
        fi
    done
fi

# --- the daemons (each daemonises; pid files in $D)
if ! pidfile_live "$D/slurmctld.pid" slurmctld; then
    echo "start-slurm: starting slurmctld (log: $D/log/slurmctld.log)"
    "${CLEAN_ENV[@]}" /usr/sbin/slurmctld </dev/null
fi
if ! pidfile_live "$D/slurmd.pid" slurmd; then
    echo "start-slurm: starting slurmd (log: $D/log/slurmd.log)"
    "${CLEAN_ENV[@]}" /usr/sbin/slurmd </dev/null
fi

deadline=$((SECONDS + WAIT_S))
resumed=
until node_up; do
    state=$(node_state)
    # a node left down/drained by an earlier run (e.g. a killed slurmd) is ours to bring back
    if [[ -z $resumed && $state =~ ^(down|drain|drng|drained|fail)  ]]; then
        scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
        resumed=1
    fi
    if ((SECONDS >= deadline)); then
        echo "start-slurm: node $NODE not schedulable within ${WAIT_S}s (state: ${state:-none}); log tails:" >&2
        tail -n 20 "$D/log/slurmctld.log" "$D/log/slurmd.log" >&2 || true
        exit 1
    fi
    sleep 0.2
done
echo "start-slurm: cluster up (node $NODE $(node_state), $(sinfo -V 2>/dev/null || echo slurm))"
