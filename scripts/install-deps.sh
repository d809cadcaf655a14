#!/usr/bin/env bash
# Install the system packages the integration tests need, only if missing.
#
#   docker.io       - dockerd (the test machine ships only a docker *client*)
#   tmux            - a real terminal for the interactive-shell tests
#   strace          - make bench counts the docker calls `list` makes
#   openssh-server  - sshd, to simulate remote GPU hosts on 127.0.0.1
#   busybox-static  - a static /bin/busybox, the rootfs of the test images
#   iproute2        - ip/tc, for network namespaces + netem in latency benchmarks
#   slurmctld slurmd slurm-client munge
#                   - a one-node Slurm cluster with fake GPUs (scripts/start-slurm.sh)
#
# Idempotent: `dpkg-query` decides; `apt-get update` runs only when something
# must be installed, so a warm machine does no network access at all.
set -euo pipefail

PACKAGES=(docker.io openssh-server busybox-static iproute2 tmux strace slurmctld slurmd slurm-client munge)

installed() {
    # "install ok installed" is the only state in which the package is usable.
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
    echo "install-deps: all present (${PACKAGES[*]})"
    exit 0
fi

SUDO=()
if ((EUID != 0)); then
    SUDO=(sudo -n)
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# </dev/null: must work from CI / make with no terminal; policy-rc.d-less
# containers may try to start services - failures there are harmless because
# start-dockerd.sh starts dockerd itself, and the tests start their own sshd.
"${SUDO[@]}" apt-get update -qq </dev/null
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${missing[@]}" </dev/null

for pkg in "${missing[@]}"; do
    installed "$pkg" || { echo "install-deps: $pkg failed to install" >&2; exit 1; }
done
echo "install-deps: done"
