"""Fixtures for integration tests against real daemons (DESIGN.md §4).

No mocks: a real dockerd (started by scripts/start-dockerd.sh, with a no-op
`nvidia-container-runtime-hook` so `--gpus all` is accepted) and real OpenSSH
servers on 127.0.0.1 that stand in for remote GPU hosts.

Docker
    docker_engine (session) -> str          server version; starts dockerd via the project script if needed
    test_images   (session) -> str          runs scripts/build-test-images.sh; returns "taoremote.test"
    clean_jobs    (function) -> Callable[[], list[dict]]
                                            removes this session's containers before and after the test
                                            (taorun.SESSION_USER / SESSION_LABEL); the yielded callable
                                            lists them (`docker ps -a --format '{{json .}}'` rows).
                                            Assert "nothing left" with taorun.session_job_ids() == "",
                                            never with a global `--filter label=taoremote.job`.
SSH
    sshd_factory  (session) -> SshdFactory  start(name) -> SshHost, stop(name), kill_connections(...)
    sshd_host     (session) -> SshHost      one host, "gpu1"
    fleet         (session) -> list[SshHost]  "node1", "node2", "node3"

Slurm
    slurm_cluster (session) -> SlurmCluster  a one-node cluster with 2 fake GPUs (scripts/start-slurm.sh),
                                            config in /etc/slurm, so clients over the test sshd find it too

All simulated hosts share this machine's dockerd, so containers started
"on" node1 are visible "on" node2 too.

Unavailable daemon: pytest.skip normally, pytest.fail with --require-docker /
--require-ssh / --require-slurm (options declared in tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import NoReturn

import pytest

from tests.integration.taorun import session_containers, session_user
from tests.proctree import descendants, ppid_map

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = REPO_ROOT / "scripts"
TEST_REGISTRY = "taoremote.test"
SSHD = "/usr/sbin/sshd"  # sshd must be started by absolute path (it re-execs itself)


def _unavailable(config: pytest.Config, option: str, reason: str) -> NoReturn:
    """Skip, or fail when the matching --require-* option was given."""
    if config.getoption(option.lstrip("-").replace("-", "_")):
        pytest.fail(f"{reason} [{option} given]", pytrace=False)
    pytest.skip(reason)


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# --------------------------------------------------------------------------- docker


def _run_script(name: str, *, timeout: float) -> tuple[bool, str]:
    """Run one of scripts/*.sh: (succeeded, the tail of what it printed)."""
    try:
        done = subprocess.run(
            ["bash", str(SCRIPTS / name)],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return False, f"{name} timed out after {timeout:.0f} s"
    return done.returncode == 0, _tail(done.stdout + done.stderr, 30)


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def _docker_server_version() -> tuple[str | None, str]:
    try:
        r = _docker("info", "--format", "{{.ServerVersion}}", timeout=20)
    except subprocess.TimeoutExpired:
        return None, "`docker info` timed out"
    version = r.stdout.strip()
    if r.returncode == 0 and version:
        return version, ""
    return None, _tail(r.stderr or r.stdout, 5)


@pytest.fixture(scope="session")
def docker_engine(request: pytest.FixtureRequest) -> str:
    """A reachable Docker engine; returns its server version.

    If none answers, tries the project's own scripts/start-dockerd.sh once
    ("skip only when the daemon cannot be started").
    """
    if shutil.which("docker") is None:
        _unavailable(request.config, "--require-docker", "no `docker` client on PATH")
    version, why = _docker_server_version()
    if version is None:
        script_out = _run_script("start-dockerd.sh", timeout=120)[1]
        version, why2 = _docker_server_version()
        if version is None:
            _unavailable(
                request.config,
                "--require-docker",
                f"Docker engine not reachable ({why}); "
                f"start-dockerd.sh could not start it: {script_out} {why2}",
            )
    return version


@pytest.fixture(scope="session")
def test_images(request: pytest.FixtureRequest, docker_engine: str) -> str:
    """Builds (or confirms, in well under a second) the busybox test images.

    Returns the registry prefix: images are `taoremote.test/nvidia/tao/tao-toolkit:<tag>` for every
    tag of taoremote/data/tao_tasks.json, `taoremote.test/cuda:12.8-require`,
    `taoremote.test/cuda:11.8-require` and `taoremote.test/demo:latest`.
    """
    ok, output = _run_script("build-test-images.sh", timeout=600)
    if not ok:
        _unavailable(request.config, "--require-docker", f"build-test-images.sh failed:\n{output}")
    return TEST_REGISTRY


def _list_jobs() -> list[dict[str, str]]:
    return session_containers()


def _remove_jobs() -> None:
    ids = [row["ID"] for row in session_containers()]
    if ids:
        _docker("rm", "-f", *ids, timeout=120)


@pytest.fixture
def clean_jobs(docker_engine: str) -> Iterator[Callable[[], list[dict[str, str]]]]:
    """None of this session's containers before the test, none left after it.

    Removes only this pytest session's containers (taorun.session_containers:
    jobs launched as SESSION_USER or one of its `session_user(name)`s, and
    containers a test labelled SESSION_LABEL), so tests, benchmarks and a
    user's own jobs can share one dockerd. Yields a callable returning the current job containers as
    `docker ps --format '{{json .}}'` dicts, to assert that nothing was left
    running or half-created.
    """
    _remove_jobs()
    yield _list_jobs
    _remove_jobs()


# --------------------------------------------------------------------------- ssh


class SshdStartError(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class SshHost:
    """One simulated remote host: a real sshd on 127.0.0.1:port.

    `name` is the `Host` alias in `ssh_config_path`; `bin_dir` comes first on
    PATH in its SSH sessions (sshd `SetEnv PATH=...`), so a fake `nvidia-smi`
    there is what this "host" runs. Logins are as `user` (the test runner's
    user; root on CI) with `identity_file`.
    """

    name: str
    hostname: str  # always "127.0.0.1"
    port: int
    user: str
    host_key_line: str  # "[127.0.0.1]:PORT ssh-ed25519 AAAA..." as in known_hosts_path
    bin_dir: Path
    pid: int  # the listening sshd
    identity_file: Path
    ssh_config_path: Path  # shared by all hosts of one factory
    known_hosts_path: Path  # shared by all hosts of one factory
    log_path: Path  # sshd -e output

    @property
    def address(self) -> str:
        """`user@127.0.0.1:PORT`, the non-alias form of --host."""
        return f"{self.user}@{self.hostname}:{self.port}"

    def ssh_argv(self, command: str | None = None, *options: str) -> list[str]:
        """OpenSSH client argv for this host, strict host-key checking, no prompts.

        `command` is one string: ssh hands it to the remote shell, which splits it
        (shlex.join it yourself).
        """
        argv = [
            "ssh",
            "-F",
            str(self.ssh_config_path),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            *options,
            self.name,
        ]
        if command is not None:
            argv.append(command)
        return argv

    def install_tool(self, name: str, stdout: str = "", stderr: str = "", exit_code: int = 0) -> Path:
        """Put a fake command (e.g. `nvidia-smi` printing a captured output) on this host's PATH.

        It ignores its arguments, prints `stdout`/`stderr` byte-for-byte and exits `exit_code`.
        """
        data = self.bin_dir / f".{name}.d"
        data.mkdir(exist_ok=True)
        (data / "stdout").write_text(stdout)
        (data / "stderr").write_text(stderr)
        tool = self.bin_dir / name
        tmp = tool.with_name(f".{name}.tmp")
        tmp.write_text(
            "#!/bin/sh\n"
            f"# fake {name} for simulated host {self.name}\n"
            f"cat '{data}/stdout'\n"
            f"cat '{data}/stderr' >&2\n"
            f"exit {int(exit_code)}\n"
        )
        tmp.chmod(0o755)
        tmp.replace(tool)  # atomic: a concurrent session never sees half a script
        return tool

    def remove_tool(self, name: str) -> None:
        (self.bin_dir / name).unlink(missing_ok=True)
        shutil.rmtree(self.bin_dir / f".{name}.d", ignore_errors=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _socket_inodes(local_port: int, peer_port: int) -> set[str]:
    """Inodes of established TCP sockets 127.0.0.1:local_port <-> *:peer_port."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    local, remote, state, inode = cols[1], cols[2], cols[3], cols[9]
                    if (
                        state == "01"
                        and int(local.rsplit(":", 1)[1], 16) == local_port
                        and int(remote.rsplit(":", 1)[1], 16) == peer_port
                    ):
                        inodes.add(inode)
        except OSError:
            continue
    return inodes


def _pids_holding(inodes: set[str], pids: list[int]) -> set[int]:
    wanted = {f"socket:[{i}]" for i in inodes}
    holders: set[int] = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                    holders.add(pid)
                    break
            except OSError:
                continue
    return holders


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat: tells a process from a later one with the same pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


def _kill(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


class SshdFactory:
    """Starts real sshd instances on free loopback ports, one per simulated host.

    One user key, one ssh config (`Host <name>` blocks) and one known_hosts
    file are shared by all hosts of the factory.
    """

    def __init__(self, root: Path, login_env: Mapping[str, str] | None = None) -> None:
        """login_env: more variables for every SSH session (sshd SetEnv), e.g. the benchmarks'
        HOME=<empty dir>, so a login runs no ~/.bashrc (pyenv init costs ~0.1 s per command)."""
        self.root = root
        self.user = getpass.getuser()
        self._login_env = "".join(f" {k}={v}" for k, v in (login_env or {}).items())
        self._hosts: dict[str, SshHost] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._orphans: set[tuple[int, str | None]] = set()
        self.identity_file = root / "id_ed25519"
        self.authorized_keys = root / "authorized_keys"
        self.known_hosts_path = root / "known_hosts"
        self._ssh_config = root / "ssh_config"
        self._keygen(self.identity_file, "taoremote-test-user")
        self.authorized_keys.write_text(self.identity_file.with_suffix(".pub").read_text())
        self.authorized_keys.chmod(0o600)
        self._write_client_files()
        _remove_stale_pyenv_lock()
        # sshd's privilege-separation chroot; the Debian package creates it only via systemd.
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)

    @property
    def ssh_config_path(self) -> Path:
        return self._ssh_config

    @property
    def hosts(self) -> dict[str, SshHost]:
        return dict(self._hosts)

    @staticmethod
    def _keygen(path: Path, comment: str) -> None:
        if not path.exists():
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                check=True,
                capture_output=True,
                stdin=subprocess.DEVNULL,
            )

    def _write_client_files(self) -> None:
        blocks = []
        for h in self._hosts.values():
            blocks.append(
                f"Host {h.name}\n"
                f"    HostName {h.hostname}\n"
                f"    Port {h.port}\n"
                f"    User {h.user}\n"
                f"    IdentityFile {self.identity_file}\n"
                f"    IdentitiesOnly yes\n"
                f"    UserKnownHostsFile {self.known_hosts_path}\n"
                f"    GlobalKnownHostsFile /dev/null\n"
                f"    StrictHostKeyChecking yes\n"
                f"    ConnectTimeout 10\n"
            )
        self._ssh_config.write_text("\n".join(blocks))
        self.known_hosts_path.write_text("".join(h.host_key_line + "\n" for h in self._hosts.values()))

    def _sshd_config(self, hostdir: Path, port: int, bin_dir: Path, *, sftp: bool = True) -> Path:
        cfg = hostdir / "sshd_config"
        cfg.write_text(
            f"ListenAddress 127.0.0.1\n"
            f"Port {port}\n"
            f"HostKey {hostdir / 'host_ed25519'}\n"
            f"PidFile {hostdir / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.authorized_keys}\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "StrictModes no\n"
            "PermitRootLogin yes\n"
            f"AllowUsers {self.user}\n"
            "UseDNS no\n"
            "PrintMotd no\n"
            "PrintLastLog no\n"
            "X11Forwarding no\n"
            "AllowTcpForwarding yes\n"
            # Parallel tests and fabric's extra channels: don't throttle or refuse.
            "MaxStartups 200:100:400\n"
            "MaxSessions 200\n"
            "LoginGraceTime 30\n"
            # internal-sftp needs no extra binary; hardened hosts (sftp=False) offer no SFTP at all
            f"{'Subsystem sftp internal-sftp' if sftp else ''}\n"
            # Each simulated host gets its own tools (fake nvidia-smi) first on PATH.
            f"SetEnv PATH={bin_dir}:/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
            f"{self._login_env}\n"
            "LogLevel INFO\n"
        )
        return cfg

    def start(self, name: str, *, sftp: bool = True, port: int | None = None) -> SshHost:
        """Start (or return the running) sshd for host `name`; sftp=False: no SFTP subsystem. PORT: the
        port to listen on (a host stopped and started again on its old port, as a rebooted one comes back:
        a client that resolved the port at start reaches it again)."""
        if name in self._hosts and self._procs[name].poll() is None:
            return self._hosts[name]
        hostdir = self.root / name
        bin_dir = hostdir / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        hostkey = hostdir / "host_ed25519"
        self._keygen(hostkey, f"taoremote-test-{name}")
        pub = hostkey.with_suffix(".pub").read_text().split()
        log_path = hostdir / "sshd.log"

        last_error = ""
        wanted = port
        for _attempt in range(5):
            port = wanted or _free_port()
            cfg = self._sshd_config(hostdir, port, bin_dir, sftp=sftp)
            log_start = log_path.stat().st_size if log_path.exists() else 0
            with open(log_path, "ab") as log:
                # stderr to a file, not a pipe: a pipe nobody reads would block sshd.
                proc = subprocess.Popen(
                    [SSHD, "-D", "-e", "-f", str(cfg)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            deadline = time.monotonic() + 10
            up = False
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                        up = True
                        break
                except OSError:
                    time.sleep(0.05)
            if up:
                break
            if proc.poll() is None:
                proc.kill()
                proc.wait()
                last_error = f"sshd for {name} did not listen on port {port} within 10 s"
            else:
                last_error = f"sshd for {name} exited with {proc.returncode}"
            with open(log_path, "rb") as log:
                log.seek(log_start)
                log_text = log.read().decode(errors="replace")
            if "Address already in use" not in log_text:  # lost the race for the port: retry
                raise SshdStartError(f"{last_error}; sshd stderr:\n{_tail(log_text)}")
        else:
            raise SshdStartError(last_error)

        host = SshHost(
            name=name,
            hostname="127.0.0.1",
            port=port,
            user=self.user,
            host_key_line=f"[127.0.0.1]:{port} {pub[0]} {pub[1]}",
            bin_dir=bin_dir,
            pid=proc.pid,
            identity_file=self.identity_file,
            ssh_config_path=self._ssh_config,
            known_hosts_path=self.known_hosts_path,
            log_path=log_path,
        )
        self._hosts[name] = host
        self._procs[name] = proc
        self._write_client_files()

        # Prove a real login works (key auth, host key, shell) before handing it out.
        _remove_stale_pyenv_lock()
        r = subprocess.run(
            host.ssh_argv("true"), capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
        )
        if r.returncode != 0:
            self.stop(name)
            raise SshdStartError(
                f"ssh login to {name} failed (rc {r.returncode}): {r.stderr.strip()}\n"
                f"sshd stderr:\n{_tail(log_path.read_text(errors='replace'))}"
            )
        return host

    def connection_pids(self, host: SshHost) -> list[int]:
        """The per-connection sshd processes (direct children of the listener)."""
        procs = ppid_map()
        return sorted(p for p, (ppid, comm) in procs.items() if ppid == host.pid and comm.startswith("sshd"))

    def kill_connections(
        self, host: SshHost, client_port: int | None = None, sig: int = signal.SIGKILL
    ) -> list[int]:
        """Simulate a dropped link: kill the sshd processes serving connections to `host`.

        Only sshd processes die (the TCP connection closes under the client); the
        commands they ran lose their pipes, as on a real network drop. With
        `client_port` only the connection from that local port is cut (find it
        e.g. from paramiko `transport.sock.getsockname()[1]`); otherwise all of
        the host's connections. Returns the pids signalled.
        """
        procs = ppid_map()
        roots = [p for p, (ppid, comm) in procs.items() if ppid == host.pid and comm.startswith("sshd")]
        if client_port is not None:
            subtree = {r: descendants(r, procs) for r in roots}
            holders = _pids_holding(
                _socket_inodes(host.port, client_port), [p for r in roots for p in (r, *subtree[r])]
            )
            roots = [r for r in roots if holders & {r, *subtree[r]}]
        victims: list[int] = []
        for r in roots:
            for pid in (r, *descendants(r, procs)):
                if procs.get(pid, (0, ""))[1].startswith("sshd"):
                    if _kill(pid, sig):
                        victims.append(pid)
                else:
                    # The session's commands outlive the link (as on a real drop);
                    # remember them so close() does not leak them past the test run.
                    self._orphans.add((pid, _start_time(pid)))
        _remove_stale_pyenv_lock()  # a login killed mid-`pyenv init` must not stall the next one
        return victims

    def stop(self, name: str) -> None:
        """Stop host `name`: its listener, its connections and what they run."""
        proc = self._procs.pop(name, None)
        self._hosts.pop(name, None)
        if proc is None:
            return
        procs = ppid_map()
        for pid in descendants(proc.pid, procs):
            _kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _remove_stale_pyenv_lock()  # a login killed mid-`pyenv init` must not stall the next one
        self._write_client_files()

    def close(self) -> None:
        for name in list(self._procs):
            self.stop(name)
        for pid, started in self._orphans:
            if started is not None and _start_time(pid) == started:  # not a recycled pid
                _kill(pid, signal.SIGKILL)
        self._orphans.clear()


def _remove_stale_pyenv_lock() -> None:
    """Every ssh command runs the login user's ~/.bashrc; on machines whose bashrc runs `pyenv init`,
    a session killed mid-login (the dropped-link tests and `stop` do exactly that) leaves pyenv's rehash
    lock behind, and every later login then waits 60 s for it. The lock is stale when no `pyenv-rehash`
    is alive to hold it (or, failing that check, when it is older than a minute)."""
    lock = Path.home() / ".pyenv" / "shims" / ".pyenv-shim"
    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return
    if age > 60 or not _pyenv_rehash_running():
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


def _pyenv_rehash_running() -> bool:
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"pyenv-rehash" in cmdline.read_bytes():
                return True
        except OSError:  # the process ended while we looked
            continue
    return False


def _ssh_prerequisites() -> str | None:
    for tool in (SSHD, "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"`{tool}` not found (run scripts/install-deps.sh)"
    return None


@pytest.fixture(scope="session")
def sshd_factory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SshdFactory]:
    missing = _ssh_prerequisites()
    if missing:
        _unavailable(request.config, "--require-ssh", missing)
    try:
        factory = SshdFactory(tmp_path_factory.mktemp("sshd"))
    except (OSError, subprocess.CalledProcessError) as e:
        _unavailable(request.config, "--require-ssh", f"cannot prepare sshd keys/config: {e}")
    try:
        yield factory
    finally:
        factory.close()


def _start_or_unavailable(request: pytest.FixtureRequest, factory: SshdFactory, name: str) -> SshHost:
    try:
        return factory.start(name)
    except (SshdStartError, OSError, subprocess.SubprocessError) as e:
        _unavailable(request.config, "--require-ssh", f"cannot start sshd for {name}: {e}")


@pytest.fixture(scope="session")
def sshd_host(request: pytest.FixtureRequest, sshd_factory: SshdFactory) -> SshHost:
    """One simulated GPU host, alias `gpu1`."""
    return _start_or_unavailable(request, sshd_factory, "gpu1")


@pytest.fixture(scope="session")
def fleet(request: pytest.FixtureRequest, sshd_factory: SshdFactory) -> list[SshHost]:
    """Three simulated GPU hosts, aliases `node1`, `node2`, `node3`."""
    return [_start_or_unavailable(request, sshd_factory, f"node{i}") for i in (1, 2, 3)]


# --------------------------------------------------------------------------- slurm


@dataclasses.dataclass(frozen=True)
class SlurmCluster:
    """The one-node test cluster: jobs run as their submitter, with `docker` against this machine's dockerd.

    `gpus` fake GPUs are GRES on `node` (jobs see SLURM_JOB_GPUS / CUDA_VISIBLE_DEVICES); state, logs and
    the jobcomp file (finished jobs, `sacct -c`) are under `state_dir`.
    """

    node: str
    partition: str
    gpus: int
    state_dir: Path


@pytest.fixture(scope="session")
def slurm_cluster(request: pytest.FixtureRequest) -> SlurmCluster:
    """Starts (or confirms, in well under a second) the cluster; installs Slurm first on a fresh machine."""
    ok, output = _run_script("start-slurm.sh", timeout=300)
    if not ok or shutil.which("sbatch") is None:
        _unavailable(request.config, "--require-slurm", f"start-slurm.sh could not start Slurm:\n{output}")
    return SlurmCluster(
        node=socket.gethostname().split(".")[0],
        partition="gpu",
        gpus=2,
        state_dir=Path(os.environ.get("TAOREMOTE_SLURM_DIR", "/var/lib/taoremote-slurm")),
    )


@pytest.fixture
def user() -> Iterator[str]:
    """A user name of this test's own (taoremote labels its jobs `taoremote.user=$LOGNAME`): what the
    test launches as it is told apart from everything else on the shared dockerd, and removed after it."""
    name = f"{session_user()}-u{uuid.uuid4().hex[:6]}"
    yield name
    ids = _docker("ps", "-aq", "--filter", f"label=taoremote.user={name}").stdout.split()
    if ids:
        _docker("rm", "-f", *ids, timeout=120)
