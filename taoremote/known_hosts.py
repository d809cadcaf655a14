"""known_hosts read as OpenSSH reads it (sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT"), pure: text in, keys out.

Lines it cannot use - `@cert-authority` (no host certificates here), a key type or key it does not
know, a line that is not a known_hosts line at all - are skipped, as OpenSSH skips them: one odd line
must never stop every connection. Host patterns may be hashed (`|1|salt|hash`), hold `*`/`?`
wildcards and `!` negations; `@revoked` keys are refused whatever else the files say.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class KnownKey:
    patterns: tuple[str, ...]  # as written: hashed, wildcards, negations
    keytype: str  # "ssh-ed25519", "ssh-rsa", ...
    blob: bytes  # the public key as the server sends it
    revoked: bool = False


def parse_known_hosts(text: str) -> list[KnownKey]:
    """Every usable line of one known_hosts file, in order."""
    keys = []
    for line in text.splitlines():
        key = _parse_line(line)
        if key is not None:
            keys.append(key)
    return keys


def _parse_line(line: str) -> KnownKey | None:
    fields = line.split()
    if not fields or fields[0].startswith("#"):
        return None
    revoked = False
    if fields[0].startswith("@"):
        if fields[0] != "@revoked":  # @cert-authority: certificates are not checked here, skip
            return None
        revoked, fields = True, fields[1:]
    if len(fields) < 3:
        return None
    patterns, keytype, encoded = fields[0], fields[1], fields[2]
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None
    if not blob or not _names_its_type(blob, keytype):
        return None
    return KnownKey(tuple(patterns.split(",")), keytype, blob, revoked)


def _names_its_type(blob: bytes, keytype: str) -> bool:
    """A key blob starts with its own type name: a line whose two disagree is damaged."""
    length = int.from_bytes(blob[:4], "big")
    return blob[4 : 4 + length] == keytype.encode("ascii", "replace")


def lookup_name(host: str, port: int) -> str:
    """The name a host is filed under: `host`, or `[host]:port` off port 22."""
    return host if port == 22 else f"[{host}]:{port}"


def host_matches(patterns: Iterable[str], name: str) -> bool:
    """OpenSSH's match_hostname: any positive pattern matches and no negated one does."""
    name = name.lower()
    matched = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern[1:] if negated else pattern
        hit = _hashed_match(pattern, name) if pattern.startswith("|1|") else _glob(pattern.lower(), name)
        if hit and negated:
            return False
        matched = matched or hit
    return matched


def _hashed_match(pattern: str, name: str) -> bool:
    parts = pattern.split("|")  # "", "1", salt, hash
    if len(parts) != 4:
        return False
    try:
        salt, digest = base64.b64decode(parts[2]), base64.b64decode(parts[3])
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(), digest)


def _glob(pattern: str, name: str) -> bool:
    # only `*` and `?` are special (brackets are literal: `[host]:port`)
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name) is not None


@dataclass(frozen=True)
class HostKeys:
    trusted: tuple[KnownKey, ...]  # keys known for this host, revoked ones left out
    revoked: frozenset[tuple[str, bytes]]  # (keytype, blob) never to accept, for any host

    def is_revoked(self, keytype: str, blob: bytes) -> bool:
        return (keytype, blob) in self.revoked


def keys_for(known: Iterable[KnownKey], name: str) -> HostKeys:
    """What the known_hosts files say about the host filed under `name`."""
    entries = list(known)
    revoked = frozenset((k.keytype, k.blob) for k in entries if k.revoked and host_matches(k.patterns, name))
    trusted = tuple(
        k
        for k in entries
        if not k.revoked and (k.keytype, k.blob) not in revoked and host_matches(k.patterns, name)
    )
    return HostKeys(trusted, revoked)
