"""SSH hosts: SshExecutor runs argv on a remote host through fabric/paramiko, shell-joined exactly once.

Imported only when a remote host is used (hosts.open_executor): fabric and paramiko cost more
start-up time than everything else together. Host keys are checked as OpenSSH checks them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shlex
import socket
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import fabric
import paramiko

from taoremote.errors import DockerError, HostError, LinkLostError
from taoremote.hosts import Completed
from taoremote.signals import OutputClosed

if TYPE_CHECKING:
    from fabric import Connection


DEFAULT_CONNECT_TIMEOUT_S = 10
KEEPALIVE_S = 15  # long `logs -f` sessions must survive idle NAT links
LINK_TIMEOUT_S = 60
GLOBAL_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"


@dataclass(frozen=True)
class HostKeyPolicy:
    strict: str  # "yes" | "accept-new" | "no"
    known_hosts: tuple[str, ...]  # UserKnownHostsFile: the first one is where accept-new records keys
    global_known_hosts: tuple[str, ...] = ()


def parse_host_spec(spec: str) -> tuple[str | None, str, int | None]:
    """`[user@]host[:port]` -> (user, host, port); an ~/.ssh/config alias is just a host."""
    user, _, rest = spec.rpartition("@")
    host, port = rest, None
    if rest.startswith("["):  # [ipv6]:port
        inner, _, tail = rest[1:].partition("]")
        host, port = inner, int(tail[1:]) if tail.startswith(":") and tail[1:].isdigit() else None
    elif rest.count(":") == 1:
        name, _, port_text = rest.partition(":")
        if not port_text.isdigit():
            raise HostError(f"--host {spec}: port must be a number")
        host, port = name, int(port_text)
    if not host:
        raise HostError(f"--host {spec!r}: no host name")
    return user or None, host, port


class SshExecutor:
    follow_detached = True

    def __init__(self, spec: str, *, ssh_config: str | None = None) -> None:
        # paramiko logs transport failures from its own thread to stderr ("Exception (client): ..."),
        # next to the one clear line we print for the same failure: keep them out of the terminal.
        paramiko_log = logging.getLogger("paramiko")
        paramiko_log.addHandler(logging.NullHandler())
        paramiko_log.propagate = False

        self.host = spec
        user, hostname, port = parse_host_spec(spec)
        if ssh_config and not os.path.isfile(ssh_config):
            raise HostError(f"--ssh-config {ssh_config}: no such file")
        try:
            config = fabric.Config(runtime_ssh_path=ssh_config) if ssh_config else fabric.Config()
            self._conn = fabric.Connection(hostname, user=user, port=port, config=config)
        except Exception as exc:  # paramiko/fabric raise plain errors for bad ssh_config content
            raise HostError(f"host {spec}: bad ssh configuration: {exc}") from None
        ssh_cfg = self._conn.ssh_config
        self._timeout = float(ssh_cfg.get("connecttimeout", DEFAULT_CONNECT_TIMEOUT_S))
        self._conn.connect_timeout = self._timeout
        # paramiko waits 15 s for a banner and 30 s for auth by default: a host that accepts TCP and then
        # says nothing (a hung sshd, a wrong port) must fail within ConnectTimeout too, never hang.
        self._conn.connect_kwargs.update(banner_timeout=self._timeout, auth_timeout=self._timeout)
        self._secure(self._conn)
        self._sftp: paramiko.SFTPClient | None = None

    def _secure(self, conn: Connection) -> None:
        """fabric's default is AutoAddPolicy with known_hosts ignored; put OpenSSH's rules back.
        A ProxyJump gateway is a Connection of its own, with its own Host block: secured the same way."""
        client: paramiko.SSHClient = conn.client
        policy = _host_key_policy(conn.ssh_config)
        if policy.strict == "no":
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        else:
            first, *others = policy.known_hosts
            if os.path.isfile(first):
                client.load_host_keys(first)  # the file accept-new appends to
            for path in [*others, *policy.global_known_hosts]:
                if os.path.isfile(path):
                    _merge_keys(client, path)
            missing = _AcceptNewPolicy(first) if policy.strict == "accept-new" else paramiko.RejectPolicy()
            client.set_missing_host_key_policy(missing)
        gateway = getattr(conn, "gateway", None)
        if gateway is not None and hasattr(gateway, "client"):
            self._secure(gateway)

    def _open(self) -> None:
        if self._conn.is_connected:
            return
        try:
            self._conn.open()
        except Exception as exc:
            raise HostError(describe_ssh_failure(self.host, self._conn, exc, self._timeout)) from None
        transport = self._conn.transport
        with contextlib.suppress(AttributeError, OSError):
            # paramiko leaves Nagle on: each small command/exit message then waits ~40 ms for an ACK
            transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # paramiko's keepalives want no reply, so a vanished host is noticed only when TCP gives up
            # (~15 min); unacknowledged data for LINK_TIMEOUT_S drops the link instead.
            transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, LINK_TIMEOUT_S * 1000)
        if transport is not None:
            interval = self._conn.ssh_config.get("serveraliveinterval")
            transport.set_keepalive(int(interval) if interval and interval.isdigit() else KEEPALIVE_S)

    def run(self, argv: Sequence[str], *, timeout: float | None = None) -> Completed:
        self._open()
        try:
            result = self._conn.run(shlex.join(argv), hide=True, warn=True, in_stream=False, timeout=timeout)
        except Exception as exc:
            raise self._link_error(exc, timeout) from None
        return Completed(self.host, tuple(argv), result.exited, result.stdout, result.stderr)

    def stream(
        self,
        argv: Sequence[str],
        *,
        tty: bool = False,
    ) -> int:
        self._open()
        command = shlex.join(argv)
        if tty:
            # interactive: invoke forwards ^C to the remote PTY as \x03, which is what a shell expects
            return int(self._conn.run(command, hide=False, warn=True, pty=True).exited)
        # invoke swallows Ctrl-C while it waits and then joins reader threads that never end while
        # `docker logs -f` runs, so the command runs in a worker thread and the interrupt stays ours.
        box: dict[str, BaseException] = {}
        results: list[object] = []

        def work() -> None:
            try:
                results.append(self._conn.run(command, hide=False, warn=True, in_stream=False))
            except BaseException as exc:
                box["error"] = exc

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        transport = self._conn.transport
        # an interruption propagates from here; the worker's remote command ends with the job
        while worker.is_alive():
            worker.join(0.1)
            if transport is None or not transport.is_active():
                raise LinkLostError(f"the SSH connection to {self.host} was lost")
        if "error" in box:
            error = box["error"]
            if _broken_pipe(error):
                raise OutputClosed()
            if not isinstance(error, Exception):
                raise error
            raise self._link_error(error, None)
        exited = int(getattr(results[0], "exited", -1))
        if exited == -1 or transport is None or not transport.is_active():
            raise LinkLostError(f"the SSH connection to {self.host} was lost")
        return exited

    def run_visible(self, argv: Sequence[str]) -> Completed:
        self._open()
        try:
            result = self._conn.run(shlex.join(argv), hide="err", warn=True, in_stream=False)
        except Exception as exc:
            raise self._link_error(exc, None) from None
        return Completed(self.host, tuple(argv), result.exited, "", result.stderr)

    def _link_error(self, exc: Exception, timeout: float | None) -> TaoRemoteErrorLike:
        name = type(exc).__name__
        if name == "CommandTimedOut":
            # the link is fine (keepalives), the command is stuck: as locally, a docker-side failure
            return DockerError(
                f"host {self.host}: `{timeout:.0f} s` passed without an answer from the command"
            )
        transport = self._conn.transport
        if transport is None or not transport.is_active():
            return LinkLostError(f"the SSH connection to {self.host} was lost ({name})")
        return HostError(f"host {self.host}: {name}: {exc}")

    def _sftp_client(self) -> paramiko.SFTPClient:
        self._open()
        if self._sftp is None:
            self._sftp = self._conn.sftp()
        assert self._sftp is not None
        return self._sftp

    def hand_off_env(self, values: Mapping[str, str]) -> str | None:
        if not values:
            return None
        from taoremote.command import format_env_file  # pure; imported here to keep hosts.py small

        sftp = self._sftp_or_error()
        # A private directory first: the file is never readable by others, not even for an instant.
        # Under the login's ~/.cache, not /tmp: a snap-installed docker has a private /tmp of its own.
        try:
            cache = f"{sftp.normalize('.').rstrip('/')}/.cache"
            with contextlib.suppress(OSError):
                sftp.mkdir(cache, mode=0o700)
            directory = f"{cache}/taoremote-env-{secrets.token_hex(8)}"
            path = f"{directory}/env"
            sftp.mkdir(directory, mode=0o700)
            with sftp.open(path, "w") as fh:
                fh.chmod(0o600)
                fh.write(format_env_file(values))
        except OSError as exc:
            raise HostError(f"host {self.host}: cannot upload the env-file over SFTP: {exc}") from None
        return path

    def _sftp_or_error(self) -> paramiko.SFTPClient:
        try:
            return self._sftp_client()
        except (OSError, paramiko.SSHException) as exc:
            raise HostError(
                f"host {self.host}: SFTP is not available ({exc}); env values travel in an env-file "
                "over SFTP - enable `Subsystem sftp` in its sshd_config, or drop Envs from the mounts file"
            ) from None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self._sftp is not None:
                self._sftp.close()
        with contextlib.suppress(Exception):
            self._conn.close()


TaoRemoteErrorLike = HostError | LinkLostError | DockerError


def _broken_pipe(error: object) -> bool:
    """invoke wraps a failed write to our stdout in a ThreadException around BrokenPipeError."""
    inner = [getattr(e, "value", None) for e in getattr(error, "exceptions", ())]
    return isinstance(error, BrokenPipeError) or any(isinstance(e, BrokenPipeError) for e in inner)


def _merge_keys(client: paramiko.SSHClient, path: str) -> None:
    # load_host_keys remembers only one file (the one accept-new writes to); others are merged in
    extra = paramiko.HostKeys(path)
    keys = client.get_host_keys()
    for hostname, entries in extra.items():
        for keytype, key in entries.items():
            keys.add(hostname, keytype, key)


def _host_key_policy(ssh_cfg: Mapping[str, object]) -> HostKeyPolicy:
    strict = str(ssh_cfg.get("stricthostkeychecking", "yes")).lower()
    strict = {"off": "no", "false": "no", "ask": "yes", "true": "yes", "on": "yes"}.get(strict, strict)
    user_files = _paths(ssh_cfg.get("userknownhostsfile")) or (os.path.expanduser("~/.ssh/known_hosts"),)
    global_files = _paths(ssh_cfg.get("globalknownhostsfile")) or (GLOBAL_KNOWN_HOSTS,)
    return HostKeyPolicy(strict, user_files, global_files)


def _paths(value: object) -> tuple[str, ...]:
    if isinstance(value, list):
        value = " ".join(value)
    return tuple(os.path.expanduser(p) for p in str(value).split()) if value else ()


class _AcceptNewPolicy(paramiko.MissingHostKeyPolicy):
    """StrictHostKeyChecking accept-new: trust and record unknown hosts; changed keys still fail."""

    def __init__(self, known_hosts: str) -> None:
        self._path = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        keys = client.get_host_keys()
        keys.add(hostname, key.get_name(), key)
        os.makedirs(os.path.dirname(self._path) or ".", exist_ok=True)
        with open(self._path, "a", encoding="ascii") as fh:
            fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


def describe_ssh_failure(spec: str, conn: Connection, exc: Exception, timeout: float) -> str:
    """One line per way an SSH connect fails, with what to do about it."""
    target = f"{getattr(conn, 'user', '?')}@{getattr(conn, 'host', spec)}:{getattr(conn, 'port', 22)}"
    prefix = f"host {spec} ({target})"
    if isinstance(exc, paramiko.BadHostKeyException):
        return (
            f"{prefix}: HOST KEY CHANGED (got {exc.key.get_name()} {exc.key.get_fingerprint().hex()}); "
            "if the host was reinstalled, remove its old line with `ssh-keygen -R HOST` and trust it again"
        )
    if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
        host = getattr(conn, "host", spec)
        port = getattr(conn, "port", 22)
        scan = f"ssh-keyscan -p {port} {host}" if port != 22 else f"ssh-keyscan {host}"
        return (
            f"{prefix}: unknown host key; check it and trust it with `{scan} >> ~/.ssh/known_hosts` "
            "(or set StrictHostKeyChecking accept-new for this host in your ssh config)"
        )
    if isinstance(exc, paramiko.SSHException) and ("banner" in str(exc) or "No existing session" in str(exc)):
        return f"{prefix}: the port answered but no SSH server spoke within {timeout:.0f} s (ConnectTimeout)"
    if isinstance(exc, paramiko.AuthenticationException):
        return f"{prefix}: authentication failed ({exc}); check User and IdentityFile in your ssh config"
    if isinstance(exc, socket.gaierror):
        return f"{prefix}: cannot resolve host name ({exc.strerror})"
    if isinstance(exc, (paramiko.ssh_exception.NoValidConnectionsError, ConnectionRefusedError)):
        return f"{prefix}: connection refused (is sshd running on that port?)"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"{prefix}: no answer within {timeout:.0f} s (ConnectTimeout)"
    if isinstance(exc, OSError):
        return f"{prefix}: {exc.strerror or exc}"
    return f"{prefix}: {type(exc).__name__}: {exc}"
