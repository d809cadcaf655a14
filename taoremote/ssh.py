"""SSH hosts: SshExecutor runs argv on a remote host through fabric/paramiko, shell-joined exactly once.

Imported only when a remote host is used (hosts.open_executor): fabric and paramiko cost more
start-up time than everything else together. ssh config is evaluated by the local OpenSSH client
where there is one (`Include`, `Match`), host keys are checked as OpenSSH checks them, and a link
that stops answering for ServerAliveInterval x ServerAliveCountMax is given up, as OpenSSH does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import secrets
import shlex
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import fabric
import paramiko

from taoremote import known_hosts
from taoremote.errors import DockerError, HostError, LinkLostError, UsageError
from taoremote.executor import Completed
from taoremote.signals import OutputClosed
from taoremote.ssh_config import (
    HostKeyPolicy,
    host_block,
    host_key_policy,
    keepalive,
    openssh_g_argv,
    parse_host_spec,
    parse_openssh_g,
    proxy_jump_hosts,
)

if TYPE_CHECKING:
    from fabric import Connection

__all__ = ["HostKeyPolicy", "SshExecutor", "describe_ssh_failure", "parse_host_spec"]

DEFAULT_CONNECT_TIMEOUT_S = 10
LINK_TIMEOUT_S = 60  # unacknowledged data for this long drops the link (TCP_USER_TIMEOUT)
INTERRUPTED_CALL_GRACE_S = 5  # Ctrl-C during a create: time for it to finish, so it can be stopped by name
# env-files live under the login directory's .cache (not /tmp: a snap docker has a private /tmp)
ENV_DIR_PREFIX = ".cache/taoremote-env-"
# OpenSSH refuses a packet over 256 KiB: a longer command would drop the connection unstarted
MAX_COMMAND_BYTES = 250_000


class SshExecutor:
    follow_detached = True

    def __init__(
        self,
        spec: str,
        *,
        ssh_config: str | None = None,
        evaluate: Callable[[Sequence[str]], Completed | None] | None = None,
    ) -> None:
        """evaluate: runs `ssh -G` (hosts.evaluate_ssh_config); None, or no OpenSSH client: paramiko
        reads the ssh config files itself (no Include)."""
        # paramiko logs transport failures from its own thread to stderr ("Exception (client): ..."),
        # next to the one clear line we print for the same failure: keep them out of the terminal.
        paramiko_log = logging.getLogger("paramiko")
        paramiko_log.addHandler(logging.NullHandler())
        paramiko_log.propagate = False

        self.host = spec
        user, hostname, port = parse_host_spec(spec)
        if ssh_config and not os.path.isfile(ssh_config):
            raise HostError(f"--ssh-config {ssh_config}: no such file")
        evaluated = None
        if evaluate is not None:
            evaluated = openssh_config_text(spec, hostname, user, port, ssh_config, evaluate)
        try:
            if evaluated is not None:
                config = fabric.Config(ssh_config=paramiko.SSHConfig.from_text(evaluated))
            elif ssh_config:
                config = fabric.Config(runtime_ssh_path=ssh_config)
            else:
                config = fabric.Config()
            self._conn: Connection = fabric.Connection(hostname, user=user, port=port, config=config)
        except Exception as exc:  # paramiko/fabric raise plain errors for bad ssh_config content
            raise HostError(f"host {spec}: bad ssh configuration: {exc}") from None
        ssh_cfg = self._conn.ssh_config
        self._timeout = float(ssh_cfg.get("connecttimeout", DEFAULT_CONNECT_TIMEOUT_S))
        self._conn.connect_timeout = self._timeout
        # paramiko waits 15 s for a banner and 30 s for auth by default: a host that accepts TCP and then
        # says nothing (a hung sshd, a wrong port) must fail within ConnectTimeout too, never hang.
        self._conn.connect_kwargs.update(banner_timeout=self._timeout, auth_timeout=self._timeout)
        self._secure(self._conn)
        self._watch: _LinkWatch | None = None
        self._env_files: dict[str, str] = {}  # path -> content, written by the command that reads it

    def _secure(self, conn: Connection) -> None:
        """fabric's default is AutoAddPolicy with known_hosts ignored; put OpenSSH's rules back.
        A ProxyJump gateway is a Connection of its own, with its own Host block: secured the same way."""
        client: paramiko.SSHClient = conn.client
        policy = host_key_policy(conn.ssh_config)
        name = known_hosts.lookup_name(conn.host, int(conn.port or 22))
        known: list[known_hosts.KnownKey] = []
        for path in (*policy.known_hosts, *policy.global_known_hosts):
            with contextlib.suppress(OSError, UnicodeDecodeError), open(path, encoding="utf-8") as fh:
                known += known_hosts.parse_known_hosts(fh.read())
        keys = known_hosts.keys_for(known, name)
        store = client.get_host_keys()
        for entry in keys.trusted:
            with contextlib.suppress(Exception):  # a key type paramiko cannot load is skipped, as ssh does
                key = paramiko.PKey.from_type_string(entry.keytype, entry.blob)
                store.add(name, key.get_name(), key)
        # a key already in the store is compared by paramiko itself: a CHANGED key always fails, even
        # with StrictHostKeyChecking no, since secrets are about to be sent
        client.set_missing_host_key_policy(_MissingKeyPolicy(policy, keys))
        gateway = getattr(conn, "gateway", None)
        if gateway is not None and hasattr(gateway, "client"):
            self._secure(gateway)

    def _open(self) -> paramiko.Transport:
        transport: paramiko.Transport | None = self._conn.transport
        if self._conn.is_connected and transport is not None:
            return transport
        try:
            self._conn.open()
        except Exception as exc:
            raise HostError(describe_ssh_failure(self.host, self._conn, exc, self._timeout)) from None
        transport = self._conn.transport
        assert transport is not None
        sock = transport.sock
        if isinstance(sock, socket.socket):  # not through a ProxyJump channel or a ProxyCommand
            with contextlib.suppress(OSError):
                # paramiko leaves Nagle on: each small command/exit message then waits ~40 ms for an ACK
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, LINK_TIMEOUT_S * 1000)
        interval, count = keepalive(self._conn.ssh_config)
        self._watch = _LinkWatch(transport, interval, count)
        return transport

    # ------------------------------------------------------------------------------------------ commands

    def run(
        self, argv: Sequence[str], *, timeout: float | None = None, stdin: str | None = None
    ) -> Completed:
        command = _encode(shlex.join(argv), "an argument")
        data = _encode(stdin, "an env value") if stdin is not None else None
        if len(command) > MAX_COMMAND_BYTES:
            raise UsageError(
                f"the command is {len(command) // 1024} KiB; an SSH server takes at most 256 KiB in one "
                "command: pass long arguments in a file"
            )
        transport = self._open()
        try:
            channel = transport.open_session(timeout=self._timeout)
            channel.exec_command(command)
        except Exception as exc:  # nothing ran: never claim a job keeps running
            raise HostError(
                f"host {self.host}: the command could not be started ({self._why(exc)})"
            ) from None
        code, out, err = self._collect(channel, transport, data, timeout)
        return Completed(self.host, tuple(argv), code, _decode(out), _decode(err))

    def _collect(
        self,
        channel: paramiko.Channel,
        transport: paramiko.Transport,
        data: bytes | None,
        timeout: float | None,
    ) -> tuple[int, bytes, bytes]:
        out, err = bytearray(), bytearray()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            if data:
                channel.sendall(data)
            channel.shutdown_write()
            while True:
                while channel.recv_ready():
                    out += channel.recv(65536)
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                if channel.exit_status_ready() and (channel.eof_received or channel.closed):
                    break
                if not transport.is_active():
                    raise self._lost()
                if deadline is not None and time.monotonic() > deadline:
                    channel.close()
                    raise DockerError(f"host {self.host}: no answer from the command within {timeout:.0f} s")
                channel.status_event.wait(0.02)
        except (LinkLostError, DockerError):
            raise
        except (OSError, EOFError, paramiko.SSHException):
            raise self._lost() from None
        except BaseException:
            # Ctrl-C: a `docker create` half-way through should finish, so it can be stopped by name
            channel.status_event.wait(INTERRUPTED_CALL_GRACE_S)
            raise
        while channel.recv_ready():
            out += channel.recv(65536)
        while channel.recv_stderr_ready():
            err += channel.recv_stderr(65536)
        code = channel.recv_exit_status()
        if code == -1 and not transport.is_active():  # killed with the link, never finished
            raise self._lost()
        return code, bytes(out), bytes(err)

    def stream(self, argv: Sequence[str], *, tty: bool = False) -> int:
        transport = self._open()
        command = shlex.join(argv)
        if tty:
            # interactive: invoke forwards ^C to the remote PTY as \x03, which is what a shell expects
            return int(self._conn.run(command, hide=False, warn=True, pty=True).exited)
        # invoke swallows Ctrl-C while it waits and then joins reader threads that never end while
        # `docker logs -f` runs, so the command runs in a worker thread and the interrupt stays ours.
        errors: list[BaseException] = []
        exits: list[int] = []

        def work() -> None:
            try:
                exits.append(int(self._conn.run(command, hide=False, warn=True, in_stream=False).exited))
            except BaseException as exc:
                errors.append(exc)

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        # an interruption propagates from here; the worker's remote command ends with the job
        while worker.is_alive():
            worker.join(0.1)
            if not transport.is_active():
                raise self._lost()
        if errors:
            if _broken_pipe(errors[0]):
                raise OutputClosed()
            if not isinstance(errors[0], Exception):
                raise errors[0]
            raise self._link_error(errors[0], None)
        if not exits or exits[0] == -1 or not transport.is_active():
            raise self._lost()
        return exits[0]

    def run_visible(self, argv: Sequence[str]) -> Completed:
        self._open()
        try:
            result = self._conn.run(shlex.join(argv), hide="err", warn=True, in_stream=False)
        except Exception as exc:
            raise self._link_error(exc, None) from None
        if result.exited == -1 and not self._active():
            raise self._lost()
        return Completed(self.host, tuple(argv), result.exited, "", result.stderr)

    def hand_off_env(self, content: str) -> str:
        """No upload, no SFTP: the command that creates the container writes the file from its stdin
        (build_write_env_file_then_argv), so values never sit on the host before or after it."""
        path = f"{ENV_DIR_PREFIX}{os.getpid()}-{secrets.token_hex(8)}/env"
        self._env_files[path] = content
        return path

    def pending_env_file(self, path: str) -> str | None:
        return self._env_files.get(path)

    # ------------------------------------------------------------------------------------------ failures

    def _active(self) -> bool:
        transport = self._conn.transport
        return transport is not None and transport.is_active()

    def _lost(self) -> LinkLostError:
        if self._watch is not None and self._watch.silent_for:
            return LinkLostError(
                f"the SSH connection to {self.host} was lost (no answer for {self._watch.silent_for:.0f} s: "
                "ServerAliveInterval x ServerAliveCountMax)"
            )
        return LinkLostError(f"the SSH connection to {self.host} was lost")

    def _why(self, exc: BaseException) -> str:
        return "the connection was lost" if not self._active() else f"{type(exc).__name__}: {exc}"

    def _link_error(self, exc: Exception, timeout: float | None) -> HostError | LinkLostError | DockerError:
        name = type(exc).__name__
        if name == "CommandTimedOut":
            # the link is fine (keepalives), the command is stuck: as locally, a docker-side failure
            return DockerError(
                f"host {self.host}: `{timeout:.0f} s` passed without an answer from the command"
            )
        if not self._active():
            return self._lost()
        return HostError(f"host {self.host}: {name}: {exc}")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.close()


def openssh_config_text(
    spec: str,
    hostname: str,
    user: str | None,
    port: int | None,
    ssh_config: str | None,
    evaluate_ssh_config: Callable[[Sequence[str]], Completed | None],
) -> str | None:
    """ssh config for this host as OpenSSH evaluates it (`ssh -G`), as paramiko config text; None where
    there is no OpenSSH client. Its ProxyJump hops are evaluated the same way, each on its own."""
    config_file = ssh_config or _own_config_file()
    result = evaluate_ssh_config(openssh_g_argv(hostname, user=user, port=port, config_file=config_file))
    if result is None:
        return None
    if result.returncode != 0:
        why = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
        raise HostError(f"host {spec}: bad ssh configuration: {why}")
    options = _home_for_tilde(parse_openssh_g(result.stdout))
    blocks = [host_block(hostname, options)]
    for hop_user, hop_host, hop_port in proxy_jump_hosts(options):
        hop = evaluate_ssh_config(
            openssh_g_argv(hop_host, user=hop_user, port=hop_port, config_file=config_file)
        )
        if hop is not None and hop.returncode == 0:
            blocks.append(host_block(hop_host, _home_for_tilde(parse_openssh_g(hop.stdout)), hop=True))
    return "\n".join(blocks)


def _own_config_file() -> str | None:
    """None: ssh's own choice (~/.ssh/config of the login's home, then the system file). Where $HOME
    is not that home (sudo -E, containers, tests), the files under $HOME are meant, as `~` is everywhere
    else in taoremote."""
    home = os.path.expanduser("~")
    if home == pwd.getpwuid(os.getuid()).pw_dir:
        return None
    own = os.path.join(home, ".ssh", "config")
    return own if os.path.isfile(own) else "none"


def _home_for_tilde(options: dict[str, list[str]]) -> dict[str, list[str]]:
    """ssh -G expands `~` in known_hosts paths to the login's home; taoremote's `~` is $HOME."""
    login_home, home = pwd.getpwuid(os.getuid()).pw_dir.rstrip("/"), os.path.expanduser("~").rstrip("/")
    if login_home == home:
        return options
    for key in ("userknownhostsfile", "globalknownhostsfile"):
        options[key] = [
            " ".join(home + p[len(login_home) :] if p.startswith(login_home + "/") else p for p in v.split())
            for v in options.get(key, [])
        ]
    return options


def _encode(text: str, what: str) -> bytes:
    # surrogateescape: an argument that was not UTF-8 on our command line reaches the host byte for byte
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise UsageError(f"{what} holds a character that cannot be sent (a lone surrogate)") from None


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _broken_pipe(error: object) -> bool:
    """invoke wraps a failed write to our stdout in a ThreadException around BrokenPipeError."""
    inner = [getattr(e, "value", None) for e in getattr(error, "exceptions", ())]
    return isinstance(error, BrokenPipeError) or any(isinstance(e, BrokenPipeError) for e in inner)


class _LinkWatch:
    """OpenSSH's ServerAlive: a keepalive that wants a reply every `interval` s; a link that leaves one
    unanswered for interval x count is closed, so whatever waits on it ends with LinkLostError.
    (paramiko's own keepalives want no reply: a frozen host would be followed forever.)"""

    def __init__(self, transport: paramiko.Transport, interval: float, count: int) -> None:
        self._transport = transport
        self._interval = interval
        self._limit = interval * count
        self._asked_at: float | None = None
        self.silent_for = 0.0  # set once the link was given up
        threading.Thread(target=self._ping, daemon=True).start()
        threading.Thread(target=self._watch, daemon=True).start()

    def _ping(self) -> None:
        while self._transport.is_active():
            self._asked_at = time.monotonic()
            with contextlib.suppress(Exception):
                # OpenSSH answers an unknown request with a failure: a reply all the same
                self._transport.global_request("keepalive@openssh.com", wait=True)
            self._asked_at = None
            time.sleep(self._interval)

    def _watch(self) -> None:
        while self._transport.is_active():
            time.sleep(min(self._interval, 0.5))
            asked = self._asked_at
            if asked is not None and time.monotonic() - asked > self._limit:
                self.silent_for = time.monotonic() - asked
                with contextlib.suppress(Exception):
                    self._transport.close()
                return


class RevokedHostKey(paramiko.SSHException):
    pass


class _MissingKeyPolicy(paramiko.MissingHostKeyPolicy):
    """A host key not among the host's known keys: refused if @revoked; else StrictHostKeyChecking
    decides (yes: refuse, accept-new: trust and record, no: trust for this connection)."""

    def __init__(self, policy: HostKeyPolicy, keys: known_hosts.HostKeys) -> None:
        self._policy = policy
        self._keys = keys

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        if self._keys.is_revoked(key.get_name(), key.asbytes()):
            raise RevokedHostKey(f"host key {key.get_name()} is marked @revoked in known_hosts")
        if self._keys.trusted:  # known with other keys only: a changed host, whatever the policy
            raise paramiko.BadHostKeyException(hostname, key, key)
        if self._policy.strict == "yes":
            raise paramiko.SSHException(f"Server {hostname!r} not found in known_hosts")
        client.get_host_keys().add(hostname, key.get_name(), key)
        if self._policy.strict == "accept-new":
            path = self._policy.known_hosts[0]
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with open(path, "a", encoding="ascii") as fh:
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
    if isinstance(exc, RevokedHostKey):
        return f"{prefix}: refused: its {exc}"
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
