"""`--clean-results` deletes only inside a results directory strictly below a mount's destination,
resolved on the host that runs the container (DESIGN.md §3 "Deleting results"; issue 7 item 2).

Safety of these tests themselves: every case that must be refused runs with a guard `find` first on
PATH (and, remotely, first on the simulated host's PATH) that records any `-delete` and refuses to act,
so even the unfixed code can never delete anything here; the refusal is asserted from taoremote's
answer and from the guard's empty log. Only the positive controls delete, and only inside tmp_path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from tests.integration.conftest import SshdFactory, SshHost
from tests.integration.taorun import (
    DEFAULT_SMI,
    REPO,
    base_env,
    write_fake_nvidia_smi,
    write_mounts,
)

TASK = "detectnet_v2"
REAL_FIND = shutil.which("find") or "/usr/bin/find"


def _guard_find(bin_dir: Path, log: Path) -> None:
    """A `find` that answers the probe's read-only questions but never deletes: any -delete, -exec or
    -execdir is written to `log` and refused."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    tool = bin_dir / "find"
    tool.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do case $a in -delete|-exec|-execdir|-ok|-okdir)\n'
        f"  printf '%s :: %s\\n' \"$PWD\" \"$*\" >> '{log}'\n"
        "  echo 'guard find: refusing to delete' >&2; exit 1;; esac; done\n"
        f"exec '{REAL_FIND}' \"$@\"\n"
    )
    tool.chmod(0o755)


class Rig:
    """A throwaway world: a fake HOME with a sentinel, a guard `find`, a cwd with a sentinel."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path
        self.home = tmp_path / "home"
        self.home.mkdir()
        (self.home / "sentinel.txt").write_text("keep me\n")
        self.cwd = tmp_path / "cwd"
        self.cwd.mkdir()
        (self.cwd / "sentinel.txt").write_text("keep me\n")
        self.bin = tmp_path / "bin"
        self.log = tmp_path / "find-delete.log"
        _guard_find(self.bin, self.log)
        write_fake_nvidia_smi(self.bin, DEFAULT_SMI.read_text())

    def env(self, mounts: Sequence[Mapping[str, str]]) -> dict[str, str]:
        path = write_mounts(self.root / "mounts.json", {"Mounts": list(mounts)})
        env = base_env(self.home, self.bin, path)
        env["PYTHONPATH"] = str(REPO)
        return env

    def run(self, mounts: Sequence[Mapping[str, str]], results: str) -> subprocess.CompletedProcess[str]:
        argv = ["--clean-results", "--yes", TASK, "train", "-r", results]
        env = self.env(mounts)
        if (self.bin / "find").exists():  # never run a case that could delete without the guard
            assert shutil.which("find", path=env["PATH"]) == str(self.bin / "find")
        return subprocess.run(
            [sys.executable, "-m", "taoremote", *argv],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.cwd,
        )

    def deletions(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def assert_refused(self, result: subprocess.CompletedProcess[str], reason: str) -> None:
        assert self.deletions() == "", "a deletion was attempted"
        assert result.returncode == 2, result.stderr
        assert "refusing to empty" in result.stderr and reason in result.stderr, result.stderr
        assert (self.home / "sentinel.txt").read_text() == "keep me\n"
        assert (self.cwd / "sentinel.txt").read_text() == "keep me\n"


@pytest.fixture
def rig(tmp_path: Path, test_images: str) -> Rig:
    return Rig(tmp_path)


def test_a_source_that_is_a_symlink_to_home_is_not_emptied(rig: Rig) -> None:
    link = rig.root / "link-to-home"
    link.symlink_to(rig.home)
    result = rig.run([{"source": str(link), "destination": "/workspace/results"}], "/workspace/results")
    rig.assert_refused(result, "is the mount's destination itself")


def test_the_source_home_dot_is_not_emptied(rig: Rig) -> None:
    result = rig.run([{"source": "~/.", "destination": "/workspace/results"}], "/workspace/results")
    rig.assert_refused(result, "is the mount's destination itself")


def test_a_home_directory_below_the_destination_is_not_emptied(rig: Rig) -> None:
    link = rig.root / "link-to-tmp"
    link.symlink_to(rig.root)
    result = rig.run([{"source": str(link), "destination": "/workspace/all"}], "/workspace/all/home")
    rig.assert_refused(result, "home directory")


def test_an_ancestor_of_home_is_not_emptied(tmp_path: Path, test_images: str) -> None:
    rig = Rig(tmp_path)
    nested_home = tmp_path / "a" / "b" / "home"
    nested_home.mkdir(parents=True)
    (nested_home / "sentinel.txt").write_text("keep me\n")
    rig.home = nested_home
    result = rig.run([{"source": str(tmp_path / "a"), "destination": "/workspace/a"}], "/workspace/a/b")
    rig.assert_refused(result, "home directory")


def test_a_symlink_to_root_is_refused_before_anything_is_deleted(rig: Rig) -> None:
    link = rig.root / "link-to-root"
    link.symlink_to("/")
    result = rig.run([{"source": str(link), "destination": "/workspace/results"}], "/workspace/results")
    rig.assert_refused(result, "is the mount's destination itself")


def test_a_symlink_inside_the_mount_that_leads_out_of_it_is_refused(rig: Rig) -> None:
    ws = rig.root / "ws"
    ws.mkdir()
    (ws / "results").symlink_to(rig.home)
    result = rig.run([{"source": str(ws), "destination": "/workspace/ws"}], "/workspace/ws/results")
    rig.assert_refused(result, "leads out of the mount")


def test_source_root_does_not_empty_the_working_directory(rig: Rig) -> None:
    result = rig.run([{"source": "/", "destination": "/workspace/results"}], "/workspace/results")
    rig.assert_refused(result, "is the mount's destination itself")


def test_the_working_directory_below_a_root_mount_is_not_emptied(rig: Rig) -> None:
    below = str(rig.cwd).lstrip("/")
    result = rig.run([{"source": "/", "destination": "/host"}], f"/host/{below}")
    rig.assert_refused(result, "working directory")


@pytest.mark.usefixtures("clean_jobs")
def test_a_results_dir_that_is_a_symlink_inside_the_mount_is_still_emptied(tmp_path: Path) -> None:
    # the positive control (no guard on PATH): a legitimate clean still works, through a symlink that
    # stays inside the mount, and nothing outside the results directory is touched
    rig = Rig(tmp_path)
    ws = tmp_path / "ws"
    (ws / "runs" / "exp1" / "sub").mkdir(parents=True)
    (ws / "runs" / "exp1" / "old.tlt").write_text("x")
    (ws / "runs" / "exp1" / "sub" / "older.tlt").write_text("x")
    (ws / "keep.txt").write_text("keep me\n")
    (ws / "results").symlink_to(ws / "runs" / "exp1")
    (rig.bin / "find").unlink()
    result = rig.run([{"source": str(ws), "destination": "/workspace/ws"}], "/workspace/ws/results")
    assert result.returncode == 0, result.stderr
    assert list((ws / "runs" / "exp1").iterdir()) == []
    assert (ws / "results").is_symlink() and (ws / "keep.txt").exists()
    assert (rig.home / "sentinel.txt").exists() and (rig.cwd / "sentinel.txt").exists()
    assert f"emptied {os.path.realpath(ws / 'runs' / 'exp1')}" in result.stderr


# ---------------------------------------------------------------------------------------------- remote


@pytest.fixture
def clean_host(sshd_factory: SshdFactory, tmp_path: Path) -> SshHost:
    """A simulated host of this module alone, whose PATH starts with the guard `find`."""
    host = sshd_factory.start("cleanhost")
    log = tmp_path / "remote-find-delete.log"
    _guard_find(host.bin_dir, log)
    write_fake_nvidia_smi(host.bin_dir, DEFAULT_SMI.read_text())
    return host


def test_remote_home_below_a_root_symlink_is_refused_on_the_host(
    tmp_path: Path, clean_host: SshHost, test_images: str
) -> None:
    # the remote login's home is the real one: the guard find makes the unfixed code harmless here
    link = tmp_path / "link-to-root"
    link.symlink_to("/")
    remote_home, remote_find = subprocess.run(
        clean_host.ssh_argv("cd && pwd -P && command -v find"),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split()
    assert remote_home.startswith("/") and remote_home != "/"
    assert remote_find == str(clean_host.bin_dir / "find"), "the guard find must come first on the host"
    home = tmp_path / "local-home"
    home.mkdir()
    mounts = write_mounts(
        tmp_path / "mounts.json", {"Mounts": [{"source": str(link), "destination": "/workspace/host"}]}
    )
    env = base_env(home, None, mounts)
    results = "/workspace/host" + remote_home
    argv = ["--ssh-config", str(clean_host.ssh_config_path), "--host", clean_host.name]
    argv += ["--clean-results", "--yes", TASK, "train", "-r", results]
    result = subprocess.run(
        [sys.executable, "-m", "taoremote", *argv],
        env={**env, "PYTHONPATH": str(REPO)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    log = tmp_path / "remote-find-delete.log"
    assert not log.exists(), log.read_text()
    assert result.returncode == 2, result.stderr
    assert "refusing to empty" in result.stderr and "home directory" in result.stderr
    assert os.path.isdir(remote_home)
