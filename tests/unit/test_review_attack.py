"""Second reading of "Trust under faults" (issue 7): attacks on pure logic that got through."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# A bug (any unexpected exception) whose message quotes an env value, raised inside a command.
_BUGGY_COMMAND = """
import sys
from taoremote import actions, cli, info

def info_cmd(g, **_):
    loaded = actions.load_mounts(g)
    raise RuntimeError("a bug that quotes " + loaded.envs[0].value)

info.info_cmd = info_cmd
sys.argv = ["taoremote", "info"]
cli.main()
"""


def test_a_traceback_from_a_bug_never_shows_a_secret_value(tmp_path: Path) -> None:
    """typer installs its own sys.excepthook when the app is called, over the masking one."""
    secret = "tb-secret-5f3c9a"
    mounts = tmp_path / "mounts.json"
    mounts.write_text(json.dumps({"Mounts": [], "Envs": [{"variable": "NGC_API_KEY", "value": secret}]}))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LAUNCHER_MOUNTS": str(mounts)}
    done = subprocess.run(
        [sys.executable, "-c", _BUGGY_COMMAND], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "RuntimeError: a bug that quotes ****" in done.stderr  # the traceback is still shown
    assert secret not in done.stderr + done.stdout
