"""Running taoremote as a real process, the way users do, with a fake GPU host environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
REGISTRY = "taoremote.test"

# nvidia-smi of a driver new enough for every test image and the bundled table (CUDA 13.0): R580.
DEFAULT_SMI = DATA / "nvidia-smi" / "header-r580.txt"
DEFAULT_QUERY = "0, NVIDIA H100 80GB HBM3, GPU-4d1a7c55-1b1e-4f5e-9a1a-000000000000, 1, 81559, 0, 9.0\n"

# Each pytest session launches as its own user name: taoremote labels every job `taoremote.user=<$LOGNAME>`,
# so this session's jobs are told apart from another session's, a benchmark's or a user's own on the shared
# dockerd, and the fixtures remove only these. Containers a test makes itself carry SESSION_LABEL.
SESSION_USER = f"trtest-{os.getpid():x}{int(time.time() * 1000) % 0xFFFF:04x}"
SESSION_LABEL = f"taoremote.test.session={SESSION_USER}"


def session_user(name: str = "") -> str:
    """This session's user name, or a second user of this session (`session_user("bob")`)."""
    return f"{SESSION_USER}-{name}" if name else SESSION_USER


def write_fake_nvidia_smi(
    bin_dir: Path, default_text: str, query_text: str = DEFAULT_QUERY, rc: int = 0
) -> Path:
    """An nvidia-smi that prints captured outputs: the table by default, CSV for --query-gpu."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    data = bin_dir / ".nvidia-smi.d"
    data.mkdir(exist_ok=True)
    (data / "default").write_text(default_text)
    (data / "query").write_text(query_text)
    tool = bin_dir / "nvidia-smi"
    tool.write_text(
        "#!/bin/sh\n"
        'case "$*" in *--query-gpu*) cat "'
        + str(data / "query")
        + '";; *) cat "'
        + str(data / "default")
        + '";; esac\n'
        f"exit {rc}\n"
    )
    tool.chmod(0o755)
    return tool


def write_gpu_nvidia_smi(
    bin_dir: Path, gpus: int, apps_csv: str = "", default_text: str | None = None
) -> Path:
    """An nvidia-smi with GPUS H100s (GPU i has the uuid GPU-...-<i as 12 digits>): `--query-gpu=FIELDS`
    answers those fields in that order, `--query-compute-apps` answers APPS_CSV (`uuid, pid` lines), and
    anything else the R580 table. For sweeps, whose placement asks for other fields than the probe."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    data = bin_dir / ".nvidia-smi.d"
    data.mkdir(exist_ok=True)
    (data / "default").write_text(default_text if default_text is not None else DEFAULT_SMI.read_text())
    (data / "apps").write_text(apps_csv)
    tool = bin_dir / "nvidia-smi"
    tool.write_text(
        "#!/bin/sh\n"
        f'd="{data}"\n'
        'for a in "$@"; do case $a in\n'
        '  --query-compute-apps=*) cat "$d/apps"; exit 0 ;;\n'
        "  --query-gpu=*) f=${a#--query-gpu=}\n"
        f"    i=0; while [ $i -lt {int(gpus)} ]; do\n"
        '      echo "$f" | awk -v i=$i -F, \'{ for (k = 1; k <= NF; k++) { v = ""\n'
        '        if ($k == "index") v = i; else if ($k == "name") v = "NVIDIA H100 80GB HBM3"\n'
        '        else if ($k == "uuid") v = sprintf("GPU-4d1a7c55-1b1e-4f5e-9a1a-%012d", i)\n'
        '        else if ($k == "memory.used") v = 1; else if ($k == "memory.total") v = 81559\n'
        '        else if ($k == "utilization.gpu") v = 0; else if ($k == "compute_cap") v = "9.0"\n'
        '        printf "%s%s", (k > 1 ? ", " : ""), v } print "" }\'\n'
        "      i=$((i + 1)); done; exit 0 ;;\n"
        "esac; done\n"
        'cat "$d/default"\n'
    )
    tool.chmod(0o755)
    return tool


def base_env(
    home: Path, bin_dir: Path | None = None, mounts: Path | None = None, **extra: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAUNCHER_", "TAOREMOTE_", "OVERRIDE_"))}
    env["HOME"] = str(home)
    env["USER"] = env["LOGNAME"] = SESSION_USER
    env["OVERRIDE_REGISTRY"] = REGISTRY
    if bin_dir is not None:
        env["PATH"] = f"{bin_dir}:{env['PATH']}"
    if mounts is not None:
        env["LAUNCHER_MOUNTS"] = str(mounts)
    env.update(extra)
    return env


def write_mounts(path: Path, doc: Mapping[str, object]) -> Path:
    path.write_text(json.dumps(doc))
    return path


def taoremote(
    args: Sequence[str], env: Mapping[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taoremote", *args],
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def start_taoremote(args: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "taoremote", *args],
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)


def session_containers(*, include_stopped: bool = True) -> list[dict[str, str]]:
    """This session's containers: taoremote jobs launched as one of its users, and those a test made
    with SESSION_LABEL. `docker ps --format '{{json .}}'` rows."""
    argv = ["ps", "--no-trunc", "--format", "{{json .}}"] + (["-a"] if include_stopped else [])
    rows = [json.loads(line) for line in docker(*argv).stdout.splitlines() if line.strip()]
    return [row for row in rows if _ours(row.get("Labels", ""))]


def _ours(labels: str) -> bool:
    pairs = dict(item.partition("=")[::2] for item in labels.split(",") if item)
    user = pairs.get("taoremote.user", "")
    mine = "taoremote.job" in pairs and (user == SESSION_USER or user.startswith(SESSION_USER + "-"))
    return mine or pairs.get("taoremote.test.session") == SESSION_USER


def mine(rows: list[dict[str, object]], user: str | None = None) -> list[dict[str, object]]:
    """The rows of `list --format json` launched by this session (or by `user`): `list` shows every
    user's jobs on a shared host, and other sessions may be running jobs on the same dockerd."""
    if user is not None:
        return [r for r in rows if r.get("user") == user]
    return [r for r in rows if str(r.get("user", "")).split("-", 2)[:2] == SESSION_USER.split("-", 2)[:2]]


def session_job_ids(*, include_stopped: bool = True) -> str:
    """Container ids of this session's jobs, one per line ("" when none): what tests assert is empty."""
    return "\n".join(row["ID"] for row in session_containers(include_stopped=include_stopped))


def running_job_names() -> list[str]:
    """This session's running taoremote jobs (not the other containers a test made)."""
    rows = session_containers(include_stopped=False)
    return [row["Names"] for row in rows if "taoremote.job=" in row.get("Labels", "")]


def wait_for(predicate: object, timeout: float = 30, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(interval)
    return False


def run_in_terminal(
    argv: Sequence[str], env: Mapping[str, str], lines: Sequence[str], ready: str
) -> tuple[int, str]:
    """Run argv in a real terminal (tmux), type each line once `ready` shows on screen, return
    (exit code, what the screen showed). Typing only after the prompt is how a person does it."""
    import shlex
    import tempfile
    import uuid

    name = f"taoremote-{uuid.uuid4().hex[:8]}"
    rc_file = Path(tempfile.mkdtemp()) / "rc"
    shell_line = f"{shlex.join(argv)}; echo $? > {shlex.quote(str(rc_file))}"
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", name, "-x", "200", "-y", "50", "sh", "-c", shell_line],
        env=dict(env),
        check=True,
    )
    screen = ""

    def capture() -> str:
        out = subprocess.run(["tmux", "capture-pane", "-p", "-t", name], capture_output=True, text=True)
        return out.stdout

    try:
        if not wait_for(lambda: ready in capture(), timeout=60):
            raise AssertionError(f"never saw {ready!r} on the screen:\n{capture()}")
        for line in lines:
            subprocess.run(["tmux", "send-keys", "-t", name, line, "Enter"], check=True)
            time.sleep(0.3)
            screen = capture() or screen
        if not wait_for(rc_file.exists, timeout=60):
            raise AssertionError(f"the command did not end:\n{capture()}")
        return int(rc_file.read_text().strip()), screen
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
