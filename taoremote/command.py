"""PURE argv builders: every docker flag taoremote emits is in this file.

Nothing here reads the environment, the clock, the filesystem or the terminal: whatever
depends on them (job id, start time, tty, resolved mount sources) is a field of RunSpec.
argv is a tuple of str from here to the process boundary; it is shell-joined only at SSH.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from taoremote.containers import JOB_LABEL, LIST_SCRIPT, LIST_TEMPLATE, PS_TEMPLATE, status_marker
from taoremote.gpus import docker_gpus_args, parse_gpus

if TYPE_CHECKING:  # `list`, `stop` and `logs` build argv without reading a mounts file: ~10 ms of imports
    from taoremote.config import DockerOptions, PortMapping, Ulimit

STOP_TIMEOUT_S = 10  # docker's own default grace; tasks run under --init so they get SIGTERM at once


@dataclass(frozen=True)
class BoundMount:
    source: str  # already resolved on the host that runs the container
    destination: str
    read_only: bool = False


def _no_docker_options() -> DockerOptions:
    from taoremote.config import DockerOptions

    return DockerOptions()


@dataclass(frozen=True)
class RunSpec:
    image: str
    command: tuple[str, ...]  # what runs in the container; empty: the image's default (interactive shell)
    job_id: str
    task: str
    mounts: tuple[BoundMount, ...] = ()
    env_names: tuple[str, ...] = ()  # the plan's Envs; a launch swaps them for env_file (with_env_file)
    env_file: str | None = None  # a 0600 file holding the values: they never appear in an argv
    options: DockerOptions = field(default_factory=_no_docker_options)
    gpus: str = "all"  # "all", "2", "device=0,2", "none"
    tty: bool = False
    interactive: bool = False
    detach: bool = False  # -d: the job outlives this process; no --rm so its exit code stays readable
    labels: tuple[tuple[str, str], ...] = ()
    # plain, non-secret variables every container of the launcher gets (TAO_CLIENT_TYPE=launcher); after
    # --env-file on the command line, so the plan leaves out any the mounts file sets itself
    fixed_env: tuple[tuple[str, str], ...] = ()


def with_env_file(spec: RunSpec, env_file: str | None) -> RunSpec:
    """The spec as launched: values come from the env-file, so no `-e NAME` is needed."""
    return replace(spec, env_names=(), env_file=env_file)


def container_name(task: str, job_id: str) -> str:
    safe = re.sub(r"[^a-zA-Z0-9_.-]", "-", task)
    return f"taoremote-{safe}-{job_id}"


def build_run_argv(spec: RunSpec) -> tuple[str, ...]:
    opts = spec.options
    argv: list[str] = ["docker", "run"]
    argv += ["-d"] if spec.detach else ["--rm"]
    argv += ["--init"]  # the task is not PID 1, so `docker stop`'s SIGTERM ends it at once
    argv += ["-i"] if spec.interactive else []
    argv += ["-t"] if spec.tty else []
    argv += ["--name", container_name(spec.task, spec.job_id)]
    argv += _repeat("--label", [f"{JOB_LABEL}={spec.job_id}", *(f"{k}={v}" for k, v in spec.labels)])
    argv += docker_gpus_args(parse_gpus(spec.gpus))
    argv += [item for m in spec.mounts for item in _bind(m)]
    argv += _repeat("-e", spec.env_names)
    argv += _opt("--env-file", spec.env_file)
    argv += _repeat("-e", [f"{name}={value}" for name, value in spec.fixed_env])
    argv += _opt("--shm-size", opts.shm_size)
    argv += _repeat("--ulimit", [_ulimit(u) for u in opts.ulimits])
    argv += _opt("-u", opts.user)
    argv += _repeat("-p", [_port(p) for p in opts.ports])
    argv += ["--privileged"] if opts.privileged else []
    argv += _opt("--network", opts.network)
    argv += [spec.image, *spec.command]
    return tuple(argv)


def build_create_argv(spec: RunSpec) -> tuple[str, ...]:
    """`docker create` with the flags of a foreground run but without --rm: the container holds its env
    from then on (the env-file can go at once), and a job that outlives its client (SIGHUP) keeps its
    exit code and logs; the client removes it once it has collected them."""
    return ("docker", "create", *build_run_argv(replace(spec, detach=True))[3:])


def build_then_delete_env_file_argv(argv: Sequence[str], env_file: str) -> tuple[str, ...]:
    """Run `docker run -d`/`docker create` and delete the env-file in the same command, ignoring
    SIGHUP: if the SSH link drops right then, the secret file still goes as soon as docker has read it."""
    script = 'trap "" HUP; "$@"; rc=$?; rm -f "$0"; rmdir "${0%/*}" 2>/dev/null; exit $rc'
    return ("sh", "-c", script, env_file, *argv)


# The last line of an env-file sent on stdin (docker skips `#` lines): a file without it is incomplete.
ENV_FILE_END = "# taoremote: end of env-file\n"
STALE_ENV_FILE_MIN = 10  # an env-file directory this old belongs to no launch under way: a dropped link's


def build_write_env_file_then_argv(argv: Sequence[str], env_file: str) -> tuple[str, ...]:
    """Write the env-file from stdin (ending in ENV_FILE_END) into a new private directory, run
    `docker run -d`/`docker create`, and delete it, in one command: no SFTP, no round trip more, and
    no value in any argv. SIGHUP is ignored, so a dropped link still ends with the file gone; files
    that a killed command left behind (older than STALE_ENV_FILE_MIN) are removed on the way."""
    script = (
        'trap "" HUP; f=$0; d=${f%/*}; umask 077; mkdir -p "${d%/*}"; '
        f'find "${{d%/*}}" -maxdepth 1 -name "taoremote-env-*" -mmin +{STALE_ENV_FILE_MIN} '
        "-exec rm -rf {} + 2>/dev/null; "
        'mkdir "$d" || exit 125; '
        f'if cat > "$f" && [ "$(tail -n 1 "$f")" = "{ENV_FILE_END.strip()}" ]; '
        'then umask 022; "$@"; rc=$?; '
        'else echo "taoremote: the env-file did not arrive whole" >&2; rc=125; fi; '
        'rm -rf "$d"; exit $rc'
    )
    return ("sh", "-c", script, env_file, *argv)


def build_start_attached_argv(name: str, *, interactive: bool) -> tuple[str, ...]:
    # exits with the container's own exit code, like an attached `docker run`
    return ("docker", "start", "--attach", *(["--interactive"] if interactive else []), name)


def build_start_argv(name: str) -> tuple[str, ...]:
    return ("docker", "start", name)


def build_inspect_state_argv(name: str) -> tuple[str, ...]:
    """Status, ExitCode and Error (docker fills it when a start fails) as one JSON object."""
    return ("docker", "container", "inspect", "--format", "{{json .State}}", name)


def build_ps_argv(
    *, include_stopped: bool, job_id: str | None = None, template: str = PS_TEMPLATE
) -> tuple[str, ...]:
    """One `docker ps` per host, filtered by our label; containers.PS_TEMPLATE is what parse_ps reads."""
    label = f"{JOB_LABEL}={job_id}" if job_id else JOB_LABEL
    return (
        "docker",
        "ps",
        *(["--all"] if include_stopped else []),
        "--no-trunc",
        "--filter",
        f"label={label}",
        "--format",
        template,
    )


def build_list_argv(*, include_stopped: bool, marker: str) -> tuple[str, ...]:
    """`list`'s one command per host: the `docker ps`, then the tail of each listed job's status.json
    (containers.LIST_SCRIPT, read back by containers.parse_list with the same random MARKER)."""
    ps = build_ps_argv(include_stopped=include_stopped, template=LIST_TEMPLATE)
    return ("/bin/sh", "-c", LIST_SCRIPT, "sh", status_marker(marker), *ps)


def build_stop_argv(names: Sequence[str], *, timeout_s: int = STOP_TIMEOUT_S) -> tuple[str, ...]:
    # docker stops the named containers in parallel: one call, not one per job
    return ("docker", "stop", "--time", str(timeout_s), *names)


def build_rm_argv(names: Sequence[str], *, force: bool) -> tuple[str, ...]:
    """Without force docker refuses to remove a running container: what must never kill a job uses that."""
    return ("docker", "rm", *(["--force"] if force else []), *names)


# `sh -c REMOVE_ONCE_CREATED sh PREFIX REST SECONDS`: after an interruption during a remote `docker run -d`
# that had not answered, that command goes on without us (it ignores SIGHUP) and would start the job
# unsupervised. This removes the container PREFIX+REST as soon as it exists, in the background, and gives
# up once no process on the host names it any more (its launch failed) or after SECONDS. The name comes
# in two arguments so that this script's own command line never holds it whole. What `rm --force`
# removed is what it prints: for a container that does not exist it exits 0 too (docker >= 23).
REMOVE_ONCE_CREATED = (
    '( trap "" HUP; n=$1$2; i=0; while :; do gone=; '
    '[ -d /proc/self ] && ! grep -qsF -- "$n" /proc/[0-9]*/cmdline && gone=1; '
    '[ -n "$(docker rm --force "$n" 2>/dev/null)" ] && exit 0; [ -n "$gone" ] && exit 0; '
    'i=$((i + 1)); [ "$i" -ge "$3" ] && exit 0; sleep 1; done ) </dev/null >/dev/null 2>&1 &'
)
REMOVE_ONCE_CREATED_S = 600


def build_remove_once_created_argv(name: str, *, seconds: int = REMOVE_ONCE_CREATED_S) -> tuple[str, ...]:
    prefix, rest = name[:1], name[1:]
    return ("sh", "-c", REMOVE_ONCE_CREATED, "sh", prefix, rest, str(seconds))


def build_logs_argv(name: str, *, follow: bool) -> tuple[str, ...]:
    return ("docker", "logs", *(["--follow"] if follow else []), name)


def build_wait_argv(name: str, *, remove: bool = False) -> tuple[str, ...]:
    """`docker wait` prints the exit code; with remove, the finished container goes in the same
    round trip (a remote command costs two network round trips)."""
    if remove:
        return ("sh", "-c", 'docker wait "$1" && docker rm --force "$1" >/dev/null', "sh", name)
    return ("docker", "wait", name)


# `sh -c FOLLOW_WAIT_RM sh NAME MARKER`: a foreground job over SSH followed to its end in ONE remote
# command (a channel open and an exec fewer than `logs -f`, then `wait` and `rm`: ~1.5 RTT). The exit
# code comes on stderr after MARKER, a nonce the task never saw, so its own output cannot forge it; the
# container goes only once the client answers that line on stdin. A client that lost its link never
# answers (EOF, or silence on a frozen link): the job then keeps its exit code and logs for the reattach.
FOLLOW_WAIT_RM = (
    "exec 3>&1\n"  # `docker wait` starts beside `docker logs`, not after it: one docker client start less
    'code=$(docker logs --follow "$1" >&3 & w=$(docker wait "$1") || exit; wait $!; echo "$w") || exit\n'
    'printf "%s%s\\n" "$2" "$code" >&2\n'
    'read -r _ && docker rm --force "$1" >/dev/null'
)


def build_follow_wait_rm_argv(name: str, marker: str) -> tuple[str, ...]:
    return ("sh", "-c", FOLLOW_WAIT_RM, "sh", name, marker)


def build_pull_argv(image: str) -> tuple[str, ...]:
    return ("docker", "pull", image)


CLEAN_REFUSED = "@@taoremote:refused@@"
CLEAN_REFUSED_RC = 3
# `sh -c CLEAN_SCRIPT sh MODE SOURCE BELOW EXPECTED` on the host that runs the container (DESIGN.md §3
# "Deleting results"). It resolves the mount source as the probe does (`~`, `~user`, relative to the
# login directory), then the results directory physically (`cd -P`): it must stay strictly inside the
# source (a symlink leading out of the mount is refused), and be neither `/`, a home directory
# ($HOME or /etc/passwd) or an ancestor of one, nor the working directory or an ancestor of it.
# The checks and the `find` run in one process, on the directory the shell is already in, so nothing
# can swap a symlink in between; `find` never follows symlinks. MODE `check` prints the directory and
# deletes nothing; `delete` also refuses when the directory is not EXPECTED (when one is given).
# One line, no `!`: whatever login shell re-reads it over SSH passes it on intact.
_CLEAN_LINES = (
    "set -f; mode=$1; src=$2; below=$3; expected=$4; CDPATH=;",
    f"refuse() {{ printf '%s %s\\n' '{CLEAN_REFUSED}' \"$1\" >&2; exit {CLEAN_REFUSED_RC}; }};",
    'case $src in "~") src=$HOME;; "~/"*) src=$HOME/${src#"~/"};;',
    '"~"*) u=${src%%/*}; u=${u#"~"}; h=$(getent passwd "$u" 2>/dev/null | cut -d: -f6);',
    'if [ -n "$h" ]; then case $src in */*) src=$h/${src#*/};; *) src=$h;; esac; fi;; esac;',
    "case $src in /*) ;; *) src=$PWD/$src;; esac;",
    'wd=$(pwd -P); [ -n "$below" ] || refuse "it is the mount\'s destination itself";',
    'top=$(cd -P -- "$src" 2>/dev/null && pwd -P) || refuse "the mount source $src is not a directory";',
    'cd -P -- "$top/$below" 2>/dev/null || refuse "it is not a directory on the host";',
    'dir=$(pwd -P) || refuse "its path cannot be read";',
    'case $dir in "${top%/}"/?*) ;;',
    '*) refuse "it resolves to $dir, which leads out of the mount ($top)";; esac;',
    'homes=$(cut -d: -f6 /etc/passwd 2>/dev/null); for h in "$HOME" $homes; do',
    '[ -n "$h" ] || continue; r=$(cd -P -- "$h" 2>/dev/null && pwd -P) || r=$h;',
    'case "${r%/}/" in "$dir"/*) refuse "$dir is a home directory or holds one ($h)";; esac; done;',
    'case "${wd%/}/" in "$dir"/*) refuse "$dir is the working directory or holds it ($wd)";; esac;',
    'if [ "$mode" = check ]; then printf \'%s\\n\' "$dir"; exit 0; fi;',
    '[ -z "$expected" ] || [ "$dir" = "$expected" ] || refuse "it changed to $dir since it was checked";',
    "find . -mindepth 1 -delete && printf '%s\\n' \"$dir\"",
)
CLEAN_SCRIPT = " ".join(_CLEAN_LINES)


def build_clean_dir_argv(
    source: str, below: str, *, check_only: bool = False, expected: str = ""
) -> tuple[str, ...]:
    """Empty the results directory BELOW (relative, non-empty) inside the mount whose source is SOURCE
    (as written in the mounts file), keeping the directory itself. Every rule of what may be deleted
    is checked by the host-side script itself (CLEAN_SCRIPT). Prints the directory it resolved."""
    mode = "check" if check_only else "delete"
    return ("sh", "-c", CLEAN_SCRIPT, "sh", mode, source, below.strip("/"), expected)


def format_env_file(values: Mapping[str, str]) -> str:
    """docker --env-file syntax: one NAME=value per line, taken literally (no quotes, no expansion)."""
    return "".join(f"{name}={value}\n" for name, value in values.items())


def render_command(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """A copy-pasteable shell line: `NAME=value ... docker run ...` (values already masked by the caller)."""
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
    line = shlex.join(argv)
    return f"{prefix} {line}" if prefix else line


def _opt(flag: str, value: str | None) -> list[str]:
    return [flag, value] if value is not None else []


def _repeat(flag: str, values: Iterable[str]) -> list[str]:
    return [item for value in values for item in (flag, value)]


def _bind(mount: BoundMount) -> tuple[str, str]:
    """`-v SRC:DST[:ro]` as the launcher's users know it; `--mount` where -v would split a path that
    holds ':' or ',' (or take a destination ending in ':ro' for a mode)."""
    if any(c in path for path in (mount.source, mount.destination) for c in ":,"):
        fields = ["type=bind", f"source={mount.source}", f"target={mount.destination}"]
        fields += ["readonly"] if mount.read_only else []
        return ("--mount", ",".join(_csv_field(f) for f in fields))
    return ("-v", _volume(mount))


def _csv_field(text: str) -> str:
    # docker reads --mount as one CSV record: a field holding ',' or '"' is quoted, quotes doubled
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n\r') else text


def _volume(mount: BoundMount) -> str:
    return f"{mount.source}:{mount.destination}" + (":ro" if mount.read_only else "")


def _ulimit(limit: Ulimit) -> str:
    if limit.soft == limit.hard:
        return f"{limit.name}={limit.soft}"
    return f"{limit.name}={limit.soft}:{limit.hard}"


def _port(port: PortMapping) -> str:
    # docker-py's {"8888/tcp": 8888} means host 8888 -> container 8888/tcp, i.e. `-p 8888:8888/tcp`
    if port.host_port is None and port.host_ip is None:
        return port.container_port
    host = f"{port.host_ip}:{port.host_port or ''}" if port.host_ip else f"{port.host_port}"
    return f"{host}:{port.container_port}"
