#!/usr/bin/env bash
# Build the container images the integration tests and the demo run.
#
# No registry is reachable from the test/CI machines (no Docker Hub, no
# nvcr.io), so images are made with `docker import` of a tiny rootfs built
# from Debian's static busybox. Each image carries:
#   * /bin/busybox + applet symlinks, /tmp, /etc/passwd (root and uid 1000)
#   * /usr/local/bin/tao-rig, a task stub, installed under every task name of
#     taoremote/data/tao_tasks.json (the TAO launcher's task -> image map), so
#     `docker run IMAGE <task> <args...>` works exactly like a TAO container's
#     entry points do, and the test can see what argv arrived.
#   * the CUDA environment (CUDA_VERSION, NVIDIA_REQUIRE_CUDA) of the real image
#     it stands for, so the CUDA preflight reads realistic values.
#
# Idempotent and fast: every image is labelled taoremote.rig=<hash of this
# script, busybox and tao_tasks.json>; when all images exist with the current
# hash nothing is built (one `docker images` call).
#
# Stub protocol (what tests assert on):
#   stdout: "TASK<name>" then one "ARG<arg>" line per argument, verbatim
#   stderr: $RIG_STDERR (if set), one line
#   $RIG_SLEEP: sleep that many seconds (dies promptly on SIGTERM/SIGINT)
#   exit status: ${RIG_EXIT:-0}
#   `TASK train -e SPEC -r DIR` (or `results_dir=DIR`) with SPEC readable in the container: after the lines
#   above, trains like TAO, writing status.json per epoch (scripts/tao-rig-train.sh says how)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TASKS_JSON=$ROOT/taoremote/data/tao_tasks.json
PREFIX=taoremote.test
BUSYBOX=${BUSYBOX:-/bin/busybox}
PYTHON=${PYTHON:-python3}

# --------------------------------------------------------------------------
# CUDA environment per TAO image tag.
#
# Source: /work/shared/reference/cuda-preflight.md §5 (TAO backend repos'
# docker/Dockerfile: the base NGC image of each TAO release) and §2 (NGC
# framework images set NVIDIA_REQUIRE_CUDA=cuda>=9.0 and a 4-part CUDA_VERSION,
# e.g. 12.8.0.038 in every NGC 25.01 image - env dumps of pytorch:25.01 /
# tritonserver:25.02 in public repos).
#
#   TAO tag              NGC base                          CUDA         confidence
#   5.0.0-tf1.15.5       tensorflow:23.02-tf1-py3          12.0.1       Dockerfile ARG 12/0 (tao_tensorflow1_backend
#                                                                        @d7009029); patch = NGC 23.02 "CUDA 12.0.1"
#   5.5.0-pyt            pytorch:24.04-py3                 12.4.1       /usr/local/cuda-12.4 (tao_pytorch_backend
#                                                                        @2fdd6b35); patch = NGC 24.xx "CUDA 12.4.1"
#   6.0.0-tf2            tensorflow:25.01-tf2-py3          12.8.0.038   base from tao_tensorflow2_backend @97b0d5ac;
#                                                                        NGC 25.01 env
#   6.26.3-pyt           pytorch:25.01-py3 (as 6.0-6.25)   12.8.0.038   ARG 12/8/0 BUILD=038 up to 6.25.10
#                                                                        (@9fbf1a53); 6.26.3 itself UNVERIFIED
#   6.26.3-cosmos-embed  -                                 12.8.0.038   UNVERIFIED, assumed same base as 6.26.3-pyt
#   6.26.3-data-services -                                 12.8.0.038   UNVERIFIED, assumed
#   6.26.3-deploy        -                                 12.8.0.038   UNVERIFIED, assumed
# All TAO images: NVIDIA_REQUIRE_CUDA=cuda>=9.0 (inherited from NGC; the TAO
# release Dockerfile does not set it, tao_pytorch_backend release/docker/
# Dockerfile @37618db0). 3-part values are used where the NGC build suffix is
# not known - the mix also exercises both CUDA_VERSION formats.
# A tag in tao_tasks.json that is not listed here gets NGC 25.01's values.
# --------------------------------------------------------------------------
declare -A TAO_CUDA_VERSION=(
    [5.0.0-tf1.15.5]=12.0.1
    [5.5.0-pyt]=12.4.1
    [6.0.0-tf2]=12.8.0.038
    [6.26.3-pyt]=12.8.0.038
    [6.26.3-cosmos-embed]=12.8.0.038
    [6.26.3-data-services]=12.8.0.038
    [6.26.3-deploy]=12.8.0.038
)
NGC_REQUIRE_CUDA='cuda>=9.0'
DEFAULT_TAO_CUDA_VERSION=12.8.0.038

# nvidia/cuda base images: exact NVIDIA_REQUIRE_CUDA strings (cuda-preflight.md
# §2, gitlab.com/nvidia/container-images/cuda dist/<ver>/ubuntu*/base/Dockerfile
# via mirror pranavmishra90/nvidia-container-images-cuda @60a1c892). That file's
# one-line generator reproduces them byte-for-byte:
#   "cuda>=%s" % mm + "".join(" brand=%s,driver>=%d,driver<%d" % (b, br, br+1)
#                              for br in branches for b in brands)
BRANDS_B1="tesla unknown nvidia nvidiartx geforce geforcertx quadro quadrortx titan titanrtx"   # <= 12.4
BRANDS_B2="unknown grid tesla nvidia quadro quadrortx nvidiartx vapps vpc vcs vws cloudgaming"  # >= 12.5
cuda_require() {  # cuda_require MAJOR.MINOR "BRANCHES" "BRANDS"
    local out="cuda>=$1" br b
    for br in $2; do
        for b in $3; do
            out+=" brand=$b,driver>=$br,driver<$((br + 1))"
        done
    done
    printf '%s' "$out"
}
REQUIRE_12_8=$(cuda_require 12.8 "470 535 550 560 565" "$BRANDS_B2")  # 12.8.0 / 12.8.1
REQUIRE_11_8=$(cuda_require 11.8 "470" "$BRANDS_B1")                  # 11.8.0 (post-2023-11 rebuild)

# --------------------------------------------------------------------------
command -v docker >/dev/null || { echo "build-test-images: no docker client" >&2; exit 1; }
[[ -x $BUSYBOX ]] || { echo "build-test-images: $BUSYBOX missing (apt-get install busybox-static)" >&2; exit 1; }
"$BUSYBOX" --list >/dev/null 2>&1 || { echo "build-test-images: $BUSYBOX is not a busybox" >&2; exit 1; }

# "TAG<TAB>task task ..." per (image, tag); every image in tao_tasks.json is
# nvidia/tao/tao-toolkit today, but keep the image path from the file.
mapfile -t IMAGE_LINES < <("$PYTHON" - "$TASKS_JSON" <<'EOF'
import json, sys
cfg = json.load(open(sys.argv[1]))
seen = {}
for group in cfg["task_group"].values():
    for image, tags in group["dockers"].items():
        for tag, spec in tags.items():
            seen.setdefault((image, tag), set()).update(spec["tasks"])
for (image, tag), tasks in sorted(seen.items()):
    print(f"{image}\t{tag}\t{' '.join(sorted(tasks))}")
EOF
)
((${#IMAGE_LINES[@]} > 0)) || { echo "build-test-images: no images in $TASKS_JSON" >&2; exit 1; }
ALL_TASKS=$(printf '%s\n' "${IMAGE_LINES[@]}" | cut -f3 | tr ' ' '\n' | sort -u | tr '\n' ' ')

# Content hash: everything that determines the images' content.
TRAIN_SH=$ROOT/scripts/tao-rig-train.sh
RIG_HASH=$({ cat "${BASH_SOURCE[0]}" "$TASKS_JSON" "$TRAIN_SH"; sha256sum <"$BUSYBOX"; } | sha256sum | cut -c1-16)

# image reference -> "CUDA_VERSION|NVIDIA_REQUIRE_CUDA" (empty: no CUDA env)
declare -A WANT=()
for line in "${IMAGE_LINES[@]}"; do
    IFS=$'\t' read -r image tag _ <<<"$line"
    WANT["$PREFIX/$image:$tag"]="${TAO_CUDA_VERSION[$tag]:-$DEFAULT_TAO_CUDA_VERSION}|$NGC_REQUIRE_CUDA"
done
WANT["$PREFIX/cuda:12.8-require"]="12.8.1|$REQUIRE_12_8"
WANT["$PREFIX/cuda:11.8-require"]="11.8.0|$REQUIRE_11_8"
WANT["$PREFIX/demo:latest"]=""

# What already exists with the current hash?
declare -A HAVE=()
while read -r ref; do
    [[ -n $ref ]] && HAVE["$ref"]=1
done < <(docker images --filter "label=taoremote.rig=$RIG_HASH" --format '{{.Repository}}:{{.Tag}}')

todo=()
for ref in "${!WANT[@]}"; do
    [[ -n ${HAVE[$ref]:-} ]] || todo+=("$ref")
done

if ((${#todo[@]} > 0)); then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    rootfs=$work/rootfs
    mkdir -p "$rootfs"/{bin,etc,tmp,root,home/tao,usr/local/bin,workspace,proc,sys,dev}
    chmod 1777 "$rootfs/tmp"
    cp "$BUSYBOX" "$rootfs/bin/busybox"
    # Every applet busybox has (a superset of what tests use: sh sleep cat ...).
    for applet in $("$BUSYBOX" --list); do
        [[ $applet == busybox ]] || ln -sf busybox "$rootfs/bin/$applet"
    done
    cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
tao:x:1000:1000:tao:/home/tao:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
    cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
tao:x:1000:
nogroup:x:65534:
EOF
    chown 1000:1000 "$rootfs/home/tao"

    cat >"$rootfs/usr/local/bin/tao-rig" <<'EOF'
#!/bin/sh
# taoremote test rig: stands in for every TAO task entry point.
# Prints what it was called as and with, verbatim; printf '%s' so nothing in
# an argument is re-interpreted (no echo -e / backslash processing).
printf 'TASK<%s>\n' "${0##*/}"
for arg in "$@"; do
    printf 'ARG<%s>\n' "$arg"
done
if [ -n "${RIG_STDERR:-}" ]; then
    printf '%s\n' "$RIG_STDERR" >&2
fi
# `TASK train` with a readable spec (-e) and a results dir (-r DIR, or results_dir=DIR PyTorch-style) trains
# like TAO: status.json lines per epoch (tao-rig-train, from scripts/tao-rig-train.sh).
if [ "${1:-}" = train ]; then
    rig_spec='' rig_results='' rig_style='' rig_prev=''
    for arg in "$@"; do
        case $rig_prev in
            -e | --experiment_spec_file | --experiment_spec) rig_spec=$arg ;;
            -r | --results_dir) rig_results=$arg rig_style=tf1 ;;
        esac
        case $arg in results_dir=*) rig_results=${arg#results_dir=} rig_style=pytorch ;; esac
        rig_prev=$arg
    done
    if [ -n "$rig_spec" ] && [ -r "$rig_spec" ] && [ -n "$rig_results" ]; then
        exec /usr/local/bin/tao-rig-train "${0##*/}" "$rig_style" "$rig_spec" "$rig_results" "$@"
    fi
fi
if [ -n "${RIG_SLEEP:-}" ]; then
    # Sleep in the background and wait: `wait` returns as soon as a trapped
    # signal arrives, so the job dies promptly on SIGTERM/SIGINT even if this
    # shell is PID 1 (no --init) and signals' default actions are ignored.
    sleep "$RIG_SLEEP" &
    rig_sleep_pid=$!
    trap 'kill "$rig_sleep_pid" 2>/dev/null; exit 143' TERM
    trap 'kill "$rig_sleep_pid" 2>/dev/null; exit 130' INT
    trap 'kill "$rig_sleep_pid" 2>/dev/null; exit 129' HUP
    wait "$rig_sleep_pid"
fi
exit "${RIG_EXIT:-0}"
EOF
    chmod 755 "$rootfs/usr/local/bin/tao-rig"
    install -m 755 "$TRAIN_SH" "$rootfs/usr/local/bin/tao-rig-train"
    for task in $ALL_TASKS; do
        ln -sf tao-rig "$rootfs/usr/local/bin/$task"
    done
    # Deterministic tar: identical content -> identical layer digest, so all
    # images share one stored layer.
    tar -C "$rootfs" --sort=name --mtime=@0 --numeric-owner -cf "$work/rootfs.tar" .

    for ref in "${todo[@]}"; do
        changes=(
            -c 'ENV PATH=/usr/local/bin:/bin'
            -c 'CMD ["/bin/sh"]'
            -c 'WORKDIR /'
            -c "LABEL taoremote.rig=$RIG_HASH"
        )
        spec=${WANT[$ref]}
        if [[ -n $spec ]]; then
            changes+=(
                -c "ENV CUDA_VERSION=${spec%%|*}"
                # Dockerfile ENV syntax: quote, the value contains spaces.
                -c "ENV NVIDIA_REQUIRE_CUDA=\"${spec#*|}\""
                -c 'ENV NVIDIA_VISIBLE_DEVICES=all'
                -c 'ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility'
            )
        fi
        docker import "${changes[@]}" "$work/rootfs.tar" "$ref" >/dev/null
        echo "build-test-images: built $ref"
    done
    # Images replaced by a rebuild are left dangling; drop them.
    docker image prune -f --filter label=taoremote.rig >/dev/null
else
    echo "build-test-images: ${#WANT[@]} images up to date (taoremote.rig=$RIG_HASH)"
fi

# --------------------------------------------------------------------------
# Self-check: NVIDIA_REQUIRE_CUDA survived `docker import -c` intact, and a
# GPU container runs the stub with its argv unchanged.
for ref in "$PREFIX/cuda:12.8-require" "$PREFIX/cuda:11.8-require"; do
    got=$(docker image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$ref" |
        sed -n 's/^NVIDIA_REQUIRE_CUDA=//p')
    want=${WANT[$ref]#*|}
    if [[ $got != "$want" ]]; then
        echo "build-test-images: $ref has NVIDIA_REQUIRE_CUDA=$got, want $want" >&2
        exit 1
    fi
done

probe_img="$PREFIX/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5"
if [[ -n ${WANT[$probe_img]+x} ]]; then
    # shellcheck disable=SC2016  # '$HOME' must reach the container unexpanded
    if ! out=$(docker run --rm --init --gpus all "$probe_img" detectnet_v2 train -e "a b" "it's" '$HOME' '' 2>&1); then
        echo "build-test-images: 'docker run --gpus all' failed:" >&2
        printf '%s\n' "$out" >&2
        echo "(was dockerd started by scripts/start-dockerd.sh, with nvidia-container-runtime-hook on its PATH?)" >&2
        exit 1
    fi
    # shellcheck disable=SC2016  # literal $HOME: what the stub must print
    expected=$(printf '%s\n' 'TASK<detectnet_v2>' 'ARG<train>' 'ARG<-e>' 'ARG<a b>' "ARG<it's>" 'ARG<$HOME>' 'ARG<>')
    if [[ $out != "$expected" ]]; then
        echo "build-test-images: stub output mismatch:" >&2
        diff <(printf '%s\n' "$expected") <(printf '%s\n' "$out") >&2 || true
        exit 1
    fi
    echo "build-test-images: docker run --gpus all OK"
fi
