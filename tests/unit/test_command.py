"""The docker argv taoremote emits, written out in full: this file is the spec of command.py."""

from __future__ import annotations

from pathlib import Path

from taoremote.command import (
    PS_TEMPLATE,
    BoundMount,
    RunSpec,
    build_clean_dir_argv,
    build_create_argv,
    build_inspect_state_argv,
    build_logs_argv,
    build_ps_argv,
    build_rm_argv,
    build_run_argv,
    build_start_argv,
    build_start_attached_argv,
    build_stop_argv,
    build_then_delete_env_file_argv,
    build_wait_argv,
    container_name,
    format_env_file,
    render_command,
)
from taoremote.config import DockerOptions, PortMapping, Ulimit, load_mounts_config

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "nvcr.io/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5"


def _spec(**changes: object) -> RunSpec:
    base = RunSpec(
        image=IMAGE,
        command=("detectnet_v2", "train", "-e", "/w/spec.txt"),
        job_id="0a1b2c3d",
        task="detectnet_v2",
    )
    return RunSpec(**{**base.__dict__, **changes})  # type: ignore[arg-type]


def test_minimal_run_is_rm_init_named_labelled_all_gpus() -> None:
    assert build_run_argv(_spec()) == (
        "docker", "run", "--rm", "--init",
        "--name", "taoremote-detectnet_v2-0a1b2c3d",
        "--label", "taoremote.job=0a1b2c3d",
        "--gpus", "all",
        IMAGE, "detectnet_v2", "train", "-e", "/w/spec.txt",
    )  # fmt: skip


def test_gpu_count_device_list_and_none() -> None:
    assert build_run_argv(_spec(gpus="2"))[8:10] == ("--gpus", "2")
    # the docker CLI splits --gpus on commas unless the device list itself is quoted
    assert build_run_argv(_spec(gpus="device=0,2"))[8:10] == ("--gpus", '"device=0,2"')
    assert "--gpus" not in build_run_argv(_spec(gpus="none"))


def test_detached_run_keeps_the_container_for_its_exit_code() -> None:
    argv = build_run_argv(_spec(detach=True))
    assert argv[:4] == ("docker", "run", "-d", "--init")
    assert "--rm" not in argv


def test_interactive_and_tty_flags() -> None:
    assert build_run_argv(_spec(interactive=True, tty=True))[2:6] == ("--rm", "--init", "-i", "-t")
    assert "-t" not in build_run_argv(_spec(tty=False))


def test_every_option_in_fixed_order() -> None:
    spec = _spec(
        mounts=(BoundMount("/data", "/workspace/data", read_only=True), BoundMount("/res", "/workspace/res")),
        env_names=("CUDA_DEVICE_ORDER", "WANDB_API_KEY"),
        env_file="/tmp/taoremote-env-x/env",
        options=DockerOptions(
            user="1000:1000",
            shm_size="16G",
            ulimits=(Ulimit("memlock", -1, -1), Ulimit("nofile", 1024, 4096)),
            ports=(
                PortMapping("8888", None, "8888"),
                PortMapping("6006/udp", "127.0.0.1", "16006"),
                PortMapping("9000", None, None),
            ),
            privileged=True,
            network="host",
        ),
        labels=(("taoremote.task", "detectnet_v2"),),
    )
    assert build_run_argv(spec) == (
        "docker", "run", "--rm", "--init",
        "--name", "taoremote-detectnet_v2-0a1b2c3d",
        "--label", "taoremote.job=0a1b2c3d",
        "--label", "taoremote.task=detectnet_v2",
        "--gpus", "all",
        "-v", "/data:/workspace/data:ro",
        "-v", "/res:/workspace/res",
        "-e", "CUDA_DEVICE_ORDER",
        "-e", "WANDB_API_KEY",
        "--env-file", "/tmp/taoremote-env-x/env",
        "--shm-size", "16G",
        "--ulimit", "memlock=-1",
        "--ulimit", "nofile=1024:4096",
        "-u", "1000:1000",
        "-p", "8888:8888",
        "-p", "127.0.0.1:16006:6006/udp",
        "-p", "9000",
        "--privileged",
        "--network", "host",
        IMAGE, "detectnet_v2", "train", "-e", "/w/spec.txt",
    )  # fmt: skip


def test_launcher_example_config_golden_argv() -> None:
    config = load_mounts_config(str(ROOT / "configs" / "tao_mounts.example.json"), {})
    spec = _spec(
        mounts=tuple(BoundMount(m.source.replace("~", "/home/u"), m.destination) for m in config.mounts),
        env_names=tuple(e.name for e in config.envs),
        options=config.options,
    )
    assert build_run_argv(spec) == (
        "docker", "run", "--rm", "--init",
        "--name", "taoremote-detectnet_v2-0a1b2c3d",
        "--label", "taoremote.job=0a1b2c3d",
        "--gpus", "all",
        "-v", "/home/u/tao/data:/workspace/tao-experiments/data",
        "-v", "/home/u/tao/results:/workspace/tao-experiments/results",
        "-v", "/home/u/tao/specs:/workspace/tao-experiments/specs",
        "-e", "CUDA_DEVICE_ORDER",
        "--shm-size", "16G",
        "--ulimit", "memlock=-1",
        "--ulimit", "stack=67108864",
        "-u", "1000:1000",
        "-p", "8888:8888",
        IMAGE, "detectnet_v2", "train", "-e", "/w/spec.txt",
    )  # fmt: skip


def test_clearml_config_golden_argv_has_names_but_no_values() -> None:
    config = load_mounts_config(str(ROOT / "configs" / "tao_mounts.clearml.json"), {})
    spec = _spec(
        mounts=tuple(BoundMount(m.source.replace("~", "/home/u"), m.destination) for m in config.mounts),
        env_names=tuple(e.name for e in config.envs),
        options=config.options,
    )
    argv = build_run_argv(spec)
    assert argv == (
        "docker", "run", "--rm", "--init",
        "--name", "taoremote-detectnet_v2-0a1b2c3d",
        "--label", "taoremote.job=0a1b2c3d",
        "--gpus", "all",
        "-v", "/home/u/tao/detectnet_v2:/workspace/tao-experiments",
        "-v", "/home/u/tao/detectnet_v2/specs:/workspace/tao-experiments/detectnet_v2/specs",
        "-e", "CLEARML_WEB_HOST",
        "-e", "CLEARML_API_ACCESS_KEY",
        "-e", "CLEARML_API_SECRET_KEY",
        "-u", "1000:1000",
        IMAGE, "detectnet_v2", "train", "-e", "/w/spec.txt",
    )  # fmt: skip
    assert not any("4zamUwmWZHV706OP6lTGcLuTXUZcSz8X0bElSVROpuuysoh0ob" in a for a in argv)


def test_arguments_pass_through_as_single_elements() -> None:
    args = ("train", "-e", "spec file.txt", "it's", '"q"', "$HOME", ";echo INJECTED", "")
    assert build_run_argv(_spec(command=("detectnet_v2", *args)))[-len(args) :] == args


def test_container_name_is_docker_safe() -> None:
    assert container_name("cosmos-embed1", "ab12") == "taoremote-cosmos-embed1-ab12"
    assert container_name("weird task/x", "ab12") == "taoremote-weird-task-x-ab12"


def test_ps_filters_by_label_without_truncation_and_names_fields() -> None:
    assert build_ps_argv(include_stopped=False) == (
        "docker", "ps", "--no-trunc", "--filter", "label=taoremote.job", "--format", PS_TEMPLATE,
    )  # fmt: skip
    assert build_ps_argv(include_stopped=True, job_id="ab")[2:6] == (
        "--all",
        "--no-trunc",
        "--filter",
        "label=taoremote.job=ab",
    )
    assert PS_TEMPLATE.startswith('{"id":{{json .ID}},"name":{{json .Names}},')
    assert '"command":{{json (.Label "taoremote.command")}}' in PS_TEMPLATE


def test_create_has_the_run_flags_but_no_rm_and_start_attaches() -> None:
    # no --rm: a job that outlives its client (SIGHUP) keeps its exit code and logs (DESIGN.md §3)
    assert build_create_argv(_spec(detach=True, interactive=True, tty=True, env_file="/tmp/e")) == (
        "docker", "create", "--init", "-i", "-t",
        "--name", "taoremote-detectnet_v2-0a1b2c3d",
        "--label", "taoremote.job=0a1b2c3d",
        "--gpus", "all",
        "--env-file", "/tmp/e",
        IMAGE, "detectnet_v2", "train", "-e", "/w/spec.txt",
    )  # fmt: skip
    assert build_start_attached_argv("n", interactive=True) == (
        "docker",
        "start",
        "--attach",
        "--interactive",
        "n",
    )
    assert build_start_attached_argv("n", interactive=False) == ("docker", "start", "--attach", "n")


def test_stop_rm_logs_wait_argv() -> None:
    assert build_stop_argv(["a", "b"]) == ("docker", "stop", "--time", "10", "a", "b")
    assert build_rm_argv(["a"], force=True) == ("docker", "rm", "--force", "a")
    # what must never kill a job (prune) removes without force: docker refuses a running container
    assert build_rm_argv(["a", "b"], force=False) == ("docker", "rm", "a", "b")
    assert build_start_argv("a") == ("docker", "start", "a")
    assert build_inspect_state_argv("a") == (
        "docker", "container", "inspect", "--format", "{{json .State}}", "a",
    )  # fmt: skip
    assert build_logs_argv("a", follow=True) == ("docker", "logs", "--follow", "a")
    assert build_logs_argv("a", follow=False) == ("docker", "logs", "a")
    assert build_wait_argv("a") == ("docker", "wait", "a")
    assert build_wait_argv("a", remove=True) == (
        "sh", "-c", 'docker wait "$1" && docker rm --force "$1" >/dev/null', "sh", "a",
    )  # fmt: skip


def test_clean_dir_sends_the_mount_source_and_the_path_below_it_to_the_host_side_checks() -> None:
    # what may be deleted is decided on the host (tests/integration/test_faults_clean.py)
    argv = build_clean_dir_argv("~/tao", "/results/exp1/")
    assert argv[:2] == ("sh", "-c") and argv[3:] == ("sh", "delete", "~/tao", "results/exp1", "")
    assert build_clean_dir_argv("/d", "r", check_only=True)[4] == "check"
    assert build_clean_dir_argv("/d", "r", expected="/d/r")[-1] == "/d/r"


def test_env_file_is_deleted_by_the_same_command_that_reads_it() -> None:
    assert build_then_delete_env_file_argv(("docker", "create", "img"), "/h/.cache/taoremote-env-1/env") == (
        "sh", "-c", 'trap "" HUP; "$@"; rc=$?; rm -f "$0"; rmdir "${0%/*}" 2>/dev/null; exit $rc',
        "/h/.cache/taoremote-env-1/env", "docker", "create", "img",
    )  # fmt: skip


def test_env_file_is_literal_lines() -> None:
    assert format_env_file({"A": "x y", "B": "it's=$HOME"}) == "A=x y\nB=it's=$HOME\n"


def test_render_command_quotes_each_element_once() -> None:
    line = render_command(("docker", "run", "img", "it's", "a b"), {"K": "****"})
    assert line == "K='****' docker run img 'it'\"'\"'s' 'a b'"
