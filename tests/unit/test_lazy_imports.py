"""Start-up stays at the floor: `--help` and a local `--dry-run` never load the preflight modules, which only
a launch that probes a host needs (issue 8, speed). Read off `python -X importtime` of a fresh interpreter."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PREFLIGHT_MODULES = {
    "taoremote.probe",
    "taoremote.nvidia_smi",
    "taoremote.cuda_table",
    "taoremote.nvidia_require",
    "taoremote.preflight",
}
MOUNTS_JSON = '{"Mounts": [{"source": "~/tao/data", "destination": "/workspace/data"}]}'


def imported_taoremote_modules(args: list[str], home: Path) -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAOREMOTE_", "LAUNCHER_"))}
    env["HOME"] = str(home)
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return set(re.findall(r"^import time:.*\|\s*(taoremote(?:\.\w+)*)\s*$", result.stderr, re.M))


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--mounts", "MOUNTS", "--dry-run", "detectnet_v2", "train", "-e", "/workspace/data/spec.txt"],
    ],
    ids=["help", "dry-run"],
)
def test_start_up_does_not_import_the_preflight(args: list[str], tmp_path: Path) -> None:
    mounts = tmp_path / "mounts.json"
    mounts.write_text(MOUNTS_JSON)
    argv = ["-m", "taoremote", *(str(mounts) if a == "MOUNTS" else a for a in args)]
    loaded = imported_taoremote_modules(argv, tmp_path)
    assert "taoremote.cli" in loaded  # the parse sees what it should, so the check below can fail
    assert loaded & PREFLIGHT_MODULES == set()


def test_the_check_sees_the_preflight_when_it_is_imported(tmp_path: Path) -> None:
    # proof that the parse above would notice these modules if start-up loaded them
    loaded = imported_taoremote_modules(["-c", "import taoremote.preflight"], tmp_path)
    assert loaded >= PREFLIGHT_MODULES
