"""The one-round-trip host probe: the sh script that asks a host everything preflight needs, and its parser.

PURE: build_probe_argv returns argv for an Executor to run; parse_probe reads what it printed.
Facts and their sources: shared/reference/cuda-preflight.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from taoremote.errors import PreflightError, UsageError
from taoremote.nvidia_smi import QUERY_FIELDS, QUERY_FIELDS_R470


@dataclass(frozen=True, slots=True)
class PathState:
    path: str  # as given to the probe
    resolved: str  # after `~` expansion on the host, made absolute against the login directory
    exists: bool
    is_dir: bool
    non_empty: bool


@dataclass(frozen=True, slots=True)
class Probe:
    smi_rc: int
    smi_text: str
    query_text: str
    image_env: Mapping[str, str] | None  # None when the image is not on the host (or docker failed)
    image_rc: int
    runtimes_text: str
    paths: Mapping[str, PathState]
    query_rc: int = 0
    query_fields: tuple[str, ...] = QUERY_FIELDS
    image_text: str = ""
    runtimes_rc: int = 0
    hook_path: str | None = None  # nvidia-container-runtime-hook, which `docker run --gpus` needs
    host_disable_require: bool = False  # disable-require = true in the host's nvidia-container-runtime config
    runtimes: tuple[str, ...] = ()  # from `docker info`: "nvidia" means --runtime=nvidia is configured


def _capture(name: str, command: str) -> str:
    """COMMAND's output between begin/end markers; the end marker carries its exit status."""
    return (
        f"printf '%s\\n' '@@taoremote:begin {name}@@'; out=$({command} 2>&1); rc=$?;"
        f' printf \'%s\\n\' "$out" "@@taoremote:end {name} rc=$rc@@";'
    )


# One POSIX sh script, run as `sh -c PROBE_SCRIPT sh IMAGE PATH...`. It is one line (`;`-joined) and avoids
# `!`, so whatever login shell re-reads it over SSH (csh included) passes it on intact. Command substitution
# strips trailing newlines and printf adds exactly one back, so every end marker starts a line of its own.
_GPU_LINES = (
    # On WSL nvidia-smi lives in /usr/lib/wsl/lib, which SSH sessions often lack on their PATH.
    "smi=nvidia-smi; if command -v nvidia-smi >/dev/null 2>&1; then :;",
    "elif [ -x /usr/lib/wsl/lib/nvidia-smi ]; then smi=/usr/lib/wsl/lib/nvidia-smi; fi;",
    _capture("nvidia-smi", '"$smi"'),
    # The field list goes in the end marker: it is known only after the retry without compute_cap.
    "printf '%s\\n' '@@taoremote:begin query@@'; f=" + ",".join(QUERY_FIELDS) + ";",
    'out=$("$smi" --query-gpu=$f --format=csv,noheader,nounits 2>&1); rc=$?;',
    "if [ $rc -ne 0 ] && [ $rc -ne 127 ]; then f=" + ",".join(QUERY_FIELDS_R470) + ";",
    'out=$("$smi" --query-gpu=$f --format=csv,noheader,nounits 2>&1); rc=$?; fi;',
    'printf \'%s\\n\' "$out" "@@taoremote:end query rc=$rc fields=$f@@";',
)
_DOCKER_GPU_LINES = (
    _capture("runtimes", "docker info --format '{{json .Runtimes}}'"),
    _capture("hook", "command -v nvidia-container-runtime-hook"),
    _capture(
        "runtime-config",
        "grep -E '^[[:space:]]*disable-require[[:space:]]*=' /etc/nvidia-container-runtime/config.toml",
    ),
)
_PATH_LINES = (
    'if [ $# -gt 0 ]; then shift; fi; for p in "$@"; do r=$p;',
    'case $r in "~") r=$HOME;; "~/"*) r=$HOME/${r#"~/"};;',
    # ~user and ~user/dir, as the launcher's expanduser does; getent, because eval would run anything
    '"~"*) u=${r%%/*}; u=${u#"~"}; h=$(getent passwd "$u" 2>/dev/null | cut -d: -f6);',
    'if [ -n "$h" ]; then case $r in */*) r=$h/${r#*/};; *) r=$h;; esac; fi;; esac;',
    "case $r in /*) ;; *) r=$PWD/$r;; esac;",
    'e=0; d=0; n=0; if [ -e "$r" ]; then e=1; fi;',
    # `find DIR/. -name . -o -prune -print` lists direct children only (POSIX has no -maxdepth).
    'if [ -d "$r" ]; then d=1;',
    'if [ -n "$(find "$r/." -name . -o -prune -print 2>/dev/null | head -n 1)" ]; then n=1; fi; fi;',
    'printf \'%s\\n\' "@@taoremote:path exists=$e dir=$d nonempty=$n@@" "$p" "$r";',
    "done; printf '%s\\n' '@@taoremote:end-of-probe@@'",
)
_IMAGE_LINE = _capture("image", "docker image inspect --format '{{json .Config.Env}}' \"$1\"")
_HEADER = "printf '%s\\n' '@@taoremote:probe v=1@@';"
PROBE_SCRIPT = " ".join((_HEADER, *_GPU_LINES, _IMAGE_LINE, *_DOCKER_GPU_LINES, *_PATH_LINES))
# A launch does not ask docker for its runtimes (`docker info`, a second daemon round trip) nor look for the
# hook: only `doctor` reports them. A launch without NVIDIA support fails at create/start with docker's own
# "could not select device driver", which jobs.py turns into the same fix.
LAUNCH_PROBE_SCRIPT = " ".join((_HEADER, *_GPU_LINES, _IMAGE_LINE, _DOCKER_GPU_LINES[-1], *_PATH_LINES))
# --no-preflight / --gpus none: mount sources and the image are still looked at (one round trip), the
# driver is not.
PATHS_PROBE_SCRIPT = " ".join((_HEADER, _IMAGE_LINE, *_PATH_LINES))
# Slurm's login node: it only submits (a GPU node pulls and runs the image), so only the mount sources.
SOURCES_PROBE_SCRIPT = " ".join((_HEADER, *_PATH_LINES))
_MARKER = re.compile(r"@@taoremote:([a-z-]+)((?: [a-z.-]+(?:=\S*)?)*)@@")


def build_probe_argv(
    image: str, paths: Sequence[str], *, gpu: bool = True, runtime: bool = False, inspect_image: bool = True
) -> tuple[str, ...]:
    """runtime: also docker's runtimes and the NVIDIA hook (doctor); a launch needs neither.
    inspect_image=False (with gpu=False): the host never runs the image (Slurm), so it is not looked at."""
    for path in paths:
        if "\n" in path:  # the probe reports one path per line
            raise UsageError(f"mount path {path!r} contains a newline")
    script = (PROBE_SCRIPT if runtime else LAUNCH_PROBE_SCRIPT) if gpu else PATHS_PROBE_SCRIPT
    if not gpu and not inspect_image:
        script = SOURCES_PROBE_SCRIPT
    return ("sh", "-c", script, "sh", image, *paths)


def parse_probe(
    stdout: str,
    *,
    host: str | None = None,
    gpu: bool = True,
    runtime: bool = False,
    inspect_image: bool = True,
) -> Probe:
    sections: dict[str, tuple[str, int, dict[str, str]]] = {}
    paths: dict[str, PathState] = {}
    complete = False
    lines = stdout.splitlines()
    i = 0
    while i < len(lines):
        marker = _MARKER.fullmatch(lines[i])
        i += 1
        if marker is None:
            continue
        kind, attrs = marker.group(1), _marker_attrs(marker.group(2))
        if kind == "begin" and attrs:
            name = next(iter(attrs))
            end_marker = re.compile(rf"@@taoremote:end {re.escape(name)} rc=(\d+)((?: \S+)*)@@")
            end = next((j for j in range(i, len(lines)) if end_marker.fullmatch(lines[j])), None)
            if end is None:
                break
            found = end_marker.fullmatch(lines[end])
            assert found is not None
            content = "\n".join(lines[i:end]).strip("\n")
            sections[name] = (content, int(found.group(1)), _marker_attrs(found.group(2)))
            i = end + 1
        elif kind == "path" and i + 1 < len(lines):
            given, resolved = lines[i], lines[i + 1]
            flags = {k: attrs.get(k) == "1" for k in ("exists", "dir", "nonempty")}
            paths[given] = PathState(given, resolved, flags["exists"], flags["dir"], flags["nonempty"])
            i += 2
        elif kind == "end-of-probe":
            complete = True
    required = ({"nvidia-smi", "query", "image"} | ({"runtimes"} if runtime else set())) if gpu else {"image"}
    if not gpu and not inspect_image:
        required = set()
    if not complete or required - sections.keys():
        raise PreflightError("the preflight probe's output is incomplete", host=host, skippable=True)
    not_probed: tuple[str, int, dict[str, str]] = ("", 127, {})
    smi_text, smi_rc, _ = sections.get("nvidia-smi", not_probed)
    query_text, query_rc, query_attrs = sections.get("query", not_probed)
    image_text, image_rc, _ = sections.get("image", not_probed)
    runtimes_text, runtimes_rc, _ = sections.get("runtimes", not_probed)
    hook_text, hook_rc, _ = sections.get("hook", ("", 1, {}))
    config_text, config_rc, _ = sections.get("runtime-config", ("", 1, {}))
    return Probe(
        smi_rc=smi_rc,
        smi_text=smi_text,
        query_text=query_text,
        image_env=parse_image_env(image_text) if image_rc == 0 else None,
        image_rc=image_rc,
        runtimes_text=runtimes_text,
        paths=paths,
        query_rc=query_rc,
        query_fields=tuple(query_attrs.get("fields", ",".join(QUERY_FIELDS)).split(",")),
        image_text=image_text,
        runtimes_rc=runtimes_rc,
        hook_path=(hook_text.strip() or None) if hook_rc == 0 else None,
        host_disable_require=config_rc == 0 and _toml_true(config_text, "disable-require"),
        runtimes=parse_runtimes(runtimes_text) if runtimes_rc == 0 else (),
    )


def _marker_attrs(text: str) -> dict[str, str]:
    attrs: dict[str, str] = {}
    for token in text.split():
        key, _, value = token.partition("=")
        attrs[key] = value
    return attrs


def _toml_true(text: str, key: str) -> bool:
    for line in text.splitlines():
        name, _, value = line.partition("=")
        if name.strip() == key and value.split("#", 1)[0].strip() == "true":
            return True
    return False


def parse_runtimes(json_text: str) -> tuple[str, ...]:
    """Names from `docker info --format '{{json .Runtimes}}'`, e.g. ("nvidia", "runc")."""
    try:
        data = json.loads(json_text)
    except json.JSONDecodeError:
        return ()
    return tuple(sorted(data)) if isinstance(data, dict) else ()


def parse_image_env(json_text: str) -> dict[str, str]:
    """`docker image inspect --format '{{json .Config.Env}}'`: a JSON list of NAME=VALUE (or null)."""
    try:
        data = json.loads(json_text.strip() or "null")
    except json.JSONDecodeError as exc:
        raise PreflightError(f"unreadable image environment from docker: {json_text[:80]!r}") from exc
    if data is None:
        return {}
    if not isinstance(data, list):
        raise PreflightError(f"unreadable image environment from docker: {json_text[:80]!r}")
    env: dict[str, str] = {}
    for item in data:
        name, sep, value = str(item).partition("=")
        if sep:  # a bare NAME carries no value; the runtime ignores it too
            env[name] = value
    return env
