"""PURE: the job directory's layout on the login node and the commands that make, follow, collect, cancel
and remove a job there (DESIGN.md §6). slurm_queue.py holds the listing (squeue and the job directories)
and its parsers.

Each command is one `sh -c SCRIPT sh ARGS...` run through an Executor, so a remote login node costs one
round trip per step. Job directories live under JOBS_DIR, relative to the login directory (home is shared
on clusters). Nothing here runs anything.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from taoremote.slurm_script import ENV_FILE, ENV_READ_MARK, FINAL_STATES

JOBS_DIR = ".cache/taoremote/slurm"  # below the login directory
META_FILE = "meta"  # one line of JSON: what `list` shows (task, command, image, gpus, user, started)
SLURM_ID_FILE = "slurm_id"
ENV_END = "# taoremote: end of env file"  # the env file's last line: a file without it did not arrive whole

# `sh -c INFO_SCRIPT sh`: the login directory, whether Slurm is there, and whether srun has pyxis
INFO_SCRIPT = (
    "printf 'home=%s\\n' \"$HOME\"; "
    "if command -v sbatch >/dev/null 2>&1 && command -v squeue >/dev/null 2>&1; then echo slurm=1; fi; "
    "if srun --help 2>/dev/null | grep -q -- --container-image; then echo pyxis=1; fi"
)

# Ends the login node's facts when they ride on another command's round trip (a launch's probe)
LOGIN_INFO_END = "@@taoremote-slurm:login-info-end@@"

# `sh -c SUBMIT_SCRIPT sh JOB_DIR SCRIPT META WITH_ENV SBATCH_ARGV...` with the env file on stdin: the
# private directory (0700), the script, the 0600 env file (never in an argv), then sbatch. A refused
# submission leaves nothing behind; sbatch's own words go to stderr.
SUBMIT_SCRIPT = (
    "d=$1; script=$2; meta=$3; with_env=$4; shift 4; umask 077; "
    '{ [ -d "${d%/*}" ] || mkdir -p "${d%/*}"; } && mkdir "$d" || exit 125; '
    # meta first: its age is what prune's rule reads of a submit that never got an id (slurm_queue.py)
    f'printf \'%s\\n\' "$meta" >"$d/{META_FILE}"; printf \'%s\' "$script" >"$d/job.sbatch"; '
    f'if [ "$with_env" = 1 ]; then cat >"$d/{ENV_FILE}"; '
    f'if [ "$(tail -n 1 "$d/{ENV_FILE}")" = "{ENV_END}" ]; then :; else '
    'echo "taoremote: the env file did not arrive whole" >&2; rm -rf "$d"; exit 125; fi; fi; '
    'id=$("$@"); rc=$?; if [ $rc -ne 0 ]; then rm -rf "$d"; exit $rc; fi; '
    f'printf \'%s\\n\' "${{id%%;*}}" >"$d/{SLURM_ID_FILE}"; printf \'%s\\n\' "${{id%%;*}}"'
)

# `sh -c FOLLOW_SCRIPT sh SLURM_ID OUTPUT EXIT_FILE`: one line per change of the queue state while the
# job waits, and its output as it grows, until the exit-code file appears or Slurm no longer runs the job
# (then the rest of the output). Plain POSIX polling (no background process, no `$!`): Slurm is asked
# once a second, the files every 0.2 s.
FOLLOW_SCRIPT = (
    'id=$1; out=$2; x=$3; last=; n=0; i=0; fails=0; while :; do end=0; [ -e "$x" ] && end=1; '
    "if [ $end = 0 ] && [ $((i % 5)) = 0 ]; then "
    'if s=$(squeue -h -j "$id" -t all -o "%T|%r" 2>/dev/null); then '
    "s=$(printf '%s\\n' \"$s\" | head -n 1); "
    "case ${s%%|*} in PENDING|CONFIGURING|REQUEUE*|SUSPENDED|RESV_DEL_HOLD) "
    'r=${s#*|}; case $r in None|"") r=;; *) r=" ($r)";; esac; '
    '[ "$s" = "$last" ] || printf \'taoremote: Slurm job %s is %s%s\\n\' "$id" "${s%%|*}" "$r" >&2; '
    f'last=$s;; ""|{FINAL_STATES}) sleep 1; end=1;; esac; '
    "else fails=$((fails+1)); [ $fails -gt 30 ] && end=1; fi; fi; "
    'if [ -f "$out" ]; then size=$(($(wc -c <"$out"))); if [ $size -gt $n ]; then '
    'tail -c +$((n+1)) "$out" | head -c $((size-n)); n=$size; fi; fi; '
    "[ $end = 1 ] && break; i=$((i+1)); sleep 0.2; done"
)

# `sh -c COLLECT_SCRIPT sh JOB_DIR SLURM_ID REMOVE EXIT_NAME`: once Slurm no longer runs the job (a few
# seconds at most after its exit-code file appears), print its exit code; REMOVE=1 then removes the job dir
COLLECT_SCRIPT = (
    "d=$1; id=$2; i=0; "
    'while [ $i -lt 100 ] && squeue -h -j "$id" -t PD,R,CG,CF,S -o %i 2>/dev/null | grep -q .; '
    'do sleep 0.1; i=$((i+1)); done; cat "$d/$4" || exit 1; '
    '[ "$3" = 1 ] && rm -rf "$d"; exit 0'
)

# `sh -c CANCEL_SCRIPT sh SLURM_ID...`: scancel, then wait (KillWait is 30 s by default) until Slurm runs
# none of them, so the caller can then remove what they leave (env files, a foreground job's directory)
CANCEL_SCRIPT = (
    'scancel "$@" || exit $?; i=0; while [ $i -lt 400 ]; do live=; for id in "$@"; do '
    'if squeue -h -r -j "$id" -t PD,R,CG,CF,S,RQ -o %i 2>/dev/null | grep -q .; then live=1; fi; done; '
    '[ -z "$live" ] && exit 0; sleep 0.1; i=$((i+1)); done; exit 0'
)


def job_dir(home: str, job_id: str) -> str:
    return f"{home.rstrip('/')}/{JOBS_DIR}/{job_id}"


def relative_dir(job_id: str) -> str:
    """A job directory as scripts name it from the login directory (the caller's working directory there)."""
    return f"{JOBS_DIR}/{job_id}"


def env_payload(text: str) -> str:
    """The env file as sent on the submit command's stdin, with its end mark."""
    return text + ENV_END + "\n"


@dataclass(frozen=True)
class LoginInfo:
    home: str
    has_slurm: bool
    has_pyxis: bool


def parse_info(stdout: str) -> LoginInfo:
    values = dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)
    return LoginInfo(values.get("home", ""), values.get("slurm") == "1", values.get("pyxis") == "1")


def with_login_info(argv: Sequence[str]) -> tuple[str, ...]:
    """`sh -c SCRIPT sh ARGS...` that first prints the login node's facts (INFO_SCRIPT) up to
    LOGIN_INFO_END, then runs SCRIPT as it was: one round trip asks both."""
    if tuple(argv[:2]) != ("sh", "-c") or len(argv) < 3:
        raise ValueError(f"not an `sh -c SCRIPT` command: {argv[:2]}")
    script = f"{INFO_SCRIPT}; printf '%s\\n' '{LOGIN_INFO_END}'; {argv[2]}"
    return ("sh", "-c", script, *argv[3:])


def split_login_info(stdout: str) -> tuple[LoginInfo | None, str]:
    """with_login_info's output: the login node's facts (None when they did not all arrive) and what the
    command itself printed."""
    head, sep, rest = stdout.partition(LOGIN_INFO_END + "\n")
    return (parse_info(head), rest) if sep else (None, stdout)


def remove_argv(job_ids: Sequence[str], *, env_only: bool) -> tuple[str, ...]:
    """Remove job directories (or only their env files and read marks), by job id below JOBS_DIR."""
    what = (
        f'"$HOME/{JOBS_DIR}/$j/{ENV_FILE}" "$HOME/{JOBS_DIR}/$j/{ENV_READ_MARK}".*'
        if env_only
        else (f'"$HOME/{JOBS_DIR}/$j"')
    )
    return ("sh", "-c", f'for j in "$@"; do rm -rf {what}; done', "sh", *job_ids)


def meta_text(
    *,
    job_id: str,
    task: str,
    command: str,
    image: str,
    gpus: str,
    user: str,
    started: str,
    tasks: int,
    runtime: str,
) -> str:
    return json.dumps(
        {
            "job": job_id,
            "task": task,
            "command": command,
            "image": image,
            "gpus": gpus,
            "user": user,
            "started": started,
            "tasks": tasks,
            "runtime": runtime,
        }
    )
