"""Whom an SSH connection trusts, and why a connect failed: host keys checked as OpenSSH checks them
(known_hosts.py reads the files), and one line per way a connect fails."""

from __future__ import annotations

import contextlib
import os
import socket
from typing import TYPE_CHECKING

import paramiko

from taoremote import known_hosts
from taoremote.ssh_config import HostKeyPolicy, host_key_policy

if TYPE_CHECKING:
    from fabric import Connection


def secure(conn: Connection) -> None:
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
    client.set_missing_host_key_policy(MissingKeyPolicy(policy, keys))
    gateway = getattr(conn, "gateway", None)
    if gateway is not None and hasattr(gateway, "client"):
        secure(gateway)


class RevokedHostKey(paramiko.SSHException):
    pass


class MissingKeyPolicy(paramiko.MissingHostKeyPolicy):
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
