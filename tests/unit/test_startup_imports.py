"""What start-up costs is mostly imports: the paths that must stay near `import typer` import only what
they use (a set of module names, not a timing)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


def _imported(args: list[str], tmp_path: Path) -> set[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    docker = bin_dir / "docker"
    docker.write_text("#!/bin/sh\nexit 0\n")  # `docker ps` with no jobs
    docker.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    env = {k: v for k, v in env.items() if not k.startswith(("TAOREMOTE_", "LAUNCHER_"))}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "taoremote", *args],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \| *(\S+)$", done.stderr, re.M))


@pytest.mark.parametrize("args", [["list"], ["list", "--all"]])
def test_list_imports_no_table_library_no_mounts_config_no_ssh(args: list[str], tmp_path: Path) -> None:
    imported = _imported(args, tmp_path)
    assert "taoremote.jobs" in imported  # it did list
    unwanted = {"tabulate", "taoremote.config", "hashlib", "jsonschema", "paramiko", "fabric", "invoke"}
    assert not imported & unwanted


def test_help_builds_no_settings_and_no_command_modules(tmp_path: Path) -> None:
    imported = _imported(["--help"], tmp_path)
    assert "typer" in imported
    assert not imported & {"taoremote.settings", "taoremote.actions", "taoremote.jobs", "tabulate"}


def test_a_dry_run_imports_no_hmac_for_its_job_id_and_no_probe(tmp_path: Path) -> None:
    imported = _imported(["--dry-run", "detectnet_v2", "train", "x"], tmp_path)
    assert "taoremote.plan" in imported
    unwanted = {"secrets", "hmac", "importlib.resources", "tabulate", "jsonschema", "paramiko"}
    unwanted |= {"taoremote.probe", "taoremote.preflight"}
    assert not imported & unwanted
