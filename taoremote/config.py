"""Reading the launcher's mounts file (~/.tao_mounts.json) into frozen dataclasses.

Every file the TAO launcher accepts is accepted here unchanged. Validation (config_checks.py) is a JSON
Schema (schemas/mounts.schema.json) plus the checks a schema cannot express (duplicate destinations);
*all* problems are reported at once, each with its JSON path, in one ConfigError. A content that passed
is remembered in a cache directory, so an unchanged file skips the validator's slow import.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from taoremote.config_checks import format_problems, validate_mounts_document
from taoremote.errors import ConfigError, UsageError

# Names that look like credentials are masked even when the file does not say "secret": true;
# a ClearML or W&B key must never reach a terminal by accident.
_SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|AUTH", re.IGNORECASE)


@dataclass(frozen=True)
class Mount:
    source: str  # as written; "~" and relative paths are resolved on the host that runs the container
    destination: str  # used verbatim inside the container (always absolute)
    read_only: bool = False


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str | None  # None only when from_env names a variable that is not set
    secret: bool
    from_env: str | None = None


@dataclass(frozen=True)
class Ulimit:
    name: str
    soft: int
    hard: int


@dataclass(frozen=True)
class PortMapping:
    container_port: str  # "8888" or "8888/udp"
    host_ip: str | None
    host_port: str | None  # None: docker picks a free port


@dataclass(frozen=True)
class DockerOptions:
    user: str | None = None
    shm_size: str | None = None
    ulimits: tuple[Ulimit, ...] = ()
    ports: tuple[PortMapping, ...] = ()
    privileged: bool = False
    network: str | None = None
    tty: bool | None = None  # None: decide from the terminal


@dataclass(frozen=True)
class MountsConfig:
    path: str | None  # None when no file was found: no mounts, no envs, default options
    mounts: tuple[Mount, ...] = ()
    envs: tuple[EnvVar, ...] = ()
    options: DockerOptions = field(default_factory=DockerOptions)
    warnings: tuple[str, ...] = ()  # keys the launcher ignores inside Mounts/Envs items, ignored here too


def find_mounts_file(explicit: str | None, environ: Mapping[str, str], home: str) -> str | None:
    """--mounts, then $LAUNCHER_MOUNTS, then ~/.tao_mounts.json; first found wins.

    A file named explicitly (option or variable) that does not exist is an error: the launcher
    silently ran with no mounts in that case, which is how results end up inside a dead container.
    """
    if explicit == "":
        raise UsageError("--mounts '': give the mounts file's path (or leave --mounts out)")
    for origin, candidate in (("--mounts", explicit), ("$LAUNCHER_MOUNTS", environ.get("LAUNCHER_MOUNTS"))):
        if candidate:
            path = os.path.expanduser(candidate)
            if not os.path.isfile(path):
                raise ConfigError(f"{path}: mounts file named by {origin} does not exist")
            return path
    default = os.path.join(home, ".tao_mounts.json")
    return default if os.path.isfile(default) else None


def load_mounts_config(
    path: str | None, environ: Mapping[str, str], *, cache_dir: str | None = None
) -> MountsConfig:
    if path is None:
        return MountsConfig(path=None)
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read mounts file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
            "save the mounts file as UTF-8"
        ) from None
    return parse_mounts_config(text, path, environ, cache_dir=cache_dir)


def parse_mounts_config(
    text: str, path: str, environ: Mapping[str, str], *, cache_dir: str | None = None
) -> MountsConfig:
    """cache_dir: where to remember contents that validated, so an unchanged file skips jsonschema
    (importing it costs more than the rest of a --dry-run together)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid mounts file: JSON nested too deeply") from None
    warnings = _strip_ignored_item_keys(doc)
    marker = _validated_marker(cache_dir, text) if cache_dir else None
    if marker is None or not os.path.exists(marker):
        try:
            problems = validate_mounts_document(doc)
        except RecursionError:
            raise ConfigError(f"{path}: invalid mounts file: JSON nested too deeply") from None
        if problems:
            raise ConfigError(format_problems(path, problems))
        if marker is not None:
            _remember_valid(marker)
    return replace(_to_config(doc, path, environ), warnings=tuple(warnings + _compat_notices(doc)))


def _compat_notices(doc: dict[str, Any]) -> list[str]:
    """What a launcher file means here that the launcher itself did differently, said out loud."""
    notices = []
    for index, mount in enumerate(doc.get("Mounts", [])):
        if mount.get("mode") == "ro":
            notices.append(
                f'$.Mounts[{index}]: "mode": "ro" binds {mount["destination"]} read-only '
                '(the TAO launcher ignores "mode" and mounts it read-write)'
            )
    for index, env in enumerate(doc.get("Envs", [])):
        if "value" in env and env["value"] is None:
            notices.append(
                f"$.Envs[{index}]: {env['variable']} is null (an unset variable when the file was written?): "
                "it is not passed to the container"
            )
    return notices


# Someone who wrote these meant a read-only mount: ignoring them would mount read-write, so they stay
# errors (the message lists the allowed keys, read_only among them).
_MISTYPED_READ_ONLY = frozenset({"ro", "rw", "readonly", "read-only", "readonly_", "read_only_"})
_ITEM_KEYS = {
    "Mounts": ("source", "destination", "read_only", "mode"),  # mode: "ro" | "rw", as in `-v SRC:DST:ro`
    "Envs": ("variable", "value", "from_env", "secret"),
}


def _strip_ignored_item_keys(doc: object) -> list[str]:
    """The launcher reads only the keys it knows inside Mounts/Envs items and ignores the rest
    (comments, notes): such a file must keep working, so those keys are dropped with a warning.
    Unknown top-level and DockerOptions keys stay errors, as in the launcher."""
    warnings: list[str] = []
    if not isinstance(doc, dict):
        return warnings
    for section, known in _ITEM_KEYS.items():
        items = doc.get(section)
        if not isinstance(items, list):
            continue
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            for key in [k for k in item if k not in known and k.lower() not in _MISTYPED_READ_ONLY]:
                warnings.append(f"$.{section}[{index}]: key {key!r} is ignored")
                del item[key]
    return warnings


def default_cache_dir(environ: Mapping[str, str], home: str) -> str:
    return os.path.join(environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache"), "taoremote", "valid")


def _validated_marker(cache_dir: str, text: str) -> str:
    from taoremote import __version__

    digest = hashlib.sha256()
    # the file beside this module, as tasks.py reads its map: importlib.resources costs ~4 ms to import
    schema_path = os.path.join(os.path.dirname(__file__), "schemas", "mounts.schema.json")
    with open(schema_path, encoding="utf-8") as fh:
        schema = fh.read()
    for part in (__version__, schema, text):
        digest.update(part.encode())
        digest.update(b"\0")
    return os.path.join(cache_dir, digest.hexdigest())


def _remember_valid(marker: str) -> None:
    try:
        os.makedirs(os.path.dirname(marker), mode=0o700, exist_ok=True)
        with open(marker, "w", encoding="ascii"):
            pass
    except OSError:
        pass  # a read-only home only costs the validation time on the next run


def _to_config(doc: dict[str, Any], path: str, environ: Mapping[str, str]) -> MountsConfig:
    mounts = tuple(
        Mount(
            source=m["source"],
            destination=m["destination"],
            read_only=m.get("read_only", m.get("mode") == "ro"),
        )
        for m in doc.get("Mounts", [])
    )
    return MountsConfig(
        path=path,
        mounts=mounts,
        envs=tuple(_to_env(e, environ) for e in doc.get("Envs", [])),
        options=_to_options(doc.get("DockerOptions", {})),
    )


def _to_env(entry: dict[str, Any], environ: Mapping[str, str]) -> EnvVar:
    name = entry["variable"]
    secret = entry.get("secret", bool(_SECRET_NAME.search(name)))
    if "from_env" in entry:
        return EnvVar(
            name, environ.get(entry["from_env"]), secret=entry.get("secret", True), from_env=entry["from_env"]
        )
    value = entry["value"]
    # the launcher hands the JSON value to docker-py, which writes f"{name}={value}": Python's str(),
    # so true is "True" and 1.0 is "1.0"; null is passed as nothing (warned about in _compat_notices)
    return EnvVar(name, None if value is None else str(value), secret=secret)


def _to_options(opts: dict[str, Any]) -> DockerOptions:
    shm = opts.get("shm_size")
    user = opts.get("user")
    return DockerOptions(
        user=str(user) if user is not None else None,  # the launcher (docker-py) accepts a bare uid number
        # docker-py reads "16 G" as 16 GiB (float() skips the blank); the docker CLI wants "16G"
        shm_size="".join(str(shm).split()) if shm is not None else None,
        ulimits=tuple(_to_ulimit(k, v) for k, v in opts.get("ulimits", {}).items()),
        ports=tuple(p for k, v in opts.get("ports", {}).items() for p in _to_ports(k, v)),
        privileged=opts.get("privileged", False),
        network=opts.get("network") or None,  # docker-py treats "" as unset
        tty=opts.get("tty"),
    )


def _to_ulimit(name: str, value: int | dict[str, int]) -> Ulimit:
    if isinstance(value, dict):
        return Ulimit(name, value["soft"], value["hard"])
    return Ulimit(name, value, value)  # the launcher sets soft = hard = value


def _to_ports(container_port: str, host: Any) -> list[PortMapping]:
    # docker-py's mapping form, which the launcher passes through:
    # None | port | (ip,) | (ip, port) | [port, port, ...] (one container port on several host ports)
    if host is None:
        return [PortMapping(container_port, None, None)]
    if isinstance(host, list) and host and isinstance(host[0], str) and not host[0].isdigit():
        return [PortMapping(container_port, host[0] or None, str(host[1]) if len(host) > 1 else None)]
    if isinstance(host, list):
        return [PortMapping(container_port, None, str(p)) for p in host]
    return [PortMapping(container_port, None, str(host))]


def missing_from_env(config: MountsConfig) -> list[str]:
    """Envs whose from_env variable is not set on the launching machine."""
    return [f"{e.name} (from ${e.from_env})" for e in config.envs if e.from_env and e.value is None]


def hidden_from_children(config: MountsConfig) -> tuple[str, ...]:
    """The launching machine's variables that secret from_env values came from: no child process
    (docker, ssh, a ProxyCommand) may inherit them. Never the ones those clients need to work."""
    needed = {"PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "SSH_AUTH_SOCK", "DOCKER_HOST", "DOCKER_CONFIG"}
    return tuple(e.from_env for e in config.envs if e.from_env and e.secret and e.from_env not in needed)
