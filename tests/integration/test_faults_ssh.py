"""SSH under faults and real-world client files (issue 7: items 6, 7, 10, 13, 14, 15, 23), against real
OpenSSH servers on 127.0.0.1 in front of the real Docker engine."""

from __future__ import annotations

import getpass
import os
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
    running_job_names,
    start_taoremote,
    taoremote,
    wait_for,
    write_fake_nvidia_smi,
    write_mounts,
)

pytestmark = pytest.mark.usefixtures("test_images", "clean_jobs")
# env-files go to the login user's ~/.cache on the "remote" host (the sshd fixtures log in as us)
REMOTE_CACHE = Path(os.path.expanduser(f"~{getpass.getuser()}")) / ".cache"


def _secret() -> str:
    return f"ssh-fault-{uuid.uuid4().hex}"


def _env(
    tmp_path: Path, host: SshHost, secret: str, envs: list[dict[str, str]] | None = None
) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    write_fake_nvidia_smi(host.bin_dir, DEFAULT_SMI.read_text())
    doc = {"Mounts": [], "Envs": [{"variable": "API_TOKEN", "value": secret}, *(envs or [])]}
    mounts = write_mounts(tmp_path / f"mounts-{uuid.uuid4().hex[:6]}.json", doc)
    return base_env(home, None, mounts)


def _remote(host: SshHost, *args: str, config: Path | None = None) -> list[str]:
    return ["--ssh-config", str(config or host.ssh_config_path), "--host", host.name, *args]


def _env_files_of(pid: int) -> list[Path]:
    """Env-file directories a taoremote process (local pid) made on the remote host."""
    return list(REMOTE_CACHE.glob(f"taoremote-env-{pid}-*"))


def _reattach(stderr: str) -> list[str]:
    return stderr.split("Reattach with: ", 1)[1].strip().split()


def _argv_leaks(secret: str) -> list[str]:
    leaks = []
    for entry in Path("/proc").iterdir():  # the "remote" host is this machine: its /proc too
        if entry.name.isdigit():
            try:
                if secret.encode() in (entry / "cmdline").read_bytes():
                    leaks.append(entry.name)
            except OSError:
                continue
    return leaks


def _config_with(host: SshHost, tmp_path: Path, extra: str) -> Path:
    """The fixture's ssh config with more options for `host` (OpenSSH: the first value wins)."""
    cfg = tmp_path / f"ssh_config-{uuid.uuid4().hex[:6]}"
    cfg.write_text(f"Host {host.name}\n{extra}\n" + host.ssh_config_path.read_text())
    return cfg


@pytest.fixture(scope="module")
def slow_run_host(sshd_factory: SshdFactory) -> SshHost:
    """A host whose `docker run` takes 4 s before it starts (and says so in a file): time to cut the link."""
    host = sshd_factory.start("faults-slowrun")
    real = shutil.which("docker")
    shim = host.bin_dir / "docker"
    shim.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = run ]; then touch "{host.bin_dir}/run-started"; sleep 4; fi\n'
        f'exec {real} "$@"\n'
    )
    shim.chmod(0o755)
    return host


# ---------------------------------------------------------------------------------------------- item 6


def test_link_lost_during_docker_run_is_255_with_the_reattach_command(
    tmp_path: Path, slow_run_host: SshHost, sshd_factory: SshdFactory
) -> None:
    host = slow_run_host
    marker = host.bin_dir / "run-started"
    marker.unlink(missing_ok=True)
    env = _env(
        tmp_path,
        host,
        _secret(),
        [{"variable": "RIG_SLEEP", "value": "5"}, {"variable": "RIG_EXIT", "value": "9"}],
    )
    proc = start_taoremote(_remote(host, "detectnet_v2", "train", "--mark"), env)
    assert wait_for(marker.exists, timeout=60)
    sshd_factory.kill_connections(host)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 255, err
    assert "exit code -1" not in err and "Traceback" not in err
    reattach = _reattach(err)
    assert reattach[-3:-1] == ["logs", "-f"]
    assert wait_for(lambda: running_job_names() != [], timeout=30)  # docker run went on without us
    followed = taoremote(reattach[1:], env)
    assert followed.returncode == 9, followed.stderr
    assert "ARG<--mark>" in followed.stdout
    assert wait_for(lambda: _env_files_of(proc.pid) == [], timeout=10)  # item 10: nothing stranded


# ---------------------------------------------------------------------------------------------- item 7


def test_a_frozen_remote_session_ends_after_server_alive_count_max(
    tmp_path: Path, sshd_host: SshHost, sshd_factory: SshdFactory
) -> None:
    cfg = _config_with(sshd_host, tmp_path, "    ServerAliveInterval 1\n    ServerAliveCountMax 3\n")
    env = _env(tmp_path, sshd_host, _secret(), [{"variable": "RIG_SLEEP", "value": "120"}])
    proc = start_taoremote(_remote(sshd_host, "detectnet_v2", "train", config=cfg), env)
    assert wait_for(lambda: running_job_names() != [], timeout=30)
    time.sleep(1)  # following now
    frozen = sshd_factory.kill_connections(sshd_host, sig=signal.SIGSTOP)
    assert frozen
    started = time.monotonic()
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("taoremote followed a frozen session for 30 s")
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    assert time.monotonic() - started < 30
    assert proc.returncode == 255, err
    assert _reattach(err)[-3:-1] == ["logs", "-f"]
    assert running_job_names() != []


@pytest.fixture(scope="module")
def hung_run_host(sshd_factory: SshdFactory) -> SshHost:
    """A host whose `docker run` never answers (a frozen daemon behind a healthy SSH link)."""
    host = sshd_factory.start("faults-hungrun")
    real = shutil.which("docker")
    shim = host.bin_dir / "docker"
    shim.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = run ]; then touch "{host.bin_dir}/run-started"; exec sleep 45; fi\n'
        f'exec {real} "$@"\n'
    )
    shim.chmod(0o755)
    return host


def test_a_remote_docker_run_that_never_answers_has_a_deadline(
    tmp_path: Path, hung_run_host: SshHost
) -> None:
    env = _env(tmp_path, hung_run_host, _secret())
    started = time.monotonic()
    result = taoremote(_remote(hung_run_host, "detectnet_v2", "train"), env, timeout=90)
    assert result.returncode == 69, result.stderr
    assert time.monotonic() - started < 60
    assert "did not answer within" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_ctrl_c_during_a_remote_docker_run_that_never_answers_is_answered_in_seconds(
    tmp_path: Path, hung_run_host: SshHost
) -> None:
    marker = hung_run_host.bin_dir / "run-started"
    marker.unlink(missing_ok=True)
    env = _env(tmp_path, hung_run_host, _secret())
    proc = start_taoremote(_remote(hung_run_host, "detectnet_v2", "train"), env)
    assert wait_for(marker.exists, timeout=60)
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    try:
        _, err = proc.communicate(timeout=25)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("Ctrl-C was not answered within 25 s")
    assert proc.returncode == 130, err
    assert time.monotonic() - started < 25 and "Traceback" not in err


# ---------------------------------------------------------------------------------------------- item 10


def test_a_stale_env_file_is_swept_and_a_fresh_one_kept(tmp_path: Path, sshd_host: SshHost) -> None:
    stale = REMOTE_CACHE / f"taoremote-env-stale-{uuid.uuid4().hex[:8]}"
    fresh = REMOTE_CACHE / f"taoremote-env-fresh-{uuid.uuid4().hex[:8]}"
    for d in (stale, fresh):
        d.mkdir(parents=True, mode=0o700)
        (d / "env").write_text("A=1\n")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    try:
        env = _env(tmp_path, sshd_host, _secret())
        result = taoremote(_remote(sshd_host, "detectnet_v2", "train"), env)
        assert result.returncode == 0, result.stderr
        assert not stale.exists()  # stranded by a dropped link an hour ago
        assert fresh.exists()  # may belong to a launch that is under way right now
    finally:
        shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(fresh, ignore_errors=True)


HEX = 'printf %s "$1" | od -An -tx1'


def test_a_non_utf8_argument_runs_and_leaves_no_env_file(tmp_path: Path, sshd_host: SshHost) -> None:
    env = _env(tmp_path, sshd_host, _secret())
    arg = b"caf\xe9-\xff"
    argv = [*map(os.fsencode, _remote(sshd_host, "detectnet_v2", "run", "sh", "-c", HEX, "sh")), arg]
    proc = subprocess.Popen(
        [sys.executable, "-m", "taoremote", *argv],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    # it reached docker byte for byte; docker's API (JSON) carries only UTF-8 and makes U+FFFD of the rest,
    # exactly as with a local `docker run`
    assert out.split() == [f"{byte:02x}".encode() for byte in "caf\ufffd-\ufffd".encode()]
    assert _env_files_of(proc.pid) == []


def test_a_command_too_long_for_sshd_is_not_reported_as_a_running_job(
    tmp_path: Path, sshd_host: SshHost
) -> None:
    env = _env(tmp_path, sshd_host, _secret())
    args = ["x" * 1000] * 400  # 400 KB: more than sshd takes in one request
    proc = start_taoremote(_remote(sshd_host, "detectnet_v2", "train", *args), env)
    _, err = proc.communicate(timeout=120)
    assert "keeps running" not in err and "Traceback" not in err, err
    assert proc.returncode != 0
    assert len(err.strip().splitlines()) == 1, err
    assert _env_files_of(proc.pid) == []
    assert running_job_names() == []


# ---------------------------------------------------------------------------------------------- item 13


def _wrong_key_line(tmp_path: Path, host: SshHost) -> str:
    other = tmp_path / f"other_key-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    return f"[127.0.0.1]:{host.port} " + " ".join(other.with_suffix(".pub").read_text().split()[:2])


def _isolated(tmp_path: Path, host: SshHost, known_hosts: str, extra: str = "") -> Path:
    known = tmp_path / "known_hosts"
    known.write_text(known_hosts)
    cfg = tmp_path / "ssh_config"
    cfg.write_text(
        f"Host target\n    HostName 127.0.0.1\n    Port {host.port}\n    User {host.user}\n"
        f"    IdentityFile {host.identity_file}\n    IdentitiesOnly yes\n    UserKnownHostsFile {known}\n"
        f"    GlobalKnownHostsFile /dev/null\n    ConnectTimeout 5\n{extra}"
    )
    return cfg


def _list_on_target(tmp_path: Path, host: SshHost, cfg: Path) -> subprocess.CompletedProcess[str]:
    return taoremote(["--ssh-config", str(cfg), "--host", "target", "list"], _env(tmp_path, host, _secret()))


def test_a_changed_host_key_is_refused_even_with_strict_checking_off(
    tmp_path: Path, sshd_host: SshHost
) -> None:
    cfg = _isolated(
        tmp_path, sshd_host, _wrong_key_line(tmp_path, sshd_host) + "\n", "    StrictHostKeyChecking no\n"
    )
    result = _list_on_target(tmp_path, sshd_host, cfg)
    assert result.returncode == 68, result.stderr
    assert "HOST KEY CHANGED" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------------------------------------- item 14


def test_a_host_without_sftp_runs_a_job_with_envs(tmp_path: Path, sshd_factory: SshdFactory) -> None:
    host = sshd_factory.start("faults-nosftp", sftp=False)
    secret = _secret()
    env = _env(tmp_path, host, secret)
    script = 'echo "<$API_TOKEN>"; sleep 3'
    proc = start_taoremote(_remote(host, "detectnet_v2", "run", "sh", "-c", script), env)
    leaks: list[str] = []
    while proc.poll() is None:
        leaks += _argv_leaks(secret)
        time.sleep(0.05)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out == f"<{secret}>\n"
    assert leaks == []
    assert _env_files_of(proc.pid) == []


# ---------------------------------------------------------------------------------------------- item 15


def test_known_hosts_with_unusable_lines_still_trusts_the_hosts_key(
    tmp_path: Path, sshd_host: SshHost
) -> None:
    lines = [
        "@cert-authority *.example.com ssh-ed25519 "
        "AAAAC3NzaC1lZDI1NTE5AAAAIHh0Ijs1fFzb6Yl3ZzWJ3dFDuW3Vj0HtXlMX7tj7z9xk",
        "this line is not a known_hosts line",
        "example.org ssh-ed25519 not-base64!!",
        sshd_host.host_key_line,
    ]
    result = _list_on_target(tmp_path, sshd_host, _isolated(tmp_path, sshd_host, "\n".join(lines) + "\n"))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


def test_a_revoked_host_key_is_refused(tmp_path: Path, sshd_host: SshHost) -> None:
    _, keytype, blob = sshd_host.host_key_line.split()
    lines = [f"@revoked * {keytype} {blob}", sshd_host.host_key_line]
    result = _list_on_target(tmp_path, sshd_host, _isolated(tmp_path, sshd_host, "\n".join(lines) + "\n"))
    assert result.returncode == 68, result.stderr
    assert "revoked" in result.stderr and len(result.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------- item 23


def _target_block(host: SshHost, name: str = "target") -> str:
    return (
        f"Host {name}\n    HostName 127.0.0.1\n    Port {host.port}\n    User {host.user}\n"
        f"    IdentityFile {host.identity_file}\n    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {host.known_hosts_path}\n    GlobalKnownHostsFile /dev/null\n"
    )


def test_a_host_defined_in_an_included_file_is_found(tmp_path: Path, sshd_host: SshHost) -> None:
    included = tmp_path / "config.d"
    included.mkdir()
    (included / "gpu.conf").write_text(_target_block(sshd_host))
    cfg = tmp_path / "ssh_config"
    cfg.write_text(f"Include {included}/*\n")
    result = _list_on_target(tmp_path, sshd_host, cfg)
    assert result.returncode == 0, result.stderr


def test_include_in_the_users_own_ssh_config(tmp_path: Path, sshd_host: SshHost) -> None:
    env = _env(tmp_path, sshd_host, _secret())
    ssh_dir = Path(env["HOME"]) / ".ssh"
    (ssh_dir / "config.d").mkdir(parents=True)
    (ssh_dir / "config.d" / "gpu.conf").write_text(_target_block(sshd_host))
    (ssh_dir / "config").write_text(f"Include {ssh_dir}/config.d/*\n")
    result = taoremote(["--host", "target", "list"], env)
    assert result.returncode == 0, result.stderr


def test_match_blocks_apply(tmp_path: Path, sshd_host: SshHost) -> None:
    cfg = tmp_path / "ssh_config"
    block = _target_block(sshd_host).replace(f"    Port {sshd_host.port}\n", "")
    cfg.write_text(f"Match originalhost target\n    Port {sshd_host.port}\n\n{block}")
    result = _list_on_target(tmp_path, sshd_host, cfg)
    assert result.returncode == 0, result.stderr


PROXY = """import socket, sys, threading
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
open(sys.argv[3], "w").close()
def up():
    while data := sys.stdin.buffer.read1(65536):
        s.sendall(data)
    s.shutdown(socket.SHUT_WR)
threading.Thread(target=up, daemon=True).start()
while data := s.recv(65536):
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
"""


def test_proxy_command(tmp_path: Path, sshd_host: SshHost) -> None:
    used = tmp_path / "proxied"
    script = tmp_path / "proxy.py"
    script.write_text(PROXY)
    cfg = tmp_path / "ssh_config"
    cfg.write_text(_target_block(sshd_host) + f"    ProxyCommand {sys.executable} {script} %h %p {used}\n")
    result = _list_on_target(tmp_path, sshd_host, cfg)
    assert result.returncode == 0, result.stderr
    assert used.exists()


def test_hashed_known_hosts(tmp_path: Path, sshd_host: SshHost) -> None:
    cfg = _isolated(tmp_path, sshd_host, sshd_host.host_key_line + "\n")
    subprocess.run(
        ["ssh-keygen", "-q", "-H", "-f", str(tmp_path / "known_hosts")], check=True, capture_output=True
    )
    assert "|1|" in (tmp_path / "known_hosts").read_text()
    result = _list_on_target(tmp_path, sshd_host, cfg)
    assert result.returncode == 0, result.stderr


def test_an_agent_holds_the_key(tmp_path: Path, sshd_host: SshHost) -> None:
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        assert wait_for(sock.exists, timeout=10)
        agent_env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(
            ["ssh-add", "-q", str(sshd_host.identity_file)], env=agent_env, check=True, capture_output=True
        )
        cfg = tmp_path / "ssh_config"
        keyless = f"    IdentityFile {sshd_host.identity_file}\n    IdentitiesOnly yes\n"
        cfg.write_text(_target_block(sshd_host).replace(keyless, ""))
        env = {**_env(tmp_path, sshd_host, _secret()), "SSH_AUTH_SOCK": str(sock)}
        result = taoremote(["--ssh-config", str(cfg), "--host", "target", "list"], env)
        assert result.returncode == 0, result.stderr
    finally:
        agent.terminate()
        agent.wait(timeout=10)


def test_a_broken_ssh_config_is_one_line_exit_68(tmp_path: Path, sshd_host: SshHost) -> None:
    cfg = tmp_path / "ssh_config"
    cfg.write_text("Host target\n    Port not-a-number\n")
    result = _list_on_target(tmp_path, sshd_host, cfg)
    assert result.returncode == 68, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
