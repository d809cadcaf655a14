#!/bin/sh
# taoremote test rig: a TAO-like `train` (installed in the test images as /usr/local/bin/tao-rig-train by
# build-test-images.sh; busybox sh + awk only). tao-rig runs it for `TASK train` when the arguments name a
# readable spec (-e SPEC) and a results dir (-r DIR: TF1 style, or results_dir=DIR: PyTorch style).
#
#   usage: tao-rig-train TASK tf1|pytorch SPEC RESULTS [ARGS...]   (ARGS: the task's own, `a.b.key=value`
#          overrides among them, applied after the spec as TAO's Hydra does)
#
# It reads from the spec (protobuf text or YAML, `key: value` lines, first match wins; overrides win over it):
#   num_epochs                                 epochs to run (default 3)
#   learning_rate | lr | max_learning_rate     default 0.01
#   batch_size | batch_size_per_gpu            default 8
#   rig_exit_code                              the exit code (else $SWEEP_EXIT_CODE, else $RIG_EXIT, else 0)
# and writes, one epoch every $SWEEP_EPOCH_S seconds (default 1), status.json lines in the format of TAO's
# own writers (tests/data/status/README.md): TF1 Keras lines to RESULTS/status.json with a checkpoint
# RESULTS/weights/model_epoch_<NNN>.tlt per epoch, or PyTorch Lightning lines to RESULTS/train/status.json
# with RESULTS/train/model_epoch_<NNN>.pth. classification_* tasks log accuracies, every other task mAP.
#
# The metric is a deterministic function of the swept values, best at learning_rate 1e-3 and batch size 8:
#   r = max(lr / 1e-3, 1e-3 / lr),  score = 1 / (1 + 2 (r - 1) / (r + 1) + |bs - 8| / 8),
#   value after epoch e of N = score * e / N
# (mAP, val_mAP50, accuracies; val_mAP = 0.6 * value; losses = 1 + 10 * (1 - value)).
# SIGTERM ends it promptly with 143 and SIGINT with 130, as the stub's sleep does.
set -u
task=$1 style=$2 spec=$3 results=$4
shift 4

# `a.b.key=value` overrides become `key: value` lines read after the spec
overrides=
for arg in "$@"; do
    case $arg in
        -*) ;;
        results_dir=*) ;;
        *=*)
            key=${arg%%=*}
            overrides="$overrides${key##*.}: ${arg#*=}
"
            ;;
    esac
done

# shellcheck disable=SC2016  # awk program
settings=$({ cat "$spec"; printf '%s\n' "#rig-overrides"; printf '%s' "$overrides"; } | awk '
    /^#rig-overrides$/ { over = 1; next }
    match($0, /^[ \t]*[A-Za-z_][A-Za-z0-9_]*[ \t]*:[ \t]*[^ \t{]/) {
        line = $0
        key = line; sub(/^[ \t]*/, "", key); sub(/[ \t]*:.*$/, "", key)
        value = line; sub(/^[^:]*:[ \t]*/, "", value); sub(/[ \t]*#.*$/, "", value); sub(/[ \t]+$/, "", value)
        gsub(/^["\047]|["\047]$/, "", value)
        name = ""
        if (key == "num_epochs") name = "epochs"
        else if (key == "learning_rate" || key == "lr" || key == "max_learning_rate") name = "lr"
        else if (key == "batch_size" || key == "batch_size_per_gpu") name = "bs"
        else if (key == "rig_exit_code") name = "exit"
        if (name != "" && (over || !(name in seen))) { seen[name] = 1; got[name] = value }
    }
    END {
        printf "epochs=%d\n", ("epochs" in got) ? got["epochs"] + 0 : 3
        printf "lr=%s\n", ("lr" in got && got["lr"] ~ /^[-+0-9.eE]+$/) ? got["lr"] : "0.01"
        printf "bs=%s\n", ("bs" in got && got["bs"] ~ /^[0-9]+$/) ? got["bs"] : "8"
        if ("exit" in got && got["exit"] ~ /^[0-9]+$/) printf "spec_exit=%s\n", got["exit"]
    }
')
epochs=3 lr=0.01 bs=8 spec_exit=
eval "$settings"
exit_code=${spec_exit:-${SWEEP_EXIT_CODE:-${RIG_EXIT:-0}}}
epoch_s=${SWEEP_EPOCH_S:-1}

case $style in
    pytorch) status_dir=$results/train ckpt_dir=$results/train ckpt_ext=pth ;;
    *) status_dir=$results ckpt_dir=$results/weights ckpt_ext=tlt ;;
esac
mkdir -p "$status_dir" "$ckpt_dir" || exit 1
status=$status_dir/status.json

# status_lines KIND EPOCH: the lines TAO's writers append at that point (awk: one place for the format)
status_lines() {
    # shellcheck disable=SC2046  # date fields split on purpose
    awk -v kind="$1" -v e="$2" -v n="$epochs" -v lr="$lr" -v bs="$bs" -v s="$epoch_s" -v task="$task" \
        -v style="$style" -v rc="$exit_code" -v now="$(date '+%m %d %Y %H %M %S')" '
    function td(x,   h, m, sec, out) {  # Python str(timedelta(seconds=x))
        h = int(x / 3600); m = int((x - h * 3600) / 60); sec = x - h * 3600 - m * 60
        out = sprintf("%d:%02d:%02d", h, m, int(sec))
        if (sec - int(sec) > 0.0000005) out = out sprintf(".%06d", (sec - int(sec)) * 1000000 + 0.5)
        return out
    }
    function stamp(status, message,   d) {
        split(now, d, " ")
        out = sprintf("\"date\": \"%d/%d/%d\", \"time\": \"%d:%d:%d\", \"status\": \"%s\", \"verbosity\": \"INFO\"", \
            d[1], d[2], d[3], d[4], d[5], d[6], status)
        return message == "" ? out : out sprintf(", \"message\": \"%s\"", message)
    }
    function f5(x) { return sprintf("%.5f", x) }
    BEGIN {
        r = lr / 0.001; if (r < 1) r = 1 / r  # busybox awk may lack log(): a ratio does
        b = (bs - 8) / 8; if (b < 0) b = -b
        v = (e > 0 ? 1 / (1 + 2 * (r - 1) / (r + 1) + b) * e / n : 0)
        loss = 1 + 10 * (1 - v)
        cls = (task ~ /^classification/)
        if (style == "pytorch") {
            kpi = cls ? sprintf("{\"val_loss\": %s, \"val_acc_1\": %s}", f5(loss), f5(v)) \
                : sprintf("{\"val_mAP\": \"%s\", \"val_mAP50\": \"%s\", \"val_loss\": %s}", f5(0.6 * v), f5(v), f5(loss))
            train = sprintf("{\"train_loss\": %s}", f5(loss + 0.5))
        } else if (cls) {
            graph = sprintf("{\"loss\": \"%s\", \"training_accuracy\": \"%s\", \"validation_loss\": \"%s\", " \
                "\"validation_accuracy\": \"%s\", \"learning_rate\": \"%s\"}", f5(loss), f5(v), f5(loss), f5(v), lr)
            kpi = sprintf("{\"training_accuracy\": \"%s\", \"validation_accuracy\": \"%s\"}", f5(v), f5(v))
        } else {
            graph = sprintf("{\"loss\": \"%s\", \"learning_rate\": \"%s\", \"mean average precision\": \"%s\"}", \
                f5(loss), lr, f5(v))
            kpi = sprintf("{\"mean average precision\": \"%s\"}", f5(v))
        }
        if (kind == "start") {
            if (style == "pytorch") print "{" stamp("STARTED", "Starting " task " train.") "}"
            else print "{" stamp("STARTED", "Starting " task " Training job") "}"
            print "{" stamp("STARTED", "Starting Training Loop.") "}"
        } else if (kind == "epoch" && style == "pytorch") {
            print "{" stamp("RUNNING", "Eval metrics generated.") ", \"kpi\": " kpi "}"
            printf "{\"epoch\": %d, \"step\": %d, \"max_epoch\": %d, \"max_step\": %d, \"time_per_epoch\": \"%s\", " \
                "\"time_per_step\": \"%s\", \"eta\": \"%s\", %s, \"kpi\": %s}\n", e - 1, e * 100, n - 1, n * 100, \
                td(s), td(s / 100), td((n - e) * s), stamp("RUNNING", "Training loop in progress"), kpi
            print "{" stamp("RUNNING", "Train metrics generated.") ", \"kpi\": " train "}"
        } else if (kind == "epoch") {
            printf "{\"epoch\": %d, \"max_epoch\": %d, \"time_per_epoch\": \"%s\", \"eta\": \"%s\", %s, " \
                "\"graphical\": %s, \"kpi\": %s}\n", e, n, td(s), td((n - e) * s), \
                stamp("RUNNING", "Training loop in progress"), graph, kpi
        } else if (style == "pytorch") {
            print "{" stamp("RUNNING", "Training loop complete.") ", \"kpi\": " train "}"
            if (rc == 0) print "{" stamp("RUNNING", "Train finished successfully.") ", \"kpi\": " train "}"
            else print "{" stamp("FAILURE", "Parameter validation error: rig_exit_code " rc) ", \"kpi\": " train "}"
        } else {
            tail = ", \"graphical\": " graph ", \"kpi\": " kpi "}"
            print "{" stamp("RUNNING", "Training loop complete.") tail
            if (rc == 0) print "{" stamp("SUCCESS", toupper(task) " training finished successfully.") tail
            else print "{" stamp("FAILURE", "rig_exit_code " rc) tail
        }
    }' >>"$status"
}

trap 'kill "${rig_sleep_pid:-}" 2>/dev/null; exit 143' TERM
trap 'kill "${rig_sleep_pid:-}" 2>/dev/null; exit 130' INT
trap 'kill "${rig_sleep_pid:-}" 2>/dev/null; exit 129' HUP

status_lines start 0
e=1
while [ "$e" -le "$epochs" ]; do
    # background sleep + wait: a trapped signal ends `wait` at once, even as PID 1
    sleep "$epoch_s" &
    rig_sleep_pid=$!
    wait "$rig_sleep_pid"
    status_lines epoch "$e"
    : >"$ckpt_dir/$(printf 'model_epoch_%03d' "$e").$ckpt_ext"
    e=$((e + 1))
done
status_lines end "$epochs"
exit "$exit_code"
