"""The SSH link to one host: the connection as OpenSSH would make it, and its health.

ssh config is evaluated by the local OpenSSH client where there is one (`Include`, `Match`), host keys are
checked as OpenSSH checks them (ssh_trust.py), and a link that stops answering for ServerAliveInterval x
ServerAliveCountMax is given up, as OpenSSH does (_LinkWatch). ssh.py's SshExecutor drives commands over it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import fabric
import paramiko

from taoremote.errors import DockerError, DockerTimeout, HostError, LinkLostError
from taoremote.executor import Completed
from taoremote.ssh_config import keepalive, openssh_config_text, parse_host_spec
from taoremote.ssh_trust import describe_ssh_failure, secure

if TYPE_CHECKING:
    from fabric import Connection

DEFAULT_CONNECT_TIMEOUT_S = 10
LINK_TIMEOUT_S = 60  # unacknowledged data for this long drops the link (TCP_USER_TIMEOUT)


class SshLink:
    """One host's connection, opened on first use; what a failed or lost link is called."""

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
            raise HostError(f"bad ssh configuration: {exc}", host=spec) from None
        ssh_cfg = self._conn.ssh_config
        self._timeout = float(ssh_cfg.get("connecttimeout", DEFAULT_CONNECT_TIMEOUT_S))
        self._conn.connect_timeout = self._timeout
        # paramiko waits 15 s for a banner and 30 s for auth by default: a host that accepts TCP and then
        # says nothing (a hung sshd, a wrong port) must fail within ConnectTimeout too, never hang.
        self._conn.connect_kwargs.update(banner_timeout=self._timeout, auth_timeout=self._timeout)
        secure(self._conn)
        self._watch: _LinkWatch | None = None

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

    # ------------------------------------------------------------------------------------------ failures

    def _active(self) -> bool:
        transport = self._conn.transport
        return transport is not None and transport.is_active()

    def _lost(self) -> LinkLostError:
        if self._watch is not None and self._watch.silent_for:
            return LinkLostError(
                f"the SSH connection was lost (no answer for {self._watch.silent_for:.0f} s: "
                "ServerAliveInterval x ServerAliveCountMax)",
                host=self.host,
            )
        return LinkLostError("the SSH connection was lost", host=self.host)

    def _why(self, exc: BaseException) -> str:
        return "the connection was lost" if not self._active() else f"{type(exc).__name__}: {exc}"

    def _link_error(self, exc: Exception, timeout: float | None) -> HostError | LinkLostError | DockerError:
        name = type(exc).__name__
        if name == "CommandTimedOut":
            # the link is fine (keepalives), the command is stuck: as locally, a docker-side failure
            return DockerTimeout(
                f"`{timeout:.0f} s` passed without an answer from the command", host=self.host
            )
        if not self._active():
            return self._lost()
        return HostError(f"{name}: {exc}", host=self.host)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.close()


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
