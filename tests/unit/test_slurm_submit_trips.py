"""A Slurm submit asks the login node two commands, not three (issue 10, Speed): the login node's facts
(home, Slurm, pyxis) ride on the preflight probe's round trip, and the probe does not inspect the image,
which only a GPU node pulls and runs. The scripts run under a real `sh` here."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from taoremote.probe import build_probe_argv, parse_probe
from taoremote.slurm_commands import (
    INFO_SCRIPT,
    LOGIN_INFO_END,
    LoginInfo,
    split_login_info,
    with_login_info,
)
from taoremote.slurm_login import SlurmLogin
from tests.unit.fakes import FakeExecutor, run


def _sh(argv: tuple[str, ...], home: Path) -> str:
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin", "HOME": str(home)}
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_slurm_probe_looks_at_mount_sources_only(tmp_path: Path) -> None:
    argv = build_probe_argv("nvcr.io/x:1", [str(tmp_path), "/no/such/dir"], gpu=False, inspect_image=False)
    assert "docker" not in argv[2]
    probe = parse_probe(_sh(argv, tmp_path), gpu=False, inspect_image=False)
    assert probe.paths[str(tmp_path)].exists and not probe.paths["/no/such/dir"].exists
    assert probe.image_env is None  # not asked: the submit passes pull=True, which Slurm ignores


def test_the_login_facts_ride_on_the_probe_and_leave_its_output_as_it_was(tmp_path: Path) -> None:
    probe_argv = build_probe_argv("img", [str(tmp_path)], gpu=False, inspect_image=False)
    alone = _sh(probe_argv, tmp_path)
    info, rest = split_login_info(_sh(with_login_info(probe_argv), tmp_path))
    assert info is not None and info.home == str(tmp_path)
    assert rest == alone  # the probe's parser reads exactly what it read before
    assert split_login_info(alone) == (None, alone)  # no mark: no facts, and the login node is asked


def test_a_non_sh_command_cannot_carry_the_login_facts() -> None:
    with pytest.raises(ValueError):
        with_login_info(("docker", "ps"))


def _probe_answer(home: str) -> str:
    return f"home={home}\nslurm=1\n{LOGIN_INFO_END}\n@@taoremote:probe v=1@@\n@@taoremote:end-of-probe@@\n"


def test_after_the_probe_the_submit_asks_no_login_query() -> None:
    probe_argv = build_probe_argv("img", ["/data"], gpu=False, inspect_image=False)
    fake = FakeExecutor(run(with_login_info(probe_argv), stdout=_probe_answer("/home/ann")), host="login1")
    with fake:
        login = SlurmLogin(fake)
        done = login.probe_runner().run(probe_argv, timeout=60)
        assert done.stdout == "@@taoremote:probe v=1@@\n@@taoremote:end-of-probe@@\n"
        assert done.argv == probe_argv
        assert login.login_info() == LoginInfo("/home/ann", True, False)  # no second command
        assert login.runtime() == "docker"


def test_without_the_facts_in_the_probe_the_login_node_is_asked_once() -> None:
    probe_argv = build_probe_argv("img", ["/data"], gpu=False, inspect_image=False)
    fake = FakeExecutor(
        run(with_login_info(probe_argv), stdout="@@taoremote:probe v=1@@\n"),  # cut short
        run(("sh", "-c", INFO_SCRIPT), stdout="home=/home/ann\nslurm=1\npyxis=1\n"),
        host="login1",
    )
    with fake:
        login = SlurmLogin(fake)
        login.probe_runner().run(probe_argv, timeout=60)
        assert login.login_info().has_pyxis
        assert login.login_info().home == "/home/ann"  # asked once
