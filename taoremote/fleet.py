"""Which hosts a command targets: --host (repeatable), else an inventory file, else $TAOREMOTE_HOSTS."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from taoremote.errors import ConfigError


def parse_inventory(text: str) -> tuple[str, ...]:
    """One host per line (an ~/.ssh/config alias or [user@]host[:port]); blank lines and # comments
    are ignored, so a team can keep its fleet, annotated, next to its configs."""
    hosts: list[str] = []
    for line in text.splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry and entry not in hosts:
            hosts.append(entry)
    return tuple(hosts)


def resolve_hosts(
    explicit: Sequence[str], inventory: str | None, environ: Mapping[str, str]
) -> tuple[str, ...]:
    if explicit:
        return tuple(explicit)
    path = inventory or environ.get("TAOREMOTE_INVENTORY")
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                hosts = parse_inventory(fh.read())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read inventory: {exc.strerror}") from None
        if not hosts:
            raise ConfigError(f"{path}: the inventory names no host")
        return hosts
    return tuple(h for h in environ.get("TAOREMOTE_HOSTS", "").replace(",", " ").split() if h)
