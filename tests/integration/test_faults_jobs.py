"""Job lifecycle under faults, against the real dockerd (issue 7, items 1, 3, 4, 5, 7, 8).

Each test runs as a user of its own (USER/LOGNAME): prune and stop --all act per user, so they touch
only this test's jobs, and the test removes only the containers carrying its user label.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest

from tests.integration.taorun import (
    DEFAULT_SMI,
    base_env,
    docker,
    mine,
    taoremote,
    wait_for,
    write_fake_nvidia_smi,
    write_mounts,
)

pytestmark = pytest.mark.usefixtures("test_images")
IMAGE = "taoremote.test/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5"  # detectnet_v2's image under the test registry
REAL_DOCKER = shutil.which("docker") or "/usr/bin/docker"


def _env(
    tmp_path: Path,
    user: str,
    envs: list[dict[str, object]] | None = None,
    options: dict[str, object] | None = None,
) -> dict[str, str]:
    home = tmp_path / "home"
    (home / "ws").mkdir(parents=True, exist_ok=True)
    (home / "ws" / "spec.txt").write_text("spec\n")  # the preflight checks task paths
    bin_dir = tmp_path / "bin"
    write_fake_nvidia_smi(bin_dir, DEFAULT_SMI.read_text())
    mounts = write_mounts(
        tmp_path / f"mounts-{uuid.uuid4().hex[:6]}.json",
        {
            "Mounts": [{"source": "~/ws", "destination": "/workspace/ws"}],
            "Envs": [{"variable": "PLAIN", "value": "visible"}, *(envs or [])],
            "DockerOptions": options or {},
        },
    )
    return base_env(home, bin_dir, mounts, USER=user, LOGNAME=user)


def _rig(**values: str) -> list[dict[str, object]]:
    return [{"variable": k, "value": v} for k, v in values.items()]


def _containers(user: str) -> list[dict[str, object]]:
    """`docker inspect` of every container of this test's user."""
    ids = docker("ps", "-aq", "--no-trunc", "--filter", f"label=taoremote.user={user}").stdout.split()
    if not ids:
        return []
    return json.loads(docker("inspect", *ids).stdout)


def _states(user: str) -> dict[str, str]:
    return {c["Name"].lstrip("/"): c["State"]["Status"] for c in _containers(user)}  # type: ignore[index]


def _created_job(user: str) -> str:
    """A job between `docker create` and `docker start`, as a launch leaves it for a moment."""
    job = uuid.uuid4().hex[:8]
    name = f"taoremote-detectnet_v2-{job}"
    labels = ["--label", f"taoremote.job={job}", "--label", f"taoremote.user={user}"]
    assert docker("create", "--init", "--name", name, *labels, IMAGE, "sleep", "60").returncode == 0
    return name


def _docker_shim(tmp_path: Path, on_create: str, command: str = "create") -> Path:
    """A `docker` first on PATH that runs `on_create` (shell) before a `docker create` (or another
    `command`), then the real one."""
    shim_dir = tmp_path / "shim"
    shim_dir.mkdir(exist_ok=True)
    shim = shim_dir / "docker"
    shim.write_text(f'#!/bin/sh\nif [ "$1" = {command} ]; then {on_create}; fi\nexec {REAL_DOCKER} "$@"\n')
    shim.chmod(0o755)
    return shim_dir


def _start(args: list[str], env: dict[str, str], tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """taoremote with its output in a file: a docker client left running keeps a pipe open."""
    err = tmp_path / f"err-{uuid.uuid4().hex[:6]}"
    with open(err, "w") as errf, open(tmp_path / "out", "a") as out:
        proc = subprocess.Popen([sys.executable, "-m", "taoremote", *args], env=env, stdout=out, stderr=errf)
    return proc, err


def _reattach_id(stderr: str) -> str:
    return stderr.rsplit("logs -f ", 1)[1].split()[0]


# --------------------------------------------------------------------------------------------- 1 prune


def test_prune_leaves_paused_and_created_jobs_alone(tmp_path: Path, user: str) -> None:
    env = _env(tmp_path, user, _rig(RIG_SLEEP="60"))
    paused = taoremote(["-d", "detectnet_v2", "train"], env).stdout.strip()
    assert docker("pause", f"taoremote-detectnet_v2-{paused}").returncode == 0
    created = _created_job(user)
    finished = taoremote(["-d", "detectnet_v2", "run", "true"], _env(tmp_path, user)).stdout.strip()
    assert wait_for(lambda: _states(user).get(f"taoremote-detectnet_v2-{finished}") == "exited")
    pruned = taoremote(["prune"], env)
    assert pruned.returncode == 0, pruned.stderr
    assert f"removed {finished}" in pruned.stdout
    states = _states(user)
    assert states == {f"taoremote-detectnet_v2-{paused}": "paused", created: "created"}


def test_prune_racing_launches_kills_none(tmp_path: Path, user: str) -> None:
    env = _env(tmp_path, user, _rig(RIG_SLEEP="1"))
    done = False

    def prune_loop() -> int:
        rounds = 0
        while not done:
            taoremote(["prune"], env)
            rounds += 1
        return rounds

    with ThreadPoolExecutor(max_workers=20) as pool:
        pruning = [pool.submit(prune_loop) for _ in range(2)]
        launches = [pool.submit(taoremote, ["detectnet_v2", "train"], env) for _ in range(16)]
        results = [f.result(timeout=300) for f in launches]
        done = True
        assert all(p.result(timeout=120) > 0 for p in pruning)
    codes = [r.returncode for r in results]
    assert codes == [0] * len(results), [r.stderr[-300:] for r in results if r.returncode]


# ---------------------------------------------------------------------------------- 3 SIGHUP in create


def test_sighup_during_create_still_runs_the_job_or_says_it_does_not(tmp_path: Path, user: str) -> None:
    marker = tmp_path / "creating"
    shim = _docker_shim(tmp_path, f"touch {marker}; sleep 3")
    env = _env(tmp_path, user, _rig(RIG_SLEEP="1", RIG_EXIT="3"))
    env["PATH"] = f"{shim}:{env['PATH']}"
    proc, err = _start(["detectnet_v2", "train"], env, tmp_path)
    assert wait_for(marker.exists, timeout=60)
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(timeout=90) == 129, err.read_text()
    stderr = err.read_text()
    assert "the job keeps running. Reattach with: taoremote logs -f" in stderr
    job = _reattach_id(stderr)
    followed = taoremote(["logs", "-f", job], env)
    assert followed.returncode == 3, followed.stderr  # it really ran, to its own exit code
    assert "TASK<detectnet_v2>" in followed.stdout
    assert "created" not in _states(user).values()


# -------------------------------------------------------------------------------- 4 SIGHUP, foreground


def test_sighup_on_a_foreground_job_keeps_its_exit_code_and_logs(tmp_path: Path, user: str) -> None:
    env = _env(tmp_path, user, _rig(RIG_SLEEP="3", RIG_EXIT="5"))
    proc, err = _start(["detectnet_v2", "train", "-e", "/workspace/ws/spec.txt"], env, tmp_path)
    assert wait_for(lambda: "running" in _states(user).values(), timeout=60)
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(timeout=60) == 129, err.read_text()
    job = _reattach_id(err.read_text())
    assert wait_for(lambda: list(_states(user).values()) == ["exited"], timeout=30)
    logs = taoremote(["logs", job], env)
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == "TASK<detectnet_v2>\nARG<train>\nARG<-e>\nARG</workspace/ws/spec.txt>\n"
    rows = mine(json.loads(taoremote(["list", "--all", "--format", "json"], env).stdout), user)
    assert [(r["job"], r["exit_code"]) for r in rows] == [(job, 5)]


def test_a_finished_foreground_job_leaves_nothing(tmp_path: Path, user: str) -> None:
    result = taoremote(["detectnet_v2", "run", "sh", "-c", "echo out; exit 4"], _env(tmp_path, user))
    assert (result.returncode, result.stdout) == (4, "out\n"), result.stderr
    assert _states(user) == {}


# ---------------------------------------------------------------------------------------- 5 stop --all


def test_stop_all_stops_paused_and_created_jobs(tmp_path: Path, user: str) -> None:
    env = _env(tmp_path, user, _rig(RIG_SLEEP="120"))
    paused = taoremote(["-d", "detectnet_v2", "train"], env).stdout.strip()
    assert docker("pause", f"taoremote-detectnet_v2-{paused}").returncode == 0
    created = _created_job(user)
    stopped = taoremote(["stop", "--all"], env)
    assert stopped.returncode == 0, stopped.stderr
    assert f"stopped {paused}" in stopped.stdout
    states = _states(user)
    assert states.get(f"taoremote-detectnet_v2-{paused}") == "exited"
    assert created not in states  # never started: removed, so it cannot start after the stop


def test_stop_all_racing_launches_leaves_none_of_them_running(tmp_path: Path, user: str) -> None:
    env = _env(tmp_path, user, _rig(RIG_SLEEP="120"))
    # foreground launches create, then start: a slow start keeps each of them "created" for a second
    env["PATH"] = f"{_docker_shim(tmp_path, 'sleep 1', command='start')}:{env['PATH']}"
    launch = (["detectnet_v2", "train"], ["-d", "detectnet_v2", "train"])
    with ThreadPoolExecutor(max_workers=20) as pool:
        launches = [pool.submit(taoremote, launch[i % 2], env, 300) for i in range(16)]
        assert wait_for(lambda: len(_states(user)) >= 4, timeout=120)
        began = time.time()
        stopped = taoremote(["stop", "--all"], env)
        time.sleep(3)  # a job that was only created when stop --all listed it would be running by now
        survivors = [
            (c["Name"], c["State"]["Status"])  # type: ignore[index]
            for c in _containers(user)
            if _epoch(str(c["Created"])) < began and c["State"]["Status"] != "exited"  # type: ignore[index]
        ]
        while not all(f.done() for f in launches):  # the launches that came after it end too
            taoremote(["stop", "--all"], env)
            time.sleep(1)
    assert stopped.returncode == 0, stopped.stderr
    assert survivors == []


def _epoch(created: str) -> float:
    """docker's RFC 3339 time with nanoseconds, to seconds since the epoch."""
    stamp, _, frac = created.rstrip("Z").partition(".")
    return datetime.fromisoformat(stamp + "+00:00").timestamp() + float(f"0.{frac or 0}")


# ------------------------------------------------------------------------------------ 8 start failures


def _assert_start_failure(result: subprocess.CompletedProcess[str], reason: str, user: str) -> None:
    assert result.returncode == 69, result.stderr
    ours = [ln for ln in result.stderr.splitlines() if ln.startswith("taoremote: error")]
    assert len(ours) == 1 and "could not start" in ours[0] and reason in ours[0], result.stderr
    assert "Traceback" not in result.stderr
    assert _states(user) == {}


def test_unknown_user_is_a_docker_failure_not_a_task_exit(tmp_path: Path, user: str) -> None:
    result = taoremote(["detectnet_v2", "train"], _env(tmp_path, user, options={"user": "nosuchuser"}))
    _assert_start_failure(result, "unable to find user nosuchuser", user)


def test_refused_mount_is_a_docker_failure_not_a_task_exit(tmp_path: Path, user: str) -> None:
    env = _env(tmp_path, user)
    (tmp_path / "a-file").write_text("x")
    doc = json.loads(Path(env["LAUNCHER_MOUNTS"]).read_text())
    doc["Mounts"].append({"source": str(tmp_path / "a-file"), "destination": "/tmp"})  # a file onto a dir
    env["LAUNCHER_MOUNTS"] = str(write_mounts(tmp_path / "file-on-dir.json", doc))
    result = taoremote(["detectnet_v2", "train"], env)
    _assert_start_failure(result, "not a directory", user)


# ------------------------------------------------------------------------------------- private dockerd


class PrivateDockerd:
    """A dockerd of this test module's own: own socket, data-root, exec-root, pidfile and bridge, and no
    NVIDIA hook on its PATH. It can be frozen (SIGSTOP) without touching anyone else's containers."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="trd-", dir="/tmp"))  # short: socket paths are limited
        self.bridge = f"trd{uuid.uuid4().hex[:8]}"
        self.host = f"unix://{self.root}/docker.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        octet = int(self.bridge[-2:], 16) % 200 + 20
        for cmd in (
            ["ip", "link", "add", self.bridge, "type", "bridge"],
            ["ip", "addr", "add", f"172.31.{octet}.1/24", "dev", self.bridge],
            ["ip", "link", "set", self.bridge, "up"],
        ):
            subprocess.run(cmd, check=True, capture_output=True)
        with open(self.root / "dockerd.log", "wb") as log:
            self.proc = subprocess.Popen(
                [
                    "dockerd",
                    *("--data-root", str(self.root / "data"), "--exec-root", str(self.root / "x")),
                    *("--pidfile", str(self.root / "dockerd.pid"), "-H", self.host),
                    *("--bridge", self.bridge, "--iptables=false", "--ip-masq=false"),
                    *("--storage-driver", "vfs"),
                ],
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},  # no nvidia-container-runtime-hook
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        if not wait_for(lambda: self.docker("info").returncode == 0, timeout=60, interval=0.5):
            raise RuntimeError((self.root / "dockerd.log").read_text()[-2000:])
        save = subprocess.Popen([REAL_DOCKER, "save", IMAGE], stdout=subprocess.PIPE)
        loaded = subprocess.run(
            [REAL_DOCKER, "load", "-q"], stdin=save.stdout, env={**os.environ, "DOCKER_HOST": self.host}
        )
        assert save.wait() == 0 and loaded.returncode == 0

    def docker(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DOCKER_HOST": self.host}
        return subprocess.run([REAL_DOCKER, *args], env=env, capture_output=True, text=True, timeout=60)

    def freeze_command(self) -> str:
        assert self.proc is not None
        return f"kill -STOP {self.proc.pid}"

    def thaw(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None:
            self.thaw()
            ids = self.docker("ps", "-aq").stdout.split()
            if ids:
                self.docker("rm", "-f", *ids)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        subprocess.run(["umount", "-R", str(self.root / "x")], capture_output=True)
        subprocess.run(["umount", "-R", str(self.root / "data")], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def private_dockerd(docker_engine: str, test_images: str) -> Iterator[PrivateDockerd]:
    daemon = PrivateDockerd()
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.stop()


def test_no_nvidia_runtime_is_a_docker_failure_not_a_task_exit(
    tmp_path: Path, user: str, private_dockerd: PrivateDockerd
) -> None:
    env = {**_env(tmp_path, user), "DOCKER_HOST": private_dockerd.host}
    result = taoremote(["--no-preflight", "--gpus", "all", "detectnet_v2", "train"], env)
    assert result.returncode == 69, result.stderr
    ours = [ln for ln in result.stderr.splitlines() if ln.startswith("taoremote: error")]
    assert len(ours) == 1 and "no NVIDIA GPU support" in ours[0], result.stderr
    assert private_dockerd.docker("ps", "-aq").stdout.strip() == ""


@pytest.mark.parametrize("interrupt", [False, True], ids=["deadline", "ctrl-c"])
def test_frozen_daemon_during_create_fails_in_time(
    tmp_path: Path, user: str, private_dockerd: PrivateDockerd, interrupt: bool
) -> None:
    marker = tmp_path / "creating"
    shim = _docker_shim(tmp_path, f"touch {marker}; {private_dockerd.freeze_command()}")
    env = {**_env(tmp_path, user), "DOCKER_HOST": private_dockerd.host}
    env["PATH"] = f"{shim}:{env['PATH']}"
    try:
        proc, err = _start(["--no-preflight", "detectnet_v2", "train"], env, tmp_path)
        assert wait_for(marker.exists, timeout=60)
        began = time.monotonic()
        if interrupt:
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
        took = time.monotonic() - began
        stderr = err.read_text()
        assert "Traceback" not in stderr
        if interrupt:
            assert (code, took < 30) == (130, True), (took, stderr)
        else:
            assert (code, took < 60) == (69, True), (took, stderr)
            assert "did not answer" in stderr
    finally:
        private_dockerd.thaw()
        assert wait_for(lambda: private_dockerd.docker("info").returncode == 0, timeout=60)
        ids = private_dockerd.docker("ps", "-aq").stdout.split()
        if ids:
            private_dockerd.docker("rm", "-f", *ids)
