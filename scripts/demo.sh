#!/usr/bin/env bash
# `make demo`: one TAO-style job through taoremote's full launch path on this machine.
# With a Docker engine: builds a tiny local TAO image (no registry needed), then trains,
# shows exit-code passthrough, a detached job, list, logs -f and prune. Without one: prints the
# exact command a launch would run and how to get an engine.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TAO="$ROOT/.venv/bin/taoremote"
DEMO="$ROOT/.demo"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$'; printf ' %q' "$@"; printf '\n'; "$@"; }

mkdir -p "$DEMO/specs" "$DEMO/results"
printf 'random_seed: 42\nbatch_size_per_gpu: 4\nnum_epochs: 1\n' > "$DEMO/specs/train.txt"
cat > "$DEMO/tao_mounts.json" <<JSON
{"Mounts": [{"source": "$DEMO/specs", "destination": "/workspace/tao-experiments/specs", "read_only": true},
            {"source": "$DEMO/results", "destination": "/workspace/tao-experiments/results"}],
 "Envs": [{"variable": "CUDA_DEVICE_ORDER", "value": "PCI_BUS_ID"},
          {"variable": "DEMO_API_KEY", "value": "not-a-real-key-but-masked-anyway"}],
 "DockerOptions": {"shm_size": "1G", "ulimits": {"stack": 67108864}}}
JSON
export LAUNCHER_MOUNTS="$DEMO/tao_mounts.json"
export OVERRIDE_REGISTRY=taoremote.test   # the locally built stand-ins for nvcr.io/nvidia/tao images

say "taoremote info"
show "$TAO" info

say "the exact command a training launch runs (secrets masked)"
show "$TAO" --dry-run detectnet_v2 train -e /workspace/tao-experiments/specs/train.txt \
    -r /workspace/tao-experiments/results -k "key with spaces and 'quotes'"

if ! docker info >/dev/null 2>&1; then
    say "no Docker engine reachable: stopping after the dry run"
    cat <<TXT
To run the demo for real, start a Docker engine, e.g. on Debian/Ubuntu as root:
    bash scripts/install-deps.sh && bash scripts/start-dockerd.sh
(or install Docker Engine: https://docs.docker.com/engine/install/), then run 'make demo' again.
TXT
    exit 0
fi

say "building the local demo images (busybox with TAO task stubs)"
if ! bash "$ROOT/scripts/build-test-images.sh" >"$DEMO/build.log" 2>&1; then
    tail -5 "$DEMO/build.log"
    echo "could not build the demo images (is busybox-static installed? bash scripts/install-deps.sh)"
    exit 1
fi
echo "ok"

GPU_OPTS=()
if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "(no NVIDIA driver on this machine: running with --gpus none, which also skips the driver preflight)"
    GPU_OPTS=(--gpus none)
fi

say "train: arguments arrive exactly as typed"
show "$TAO" "${GPU_OPTS[@]}" detectnet_v2 train -e /workspace/tao-experiments/specs/train.txt \
    -r /workspace/tao-experiments/results -k "key with spaces and 'quotes'"

say "a failing task: taoremote exits with the task's own code (the TAO launcher exits 0)"
set +e
"$TAO" "${GPU_OPTS[@]}" detectnet_v2 run sh -c 'echo "training diverged" >&2; exit 3'
echo "exit code: $?"
set -e

say "a detached job: start, list, follow to the end, clean up"
JOB=$("$TAO" "${GPU_OPTS[@]}" -d yolo_v4 run sh -c 'for i in 1 2 3; do echo "epoch $i/3"; sleep 1; done')
echo "job id: $JOB"
show "$TAO" list
show "$TAO" logs -f "$JOB"
show "$TAO" list --all
show "$TAO" prune
say "a sweep: a 2x2 grid of learning rate and batch size, one trial per GPU, ranked by mAP"
printf 'training_config {\n  batch_size_per_gpu: 8\n  num_epochs: 3\n  learning_rate: 0.01\n}\n' >"$DEMO/specs/sweep.txt"
rm -rf "$DEMO/state" "$DEMO/results/sweep"   # the demo's own files: a fresh sweep every time
SWEEP_ENV=(env XDG_STATE_HOME="$DEMO/state")
if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "(no nvidia-smi: a stand-in reporting 2 GPUs places the trials; the engine must accept --gpus,"
    echo " as the one scripts/start-dockerd.sh starts does)"
    mkdir -p "$DEMO/bin"
    cat >"$DEMO/bin/nvidia-smi" <<'SMI'
#!/bin/sh
for a in "$@"; do case $a in
    --query-compute-apps=*) exit 0 ;;
    --query-gpu=*) for i in 0 1; do echo "$i, GPU-00000000-0000-0000-0000-00000000000$i, 1, 81559, 0"; done; exit 0 ;;
esac; done
echo "NVIDIA-SMI 580.65.06   Driver Version: 580.65.06   CUDA Version: 13.0"
SMI
    chmod 755 "$DEMO/bin/nvidia-smi"
    SWEEP_ENV+=(PATH="$DEMO/bin:$PATH")
fi
show "${SWEEP_ENV[@]}" "$TAO" --no-preflight sweep run demo-lr \
    --param training_config.learning_rate=0.01,0.001 --param training_config.batch_size_per_gpu=8,16 \
    -- detectnet_v2 train -e /workspace/tao-experiments/specs/sweep.txt -r /workspace/tao-experiments/results/sweep
show "${SWEEP_ENV[@]}" "$TAO" sweep status demo-lr
show "$TAO" prune
say "done: nothing is left running ($(docker ps -q --filter label=taoremote.job | wc -l) taoremote containers)"
