"""Local launches against the real Docker engine: exit codes, argument fidelity, signals, jobs, errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.taorun import (
    DEFAULT_SMI,
    SESSION_LABEL,
    base_env,
    docker,
    mine,
    run_in_terminal,
    running_job_names,
    session_job_ids,
    session_user,
    start_taoremote,
    taoremote,
    wait_for,
    write_fake_nvidia_smi,
    write_mounts,
)

pytestmark = pytest.mark.usefixtures("test_images", "clean_jobs")
SECRET = "s3cr3t-Value-4zamUwmWZHV706OP6lTG"


@pytest.fixture
def rig(tmp_path: Path) -> dict[str, str]:
    """A home with a mounts file, a workspace to mount, and a GPU host's nvidia-smi on PATH."""
    home = tmp_path / "home"
    (home / "ws").mkdir(parents=True)
    (home / "ws" / "spec.txt").write_text("spec\n")
    bin_dir = tmp_path / "bin"
    write_fake_nvidia_smi(bin_dir, DEFAULT_SMI.read_text())
    mounts = write_mounts(
        tmp_path / "mounts.json",
        {
            "Mounts": [{"source": "~/ws", "destination": "/workspace/ws"}],
            "Envs": [{"variable": "API_TOKEN", "value": SECRET}, {"variable": "PLAIN", "value": "visible"}],
            "DockerOptions": {},
        },
    )
    return base_env(home, bin_dir, mounts)


def _with_env(rig: dict[str, str], tmp_path: Path, envs: list[dict[str, str]]) -> dict[str, str]:
    doc = json.loads(Path(rig["LAUNCHER_MOUNTS"]).read_text())
    doc["Envs"] = doc["Envs"] + envs
    path = write_mounts(tmp_path / f"mounts-{len(envs)}-{time.monotonic_ns()}.json", doc)
    return {**rig, "LAUNCHER_MOUNTS": str(path)}


def test_task_exit_code_is_taoremotes_exit_code(rig: dict[str, str], tmp_path: Path) -> None:
    env = _with_env(rig, tmp_path, [{"variable": "RIG_EXIT", "value": "3"}])
    result = taoremote(["detectnet_v2", "train", "-e", "/workspace/ws/spec.txt"], env)
    assert result.returncode == 3, result.stderr
    assert "TASK<detectnet_v2>" in result.stdout


def test_arguments_arrive_exactly_as_given(rig: dict[str, str]) -> None:
    args = ["-e", "spec file.txt", "it's", 'a"b', "$HOME", ";echo INJECTED", "", "x\ty", "*.json"]
    result = taoremote(["detectnet_v2", "train", *args], rig)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "TASK<detectnet_v2>"
    expected = ["ARG<train>", *(f"ARG<{a}>" for a in args)]
    # "x\ty" prints on one line; the stub prints every arg on its own line
    assert result.stdout.split("\n")[1 : 1 + len(expected)] == expected
    assert "INJECTED" not in result.stdout.replace("ARG<;echo INJECTED>", "")


def test_task_group_grammar_and_run_keyword(rig: dict[str, str]) -> None:
    result = taoremote(["model", "dino", "run", "sh", "-c", 'echo "$PLAIN" "$1"', "sh", "one arg"], rig)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "visible one arg\n"


def test_mount_is_bound_and_user_option_applies(rig: dict[str, str], tmp_path: Path) -> None:
    result = taoremote(["detectnet_v2", "run", "cat", "/workspace/ws/spec.txt"], rig)
    assert (result.returncode, result.stdout) == (0, "spec\n"), result.stderr


def test_no_subtask_without_terminal_explains_why(rig: dict[str, str]) -> None:
    result = taoremote(["detectnet_v2"], rig)
    assert result.returncode == 2
    assert "needs a terminal" in result.stderr
    assert running_job_names() == []


def test_dry_run_prints_quoted_command_masks_secrets_runs_nothing(rig: dict[str, str]) -> None:
    result = taoremote(["--dry-run", "detectnet_v2", "train", "-e", "spec file.txt"], rig)
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout
    assert "#   API_TOKEN=****" in result.stdout and "#   PLAIN=visible" in result.stdout
    assert "'spec file.txt'" in result.stdout
    assert "docker run --rm --init --name taoremote-detectnet_v2-" in result.stdout
    assert "taoremote.test/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5 detectnet_v2 train -e" in result.stdout
    assert session_job_ids() == ""


def test_secret_values_never_appear_in_any_process_argv(rig: dict[str, str], tmp_path: Path) -> None:
    env = _with_env(rig, tmp_path, [{"variable": "RIG_SLEEP", "value": "30"}])
    proc = start_taoremote(["detectnet_v2", "train"], env)
    try:
        assert wait_for(lambda: running_job_names() != [], timeout=30)
        leaks = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    cmdline = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                if SECRET.encode() in cmdline:
                    leaks.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
        assert leaks == []
        name = running_job_names()[0]
        inside = docker("exec", name, "sh", "-c", 'printf %s "$API_TOKEN"')
        assert inside.stdout == SECRET  # and yet the container has it
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_the_container_and_exits_128_plus_signal(
    rig: dict[str, str], tmp_path: Path, signum: int, code: int
) -> None:
    env = _with_env(rig, tmp_path, [{"variable": "RIG_SLEEP", "value": "120"}])
    proc = start_taoremote(["detectnet_v2", "train"], env)
    assert wait_for(lambda: running_job_names() != [], timeout=30)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert wait_for(lambda: session_job_ids() == "", timeout=15)


def test_detach_prints_job_id_then_logs_follow_returns_its_exit_code(
    rig: dict[str, str], tmp_path: Path
) -> None:
    env = _with_env(
        rig, tmp_path, [{"variable": "RIG_EXIT", "value": "5"}, {"variable": "RIG_SLEEP", "value": "2"}]
    )
    started = taoremote(["-d", "detectnet_v2", "train", "-r", "/workspace/ws/out"], env)
    assert started.returncode == 0, started.stderr
    job = started.stdout.strip()
    assert len(job) == 8
    followed = taoremote(["logs", "-f", job], env)
    assert followed.returncode == 5
    assert "ARG<-r>" in followed.stdout
    listed = taoremote(["list", "--all", "--format", "json"], env)
    rows = mine(json.loads(listed.stdout))
    assert [(r["job"], r["exit_code"], r["task"]) for r in rows] == [(job, 5, "detectnet_v2")]
    assert taoremote(["logs", job], env).stdout.startswith("TASK<detectnet_v2>")
    pruned = taoremote(["prune"], env)
    assert job in pruned.stdout
    assert mine(json.loads(taoremote(["list", "--all", "--format", "json"], env).stdout)) == []


def test_list_table_shows_running_jobs(rig: dict[str, str], tmp_path: Path) -> None:
    env = _with_env(rig, tmp_path, [{"variable": "RIG_SLEEP", "value": "60"}])
    job = taoremote(["-d", "yolo_v4", "train", "-e", "/workspace/ws/spec.txt"], env).stdout.strip()
    table = taoremote(["list"], env)
    assert table.returncode == 0
    header, _, *rows = table.stdout.splitlines()
    assert header.split() == ["job", "container_id", "task", "status", "exit_code", "gpus", "user", "command"]
    (row,) = [r for r in rows if r.split()[0] == job]  # other sessions' jobs may share the daemon
    assert "yolo_v4 train -e /workspace/ws/spec.txt" in row


def test_stop_known_and_unknown_ids(rig: dict[str, str], tmp_path: Path) -> None:
    env = _with_env(rig, tmp_path, [{"variable": "RIG_SLEEP", "value": "120"}])
    a = taoremote(["-d", "detectnet_v2", "train"], env).stdout.strip()
    b = taoremote(["-d", "detectnet_v2", "train"], env).stdout.strip()
    result = taoremote(["stop", "--container_id", a, "deadbeef", b], env)
    assert result.returncode == 1
    assert f"stopped {a}" in result.stdout and f"stopped {b}" in result.stdout
    assert "no taoremote job 'deadbeef'" in result.stderr
    assert running_job_names() == []


def test_stop_all_never_touches_other_containers(
    rig: dict[str, str], tmp_path: Path, test_images: str
) -> None:
    env = _with_env(rig, tmp_path, [{"variable": "RIG_SLEEP", "value": "120"}])
    image = f"{test_images}/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5"
    foreign = docker(
        "run", "-d", "--rm", "--init", "--label", SESSION_LABEL, image, "sleep", "120"
    ).stdout.strip()
    try:
        taoremote(["-d", "detectnet_v2", "train"], env)
        result = taoremote(["stop", "--all"], env)
        assert result.returncode == 0, result.stderr
        assert running_job_names() == []
        assert docker("inspect", "--format", "{{.State.Running}}", foreign).stdout.strip() == "true"
    finally:
        docker("rm", "-f", foreign)


def test_missing_image_is_one_line_exit_69_nothing_created(rig: dict[str, str]) -> None:
    result = taoremote(["--image", "taoremote.test/absent:1", "detectnet_v2", "train"], rig)
    assert result.returncode == 69
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, result.stderr
    assert "image taoremote.test/absent:1 is missing and could not be pulled" in errors[0]
    assert "Traceback" not in result.stderr
    assert session_job_ids() == ""


def test_daemon_down_is_exit_69(rig: dict[str, str]) -> None:
    env = {**rig, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    result = taoremote(["--no-preflight", "detectnet_v2", "train"], env)
    assert result.returncode == 69
    assert "not running or not reachable" in result.stderr
    assert "Traceback" not in result.stderr


def test_docker_missing_is_exit_69(rig: dict[str, str], tmp_path: Path) -> None:
    env = {**rig, "PATH": str(tmp_path / "bin")}  # only the fake nvidia-smi, no docker
    result = taoremote(["list"], env)
    assert result.returncode == 69
    assert "docker: command not found" in result.stderr


def test_missing_mount_source_is_an_error_before_launch(rig: dict[str, str], tmp_path: Path) -> None:
    mounts = write_mounts(
        tmp_path / "m.json", {"Mounts": [{"source": "~/nope", "destination": "/workspace/nope"}]}
    )
    result = taoremote(["detectnet_v2", "train"], {**rig, "LAUNCHER_MOUNTS": str(mounts)})
    assert result.returncode == 69
    assert "~/nope -> /workspace/nope" in result.stderr
    assert session_job_ids() == ""


def test_config_error_and_usage_error_exit_codes(rig: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"Mounts": [{"source": "/x", "destination": "rel"}]}')
    result = taoremote(["detectnet_v2", "train"], {**rig, "LAUNCHER_MOUNTS": str(bad)})
    assert result.returncode == 78
    assert "$.Mounts[0].destination" in result.stderr and "Traceback" not in result.stderr
    unknown = taoremote(["detectnet_v3", "train"], rig)
    assert unknown.returncode == 2 and "known tasks:" in unknown.stderr


def test_runs_with_no_tty_from_a_pipe(rig: dict[str, str]) -> None:
    proc = subprocess.run(
        ["sh", "-c", f"echo hi | {sys.executable} -m taoremote detectnet_v2 train x | cat"],
        env=rig,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ARG<x>" in proc.stdout


def test_ctrl_c_in_logs_follow_stops_following_not_the_job(rig: dict[str, str], tmp_path: Path) -> None:
    env = _with_env(rig, tmp_path, [{"variable": "RIG_SLEEP", "value": "60"}])
    job = taoremote(["-d", "detectnet_v2", "train"], env).stdout.strip()
    follower = start_taoremote(["logs", "-f", job], env)
    assert wait_for(lambda: running_job_names() != [], timeout=30)
    time.sleep(1)  # let `docker logs -f` attach before interrupting it
    follower.send_signal(signal.SIGINT)
    follower.communicate(timeout=30)
    assert follower.returncode == 130
    assert running_job_names() != []  # the job goes on


def test_no_subtask_opens_an_interactive_shell_in_a_terminal(rig: dict[str, str]) -> None:
    argv = [sys.executable, "-m", "taoremote", "detectnet_v2"]
    code, screen = run_in_terminal(argv, rig, ["echo inside-$((40+2)) $PLAIN", "exit 4"], ready="/ #")
    assert code == 4, screen
    assert "inside-42 visible" in screen
    assert running_job_names() == []


def test_task_exit_code_125_is_the_tasks_not_a_docker_failure(rig: dict[str, str], tmp_path: Path) -> None:
    env = _with_env(rig, tmp_path, [{"variable": "RIG_EXIT", "value": "125"}])
    result = taoremote(["detectnet_v2", "train"], env)
    assert result.returncode == 125, result.stderr
    assert "error" not in result.stderr


def test_envs_reach_the_container_but_never_reconfigure_the_docker_client(
    rig: dict[str, str], tmp_path: Path
) -> None:
    env = _with_env(
        rig,
        tmp_path,
        [{"variable": "DOCKER_HOST", "value": "tcp://192.0.2.1:2375"}, {"variable": "HOME", "value": "/w"}],
    )
    tmpdir = tmp_path / "tmp"  # this run's own TMPDIR: other runs' env-files are none of its business
    tmpdir.mkdir()
    env["TMPDIR"] = str(tmpdir)
    result = taoremote(["detectnet_v2", "run", "sh", "-c", 'echo "$DOCKER_HOST $HOME"'], env)
    assert (result.returncode, result.stdout) == (0, "tcp://192.0.2.1:2375 /w\n"), result.stderr
    assert list(tmpdir.iterdir()) == []  # the env-file went once the container existed


def test_sighup_leaves_a_foreground_job_running_and_says_how_to_reattach(
    rig: dict[str, str], tmp_path: Path
) -> None:
    env = _with_env(rig, tmp_path, [{"variable": "RIG_SLEEP", "value": "60"}])
    # files, not pipes: the still-running docker client keeps its copy of the output open
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as errf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "taoremote", "detectnet_v2", "train"], env=env, stdout=out, stderr=errf
        )
    assert wait_for(lambda: running_job_names() != [], timeout=30)
    proc.send_signal(signal.SIGHUP)
    proc.wait(timeout=60)
    err = (tmp_path / "err").read_text()
    assert proc.returncode == 129, err
    assert "the job keeps running. Reattach with: taoremote logs -f" in err
    assert running_job_names() != []


def test_stop_all_and_prune_touch_only_your_own_jobs_unless_all_users(
    rig: dict[str, str], tmp_path: Path
) -> None:
    env = _with_env(rig, tmp_path, [{"variable": "RIG_SLEEP", "value": "60"}])
    alice = {**env, "USER": session_user("alice"), "LOGNAME": session_user("alice")}
    bob = {**env, "USER": session_user("bob"), "LOGNAME": session_user("bob")}
    job = taoremote(["-d", "detectnet_v2", "train"], alice).stdout.strip()
    rows = json.loads(taoremote(["list", "--format", "json"], bob).stdout)
    # the daemon is shared with other sessions: look at this session's users only
    ours = [(r["job"], r["user"]) for r in rows if r["user"].startswith(session_user())]
    assert ours == [(job, session_user("alice"))]
    assert taoremote(["stop", "--all"], bob).stdout.strip() == "No running taoremote jobs."
    assert running_job_names() != []
    stopped = taoremote(["stop", "--all", "--all-users"], bob)
    assert f"stopped {job}" in stopped.stdout
    assert job not in taoremote(["prune"], bob).stdout
    assert job in taoremote(["prune"], alice).stdout


def test_tilde_user_mount_sources_expand_like_the_launcher(rig: dict[str, str], tmp_path: Path) -> None:
    mounts = write_mounts(
        tmp_path / "tilde.json", {"Mounts": [{"source": "~root", "destination": "/workspace/r"}]}
    )
    env = {**rig, "LAUNCHER_MOUNTS": str(mounts)}
    dry = taoremote(["--dry-run", "detectnet_v2", "train"], env)
    assert "-v /root:/workspace/r" in dry.stdout
    result = taoremote(["detectnet_v2", "run", "ls", "-d", "/workspace/r"], env)
    assert (result.returncode, result.stdout) == (0, "/workspace/r\n"), result.stderr


def test_closed_output_stops_the_job_and_exits_141(rig: dict[str, str], tmp_path: Path) -> None:
    env = _with_env(rig, tmp_path, [])
    script = "for i in $(seq 1 200); do echo line $i; sleep 0.5; done"  # 100 s unless stopped
    with open(tmp_path / "err", "w") as errf:
        taoremote_proc = subprocess.Popen(
            [sys.executable, "-m", "taoremote", "detectnet_v2", "run", "sh", "-c", script],
            env=env,
            stdout=subprocess.PIPE,
            stderr=errf,
        )
    assert taoremote_proc.stdout is not None
    assert taoremote_proc.stdout.readline() == b"line 1\n"
    taoremote_proc.stdout.close()  # what `| head -1` does
    assert taoremote_proc.wait(timeout=60) == 141, (tmp_path / "err").read_text()
    assert session_job_ids() == ""


def test_closed_stdout_and_stderr_still_stop_the_job(rig: dict[str, str], tmp_path: Path) -> None:
    script = "for i in $(seq 1 200); do echo line $i; sleep 0.5; done"
    proc = subprocess.Popen(
        [sys.executable, "-m", "taoremote", "detectnet_v2", "run", "sh", "-c", script],
        env=rig,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # `2>&1 | head -1`
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"line 1\n"
    proc.stdout.close()
    assert proc.wait(timeout=60) == 141
    assert session_job_ids() == ""


def test_under_nohup_a_hangup_changes_nothing(rig: dict[str, str], tmp_path: Path) -> None:
    env = _with_env(
        rig, tmp_path, [{"variable": "RIG_SLEEP", "value": "3"}, {"variable": "RIG_EXIT", "value": "4"}]
    )
    with open(tmp_path / "out", "w") as out:
        proc = subprocess.Popen(
            ["nohup", sys.executable, "-m", "taoremote", "detectnet_v2", "train"],
            env=env,
            stdout=out,
            stderr=out,
        )
    assert wait_for(lambda: running_job_names() != [], timeout=30)
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(timeout=60) == 4  # the task's own code: the hang-up was ignored, as nohup asked
