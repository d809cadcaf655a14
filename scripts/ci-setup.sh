#!/usr/bin/env bash
# Prepare this machine for the integration tests: system packages, a running
# dockerd that accepts `--gpus`, the locally built test images, and a one-node
# Slurm cluster with 2 fake GPUs whose jobs use that dockerd.
# Called by `make test` (and so by .ci/run) before pytest. Every step is
# idempotent; on a warm machine the whole thing takes well under a second.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
start=$SECONDS

step() {
    local name=$1
    shift
    echo "ci-setup: [$name]"
    "$@"
}

step "1/4 packages" bash "$HERE/install-deps.sh"
step "2/4 dockerd" bash "$HERE/start-dockerd.sh"
step "3/4 images" bash "$HERE/build-test-images.sh"
step "4/4 slurm" bash "$HERE/start-slurm.sh"
echo "ci-setup: ready in $((SECONDS - start))s"
