"""Config, env values and secrets under faults, against the real dockerd (and sshd) — issue 7 items 9, 11, 12,
15, 17, 19, 20, 22. Every test here failed before its fix."""

from __future__ import annotations

import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import SshHost
from tests.integration.taorun import (
    DEFAULT_SMI,
    REPO,
    base_env,
    session_job_ids,
    taoremote,
    write_fake_nvidia_smi,
    write_mounts,
)

pytestmark = pytest.mark.usefixtures("test_images", "clean_jobs")
SECRET = "s3cr3t-Value-Kp2xLw9QmZ"


def _rig(tmp_path: Path, doc: dict[str, object], **extra: str) -> dict[str, str]:
    home = tmp_path / "home"
    (home / "ws").mkdir(parents=True, exist_ok=True)
    (home / "ws" / "spec.txt").write_text("spec\n")
    bin_dir = tmp_path / "bin"
    write_fake_nvidia_smi(bin_dir, DEFAULT_SMI.read_text())
    doc = {"Mounts": [{"source": "~/ws", "destination": "/workspace/ws"}], **doc}
    mounts = write_mounts(tmp_path / f"mounts-{time.monotonic_ns()}.json", doc)
    return base_env(home, bin_dir, mounts, **extra)


def _one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) >= 1
    return stderr


# ---------------------------------------------------------------------------------------------- item 9


@pytest.mark.parametrize(
    "env",
    [
        # docker read "=<value>" as a line of its own and echoed it
        {"variable": "API_TOKEN\n", "value": SECRET},
        {"variable": "API_TOKEN", "value": SECRET + "\x00x"},
    ],
    ids=["name-ending-in-newline", "nul-in-value"],
)
def test_a_value_docker_would_echo_is_refused_by_path_never_printed(
    tmp_path: Path, env: dict[str, str]
) -> None:
    rig = _rig(tmp_path, {"Envs": [env]})
    result = taoremote(["detectnet_v2", "run", "true"], rig)
    assert SECRET not in result.stdout + result.stderr
    assert result.returncode == 78, result.stderr
    assert "$.Envs[0]." in _one_line(result.stderr)
    assert session_job_ids() == ""


def test_a_value_docker_would_echo_is_refused_on_a_remote_host_too(
    tmp_path: Path, sshd_host: SshHost
) -> None:
    rig = _rig(tmp_path, {"Mounts": [], "Envs": [{"variable": "API_TOKEN\n", "value": SECRET}]})
    args = [
        "--ssh-config",
        str(sshd_host.ssh_config_path),
        "--host",
        sshd_host.name,
        "detectnet_v2",
        "run",
        "true",
    ]
    result = taoremote(args, rig)
    assert SECRET not in result.stdout + result.stderr
    assert result.returncode == 78, result.stderr


def test_an_error_quoting_a_secret_value_is_masked(tmp_path: Path) -> None:
    # the preflight quotes the spec path it could not find; that path holds the secret
    rig = _rig(tmp_path, {"Envs": [{"variable": "API_TOKEN", "value": SECRET}]})
    result = taoremote(["detectnet_v2", "train", "-e", f"/workspace/ws/{SECRET}.txt"], rig)
    assert result.returncode == 69, result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert "/workspace/ws/****.txt" in _one_line(result.stderr)


# ---------------------------------------------------------------------------------------------- item 11


def _file_size_limit(limit: int) -> None:
    # stands in for a full disk: write() past the limit fails with EFBIG instead of killing us
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_full_tmpdir_leaves_no_partial_env_file_and_is_one_line(tmp_path: Path) -> None:
    big = SECRET + "x" * 65536  # larger than the file-size limit: the write fails half-way
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    rig = _rig(tmp_path, {"Envs": [{"variable": "API_TOKEN", "value": big}]}, TMPDIR=str(tmpdir))
    result = subprocess.run(
        [sys.executable, "-m", "taoremote", "detectnet_v2", "run", "true"],
        env=rig,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        preexec_fn=lambda: _file_size_limit(16384),
    )
    assert result.returncode == 69, result.stderr
    assert "cannot write the env-file" in _one_line(result.stderr)
    assert SECRET not in result.stdout + result.stderr
    assert list(tmpdir.iterdir()) == []  # neither the partial file nor its directory
    assert session_job_ids() == ""


# ---------------------------------------------------------------------------------------------- item 12


def test_from_env_sources_are_not_in_the_docker_clients_environment(tmp_path: Path) -> None:
    dump = tmp_path / "environ.dump"
    shim_dir = tmp_path / "shim"
    shim_dir.mkdir()
    real = shutil.which("docker")
    assert real
    shim = shim_dir / "docker"
    shim.write_text(f'#!/bin/sh\ncat /proc/$$/environ >> "{dump}"\nexec "{real}" "$@"\n')
    shim.chmod(0o755)
    rig = _rig(
        tmp_path,
        {"Envs": [{"variable": "WANDB_API_KEY", "from_env": "MY_WANDB_KEY"}]},
        MY_WANDB_KEY=SECRET,
    )
    rig["PATH"] = f"{shim_dir}:{rig['PATH']}"
    result = taoremote(["detectnet_v2", "run", "sh", "-c", 'printf %s "$WANDB_API_KEY"'], rig)
    assert (result.returncode, result.stdout) == (0, SECRET), result.stderr  # the container has it
    seen = dump.read_bytes()
    assert b"PATH=" in seen  # the shim did run and dump
    assert SECRET.encode() not in seen
    assert b"MY_WANDB_KEY=" not in seen


# ------------------------------------------------------------------------------------------ items 17, 19, 20


def test_the_container_gets_what_the_launcher_would_give_it(tmp_path: Path) -> None:
    (tmp_path / "home" / "ro").mkdir(parents=True)
    doc = {
        "Mounts": [
            {"source": "~/ws", "destination": "/workspace/ws"},
            {"source": "~/ro", "destination": "/workspace/ro", "mode": "ro"},
        ],
        "Envs": [
            {"variable": "FLAG", "value": True},
            {"variable": "RATE", "value": 1.0},
            {"variable": "MY-VAR", "value": "dash"},
            {"variable": "WANDB_API_KEY", "value": None},
        ],
        "DockerOptions": {"user": 1000, "shm_size": "16 G", "network": ""},
    }
    rig = _rig(tmp_path, doc)
    script = (
        'printf "%s|%s|%s|%s|" "$TAO_CLIENT_TYPE" "$FLAG" "$RATE" "${WANDB_API_KEY-unset}"; '
        # busybox sh keeps only variables with shell names in its own env: read what it was started with
        "tr '\\0' '\\n' < /proc/$$/environ | grep '^MY-VAR=' | tr '\\n' '|'; id -u | tr '\\n' '|'; "
        "df -k /dev/shm | awk 'NR==2 {printf \"%s|\", $2}'; "
        "touch /workspace/ro/x 2>/dev/null && echo rw || echo ro"
    )
    result = taoremote(["detectnet_v2", "run", "sh", "-c", script], rig)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "launcher|True|1.0|unset|MY-VAR=dash|1000|16777216|ro\n"
    assert "WANDB_API_KEY is null" in result.stderr
    assert '"mode": "ro" binds /workspace/ro read-only' in result.stderr


def test_a_tao_client_type_of_the_mounts_file_wins(tmp_path: Path) -> None:
    rig = _rig(tmp_path, {"Envs": [{"variable": "TAO_CLIENT_TYPE", "value": "mine"}]})
    result = taoremote(["detectnet_v2", "run", "sh", "-c", 'printf %s "$TAO_CLIENT_TYPE"'], rig)
    assert (result.returncode, result.stdout) == (0, "mine"), result.stderr


def test_dry_run_says_a_mode_ro_mount_is_read_only(tmp_path: Path) -> None:
    doc = {"Mounts": [{"source": "~/ws", "destination": "/workspace/ws", "mode": "ro"}]}
    rig = _rig(tmp_path, doc)
    rig["LAUNCHER_MOUNTS"] = str(write_mounts(tmp_path / "ro.json", doc))
    result = taoremote(["--dry-run", "detectnet_v2", "train"], rig)
    assert result.returncode == 0, result.stderr
    assert ":/workspace/ws:ro " in result.stdout
    assert "# warning: " in result.stdout and '"mode": "ro" binds /workspace/ws read-only' in result.stdout


# ---------------------------------------------------------------------------------------------- item 22


def test_paths_holding_colon_and_comma_are_bound_where_they_say(tmp_path: Path) -> None:
    odd = tmp_path / "home" / "run:1,a"
    odd.mkdir(parents=True)
    (odd / "f.txt").write_text("odd\n")
    doc = {
        "Mounts": [
            {"source": "~/ws", "destination": "/workspace/ws"},
            {"source": str(odd), "destination": "/workspace/x:ro"},
        ]
    }
    rig = _rig(tmp_path, doc)
    script = "cat '/workspace/x:ro/f.txt' && touch '/workspace/x:ro/w' && echo writable"
    result = taoremote(["detectnet_v2", "run", "sh", "-c", script], rig)
    assert (result.returncode, result.stdout) == (0, "odd\nwritable\n"), result.stderr
    assert (odd / "w").exists()


def test_an_empty_mounts_option_is_a_usage_error(tmp_path: Path) -> None:
    result = taoremote(["--mounts", "", "--dry-run", "detectnet_v2", "train"], _rig(tmp_path, {}))
    assert result.returncode == 2
    assert "--mounts ''" in _one_line(result.stderr)


# ---------------------------------------------------------------------------------------------- item 15


def test_a_non_utf8_mounts_file_is_one_line(tmp_path: Path) -> None:
    rig = _rig(tmp_path, {})
    Path(rig["LAUNCHER_MOUNTS"]).write_bytes(b'{"Envs": [{"variable": "K", "value": "caf\xe9"}]}')
    result = taoremote(["--dry-run", "detectnet_v2", "train"], rig)
    assert result.returncode == 78
    assert "not UTF-8" in _one_line(result.stderr)


def test_200_kb_of_arguments_arrive_byte_exact(tmp_path: Path) -> None:
    rig = _rig(tmp_path, {})
    args = [f"{i:05d}-" + "ä'\" $x;" * 14 for i in range(2000)]  # 2000 args, 200 KB+ in all
    assert sum(len(a.encode()) for a in args) > 200_000
    result = taoremote(["detectnet_v2", "run", "sh", "-c", 'printf "%s\\n" "$@"', "sh", *args], rig)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == "".join(f"{a}\n" for a in args)


def test_ctrl_c_in_the_first_100_ms_is_interrupted_never_a_traceback(tmp_path: Path) -> None:
    """SIGINT at 30 points over the first 100 ms of the process (imports included). The interpreter's own
    start-up (site.py, runpy finding the package: before any line of taoremote runs) cannot be covered by
    any Python program: a signal there ends Python with a traceback of <frozen> frames only, its
    "init_import_site" fatal error, or kills it outright. Those runs are counted apart."""
    rig = _rig(tmp_path, {})
    outcomes = []
    for i in range(30):
        proc = subprocess.Popen(
            [sys.executable, "-m", "taoremote", "--dry-run", "detectnet_v2", "train"],
            env=rig,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(i * 0.1 / 30)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        frames = re.findall(r'^\s*File "([^"]+)"', err, re.M)
        if err.startswith("Fatal Python error: init_import_site") or (
            frames and all(f.startswith("<frozen ") for f in frames)
        ):
            outcomes.append("interpreter start-up")  # no line of taoremote (or its libraries) had run
            continue
        assert "Traceback" not in err, f"SIGINT after {i * 100 / 30:.0f} ms:\n{err}"
        assert proc.returncode in (130, -signal.SIGINT, 0), err  # 0: it had finished already
        if proc.returncode == 130:
            assert err.endswith("taoremote: interrupted\n"), err
        outcomes.append(str(proc.returncode))
    assert outcomes.count("130") >= 10, outcomes  # most signals did land while taoremote ran
