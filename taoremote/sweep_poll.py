"""The sweep driver's commands on a host, and what they print (PURE: argv builders and parsers).

A tick of the driver is ONE command per host (`build_poll_argv`): the GPU state (placement.py's script,
only while trials wait), the sweep's containers (`docker ps -a` by the sweep's label), and what each
followed trial's status.json grew by since the last tick (`tail -c +OFFSET`: only new bytes cross the
link). Paths are passed as arguments, never spliced into the script; a leading `~/` is the host's $HOME.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from taoremote.containers import exit_code_of
from taoremote.errors import DockerError
from taoremote.placement import GPU_STATE_SCRIPT, HostGpuState, parse_gpu_state

SWEEP_LABEL = "taoremote.sweep"
TRIAL_LABEL = "taoremote.trial"
RESULTS_LABEL = "taoremote.results"

_HOME = 'case $p in "~/"*) p=$HOME/${p#"~/"} ;; "~") p=$HOME ;; esac;'
_POLL = (
    "printf '%s\\n' '@@sweep:ps@@';"
    ' docker ps -a --no-trunc --filter "label=' + SWEEP_LABEL + '=$1"'
    " --format '{{.Names}}|{{.State}}|{{.Status}}' 2>&1; printf '@@sweep:ps-rc %s@@\\n' $?; shift;"
    " while [ $# -ge 3 ]; do p=$3; " + _HOME + " printf '@@sweep:status %s@@\\n' \"$1\";"
    ' if [ -f "$p" ]; then tail -c "+$(($2 + 1))" "$p"; fi;'
    " printf '\\n@@sweep:status-end %s@@\\n' \"$1\"; shift 3; done"
)
_MARK = re.compile(r"@@sweep:(ps|ps-rc|status|status-end) ?(\S*)@@")


def build_poll_argv(
    sweep: str, statuses: Sequence[tuple[int, int, str]], *, gpu_state: bool
) -> tuple[str, ...]:
    """STATUSES: (trial, bytes already read, status.json host path) for each trial to follow."""
    script = (GPU_STATE_SCRIPT + "; " if gpu_state else "") + _POLL
    return ("sh", "-c", script, "sh", sweep, *(str(x) for s in statuses for x in s))


@dataclass(frozen=True)
class Container:
    name: str
    state: str  # created | running | paused | restarting | exited | dead
    exit_code: int | None


@dataclass(frozen=True)
class Poll:
    host: str
    containers: dict[str, Container]  # by container name
    grown: dict[int, str] = field(default_factory=dict)  # trial -> the status.json text since last time
    gpus: HostGpuState | None = None


def parse_poll(stdout: str, *, host: str, gpu_state: bool) -> Poll:
    gpus = parse_gpu_state(stdout, host=host) if gpu_state else None
    lines = stdout.split("\n")
    containers: dict[str, Container] = {}
    grown: dict[int, str] = {}
    i, ps_rc = 0, None
    while i < len(lines):
        mark = _MARK.fullmatch(lines[i])
        i += 1
        if mark is None:
            continue
        kind, arg = mark.groups()
        if kind == "ps":
            rows = []
            while i < len(lines) and not lines[i].startswith("@@sweep:ps-rc "):
                rows.append(lines[i])
                i += 1
            rc = _MARK.fullmatch(lines[i]) if i < len(lines) else None
            ps_rc = int(rc.group(2)) if rc else None
            if ps_rc != 0:
                said = next((r for r in rows if r.strip()), "no answer")
                raise DockerError(f"docker ps failed: {said}", host=host)
            for row in rows:
                name, _, rest = row.partition("|")
                state, _, status = rest.partition("|")
                if name:
                    containers[name] = Container(name, state, exit_code_of(status))
        elif kind == "status":
            start = i
            while i < len(lines) and lines[i] != f"@@sweep:status-end {arg}@@":
                i += 1
            text = "\n".join(lines[start:i])  # the newline before the end marker is ours: not in it
            grown[int(arg)] = text
    if ps_rc is None:
        raise DockerError("the sweep's poll command printed nothing it could read", host=host)
    return Poll(host, containers, grown, gpus)


def build_stop_sweep_argv(sweep: str, user: str) -> tuple[str, ...]:
    """Stop every live container of SWEEP that USER launched: one command per host."""
    filters = [f"label={SWEEP_LABEL}={sweep}", f"label=taoremote.user={user}"]
    filters += [f"status={s}" for s in ("created", "running", "paused", "restarting")]
    args = " ".join(f"--filter {shlex.quote(f)}" for f in filters)
    return (
        "sh",
        "-c",
        f'ids=$(docker ps -aq {args}) || exit 1; [ -z "$ids" ] || docker stop $ids >/dev/null',
    )


def build_stop_trial_argv(container: str) -> tuple[str, ...]:
    """Stop one trial's container (a pruned trial) and print the exit code its stop gave it (143: it ended
    on docker's SIGTERM; 137: killed after docker's grace): the code `sweep status` shows for it."""
    script = 'docker stop -- "$1" >/dev/null && docker inspect --format "{{.State.ExitCode}}" -- "$1"'
    return ("sh", "-c", script, "sh", container)


def build_start_trial_argv(container: str) -> tuple[str, ...]:
    """Start a trial's container that a launch left created and never started (its docker client was
    killed, or gave no answer in time, between docker's create and start). A start of one that is
    starting or running meanwhile (a dead driver's client got there) is a no-op, not an error."""
    return ("docker", "start", "--", container)


def parse_exit_code(stdout: str) -> int | None:
    text = stdout.strip()
    return int(text) if text.lstrip("-").isdigit() else None


def build_read_argv(path: str) -> tuple[str, ...]:
    """A file's text (the spec, read on every host: they must all hold the same)."""
    return ("sh", "-c", "p=$1; " + _HOME + ' cat -- "$p"', "sh", path)


def build_nonempty_dirs_argv(paths: Sequence[str]) -> tuple[str, ...]:
    """Prints each of PATHS that is a directory with something in it."""
    script = (
        'for p in "$@"; do q=$p; ' + _HOME + ' if [ -d "$p" ] && [ -n "$(ls -A "$p" 2>/dev/null)" ];'
        ' then printf "%s\\n" "$q"; fi; done'
    )
    return ("sh", "-c", script, "sh", *paths)


def build_write_file_argv(path: str) -> tuple[str, ...]:
    """Writes stdin to PATH, making its directory: a trial's spec copy, before its container starts."""
    script = "p=$1; " + _HOME + ' mkdir -p -- "${p%/*}" && cat > "$p"'
    return ("sh", "-c", script, "sh", path)


def build_newest_checkpoint_argv(directory: str, suffixes: Sequence[str]) -> tuple[str, ...]:
    """The newest checkpoint file below DIRECTORY (by modification time) as `./rel/path`, or nothing."""
    names = " -o ".join(f"-name '*{s}'" for s in suffixes)
    script = (
        "p=$1; " + _HOME + ' cd "$p" 2>/dev/null || exit 0;'
        f" find . -type f \\( {names} \\) -exec ls -t {{}} + 2>/dev/null | head -n 1"
    )
    return ("sh", "-c", script, "sh", directory)
