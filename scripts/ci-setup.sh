#!/usr/bin/env bash
# Prepare this machine for the integration tests: system packages, a running
# dockerd that accepts `--gpus`, and the locally built test images.
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

step "1/3 packages" bash "$HERE/install-deps.sh"
step "2/3 dockerd" bash "$HERE/start-dockerd.sh"
step "3/3 images" bash "$HERE/build-test-images.sh"
echo "ci-setup: ready in $((SECONDS - start))s"
