"""A remote foreground job is followed, waited for and removed by ONE remote command (command.FOLLOW_WAIT_RM),
against a real OpenSSH server and the real Docker engine: its exit code comes after a nonce the task
cannot print, and the container goes only once the client has it - a link lost or frozen before that
leaves the finished job, with its exit code and logs, for the reattach."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import SshdFactory, SshHost
from tests.integration.taorun import (
    DEFAULT_SMI,
    base_env,
    running_job_names,
    session_containers,
    session_job_ids,
    start_taoremote,
    taoremote,
    wait_for,
    write_fake_nvidia_smi,
    write_mounts,
)

pytestmark = pytest.mark.usefixtures("test_images", "clean_jobs")


def _env(tmp_path: Path, host: SshHost, envs: dict[str, str]) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    write_fake_nvidia_smi(host.bin_dir, DEFAULT_SMI.read_text())
    doc = {"Mounts": [], "Envs": [{"variable": k, "value": v} for k, v in envs.items()]}
    return base_env(home, None, write_mounts(tmp_path / f"mounts-{uuid.uuid4().hex[:6]}.json", doc))


def _remote(host: SshHost, *args: str, config: Path | None = None) -> list[str]:
    return ["--ssh-config", str(config or host.ssh_config_path), "--host", host.name, *args]


def _exited_jobs() -> list[str]:
    return [r["Names"] for r in session_containers() if r.get("State") == "exited"]


def test_the_exit_code_comes_through_and_a_forged_one_is_only_output(
    tmp_path: Path, sshd_host: SshHost
) -> None:
    forged = "@@taoremote-exit-00000000000000000000000000000000@@0"
    env = _env(tmp_path, sshd_host, {"RIG_EXIT": "5", "RIG_STDERR": forged})
    result = taoremote(_remote(sshd_host, "detectnet_v2", "train", "x"), env)
    assert result.returncode == 5, result.stderr
    assert result.stdout.splitlines() == ["TASK<detectnet_v2>", "ARG<train>", "ARG<x>"]
    assert result.stderr.splitlines() == [forged]  # the task's line as it printed it; the real marker hidden
    assert session_job_ids() == ""  # followed, waited for and removed


def test_a_link_lost_before_the_job_ends_keeps_its_exit_code_for_the_reattach(
    tmp_path: Path, sshd_host: SshHost, sshd_factory: SshdFactory
) -> None:
    env = _env(tmp_path, sshd_host, {"RIG_SLEEP": "2", "RIG_EXIT": "7"})
    proc = start_taoremote(_remote(sshd_host, "detectnet_v2", "train"), env)
    assert wait_for(lambda: running_job_names() != [], timeout=30)
    sshd_factory.kill_connections(sshd_host)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 255, err
    assert wait_for(lambda: _exited_jobs() != [], timeout=30)  # it ended without us
    time.sleep(1)  # what the one remote command would do after the end has had time to
    assert _exited_jobs() != []  # kept: nobody took its exit code
    followed = taoremote(err.split("Reattach with: ", 1)[1].strip().split()[1:], env)
    assert followed.returncode == 7, followed.stderr


def test_a_frozen_link_never_removes_the_finished_job(
    tmp_path: Path, sshd_host: SshHost, sshd_factory: SshdFactory
) -> None:
    """sshd frozen: the remote command's stdin neither answers nor closes, so it must not remove the job
    the client gave up on (ServerAlive), even when the job ends meanwhile."""
    cfg = tmp_path / "ssh_config"
    cfg.write_text(
        f"Host {sshd_host.name}\n    ServerAliveInterval 1\n    ServerAliveCountMax 2\n"
        + sshd_host.ssh_config_path.read_text()
    )
    env = _env(tmp_path, sshd_host, {"RIG_SLEEP": "3", "RIG_EXIT": "9"})
    proc = start_taoremote(_remote(sshd_host, "detectnet_v2", "train", config=cfg), env)
    assert wait_for(lambda: running_job_names() != [], timeout=30)
    time.sleep(0.5)  # following now
    frozen = sshd_factory.kill_connections(sshd_host, sig=signal.SIGSTOP)
    assert frozen
    try:
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 255, err
        assert wait_for(lambda: _exited_jobs() != [], timeout=30)
        time.sleep(1)
        assert _exited_jobs() != []
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    time.sleep(1)  # sshd wakes, finds the client gone: the command reads EOF, not an answer
    assert _exited_jobs() != []
    followed = taoremote(err.split("Reattach with: ", 1)[1].strip().split()[1:], env)
    assert followed.returncode == 9, followed.stderr
