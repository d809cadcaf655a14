#!/usr/bin/env bash
# Start a Docker daemon for the integration tests, if none is reachable.
#
# There is no systemd on the test/CI machines, so dockerd is started directly
# in the background (setsid + nohup: it survives this script, `make`, and the
# CI step that ran it).
#
# GPU emulation: moby registers its "nvidia" device driver - the thing that
# makes `docker run --gpus all` accepted - only if an executable named
# `nvidia-container-runtime-hook` is on dockerd's PATH *when dockerd starts*
# (moby daemon/nvidia_linux.go: exec.LookPath(nvidiaHook)). We put a no-op
# script of that name on dockerd's PATH, so `--gpus all` is accepted and the
# hook (called as an OCI prestart hook) does nothing. Consequence: an already
# running dockerd started without it will refuse `--gpus`; this script then
# says so (it does not kill a daemon it did not start).
#
# Idempotent: exits 0 at once when `docker info` already works.
set -euo pipefail

# On PATH for everyone (not only dockerd), as the real NVIDIA Container Toolkit's hook is, so that
# taoremote's preflight and doctor see the same "GPU support installed" signal as on a GPU host.
HOOK_DIR=${TAOREMOTE_FAKEGPU_DIR:-/usr/local/bin}
LOG=${TAOREMOTE_DOCKERD_LOG:-/var/log/taoremote-dockerd.log}
PIDFILE=/var/run/docker.pid
WAIT_S=${TAOREMOTE_DOCKERD_WAIT_S:-60}

docker_ok() { docker info >/dev/null 2>&1; }

# Is PID $1 a live (not zombie) process named $2? A killed daemon can linger
# as a zombie for a while when PID 1 reaps lazily, and /proc/PID/comm, pgrep
# and kill -0 all still "see" it.
live_proc() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    [[ $stat == *"($2) "* ]] || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}
live_dockerd() { live_proc "$1" dockerd; }
alive() {  # exists and is not a zombie, whatever its name (setsid/nohup exec into dockerd)
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}
any_live_dockerd() {
    local pid
    for pid in $(pgrep -x dockerd || true); do
        live_dockerd "$pid" && return 0
    done
    return 1
}

if docker_ok; then
    echo "start-dockerd: docker engine already reachable"
    exit 0
fi

if ((EUID != 0)); then
    echo "start-dockerd: no reachable docker engine and not root; cannot start dockerd" >&2
    exit 1
fi
command -v dockerd >/dev/null || { echo "start-dockerd: dockerd not installed (run scripts/install-deps.sh)" >&2; exit 1; }

# The fake GPU hook. It is invoked as an OCI prestart hook (state JSON on stdin);
# reading nothing and exiting 0 is a valid hook.
# Never shadow a real one (a GPU host whose dockerd happens to be down).
if real_hook=$(command -v nvidia-container-runtime-hook) && ! grep -q "taoremote test rig" "$real_hook"; then
    echo "start-dockerd: using the installed $real_hook"
else
mkdir -p "$HOOK_DIR"
cat >"$HOOK_DIR/nvidia-container-runtime-hook" <<'EOF'
#!/bin/sh
# taoremote test rig: no-op stand-in for NVIDIA's prestart hook, so that
# dockerd registers the "nvidia" device driver and accepts `--gpus`.
exit 0
EOF
chmod 755 "$HOOK_DIR/nvidia-container-runtime-hook"
fi

# A pid file left by a dockerd that died (e.g. machine snapshot, kill -9)
# makes the next dockerd refuse to start ("pid file found, ensure docker is
# not running"). Remove it only if that pid is not a live dockerd.
if [[ -f $PIDFILE ]]; then
    oldpid=$(cat "$PIDFILE" 2>/dev/null || true)
    if [[ -n $oldpid ]] && live_dockerd "$oldpid"; then
        echo "start-dockerd: dockerd (pid $oldpid) is running but not answering; waiting for it"
    else
        echo "start-dockerd: removing stale $PIDFILE (pid ${oldpid:-?})"
        rm -f "$PIDFILE"
    fi
fi

# dockerd runs its own containerd and, on restart, reuses the one named in
# this pid file if that pid "exists" - a zombie containerd (it dies with a
# SIGKILLed dockerd) passes that test, and dockerd then times out on its
# socket ("failed to start containerd"). Drop the pid file unless it is live.
CTRD_PIDFILE=/var/run/docker/containerd/containerd.pid
if [[ -f $CTRD_PIDFILE ]] && ! live_proc "$(cat "$CTRD_PIDFILE" 2>/dev/null || echo 0)" containerd; then
    echo "start-dockerd: removing stale $CTRD_PIDFILE"
    rm -f "$CTRD_PIDFILE"
fi

# Start dockerd unless one is already (slowly) starting.
started_pid=
if ! any_live_dockerd; then
    mkdir -p "$(dirname "$LOG")"
    echo "start-dockerd: starting dockerd (log: $LOG)"
    # --storage-driver overlay2: explicit, so a silent fallback to vfs (slow,
    # disk-hungry) shows up as a startup error in the log instead.
    # A clean PATH: the hook first, then the system dirs (runc, containerd,
    # docker-init, iptables); nothing from the caller's venv/pyenv.
    PATH="$HOOK_DIR:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" setsid nohup dockerd \
        --storage-driver overlay2 \
        --pidfile "$PIDFILE" \
        >>"$LOG" 2>&1 </dev/null &
    started_pid=$!  # setsid execs (we are not a group leader), so this is dockerd
    disown || true
fi

deadline=$((SECONDS + WAIT_S))
until docker_ok; do
    died=
    if [[ -n $started_pid ]] && ! alive "$started_pid"; then
        died=1
    fi
    if [[ -n $died ]] || ((SECONDS >= deadline)); then
        if [[ -n $died ]]; then
            echo "start-dockerd: dockerd exited during startup; log tail:" >&2
        else
            echo "start-dockerd: dockerd did not come up within ${WAIT_S}s; log tail:" >&2
        fi
        tail -n 40 "$LOG" >&2 || true
        exit 1
    fi
    sleep 0.5
done
echo "start-dockerd: docker engine up ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
