"""Secret values never reach a terminal: the one place every message of ours passes through.

The mounts file is loaded once per process; its secret values are registered here, and every line
taoremote prints (errors, warnings, notes, the dry run, job listings) goes through mask(). A docker
error that quotes a value, or an argument that happens to hold a key, is masked before it is shown.
Values shorter than MIN_LENGTH are not masked: replacing every "1" would make messages unreadable,
and a 3-character value is no secret.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, MutableMapping

MASK = "****"
MIN_LENGTH = 4
_secrets: set[str] = set()
_hidden: dict[str, str] = {}


def register(values: Iterable[str | None]) -> None:
    """Mask these values from now on, as written and as JSON or Python repr would escape them."""
    for value in values:
        if value is None or len(value) < MIN_LENGTH:
            continue
        _secrets.add(value)
        _secrets.add(json.dumps(value, ensure_ascii=False)[1:-1])
        _secrets.add(repr(value)[1:-1])


def mask(text: str) -> str:
    for value in sorted(_secrets, key=len, reverse=True):  # longest first: a value inside another
        if value in text:
            text = text.replace(value, MASK)
    return text


def forget_all() -> None:
    """For tests: a fresh registry."""
    _secrets.clear()
    _hidden.clear()


def launching_environ() -> dict[str, str]:
    """The launching machine's environment as it was, hidden variables included (a second load)."""
    return {**os.environ, **_hidden}


def hide_from_children(names: Iterable[str], environ: MutableMapping[str, str] = os.environ) -> None:
    """Drop the variables secret from_env values came from out of our own environment, once their
    values are read: every child (docker, ssh, a ProxyCommand, anything a library starts) inherits
    os.environ, so this is the one place that keeps them all clean."""
    for name in names:
        if name in environ:
            _hidden[name] = environ.pop(name)
