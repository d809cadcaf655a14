"""Container paths in a task's arguments, checked against the mounts before launch (pure).

TAO users' most common failure is a path that exists on the host but not in the container, or the
reverse, discovered minutes into a run. Every argument that looks like a container path (absolute,
or the value of a `key=value` override or `--flag=value`) is mapped through the mounts to where it
lives on the host that runs the container; the probe then says whether it exists there.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from taoremote.config import Mount

if TYPE_CHECKING:  # the probe's result type; importing the probe itself is not needed for a dry run
    from taoremote.probe import PathState

# Flags whose value is the experiment spec (TAO 4/5 tf1 and pyt tasks) or the results directory.
SPEC_FLAGS = frozenset(
    {"-e", "--experiment_spec_file", "--experiment_spec", "--spec_file", "experiment_spec"}
)
RESULTS_FLAGS = frozenset({"-r", "--results_dir", "results_dir"})
# Paths that live in the image itself are not expected under a mount.
IMAGE_DIRS = (
    "/usr/",
    "/opt/",
    "/bin/",
    "/sbin/",
    "/lib",
    "/etc/",
    "/proc/",
    "/dev/",
    "/sys/",
    "/tmp",
    "/root/",
    "/var/",
)


@dataclass(frozen=True)
class PathArg:
    path: str  # as the container will see it
    role: str  # "spec" | "results" | "other"


@dataclass(frozen=True)
class ResultsDir:
    """A non-empty results directory that --clean-results may be asked to empty. What may really be
    deleted is decided on the host, from the mount's source as written and the path below its
    destination (command.build_clean_dir_argv), never from a path resolved earlier."""

    container_path: str
    host_path: str  # as the probe saw it, for messages
    source: str  # the mount's source, as written in the mounts file
    below: str  # relative to the mount's destination; "" when it is the destination itself
    warning: str = ""  # what the launch says about it; dropped once --clean-results has emptied it


@dataclass(frozen=True)
class PathReport:
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    results: ResultsDir | None = None  # when the results dir of a `train` is non-empty


def find_path_args(args: Sequence[str]) -> list[PathArg]:
    """Absolute paths among the args, with the role their flag gives them."""
    found: list[PathArg] = []
    previous = ""
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and value.startswith("/"):
            found.append(PathArg(_clean(value), _role(key.lstrip("+"))))
        elif arg.startswith("/"):
            found.append(PathArg(_clean(arg), _role(previous)))
        previous = arg
    return found


def results_dir_of(args: Sequence[str]) -> str | None:
    """The results dir a task's args give the container (`-r DIR`, `--results_dir DIR`, `results_dir=DIR`,
    `--results_dir=DIR`); None when there is none, it is not absolute, or it is given more than once."""
    found = []
    for i, arg in enumerate(args):
        key, sep, value = arg.partition("=")
        if sep and key.lstrip("+") in RESULTS_FLAGS:
            found.append(value)
        elif arg in RESULTS_FLAGS and arg.startswith("-") and i + 1 < len(args):
            found.append(args[i + 1])
    return _clean(found[0]) if len(found) == 1 and found[0].startswith("/") else None


def _role(flag: str) -> str:
    if flag in SPEC_FLAGS or flag.endswith(".experiment_spec"):
        return "spec"
    if flag in RESULTS_FLAGS or flag.endswith(".results_dir"):
        return "results"
    return "other"


def _clean(path: str) -> str:
    return posixpath.normpath(path)


def host_path_of(path: str, mounts: Sequence[Mount]) -> tuple[Mount, str] | None:
    """The mount a container path falls under (the deepest destination wins) and its host path,
    written from the mount's source as given (so `~` still expands on the host that runs it)."""
    best: tuple[Mount, str] | None = None
    for mount in mounts:
        dest = mount.destination.rstrip("/") or "/"
        if path == dest or path.startswith(dest.rstrip("/") + "/"):
            rest = path[len(dest) :].lstrip("/")
            base = mount.source.rstrip("/")
            # a source of `/` stays `/` (an empty path would be the working directory on the host)
            host = f"{base}/{rest}" if rest else base or "/"
            if best is None or len(dest) > len(best[0].destination.rstrip("/")):
                best = (mount, host)
    return best


def container_path_of(
    host_path: str, mounts: Sequence[Mount], resolved: Mapping[str, PathState]
) -> str | None:
    """For a host path given by mistake: where that file is inside the container, if it is mounted."""
    for mount in mounts:
        state = resolved.get(mount.source)
        source = state.resolved.rstrip("/") if state else mount.source.rstrip("/")
        if host_path == source or host_path.startswith(source + "/"):
            return mount.destination.rstrip("/") + host_path[len(source) :]
    return None


def probe_paths(path_args: Sequence[PathArg], mounts: Sequence[Mount]) -> list[str]:
    """Host paths the probe must look at for these args (besides the mount sources)."""
    paths = []
    for arg in path_args:
        mapped = host_path_of(arg.path, mounts)
        if mapped is not None and mapped[1] not in paths:
            paths.append(mapped[1])
    return paths


def check_path_args(
    path_args: Sequence[PathArg],
    mounts: Sequence[Mount],
    states: Mapping[str, PathState],
    *,
    subtask: str | None,
) -> PathReport:
    errors: list[str] = []
    warnings: list[str] = []
    results: ResultsDir | None = None
    mounted = ", ".join(f"{m.source} -> {m.destination}" for m in mounts) or "none"
    for arg in path_args:
        mapped = host_path_of(arg.path, mounts)
        if mapped is None:
            inside = container_path_of(arg.path, mounts, states)
            if inside is not None:
                message = f"{arg.path} is a host path; in the container it is {inside}"
                (errors if arg.role == "spec" else warnings).append(message)
            elif arg.role != "other" or not arg.path.startswith(IMAGE_DIRS):
                warnings.append(
                    f"{arg.path} is under no mount, so it lives only inside the container; mounts: {mounted}"
                )
            continue
        mount, host = mapped
        state = states.get(host)
        if state is None:
            continue
        if arg.role == "spec" and not state.exists:
            errors.append(f"spec file {arg.path} does not exist: nothing at {state.resolved} on the host")
        if arg.role == "results" and subtask == "train" and state.is_dir and state.non_empty:
            below = _below(arg.path, mount.destination)
            remedy = (
                "use another directory or --clean-results"
                if below
                else "use a directory below it (--clean-results never empties a mount's destination itself)"
            )
            warning = (
                f"results directory {arg.path} ({state.resolved}) is not empty; TAO training then fails "
                f"at its last iteration - {remedy}"
            )
            results = ResultsDir(arg.path, state.resolved, mount.source, below, warning)
            warnings.append(warning)
    return PathReport(tuple(errors), tuple(warnings), results)


def _below(path: str, destination: str) -> str:
    """PATH relative to the mount DESTINATION it falls under ("" for the destination itself)."""
    dest = destination.rstrip("/")
    return path[len(dest) :].strip("/") if path != dest else ""
