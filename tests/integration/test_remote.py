"""Remote hosts over a real OpenSSH server on 127.0.0.1, in front of the real Docker engine."""

from __future__ import annotations

import getpass
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import SshdFactory, SshHost
from tests.integration.taorun import (
    DEFAULT_SMI,
    base_env,
    docker,
    mine,
    run_in_terminal,
    running_job_names,
    session_job_ids,
    start_taoremote,
    taoremote,
    wait_for,
    write_fake_nvidia_smi,
    write_mounts,
)

pytestmark = pytest.mark.usefixtures("test_images", "clean_jobs")
SECRET = "remote-s3cr3t-Xq7PzL0o9"
# where env-files go on the "remote" host: the login user's ~/.cache (the sshd fixtures log in as us)
REMOTE_CACHE = Path(os.path.expanduser(f"~{getpass.getuser()}")) / ".cache"


@pytest.fixture
def remote_ws(sshd_host: SshHost) -> Iterator[str]:
    """A directory under the *remote* user's home, named with `~` so it must expand there."""
    name = f"taoremote-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        sshd_host.ssh_argv(f"mkdir -p ~/{name} && echo spec > ~/{name}/spec.txt"), check=True, timeout=30
    )
    yield f"~/{name}"
    subprocess.run(sshd_host.ssh_argv(f"rm -rf ~/{name}"), check=False, timeout=30)


def _env(
    tmp_path: Path, host: SshHost, ws: str | None = None, envs: list[dict[str, str]] | None = None
) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    write_fake_nvidia_smi(host.bin_dir, DEFAULT_SMI.read_text())
    doc = {
        "Mounts": [{"source": ws, "destination": "/workspace/ws"}] if ws else [],
        "Envs": [{"variable": "API_TOKEN", "value": SECRET}, *(envs or [])],
    }
    mounts = write_mounts(tmp_path / f"mounts-{uuid.uuid4().hex[:6]}.json", doc)
    return base_env(home, None, mounts)


def _remote(host: SshHost, *args: str) -> list[str]:
    return ["--ssh-config", str(host.ssh_config_path), "--host", host.name, *args]


def test_remote_exit_code_and_arguments(tmp_path: Path, sshd_host: SshHost, remote_ws: str) -> None:
    env = _env(tmp_path, sshd_host, remote_ws, [{"variable": "RIG_EXIT", "value": "4"}])
    args = ["-e", "spec file.txt", "it's", 'a"b', "$HOME", ";echo INJECTED", ""]
    result = taoremote(_remote(sshd_host, "detectnet_v2", "train", *args), env)
    assert result.returncode == 4, result.stderr
    assert result.stdout.splitlines() == ["TASK<detectnet_v2>", "ARG<train>", *(f"ARG<{a}>" for a in args)]


def test_remote_mount_source_expands_on_the_remote_host(
    tmp_path: Path, sshd_host: SshHost, remote_ws: str
) -> None:
    env = _env(tmp_path, sshd_host, remote_ws)
    result = taoremote(_remote(sshd_host, "detectnet_v2", "run", "cat", "/workspace/ws/spec.txt"), env)
    assert (result.returncode, result.stdout) == (0, "spec\n"), result.stderr


def test_remote_missing_mount_source_is_reported_before_launch(tmp_path: Path, sshd_host: SshHost) -> None:
    env = _env(tmp_path, sshd_host, "~/definitely-not-here-xyz")
    result = taoremote(_remote(sshd_host, "detectnet_v2", "train"), env)
    assert result.returncode == 69
    assert f"mount source missing on host {sshd_host.name}" in result.stderr
    assert "~/definitely-not-here-xyz -> /workspace/ws" in result.stderr
    assert session_job_ids() == ""


def test_remote_dry_run_names_the_host_and_masks_secrets(tmp_path: Path, sshd_host: SshHost) -> None:
    env = _env(tmp_path, sshd_host)
    result = taoremote(_remote(sshd_host, "--dry-run", "detectnet_v2", "train", "x y"), env)
    assert result.returncode == 0, result.stderr
    assert f"# host: {sshd_host.name}" in result.stdout
    assert "API_TOKEN=****" in result.stdout and SECRET not in result.stdout
    assert "--env-file" in result.stdout and "'x y'" in result.stdout


def test_remote_secret_never_in_any_argv_and_env_file_is_removed(tmp_path: Path, sshd_host: SshHost) -> None:
    env = _env(tmp_path, sshd_host, None, [{"variable": "RIG_SLEEP", "value": "30"}])
    proc = start_taoremote(_remote(sshd_host, "detectnet_v2", "train"), env)
    try:
        assert wait_for(lambda: running_job_names() != [], timeout=30)
        leaks = []
        for entry in Path("/proc").iterdir():  # the "remote" host is this machine: its /proc too
            if entry.name.isdigit():
                try:
                    if SECRET.encode() in (entry / "cmdline").read_bytes():
                        leaks.append(entry.name)
                except OSError:
                    continue
        assert leaks == []
        name = running_job_names()[0]
        assert docker("exec", name, "sh", "-c", 'printf %s "$API_TOKEN"').stdout == SECRET
        # env-file directories carry the launching process's pid: other sessions' launches may be under way
        assert wait_for(lambda: not list(REMOTE_CACHE.glob(f"taoremote-env-{proc.pid}-*")), timeout=10)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_remote_ctrl_c_stops_the_container(
    tmp_path: Path, sshd_host: SshHost, signum: int, code: int
) -> None:
    env = _env(tmp_path, sshd_host, None, [{"variable": "RIG_SLEEP", "value": "120"}])
    proc = start_taoremote(_remote(sshd_host, "detectnet_v2", "train"), env)
    assert wait_for(lambda: running_job_names() != [], timeout=30)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert err.count("stopping taoremote-") == 1  # stopped once, not once per layer
    assert session_job_ids() == ""  # stopped and removed


def test_dropped_link_leaves_job_running_then_logs_follow_gets_exit_code(
    tmp_path: Path, sshd_host: SshHost, sshd_factory: SshdFactory
) -> None:
    env = _env(
        tmp_path,
        sshd_host,
        None,
        [{"variable": "RIG_SLEEP", "value": "6"}, {"variable": "RIG_EXIT", "value": "7"}],
    )
    proc = start_taoremote(_remote(sshd_host, "detectnet_v2", "train", "--epochs", "3"), env)
    assert wait_for(lambda: running_job_names() != [], timeout=30)
    assert wait_for(lambda: sshd_factory.connection_pids(sshd_host) != [], timeout=10)
    sshd_factory.kill_connections(sshd_host)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 255, err
    assert "the job keeps running" in err
    reattach = err.split("Reattach with: ", 1)[1].strip().split()
    assert reattach[-3:-1] == ["logs", "-f"]
    assert running_job_names() != []  # the laptop lid closed; the training did not stop
    followed = taoremote(reattach[1:], env)
    assert followed.returncode == 7, followed.stderr
    assert "ARG<--epochs>" in followed.stdout


def test_remote_detach_list_logs_stop(tmp_path: Path, sshd_host: SshHost) -> None:
    env = _env(tmp_path, sshd_host, None, [{"variable": "RIG_SLEEP", "value": "120"}])
    job = taoremote(_remote(sshd_host, "-d", "yolo_v4", "train"), env).stdout.strip()
    rows = mine(json.loads(taoremote(_remote(sshd_host, "list", "--format", "json"), env).stdout))
    assert [(r["host"], r["job"], r["task"]) for r in rows] == [(sshd_host.name, job, "yolo_v4")]
    assert taoremote(_remote(sshd_host, "logs", job), env).stdout.startswith("TASK<yolo_v4>")
    stopped = taoremote(_remote(sshd_host, "stop", "--container_id", job), env)
    assert stopped.returncode == 0, stopped.stderr
    assert running_job_names() == []


def test_user_at_host_port_form_works(tmp_path: Path, sshd_host: SshHost) -> None:
    env = _env(tmp_path, sshd_host)
    ssh_dir = Path(env["HOME"]) / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "known_hosts").write_text(sshd_host.host_key_line + "\n")
    (ssh_dir / "config").write_text(f"Host *\n    IdentityFile {sshd_host.identity_file}\n")
    result = taoremote(["--host", sshd_host.address, "list"], env)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------------------------- failures


def _isolated_ssh(
    tmp_path: Path, host: SshHost, known_hosts: str, extra: str = ""
) -> tuple[dict[str, str], Path]:
    env = _env(tmp_path, host)
    known = tmp_path / "known_hosts"
    known.write_text(known_hosts)
    cfg = tmp_path / "ssh_config"
    cfg.write_text(
        f"Host target\n    HostName 127.0.0.1\n    Port {host.port}\n    User {host.user}\n"
        f"    IdentityFile {host.identity_file}\n    UserKnownHostsFile {known}\n"
        f"    ConnectTimeout 5\n{extra}"
    )
    return env, cfg


def test_unknown_host_key_is_refused_with_how_to_trust_it(tmp_path: Path, sshd_host: SshHost) -> None:
    env, cfg = _isolated_ssh(tmp_path, sshd_host, "")
    result = taoremote(["--ssh-config", str(cfg), "--host", "target", "list"], env)
    assert result.returncode == 68
    assert (
        "unknown host key" in result.stderr and f"ssh-keyscan -p {sshd_host.port} 127.0.0.1" in result.stderr
    )
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_changed_host_key_is_refused(tmp_path: Path, sshd_host: SshHost) -> None:
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    fake_line = f"[127.0.0.1]:{sshd_host.port} " + " ".join(other.with_suffix(".pub").read_text().split()[:2])
    env, cfg = _isolated_ssh(tmp_path, sshd_host, fake_line + "\n")
    result = taoremote(["--ssh-config", str(cfg), "--host", "target", "list"], env)
    assert result.returncode == 68
    assert "HOST KEY CHANGED" in result.stderr and "Traceback" not in result.stderr


def test_accept_new_trusts_and_records_an_unknown_host(tmp_path: Path, sshd_host: SshHost) -> None:
    env, cfg = _isolated_ssh(tmp_path, sshd_host, "", "    StrictHostKeyChecking accept-new\n")
    result = taoremote(["--ssh-config", str(cfg), "--host", "target", "list"], env)
    assert result.returncode == 0, result.stderr
    assert f"[127.0.0.1]:{sshd_host.port} ssh-ed25519" in (tmp_path / "known_hosts").read_text()


def test_auth_failure_is_exit_68(tmp_path: Path, sshd_host: SshHost) -> None:
    wrong = tmp_path / "wrong_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    env, cfg = _isolated_ssh(tmp_path, sshd_host, sshd_host.host_key_line + "\n")
    cfg.write_text(
        cfg.read_text().replace(str(sshd_host.identity_file), str(wrong)) + "    IdentitiesOnly yes\n"
    )
    env["SSH_AUTH_SOCK"] = ""
    result = taoremote(["--ssh-config", str(cfg), "--host", "target", "list"], env)
    assert result.returncode == 68
    assert "authentication failed" in result.stderr


@pytest.mark.parametrize(
    ("host", "expected"),
    [("127.0.0.1:1", "connection refused"), ("no-such-host.invalid", "cannot resolve host name")],
)
def test_unreachable_hosts_are_one_line_exit_68(
    tmp_path: Path, sshd_host: SshHost, host: str, expected: str
) -> None:
    env = _env(tmp_path, sshd_host)
    result = taoremote(["--host", host, "list"], env, timeout=60)
    assert result.returncode == 68
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


# ---------------------------------------------------------------------------------------------- fleet


def test_fleet_list_has_host_column_and_reports_unreachable_host(
    tmp_path: Path, fleet: list[SshHost]
) -> None:
    env = _env(tmp_path, fleet[0], None, [{"variable": "RIG_SLEEP", "value": "60"}])
    cfg = str(fleet[0].ssh_config_path)
    job = taoremote(["--ssh-config", cfg, "--host", "node1", "-d", "dino", "train"], env).stdout.strip()
    hosts = [a for h in ("node1", "node2", "127.0.0.1:1") for a in ("--host", h)]
    result = taoremote(["--ssh-config", cfg, *hosts, "list", "--format", "json"], env)
    assert result.returncode == 1
    rows = json.loads(result.stdout)
    # one dockerd behind every simulated host: the job shows on node1 and node2 alike
    assert sorted(r["host"] for r in rows if r["job"] == job) == ["node1", "node2"]
    assert "127.0.0.1:1" in result.stderr and "connection refused" in result.stderr
    table = taoremote(["--ssh-config", cfg, "--host", "node1", "--host", "node3", "list"], env)
    assert table.stdout.splitlines()[0].split()[0] == "host"


def test_fleet_stop_all_and_hosts_from_environment(tmp_path: Path, fleet: list[SshHost]) -> None:
    env = _env(tmp_path, fleet[1], None, [{"variable": "RIG_SLEEP", "value": "60"}])
    cfg = str(fleet[0].ssh_config_path)
    started = taoremote(["--ssh-config", cfg, "--host", "node2", "-d", "dino", "train"], env)
    assert started.returncode == 0, started.stderr
    env = {**env, "TAOREMOTE_HOSTS": "node1 node2 node3"}
    result = taoremote(["--ssh-config", cfg, "stop", "--all"], env)
    assert result.returncode == 0, result.stderr
    assert "stopped" in result.stdout
    assert running_job_names() == []


def test_remote_interactive_shell_gets_a_pty(tmp_path: Path, sshd_host: SshHost) -> None:
    env = _env(tmp_path, sshd_host)
    argv = [sys.executable, "-m", "taoremote", *_remote(sshd_host, "detectnet_v2")]
    lines = ["echo remote-$((40+2)) ${#API_TOKEN}; [ -t 0 ] && echo has-tty", "exit 6"]
    before = set(REMOTE_CACHE.glob("taoremote-env-*"))
    code, screen = run_in_terminal(argv, env, lines, ready="/ #")
    assert code == 6, screen
    assert f"remote-42 {len(SECRET)}" in screen and "has-tty" in screen
    # the launch ran in a terminal (pid unknown): none of the env-files made meanwhile may stay
    assert wait_for(lambda: not set(REMOTE_CACHE.glob("taoremote-env-*")) - before, timeout=10)


def test_a_launch_uses_one_ssh_connection_and_closes_it(
    tmp_path: Path, sshd_host: SshHost, sshd_factory: SshdFactory
) -> None:
    env = _env(tmp_path, sshd_host)
    before = sshd_host.log_path.read_text().count("Accepted publickey")
    result = taoremote(_remote(sshd_host, "detectnet_v2", "train", "x"), env)
    assert result.returncode == 0, result.stderr
    assert sshd_host.log_path.read_text().count("Accepted publickey") - before == 1
    assert wait_for(lambda: sshd_factory.connection_pids(sshd_host) == [], timeout=10)  # closed at exit


def test_proxyjump_through_another_host(tmp_path: Path, fleet: list[SshHost], sshd_host: SshHost) -> None:
    env = _env(tmp_path, sshd_host)
    jump, target = fleet[0], sshd_host
    cfg = tmp_path / "jump_config"
    cfg.write_text(
        fleet[0].ssh_config_path.read_text()
        + f"\nHost behind\n    HostName 127.0.0.1\n    Port {target.port}\n    User {target.user}\n"
        f"    IdentityFile {target.identity_file}\n    UserKnownHostsFile {target.known_hosts_path}\n"
        f"    ProxyJump {jump.name}\n"
    )
    before = jump.log_path.read_text().count("Accepted publickey")
    result = taoremote(
        ["--ssh-config", str(cfg), "--host", "behind", "detectnet_v2", "train", "via-jump"], env
    )
    assert result.returncode == 0, result.stderr
    assert "ARG<via-jump>" in result.stdout
    assert jump.log_path.read_text().count("Accepted publickey") - before == 1


def test_a_host_that_accepts_but_never_speaks_fails_within_connect_timeout(
    tmp_path: Path, sshd_host: SshHost
) -> None:
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True).start()
    port = server.getsockname()[1]
    env = _env(tmp_path, sshd_host)
    cfg = tmp_path / "silent_config"
    cfg.write_text(f"Host silent\n    HostName 127.0.0.1\n    Port {port}\n    ConnectTimeout 2\n")
    try:
        result = taoremote(["--ssh-config", str(cfg), "--host", "silent", "list"], env, timeout=30)
    finally:
        server.close()
    assert result.returncode == 68, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_sighup_leaves_a_remote_job_running(tmp_path: Path, sshd_host: SshHost) -> None:
    env = _env(
        tmp_path,
        sshd_host,
        None,
        [{"variable": "RIG_SLEEP", "value": "8"}, {"variable": "RIG_EXIT", "value": "3"}],
    )
    proc = start_taoremote(_remote(sshd_host, "detectnet_v2", "train"), env)
    assert wait_for(lambda: running_job_names() != [], timeout=30)
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 129, err
    reattach = err.split("Reattach with: ", 1)[1].strip().split()
    assert running_job_names() != []
    followed = taoremote(reattach[1:], env)
    assert followed.returncode == 3, followed.stderr


def test_missing_ssh_config_file_is_one_line_exit_68(tmp_path: Path, sshd_host: SshHost) -> None:
    result = taoremote(
        ["--ssh-config", str(tmp_path / "nope"), "--host", "gpu1", "list"], _env(tmp_path, sshd_host)
    )
    assert result.returncode == 68
    assert "no such file" in result.stderr and "Traceback" not in result.stderr


def test_closed_output_stops_a_remote_job_and_exits_141(tmp_path: Path, sshd_host: SshHost) -> None:
    env = _env(tmp_path, sshd_host)
    script = "for i in $(seq 1 200); do echo line $i; sleep 0.5; done"
    with open(tmp_path / "err", "w") as errf:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "taoremote",
                *_remote(sshd_host, "detectnet_v2", "run", "sh", "-c", script),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=errf,
        )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"line 1\n"
    proc.stdout.close()
    assert proc.wait(timeout=60) == 141, (tmp_path / "err").read_text()
    assert session_job_ids() == ""
