"""The Slurm backend's remaining gaps (issue 10), against the real one-node test cluster, the real dockerd
and the test sshd: a lost SSH link while following leaves the job to Slurm and says how to reattach; a
dry run shows the batch script and the sbatch argv; `stop` of a job array by its base id stops every
task, of one task id that task only; a job directory whose submit died before sbatch answered is pruned
once it is provably no job, never while a submit may still be under way."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import SshdFactory, SshHost
from tests.integration.taorun import (
    REPO,
    SESSION_USER,
    base_env,
    mine,
    session_job_ids,
    start_taoremote,
    taoremote,
    wait_for,
    write_mounts,
)

pytestmark = pytest.mark.usefixtures("test_images", "clean_jobs", "slurm_cluster")
SECRET = "s3cr3t-gaps-" + uuid.uuid4().hex[:8]
JOBS_DIR = ".cache/taoremote/slurm"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    ws = tmp_path / "ws"
    ws.mkdir(exist_ok=True)
    doc = {
        "Mounts": [{"source": str(ws), "destination": "/workspace/ws"}],
        "Envs": [{"variable": "API_TOKEN", "value": SECRET}],
    }
    (tmp_path / "home").mkdir(exist_ok=True)
    return base_env(tmp_path / "home", None, write_mounts(tmp_path / "mounts.json", doc), **extra)


def _squeue(slurm_id: str) -> dict[str, str]:
    """Slurm id (array tasks one by one) -> state, of this job or job array."""
    out = subprocess.run(
        ["squeue", "-h", "-r", "-j", slurm_id, "-t", "all", "-o", "%i %T"], capture_output=True, text=True
    )
    return dict(line.split() for line in out.stdout.splitlines() if line.strip())


def _squeue_states(slurm_id: str) -> list[str]:
    return list(_squeue(slurm_id).values())


def _live(slurm_id: str) -> bool:
    return any(s in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING") for s in _squeue_states(slurm_id))


def _rows(options: list[str], env: dict[str, str]) -> list[dict[str, object]]:
    listed = taoremote([*options, "list", "--all", "--format", "json"], env)
    assert listed.returncode == 0, listed.stderr
    return mine(json.loads(listed.stdout))


# ---------------------------------------------------------------------------------------------- gap 1


@pytest.fixture(scope="module")
def login_host(sshd_factory: SshdFactory) -> SshHost:
    """A login node of our own: cutting its links must not cut another test's."""
    return sshd_factory.start("slurm-login-lost")


def test_a_lost_link_leaves_the_slurm_job_running_exits_255_and_the_reattach_command_gets_its_exit_code(
    tmp_path: Path, login_host: SshHost, sshd_factory: SshdFactory
) -> None:
    env = _env(tmp_path)
    options = ["--ssh-config", str(login_host.ssh_config_path), "--slurm", login_host.name]
    proc = start_taoremote(
        [*options, "detectnet_v2", "run", "sh", "-c", "echo started; sleep 8; exit 7"], env
    )
    assert wait_for(lambda: session_job_ids(include_stopped=False) != "", timeout=60)
    (row,) = _rows(options, env)
    slurm_id, job_id = str(row["container_id"]), str(row["job"])
    time.sleep(1)  # following the output now

    assert sshd_factory.kill_connections(login_host)
    _, err = proc.communicate(timeout=60)

    assert proc.returncode == 255, err
    assert "Traceback" not in err
    assert _live(slurm_id), "the job must outlive the link"
    reattach = err.split("Reattach with: ", 1)[1].strip().split()
    assert reattach == ["taoremote", *options, "logs", "-f", job_id]
    followed = taoremote(reattach[1:], env, timeout=90)
    assert followed.returncode == 7, followed.stderr
    assert "started" in followed.stdout
    assert _run_ok([*options, "prune"], env)


def _run_ok(args: list[str], env: dict[str, str]) -> bool:
    done = taoremote(args, env)
    assert done.returncode == 0, done.stderr
    return True


# ---------------------------------------------------------------------------------------------- gap 2


def test_dry_run_with_slurm_prints_the_batch_script_and_the_sbatch_argv_and_runs_nothing(
    tmp_path: Path,
) -> None:
    env = _env(tmp_path)
    before = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split()

    done = taoremote(
        ["--slurm", "local", "--sbatch", "--time=10", "--container-runtime", "docker", "--gpus", "1",
         "--dry-run", "detectnet_v2", "train", "-e", "/workspace/ws/spec file.txt", "-k", "key"],
        env,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    out = done.stdout
    job_dir = f"{tmp_path}/home/{JOBS_DIR}/"
    assert out.startswith("#!/bin/bash\n#SBATCH --job-name=taoremote-detectnet_v2-")
    assert "#SBATCH --gpus=1" in out and "--env-file" in out
    assert "'/workspace/ws/spec file.txt'" in out  # the task's arguments, quoted once
    (argv_line,) = [line for line in out.splitlines() if line.startswith("# sbatch argv: ")]
    argv = json.loads(argv_line.removeprefix("# sbatch argv: "))
    assert argv[:3] == ["sbatch", "--parsable", "--time=10"]
    assert argv[3].startswith(job_dir) and argv[3].endswith("/job.sbatch")
    assert "API_TOKEN=****" in out and SECRET not in out + done.stderr
    assert not out.startswith("docker run") and "\ndocker run --rm" not in out
    assert not (tmp_path / "home" / JOBS_DIR).exists()  # no job directory
    after = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split()
    assert set(after) <= set(before) | _others_since(before)


def _others_since(before: list[str]) -> set[str]:
    """Jobs other sessions submitted meanwhile (not taoremote's of this tmp home: those we check by dir)."""
    out = subprocess.run(["squeue", "-h", "-o", "%i %k"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.split()[0] not in before}


# ---------------------------------------------------------------------------------------------- gap 3


def _submit_array(env: dict[str, str], tasks: int, seconds: int) -> tuple[str, str]:
    """A 4-task job array through the backend's own submit (what `sweep run` will hand it); job id and
    Slurm id. Runs as taoremote runs, in its own process with this test's HOME and user."""
    code = f"""
import sys
from taoremote.command import RunSpec
from taoremote.hosts import LocalExecutor
from taoremote.slurm import SlurmBackend
from taoremote.slurm_login import SlurmOptions
tasks = tuple(("sh", "-c", "echo task $0; sleep {seconds}", str(i)) for i in range({tasks}))
labels = (("taoremote.user", {SESSION_USER!r}), ("taoremote.command", "array test"))
spec = RunSpec({_image()!r}, (), sys.argv[1], "demo", labels=labels, gpus="none", detach=True)
b = SlurmBackend(LocalExecutor(), SlurmOptions(runtime="docker"))
sid, _ = b.submit(spec, {{}}, task_commands=tasks, max_parallel=2)
print(spec.job_id, sid)
"""
    job_id = uuid.uuid4().hex[:8]
    done = subprocess.run(
        [sys.executable, "-c", code, job_id], env=env, capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    jid, sid = done.stdout.split()
    return jid, sid


def _image() -> str:
    return "taoremote.test/demo:latest"


def test_stop_of_an_array_by_its_base_id_stops_every_task_and_of_a_task_id_that_task_only(
    tmp_path: Path,
) -> None:
    env = _env(tmp_path)
    options = ["--slurm", "local"]
    whole_id, whole_sid = _submit_array(env, 4, 300)
    one_id, one_sid = _submit_array(env, 4, 300)
    assert wait_for(lambda: "RUNNING" in _squeue_states(whole_sid), timeout=180)

    task = taoremote([*options, "stop", f"{one_id}-1"], env, timeout=120)
    whole = taoremote([*options, "stop", whole_id], env, timeout=120)

    assert task.returncode == 0, task.stderr
    assert task.stdout.splitlines() == [f"stopped {one_id}-1 (taoremote-demo-{one_id}-1)"]
    assert whole.returncode == 0, whole.stderr
    assert sorted(whole.stdout.splitlines()) == [
        f"stopped {whole_id}-{i} (taoremote-demo-{whole_id}-{i})" for i in range(4)
    ]
    assert wait_for(lambda: not _live(whole_sid), timeout=60)
    states = _squeue(one_sid)
    assert states.get(f"{one_sid}_1") == "CANCELLED"
    live = [i for i in range(4) if states.get(f"{one_sid}_{i}") in ("PENDING", "RUNNING")]
    assert live == [0, 2, 3]
    stopped = taoremote([*options, "stop", one_id], env, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert wait_for(lambda: not _live(one_sid), timeout=120)
    # each cancelled task's TERM trap stops its container and the script removes it: slow on a loaded node
    assert wait_for(lambda: session_job_ids() == "", timeout=120)
    assert _run_ok([*options, "prune"], env)


# ---------------------------------------------------------------------------------------------- gap 4


def test_a_submit_killed_before_sbatch_answered_is_pruned_once_provably_no_job_and_never_while_young(
    tmp_path: Path,
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    started = tmp_path / "sbatch-started"
    (bin_dir / "sbatch").write_text(f"#!/bin/sh\n: >{started}\nexec sleep 300\n")  # sbatch never answers
    (bin_dir / "sbatch").chmod(0o755)
    env = _env(tmp_path)
    hung_env = {**env, "PATH": f"{bin_dir}:{env['PATH']}"}
    options = ["--slurm", "local"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "taoremote", *options, "-d", "detectnet_v2", "run", "true"],
        env=hung_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=REPO, start_new_session=True,
    )  # fmt: skip
    try:
        assert wait_for(started.exists, timeout=60)
    finally:
        _kill_tree(proc)
    jobs_root = tmp_path / "home" / JOBS_DIR
    (killed,) = list(jobs_root.iterdir())
    (row,) = _rows(options, env)
    assert (row["job"], row["status"]) == (killed.name, "submitting")

    young = taoremote([*options, "prune"], env)
    assert young.returncode == 0 and killed.name not in young.stdout, young.stdout + young.stderr
    assert killed.exists()  # a submit may still be under way

    # a real job whose sbatch answered but whose id was never recorded: Slurm names it by its comment
    real = taoremote([*options, "-d", "detectnet_v2", "run", "sleep", "300"], env)
    assert real.returncode == 0, real.stderr
    real_dir = jobs_root / real.stdout.strip()
    (real_dir / "slurm_id").unlink()
    old = time.time() - 3600
    for d in (killed, real_dir):
        os.utime(d / "meta", (old, old))

    pruned = taoremote([*options, "prune"], env)

    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.splitlines() == [f"removed {killed.name} (submitting)"]
    assert not killed.exists() and real_dir.exists()
    stopped = taoremote([*options, "stop", real_dir.name], env, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert wait_for(lambda: session_job_ids() == "", timeout=60)
    assert _run_ok([*options, "prune"], env)
    assert list(jobs_root.iterdir()) == []


def _kill_tree(proc: subprocess.Popen[str]) -> None:
    """SIGKILL taoremote and what it started (its own session: the fake sbatch is in the submit's)."""
    from tests.proctree import descendants, ppid_map

    for pid in [proc.pid, *descendants(proc.pid, ppid_map())]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.communicate(timeout=30)
