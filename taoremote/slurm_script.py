"""PURE: the sbatch batch script of a taoremote job on a Slurm cluster (DESIGN.md §6, issue 10).

A `SlurmJob` is the `RunSpec` a launch on a host would run, plus where its private directory is on the
cluster's shared filesystem and, for a sweep, one command per array task. `build_batch_script` turns it
into the script text; nothing here runs, reads or writes anything.

The job directory holds (names below): the script, `output[.<task>]`, `exit_code[.<task>]`, and the
0600 `env` file the backend writes before `sbatch`. Env values are only ever in that file: the script
names the file, never a value.

Lifetime of the env file: it must outlive the queue wait and serve every array task, so no task may
delete it while another task of the job still pending or running has not read it. A task marks
`env-read.<task>` once it no longer needs the file (pyxis: once sourced; docker: once the container
holds its env, or at exit) and deletes the file only when `squeue`, Slurm's own word, lists no other
task of the job in a non-final state without such a mark. A pending task is always in `squeue`, so
this never races one; if squeue cannot answer the file stays. A job cancelled before any task ran (or
a task killed with SIGKILL) leaves it behind: `stop` and `prune` may remove it by the same rule, i.e.
once `squeue` shows nothing of the job pending or running — never by its age. Jobs are `--no-requeue`:
a requeued run would find the file gone (and re-run a training from scratch unasked).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from taoremote.errors import UsageError

if TYPE_CHECKING:
    from taoremote.command import RunSpec

# command.py and gpus.py are imported where a script is built: `list`, `stop` and `logs` on Slurm read only
# this module's file names and states, and their start-up stays near a bare squeue (issue 10, Speed).

Runtime = Literal["docker", "pyxis"]
SCRIPT_FILE = "job.sbatch"
ENV_FILE = "env"
OUTPUT_FILE = "output"
EXIT_CODE_FILE = "exit_code"
ENV_READ_MARK = "env-read"
COMMENT_PREFIX = "taoremote"
# final Slurm states: a task in one of them will never read the env file again (the jobs are --no-requeue)
FINAL_STATES = "BOOT_FAIL|CANCELLED|COMPLETED|DEADLINE|FAILED|NODE_FAIL|OUT_OF_MEMORY|PREEMPTED|TIMEOUT"
STOP_TIMEOUT_S = 10  # within Slurm's default KillWait (30 s) between SIGTERM and SIGKILL

_TASK = "\0task\0"  # stands for the array task id inside an argv element: no real argument holds a NUL
ARRAY_TASK = _TASK  # for callers: in a job array's spec (a label, say), replaced by "$task" in the script
_GPUS_SENTINEL = "device=SLURMALLOCATED"  # where build_run_argv puts --gpus; replaced by Slurm's own GPUs
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/@+-]*$")  # no space (#SBATCH lines split), no % (a Slurm pattern)
_SAFE_WORD = re.compile(r"^[A-Za-z0-9._@+-]+$")


@dataclass(frozen=True)
class SlurmJob:
    spec: RunSpec  # as a launch on a host would run it; spec.env_names are the names in the env file
    job_dir: str  # absolute, private (0700), on the filesystem the login node and the GPU nodes share
    user: str
    runtime: Runtime = "docker"
    # a job array (a sweep): one command per task, chosen by $SLURM_ARRAY_TASK_ID; spec.command is unused
    task_commands: tuple[tuple[str, ...], ...] = ()
    max_parallel: int | None = None  # `--array=0-(N-1)%K`

    @property
    def is_array(self) -> bool:
        return bool(self.task_commands)

    @property
    def has_env_file(self) -> bool:
        return bool(self.spec.env_names)


def job_name(job: SlurmJob) -> str:
    """`taoremote-<task>-<job id>`: the container's name on a host, so a job reads the same everywhere."""
    from taoremote.command import container_name

    return container_name(job.spec.task, job.spec.job_id)


def output_name(task: int | None = None) -> str:
    return OUTPUT_FILE if task is None else f"{OUTPUT_FILE}.{task}"


def exit_code_name(task: int | None = None) -> str:
    return EXIT_CODE_FILE if task is None else f"{EXIT_CODE_FILE}.{task}"


def env_file_text(runtime: Runtime, values: Mapping[str, str]) -> str:
    """The content of the job's 0600 env file: docker's --env-file syntax, or shell for pyxis (sourced)."""
    if runtime == "docker":
        from taoremote.command import format_env_file

        return format_env_file(values)
    return "".join(f"{name}={shlex.quote(value)}\n" for name, value in values.items())


# sbatch options whose value taoremote's own jobs depend on: the comment `list`/`stop` find a job by, the
# output and exit files `logs` and the follower read, the array a sweep's task commands are numbered by, no
# requeue (the env file is gone after a first run), and an sbatch that returns the id at once.
_OWNED_LONG = ("comment", "output", "error", "array", "requeue", "wait")
_OWNED_SHORT = {"o": "output", "e": "error", "a": "array", "W": "wait"}


def check_sbatch_args(sbatch_args: Sequence[str]) -> None:
    """A user's `--sbatch` overrides the script's #SBATCH lines: refuse those taoremote's jobs rely on.
    Long options may be abbreviated, as sbatch (getopt_long) accepts any unambiguous prefix."""
    for arg in sbatch_args:
        owned = None
        if arg.startswith("--") and len(arg) > 3:
            given = arg[2:].partition("=")[0]
            owned = next((o for o in _OWNED_LONG if o.startswith(given)), None)
        elif arg.startswith("-") and len(arg) > 1:
            owned = _OWNED_SHORT.get(arg[1])
        if owned is not None:
            raise UsageError(
                f"--sbatch {arg}: taoremote sets --{owned} itself (its jobs are found, followed and "
                "collected by it); leave it out"
            )


def build_sbatch_argv(job_dir: str, sbatch_args: Sequence[str] = ()) -> tuple[str, ...]:
    """The user's `--sbatch ARG`s go on the command line (they override the script's #SBATCH lines)."""
    return ("sbatch", "--parsable", *sbatch_args, f"{job_dir}/{SCRIPT_FILE}")


def pyxis_image(image: str) -> str:
    """`nvcr.io/nvidia/tao/x:1` → `nvcr.io#nvidia/tao/x:1`: pyxis separates a registry with `#`."""
    first, sep, rest = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return f"{first}#{rest}"
    return image


def pyxis_dropped_options(job: SlurmJob) -> tuple[str, ...]:
    """DockerOptions pyxis has no flag for (enroot and Slurm decide them): the caller warns about each."""
    o = job.spec.options
    named = {
        "shm_size": o.shm_size,
        "ulimits": o.ulimits,
        "user": o.user,
        "ports": o.ports,
        "privileged": o.privileged,
        "network": o.network,
    }
    return tuple(name for name, value in named.items() if value)


def build_batch_script(job: SlurmJob) -> str:
    _check(job)
    lines = ["#!/bin/bash", *_header(job), *_prologue(job)]
    lines += _docker_body(job) if job.runtime == "docker" else _pyxis_body(job)
    return "\n".join(lines) + "\n"


def _check(job: SlurmJob) -> None:
    from taoremote.gpus import parse_gpus

    if not _SAFE_PATH.match(job.job_dir) or "//" in job.job_dir or job.job_dir.endswith("/"):
        raise UsageError(f"job directory {job.job_dir!r}: an absolute path of letters, digits and ._/@+-")
    if not _SAFE_WORD.match(job.user) or not _SAFE_WORD.match(job.spec.job_id):
        raise UsageError(f"user {job.user!r} and job id {job.spec.job_id!r} must be letters, digits, ._@+-")
    gpus = parse_gpus(job.spec.gpus)
    if gpus.kind in ("devices", "auto"):
        raise UsageError(f"--gpus {gpus}: on Slurm the scheduler picks the GPUs; ask for a count (--gpus N)")
    if job.max_parallel is not None and (job.max_parallel < 1 or not job.is_array):
        raise UsageError("--max-parallel needs a job array and must be at least 1")
    if job.runtime == "pyxis":
        bad = [p for m in job.spec.mounts for p in (m.source, m.destination) if "," in p or ":" in p]
        if bad:
            raise UsageError(f"pyxis cannot mount a path holding ',' or ':': {bad[0]}")


def _header(job: SlurmJob) -> list[str]:
    from taoremote.gpus import parse_gpus

    out = f"{job.job_dir}/{OUTPUT_FILE}" + (".%a" if job.is_array else "")
    lines = [
        f"#SBATCH --job-name={job_name(job)}",
        f'#SBATCH --comment="{COMMENT_PREFIX} job={job.spec.job_id} user={job.user}"',
        f"#SBATCH --output={out}",
        "#SBATCH --no-requeue",
    ]
    gpus = parse_gpus(job.spec.gpus)
    if gpus.kind == "count":
        lines.append(f"#SBATCH --gpus={gpus.count}")
    if job.is_array:
        limit = f"%{job.max_parallel}" if job.max_parallel else ""
        lines.append(f"#SBATCH --array=0-{len(job.task_commands) - 1}{limit}")
    return lines


def _prologue(job: SlurmJob) -> list[str]:
    """Variables, the exit-code writer, the env-file release and the task's command as "$@"."""
    sfx = ".$task" if job.is_array else ""
    lines = [
        f"# taoremote job {job.spec.job_id} ({job.runtime} runtime). Env values are in the job's 0600",
        "# env file, never in this text; see taoremote/slurm_script.py for when that file goes.",
        "umask 077",
        f"job_dir={shlex.quote(job.job_dir)}",
        *(["task=$SLURM_ARRAY_TASK_ID"] if job.is_array else []),
        f"exit_file=$job_dir/{EXIT_CODE_FILE}{sfx}",
        "finish() {  # the task's exit code beside its output, written whole, then as the job's own",
        '    printf \'%s\\n\' "$1" >"$exit_file.tmp" && mv -f "$exit_file.tmp" "$exit_file"',
        '    exit "$1"',
        "}",
    ]
    lines += _release_env(job)
    if job.has_env_file:
        lines.append(
            f'[ -r "$job_dir/{ENV_FILE}" ] || {{ echo "taoremote: the env file is gone" >&2; finish 125; }}'
        )
    if job.is_array:
        lines.append('case "$task" in')
        lines += [f"{i}) {_set_args(cmd)} ;;" for i, cmd in enumerate(job.task_commands)]
        lines.append('*) echo "taoremote: no command for array task $task" >&2; finish 125 ;;')
        lines.append("esac")
    else:
        lines.append(_set_args(job.spec.command))
    return lines


def _release_env(job: SlurmJob) -> list[str]:
    if not job.has_env_file:
        return ["release_env() { :; }"]
    if not job.is_array:
        return [f'release_env() {{ rm -f "$job_dir/{ENV_FILE}"; }}', "trap release_env EXIT"]
    return [
        "release_env() {  # delete only when no other unfinished task of the job has not read it",
        f'    [ -e "$job_dir/{ENV_FILE}" ] || return 0',
        f'    : >"$job_dir/{ENV_READ_MARK}.$task"',
        '    tasks=$(squeue -h -r -t all -j "$SLURM_ARRAY_JOB_ID" -o "%K %T") || return 0',
        "    while read -r t state; do",
        f"        case $state in {FINAL_STATES}) continue ;; esac",
        f'        [ "$t" = "$task" ] || [ -e "$job_dir/{ENV_READ_MARK}.$t" ] || return 0',
        '    done <<<"$tasks"',
        f'    rm -f "$job_dir/{ENV_FILE}"',
        "}",
        "trap release_env EXIT",
    ]


def _docker_body(job: SlurmJob) -> list[str]:
    """`docker run -d --init` with taoremote's own argv, the GPUs Slurm allocated, a TERM trap that stops
    the container (scancel alone leaves it running: it is dockerd's child, not the job's)."""
    from taoremote.command import build_run_argv, container_name, with_env_file
    from taoremote.gpus import parse_gpus

    job_id = f"{job.spec.job_id}-{_TASK}" if job.is_array else job.spec.job_id
    spec = replace(job.spec, job_id=job_id, command=(), tty=False, interactive=False, detach=True)
    with_gpus = parse_gpus(spec.gpus).kind != "none"
    if with_gpus:
        spec = replace(spec, gpus=_GPUS_SENTINEL)
    env_file = f"{job.job_dir}/{ENV_FILE}" if job.has_env_file else None
    argv = [_word(a) for a in build_run_argv(with_env_file(spec, env_file))]
    gpus_lines = []
    if with_gpus:
        i = argv.index(_word(f'"{_GPUS_SENTINEL}"'))
        argv[i - 1 : i + 1] = ['"${gpus[@]}"']
        gpus_lines = [
            "gpus=()  # exactly the GPUs Slurm allocated (host indices), none if it allocated none",
            '[ -z "${SLURM_JOB_GPUS-}" ] || gpus=(--gpus "\\"device=$SLURM_JOB_GPUS\\"")',
        ]
    argv.append('"$@"')
    return [
        f"name={_word(container_name(spec.task, job_id))}",
        *gpus_lines,
        f'stop_container() {{ docker stop --time {STOP_TIMEOUT_S} "$name" >/dev/null 2>&1; }}',
        "trap stop_container TERM INT",
        " ".join(argv) + " >/dev/null || finish $?",
        "release_env  # the container holds its env now",
        'docker logs --follow "$name" &',
        "logs=$!",
        'docker wait "$name" >/dev/null 2>&1 &',
        "wait $!  # returns at once on SIGTERM, so the trap stops the container without delay",
        'rc=$(docker wait "$name" 2>/dev/null) || rc=125',
        'wait "$logs"',
        'docker rm --force "$name" >/dev/null 2>&1',
        'finish "$rc"',
    ]


def _pyxis_body(job: SlurmJob) -> list[str]:
    """srun with pyxis: the env is sourced from the file and passed by name; SLURM_* are unset inside the
    container (PyTorch Lightning would take them for its own cluster)."""
    names = [*job.spec.env_names, *(name for name, _ in job.spec.fixed_env)]
    mounts = ",".join(f"{m.source}:{m.destination}" + (":ro" if m.read_only else "") for m in job.spec.mounts)
    srun = ["srun", f"--container-image={pyxis_image(job.spec.image)}"]
    srun += [f"--container-mounts={mounts}"] if mounts else []
    srun += [f"--container-env={','.join(names)}"] if names else []
    unset = 'for v in $(env | grep -o "^SLURM_[A-Za-z0-9_]*"); do unset "$v"; done; exec "$@"'
    srun += ["/bin/sh", "-c", unset, "taoremote"]
    lines = []
    if job.has_env_file:
        lines += [f'set -a; . "$job_dir/{ENV_FILE}" || finish 125; set +a', "release_env  # sourced"]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in job.spec.fixed_env]
    return [
        *lines,
        "trap 'kill -TERM \"$step\" 2>/dev/null' TERM INT",
        shlex.join(srun) + ' "$@" &',
        "step=$!",
        'wait "$step"; rc=$?',
        'while kill -0 "$step" 2>/dev/null; do wait "$step"; rc=$?; done  # a trap interrupted the wait',
        'finish "$rc"',
    ]


def _word(arg: str) -> str:
    """One shell word for ARG, with the array task id standing where _TASK is."""
    return '"$task"'.join(shlex.quote(p) if p else "" for p in arg.split(_TASK)) or "''"


def _set_args(command: Sequence[str]) -> str:
    return f"set -- {shlex.join(command)}" if command else "set --"
