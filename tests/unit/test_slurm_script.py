"""Golden tests of the sbatch script builder (issue 10): the scripts are written out literally, so a
change to any line of what runs on a cluster shows up here. Env values are never in the script."""
# ruff: noqa: E501  (the golden scripts hold their lines as the cluster gets them)

from __future__ import annotations

import subprocess

import pytest

from taoremote.command import BoundMount, RunSpec
from taoremote.config import DockerOptions
from taoremote.errors import UsageError
from taoremote.slurm_script import (
    SlurmJob,
    build_batch_script,
    build_sbatch_argv,
    env_file_text,
    exit_code_name,
    output_name,
    pyxis_dropped_options,
    pyxis_image,
)

SECRET = "s3cr3t-NGC-value"
JOB_DIR = "/lustre/alice/.taoremote/jobs/ab12cd34"
SPEC = RunSpec(
    image="nvcr.io/nvidia/tao/tao-toolkit:5.0.0-pyt",
    command=("dino", "train", "-e", "/workspace/specs/my spec.yaml", "results_dir=/workspace/results"),
    job_id="ab12cd34",
    task="dino",
    mounts=(
        BoundMount("/lustre/data", "/workspace/data", read_only=True),
        BoundMount("/lustre/results", "/workspace/results"),
    ),
    env_names=("NGC_API_KEY",),
    gpus="2",
    labels=(("taoremote.task", "dino"),),
    fixed_env=(("TAO_CLIENT_TYPE", "launcher"),),
)
SWEEP = (("dino", "train", "lr=0.1"), ("dino", "train", "lr=0.01"))

DOCKER_SCRIPT = r"""#!/bin/bash
#SBATCH --job-name=taoremote-dino-ab12cd34
#SBATCH --comment="taoremote job=ab12cd34 user=alice"
#SBATCH --output=/lustre/alice/.taoremote/jobs/ab12cd34/output
#SBATCH --no-requeue
#SBATCH --gpus=2
# taoremote job ab12cd34 (docker runtime). Env values are in the job's 0600
# env file, never in this text; see taoremote/slurm_script.py for when that file goes.
umask 077
job_dir=/lustre/alice/.taoremote/jobs/ab12cd34
exit_file=$job_dir/exit_code
finish() {  # the task's exit code beside its output, written whole, then as the job's own
    printf '%s\n' "$1" >"$exit_file.tmp" && mv -f "$exit_file.tmp" "$exit_file"
    exit "$1"
}
release_env() { rm -f "$job_dir/env"; }
trap release_env EXIT
[ -r "$job_dir/env" ] || { echo "taoremote: the env file is gone" >&2; finish 125; }
set -- dino train -e '/workspace/specs/my spec.yaml' results_dir=/workspace/results
name=taoremote-dino-ab12cd34
gpus=()  # exactly the GPUs Slurm allocated (host indices), none if it allocated none
[ -z "${SLURM_JOB_GPUS-}" ] || gpus=(--gpus "\"device=$SLURM_JOB_GPUS\"")
stop_container() { docker stop --time 10 "$name" >/dev/null 2>&1; }
trap stop_container TERM INT
docker run -d --init --name taoremote-dino-ab12cd34 --label taoremote.job=ab12cd34 --label taoremote.task=dino "${gpus[@]}" -v /lustre/data:/workspace/data:ro -v /lustre/results:/workspace/results --env-file /lustre/alice/.taoremote/jobs/ab12cd34/env -e TAO_CLIENT_TYPE=launcher nvcr.io/nvidia/tao/tao-toolkit:5.0.0-pyt "$@" >/dev/null || finish $?
release_env  # the container holds its env now
docker logs --follow "$name" &
logs=$!
docker wait "$name" >/dev/null 2>&1 &
wait $!  # returns at once on SIGTERM, so the trap stops the container without delay
rc=$(docker wait "$name" 2>/dev/null) || rc=125
wait "$logs"
docker rm --force "$name" >/dev/null 2>&1
finish "$rc"
"""

PYXIS_ARRAY_SCRIPT = r"""#!/bin/bash
#SBATCH --job-name=taoremote-dino-ab12cd34
#SBATCH --comment="taoremote job=ab12cd34 user=alice"
#SBATCH --output=/lustre/alice/.taoremote/jobs/ab12cd34/output.%a
#SBATCH --no-requeue
#SBATCH --gpus=2
#SBATCH --array=0-1%1
# taoremote job ab12cd34 (pyxis runtime). Env values are in the job's 0600
# env file, never in this text; see taoremote/slurm_script.py for when that file goes.
umask 077
job_dir=/lustre/alice/.taoremote/jobs/ab12cd34
task=$SLURM_ARRAY_TASK_ID
exit_file=$job_dir/exit_code.$task
finish() {  # the task's exit code beside its output, written whole, then as the job's own
    printf '%s\n' "$1" >"$exit_file.tmp" && mv -f "$exit_file.tmp" "$exit_file"
    exit "$1"
}
release_env() {  # delete only when no other unfinished task of the job has not read it
    [ -e "$job_dir/env" ] || return 0
    : >"$job_dir/env-read.$task"
    tasks=$(squeue -h -r -t all -j "$SLURM_ARRAY_JOB_ID" -o "%K %T") || return 0
    while read -r t state; do
        case $state in BOOT_FAIL|CANCELLED|COMPLETED|DEADLINE|FAILED|NODE_FAIL|OUT_OF_MEMORY|PREEMPTED|TIMEOUT) continue ;; esac
        [ "$t" = "$task" ] || [ -e "$job_dir/env-read.$t" ] || return 0
    done <<<"$tasks"
    rm -f "$job_dir/env"
}
trap release_env EXIT
[ -r "$job_dir/env" ] || { echo "taoremote: the env file is gone" >&2; finish 125; }
case "$task" in
0) set -- dino train lr=0.1 ;;
1) set -- dino train lr=0.01 ;;
*) echo "taoremote: no command for array task $task" >&2; finish 125 ;;
esac
set -a; . "$job_dir/env" || finish 125; set +a
release_env  # sourced
export TAO_CLIENT_TYPE=launcher
trap 'kill -TERM "$step" 2>/dev/null' TERM INT
srun '--container-image=nvcr.io#nvidia/tao/tao-toolkit:5.0.0-pyt' --container-mounts=/lustre/data:/workspace/data:ro,/lustre/results:/workspace/results --container-env=NGC_API_KEY,TAO_CLIENT_TYPE /bin/sh -c 'for v in $(env | grep -o "^SLURM_[A-Za-z0-9_]*"); do unset "$v"; done; exec "$@"' taoremote "$@" &
step=$!
wait "$step"; rc=$?
while kill -0 "$step" 2>/dev/null; do wait "$step"; rc=$?; done  # a trap interrupted the wait
finish "$rc"
"""


def test_the_docker_script_runs_taoremotes_own_argv_with_the_gpus_slurm_allocated() -> None:
    assert build_batch_script(SlurmJob(SPEC, JOB_DIR, "alice")) == DOCKER_SCRIPT


def test_the_pyxis_array_script_passes_the_env_by_name_and_picks_each_tasks_command() -> None:
    job = SlurmJob(SPEC, JOB_DIR, "alice", "pyxis", task_commands=SWEEP, max_parallel=1)

    assert build_batch_script(job) == PYXIS_ARRAY_SCRIPT


@pytest.mark.parametrize("runtime", ["docker", "pyxis"])
@pytest.mark.parametrize("tasks", [(), SWEEP], ids=["single", "array"])
def test_every_script_is_valid_bash(runtime: str, tasks: tuple[tuple[str, ...], ...]) -> None:
    script = build_batch_script(SlurmJob(SPEC, JOB_DIR, "alice", runtime, task_commands=tasks))  # type: ignore[arg-type]

    done = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, timeout=10)

    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("runtime", ["docker", "pyxis"])
def test_env_values_are_only_in_the_env_file_never_in_the_script(runtime: str) -> None:
    values = {"NGC_API_KEY": SECRET}
    script = build_batch_script(SlurmJob(SPEC, JOB_DIR, "alice", runtime, task_commands=SWEEP))  # type: ignore[arg-type]

    assert SECRET not in script
    assert SECRET in env_file_text(runtime, values)  # type: ignore[arg-type]


def test_the_env_file_is_dockers_syntax_for_docker_and_shell_for_pyxis_to_source() -> None:
    values = {"A": "it's $HOME", "B": "x y"}

    assert env_file_text("docker", values) == "A=it's $HOME\nB=x y\n"
    assert env_file_text("pyxis", values) == "A='it'\"'\"'s $HOME'\nB='x y'\n"
    sourced = subprocess.run(
        ["bash", "-c", 'set -a; . /dev/stdin; printf "%s|%s" "$A" "$B"'],
        input=env_file_text("pyxis", values),
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert sourced.stdout == "it's $HOME|x y"


def test_no_slurm_variable_is_handed_to_the_docker_container() -> None:
    script = build_batch_script(SlurmJob(SPEC, JOB_DIR, "alice"))
    run_line = next(line for line in script.splitlines() if line.startswith("docker run"))

    assert " -e SLURM" not in run_line
    assert "--env-file /lustre/alice/.taoremote/jobs/ab12cd34/env" in run_line


def test_a_docker_array_names_each_tasks_container_and_label_by_its_task_id() -> None:
    script = build_batch_script(SlurmJob(SPEC, JOB_DIR, "alice", task_commands=SWEEP, max_parallel=2))

    assert "#SBATCH --array=0-1%2\n" in script
    assert "#SBATCH --output=/lustre/alice/.taoremote/jobs/ab12cd34/output.%a\n" in script
    assert '--name taoremote-dino-ab12cd34-"$task" --label taoremote.job=ab12cd34-"$task"' in script
    assert "0) set -- dino train lr=0.1 ;;\n1) set -- dino train lr=0.01 ;;\n" in script


def test_without_gpus_the_job_asks_for_none_and_the_container_gets_none() -> None:
    script = build_batch_script(SlurmJob(RunSpec("img", (), "j1", "t", gpus="none"), "/jobs/j1", "bob"))

    assert "--gpus" not in script
    assert "gpus" not in script.split("docker run", 1)[1].split(" img ", 1)[0]
    assert "set --\n" in script  # the image's default command
    assert "release_env() { :; }" in script  # no env file to wait for or delete


def test_gpus_all_asks_for_nothing_itself_and_hands_over_what_slurm_allocated() -> None:
    script = build_batch_script(SlurmJob(RunSpec("img", (), "j1", "t", gpus="all"), "/jobs/j1", "bob"))

    assert "#SBATCH --gpus" not in script
    assert '"${gpus[@]}"' in script


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"gpus": "device=0,1"}, "ask for a count"),
        ({"gpus": "auto:2"}, "ask for a count"),
        ({"job_id": "ab 12"}, "job id"),
    ],
)
def test_what_slurm_cannot_honour_is_a_usage_error(change: dict[str, str], message: str) -> None:
    spec = RunSpec("img", (), "j1", "t", **{k: v for k, v in change.items() if k == "gpus"})
    if "job_id" in change:
        spec = RunSpec("img", (), change["job_id"], "t")

    with pytest.raises(UsageError, match=message):
        build_batch_script(SlurmJob(spec, "/jobs/j1", "bob"))


@pytest.mark.parametrize("job_dir", ["jobs/j1", "/jobs/my job", "/jobs/%j", "/jobs/j1/", "/a//b"])
def test_a_job_directory_slurm_or_the_shell_would_mangle_is_refused(job_dir: str) -> None:
    with pytest.raises(UsageError, match="job directory"):
        build_batch_script(SlurmJob(RunSpec("img", (), "j1", "t"), job_dir, "bob"))


def test_pyxis_refuses_a_mount_path_it_cannot_express() -> None:
    spec = RunSpec("img", (), "j1", "t", mounts=(BoundMount("/data/a:b", "/workspace/data"),))

    with pytest.raises(UsageError, match="pyxis cannot mount"):
        build_batch_script(SlurmJob(spec, "/jobs/j1", "bob", "pyxis"))


def test_max_parallel_needs_an_array() -> None:
    with pytest.raises(UsageError, match="max-parallel"):
        build_batch_script(SlurmJob(SPEC, JOB_DIR, "alice", max_parallel=2))


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("nvcr.io/nvidia/tao/tao-toolkit:5.0.0-pyt", "nvcr.io#nvidia/tao/tao-toolkit:5.0.0-pyt"),
        ("localhost:5000/tao:1", "localhost:5000#tao:1"),
        ("nvidia/tao:1", "nvidia/tao:1"),
        ("ubuntu", "ubuntu"),
    ],
)
def test_pyxis_writes_the_registry_with_a_hash(image: str, expected: str) -> None:
    assert pyxis_image(image) == expected


def test_docker_options_pyxis_cannot_express_are_named_for_a_warning() -> None:
    spec = RunSpec("img", (), "j1", "t", options=DockerOptions(shm_size="16G", user="1000:1000"))

    assert pyxis_dropped_options(SlurmJob(spec, "/jobs/j1", "bob", "pyxis")) == ("shm_size", "user")


def test_sbatch_gets_the_users_args_as_they_are_then_the_script() -> None:
    argv = build_sbatch_argv(JOB_DIR, ["--partition=gpu a", "--time=1:00:00"])

    assert argv == ("sbatch", "--parsable", "--partition=gpu a", "--time=1:00:00", f"{JOB_DIR}/job.sbatch")


def test_output_and_exit_code_files_are_per_array_task() -> None:
    assert (output_name(), exit_code_name()) == ("output", "exit_code")
    assert (output_name(3), exit_code_name(3)) == ("output.3", "exit_code.3")
