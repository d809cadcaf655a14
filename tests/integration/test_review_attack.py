"""Second reading of "Trust under faults" (issue 7): attacks that got through, against the real dockerd
and sshd. Each test runs as a user of its own, so it sees and removes only its own jobs."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import SshdFactory, SshHost
from tests.integration.taorun import (
    DEFAULT_SMI,
    base_env,
    docker,
    wait_for,
    write_fake_nvidia_smi,
    write_mounts,
)

pytestmark = pytest.mark.usefixtures("test_images")
REAL_DOCKER = shutil.which("docker") or "/usr/bin/docker"


def _states(user: str) -> dict[str, str]:
    ids = docker("ps", "-aq", "--no-trunc", "--filter", f"label=taoremote.user={user}").stdout.split()
    if not ids:
        return {}
    return {c["Name"].lstrip("/"): c["State"]["Status"] for c in json.loads(docker("inspect", *ids).stdout)}


def _env(tmp_path: Path, user: str, envs: list[dict[str, str]] | None = None) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    bin_dir = tmp_path / "bin"
    write_fake_nvidia_smi(bin_dir, DEFAULT_SMI.read_text())
    doc = {"Mounts": [], "Envs": envs or []}
    mounts = write_mounts(tmp_path / f"mounts-{uuid.uuid4().hex[:6]}.json", doc)
    return base_env(home, bin_dir, mounts, USER=user, LOGNAME=user)


def _slow_docker(bin_dir: Path, command: str, seconds: int, marker: Path) -> None:
    """A `docker` first on PATH whose COMMAND (create, run) waits SECONDS before it begins, as a
    daemon busy with GPU hooks does; MARKER appears when it has been asked."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    shim = bin_dir / "docker"
    shim.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = {command} ]; then touch "{marker}"; sleep {seconds}; fi\n'
        f'exec {REAL_DOCKER} "$@"\n'
    )
    shim.chmod(0o755)


def _start(args: list[str], env: dict[str, str], tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    err = tmp_path / f"err-{uuid.uuid4().hex[:6]}"
    with open(err, "w") as errf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "taoremote", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errf,
        )
    return proc, err


# ------------------------------------------------------------------------------ Ctrl-C twice in create


def test_a_second_ctrl_c_during_create_leaves_no_created_container(tmp_path: Path, user: str) -> None:
    """The user presses Ctrl-C, then again while taoremote waits for the create to finish: the create
    must not finish behind our back and leave a container that nobody will ever start or remove."""
    marker = tmp_path / "creating"
    _slow_docker(tmp_path / "shim", "create", 3, marker)
    env = _env(tmp_path, user)
    env["PATH"] = f"{tmp_path / 'shim'}:{env['PATH']}"
    proc, err = _start(["detectnet_v2", "train"], env, tmp_path)
    assert wait_for(marker.exists, timeout=60)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130, err.read_text()
    time.sleep(5)  # the shim's create would have gone through by now
    assert _states(user) == {}, err.read_text()


# ------------------------------------------------------------------- Ctrl-C during a slow remote run -d


@pytest.fixture(scope="module")
def slow_start_host(sshd_factory: SshdFactory) -> SshHost:
    """A host whose `docker run` takes 8 s before it begins: longer than taoremote's grace for a call
    interrupted half-way (a prestart hook initialising 8 GPUs without persistence mode takes that)."""
    host = sshd_factory.start("review-slowstart")
    _slow_docker(host.bin_dir, "run", 8, host.bin_dir / "run-started")
    return host


def test_ctrl_c_during_a_slow_remote_start_leaves_nothing_running(
    tmp_path: Path, user: str, slow_start_host: SshHost
) -> None:
    host = slow_start_host
    marker = host.bin_dir / "run-started"
    marker.unlink(missing_ok=True)
    write_fake_nvidia_smi(host.bin_dir, DEFAULT_SMI.read_text())
    env = _env(tmp_path, user, [{"variable": "RIG_SLEEP", "value": "60"}])
    args = ["--ssh-config", str(host.ssh_config_path), "--host", host.name, "detectnet_v2", "train"]
    proc, err = _start(args, env, tmp_path)
    assert wait_for(marker.exists, timeout=60)
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    assert proc.wait(timeout=30) == 130, err.read_text()
    assert time.monotonic() - started < 15, "Ctrl-C must be answered in seconds"
    # the remote `docker run -d` finishes after we left: the job must not then run unsupervised
    time.sleep(12)
    assert "running" not in _states(user).values(), (_states(user), err.read_text())
    assert wait_for(lambda: _states(user) == {}, timeout=20), _states(user)
