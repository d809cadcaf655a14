"""PURE: the login-node commands of the Slurm backend and the parsers of what they print (DESIGN.md §6).

Each command is one `sh -c SCRIPT sh ARGS...` run through an Executor, so a remote login node costs one
round trip per step. The scripts find the user's job directories under JOBS_DIR (relative to the login
directory: home is shared on clusters), ask Slurm with plain `squeue -h -o` (`squeue --json` ignores
every filter on 22.05; we filter client-side anyway), and read the exit-code files the batch scripts
write (`sacct --json` reports 0 for failed jobs on 22.05). Nothing here runs anything.

A job directory without a Slurm id ("submitting") is a submit that sbatch has not answered yet, or one
that was killed before it did (or before it recorded the id). `prune` removes it only once it is
provably no job and no submit in progress (`abandoned_submits`): no Slurm id recorded, no job in
`squeue` carries its job id in its comment (a job whose id was lost is found that way, and is a job
like any other), and its meta file is older than SUBMIT_DEADLINE_S on the login node's own clock. A
submit writes that file first, and gives up after slurm.SUBMIT_TIMEOUT_S; sbatch's own retries end well
within the deadline. Never by age alone, and never a directory with a Slurm id (those go by Slurm's word).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from taoremote.containers import Job
from taoremote.slurm_script import COMMENT_PREFIX, ENV_FILE, ENV_READ_MARK, EXIT_CODE_FILE, FINAL_STATES

JOBS_DIR = ".cache/taoremote/slurm"  # below the login directory
META_FILE = "meta"  # one line of JSON: what `list` shows (task, command, image, gpus, user, started)
SLURM_ID_FILE = "slurm_id"
ENV_END = "# taoremote: end of env file"  # the env file's last line: a file without it did not arrive whole
FINAL = frozenset(FINAL_STATES.split("|"))
SQUEUE_FORMAT = "%i|%T|%r|%k"  # the comment last: it is the only free text
SUBMIT_DEADLINE_S = 300  # a submit older than this has ended, answered or not (see the docstring)

# `sh -c INFO_SCRIPT sh`: the login directory, whether Slurm is there, and whether srun has pyxis
INFO_SCRIPT = (
    "printf 'home=%s\\n' \"$HOME\"; "
    "if command -v sbatch >/dev/null 2>&1 && command -v squeue >/dev/null 2>&1; then echo slurm=1; fi; "
    "if srun --help 2>/dev/null | grep -q -- --container-image; then echo pyxis=1; fi"
)

# `sh -c SUBMIT_SCRIPT sh JOB_DIR SCRIPT META WITH_ENV SBATCH_ARGV...` with the env file on stdin: the
# private directory (0700), the script, the 0600 env file (never in an argv), then sbatch. A refused
# submission leaves nothing behind; sbatch's own words go to stderr.
SUBMIT_SCRIPT = (
    "d=$1; script=$2; meta=$3; with_env=$4; shift 4; umask 077; "
    'mkdir -p "${d%/*}" && mkdir "$d" || exit 125; '
    # meta first: its age is what prune's rule reads of a submit that never got an id (see above)
    f'printf \'%s\\n\' "$meta" >"$d/{META_FILE}"; printf \'%s\' "$script" >"$d/job.sbatch"; '
    f'if [ "$with_env" = 1 ]; then cat >"$d/{ENV_FILE}"; '
    f'if [ "$(tail -n 1 "$d/{ENV_FILE}")" = "{ENV_END}" ]; then :; else '
    'echo "taoremote: the env file did not arrive whole" >&2; rm -rf "$d"; exit 125; fi; fi; '
    'id=$("$@"); rc=$?; if [ $rc -ne 0 ]; then rm -rf "$d"; exit $rc; fi; '
    f'printf \'%s\\n\' "${{id%%;*}}" >"$d/{SLURM_ID_FILE}"; printf \'%s\\n\' "${{id%%;*}}"'
)

# `sh -c LIST_SCRIPT sh`: squeue (`--me`: Slurm >= 20.11), then the job directories - one `@@dir` line
# each (and `@@age` without a Slurm id, `@@env` with an env file), from shell builtins - and then every
# one-line file of them (meta, Slurm id, exit codes) through ONE grep, `<dir>/<file>:<line>`: 50 jobs
# cost one squeue and one grep, never a process (or a byte-by-byte `read`) per file.
LIST_SCRIPT = (
    "printf '@@squeue\\n'; "
    f"squeue -h -r -t all --me -o '{SQUEUE_FORMAT}'; printf '@@squeue-rc %s\\n' $?; "
    # back to the login directory after: a caller may append commands with relative paths (sweep polls)
    f'o=$PWD; if cd "$HOME/{JOBS_DIR}" 2>/dev/null; then '
    f'for m in */{META_FILE}; do [ -f "$m" ] || continue; d=${{m%/*}}; printf \'@@dir %s\\n\' "$d"; '
    # no id (yet): the meta file's age, for prune's rule (no stat -c: no age, never pruned)
    f'if [ -f "$d/{SLURM_ID_FILE}" ]; then :; elif t=$(stat -c %Y "$m" 2>/dev/null); then '
    "printf '@@age %s %s\\n' \"$d\" $(( ${now:=$(date +%s)} - t )); fi; "
    f"[ -e \"$d/{ENV_FILE}\" ] && printf '@@env %s\\n' \"$d\"; done; printf '@@files\\n'; "
    f"grep -H '' -- */{META_FILE} */{SLURM_ID_FILE} */{EXIT_CODE_FILE} */{EXIT_CODE_FILE}.* 2>/dev/null; "
    "cd \"$o\"; fi; printf '@@end\\n'"
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


@dataclass(frozen=True)
class QueueRow:
    slurm_id: str  # "12", or "12_3" for an array task
    state: str  # PENDING, RUNNING, COMPLETED, ...
    reason: str
    comment: str

    @property
    def live(self) -> bool:
        return self.state not in FINAL


@dataclass(frozen=True)
class JobDir:
    job_id: str
    meta: Mapping[str, object]
    slurm_id: str | None
    exit_codes: Mapping[str, int]  # file name (exit_code, exit_code.3) -> code
    has_env: bool
    age_s: int | None = None  # without a Slurm id: seconds since its submit began (the meta file's age)


@dataclass(frozen=True)
class Listing:
    queue: tuple[QueueRow, ...]
    squeue_rc: int
    dirs: tuple[JobDir, ...] = field(default=())


def parse_squeue(stdout: str) -> list[QueueRow]:
    """Rows of `squeue -h -o SQUEUE_FORMAT`; only taoremote's jobs (by their comment)."""
    rows = []
    for line in stdout.splitlines():
        parts = line.split("|", 3)
        if len(parts) == 4 and parts[3].startswith(COMMENT_PREFIX + " "):
            rows.append(QueueRow(*parts))
    return rows


def parse_listing(stdout: str) -> Listing:
    queue_lines: list[str] = []
    rc = -1
    dirs: dict[str, dict[str, object]] = {}
    section = ""
    for line in stdout.splitlines():
        if line == "@@squeue":
            section = "squeue"
        elif line.startswith("@@squeue-rc "):
            rc, section = int(line.split()[1]), ""
        elif section == "squeue":
            queue_lines.append(line)
        elif line == "@@files":
            section = "files"
        elif line == "@@end":
            section = ""
        elif section == "files":
            _read_file_line(dirs, line)
        elif line.startswith("@@dir "):
            job = line[6:]
            dirs[job] = {"job_id": job, "meta": {}, "slurm_id": None, "exit_codes": {}, "has_env": False}
        elif line.startswith("@@age "):
            job, _, age = line[6:].partition(" ")
            if job in dirs and re.fullmatch(r"-?\d+", age.strip()):
                dirs[job]["age_s"] = int(age)
        elif line.startswith("@@env ") and line[6:] in dirs:
            dirs[line[6:]]["has_env"] = True
    queue = tuple(parse_squeue("\n".join(queue_lines)))
    found = [JobDir(**d) for d in dirs.values()]  # type: ignore[arg-type]
    return Listing(queue, rc, tuple(_with_ids_from_comments(found, queue)))


def _read_file_line(dirs: dict[str, dict[str, object]], line: str) -> None:
    """`<dir>/<file>:<its line>` from grep -H: job ids and file names hold neither `/` nor `:`."""
    path, sep, value = line.partition(":")
    job, slash, name = path.partition("/")
    d = dirs.get(job)
    if not (sep and slash) or d is None:
        return
    if name == META_FILE:
        d["meta"] = _json_object(value)
    elif name == SLURM_ID_FILE:
        d["slurm_id"] = value.strip() or None
    elif name.startswith(EXIT_CODE_FILE) and re.fullmatch(r"-?\d+", value.strip()):
        d["exit_codes"][name] = int(value)  # type: ignore[index]


def comment_job_id(comment: str) -> str | None:
    """The taoremote job id in a job's comment (`taoremote job=<id> user=<user>`, slurm_script.py)."""
    words = comment.split()
    if words[:1] != [COMMENT_PREFIX]:
        return None
    return next((w[4:] for w in words[1:] if w.startswith("job=")), None)


def _with_ids_from_comments(dirs: Sequence[JobDir], queue: Sequence[QueueRow]) -> list[JobDir]:
    """A directory whose submit died after sbatch answered, before the id was written: Slurm still
    knows the job by its comment, so it is listed, stopped and pruned as the job it is."""
    named = {comment_job_id(r.comment): r.slurm_id.split("_", 1)[0] for r in queue}
    return [
        replace(d, slurm_id=named[d.job_id]) if d.slurm_id is None and d.job_id in named else d for d in dirs
    ]


def _json_object(text: str) -> dict[str, object]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _queue_by_id(queue: Sequence[QueueRow]) -> dict[str, QueueRow]:
    return {row.slurm_id: row for row in queue}


def jobs_of(host: str, listing: Listing) -> list[Job]:
    """One Job per job directory, or per array task (`<job>-<task>`, its Slurm id `<id>_<task>`).
    A job Slurm still lists as pending or running is live; its exit-code file makes it exited; a job
    Slurm no longer runs without one ended before its task could say (cancelled while pending, a node
    failure): state `dead`, Slurm's last word as its status."""
    by_id = _queue_by_id(listing.queue)
    jobs = []
    for d in listing.dirs:
        tasks = int(str(d.meta.get("tasks") or 0))
        units = [(None, d.slurm_id)] if not tasks else [(t, f"{d.slurm_id}_{t}") for t in range(tasks)]
        for task, sid in units:
            exit_name = EXIT_CODE_FILE if task is None else f"{EXIT_CODE_FILE}.{task}"
            code = d.exit_codes.get(exit_name)
            row = by_id.get(sid or "") or (by_id.get(d.slurm_id or "") if task is not None else None)
            state, status = _state(d.slurm_id, row, code)
            jid = d.job_id if task is None else f"{d.job_id}-{task}"
            jobs.append(
                Job(
                    host=host,
                    job_id=jid,
                    name=f"taoremote-{_safe(str(d.meta.get('task', '')))}-{jid}",
                    container_id=sid or "",
                    task=str(d.meta.get("task", "")),
                    command=str(d.meta.get("command", "")),
                    image=str(d.meta.get("image", "")),
                    state=state,
                    status=status,
                    exit_code=code,
                    created=str(d.meta.get("started", "")),
                    gpus=str(d.meta.get("gpus", "")),
                    user=str(d.meta.get("user", "")),
                )
            )
    return jobs


def _state(slurm_id: str | None, row: QueueRow | None, code: int | None) -> tuple[str, str]:
    if code is not None:
        return "exited", f"Exited ({code})"
    if slurm_id is None:
        return "created", "submitting"  # sbatch has not answered (yet): never pruned
    if row is not None and row.live:
        reason = f" ({row.reason})" if row.reason and row.reason != "None" else ""
        return ("running" if row.state in ("RUNNING", "COMPLETING") else "pending"), f"{row.state}{reason}"
    return "dead", row.state if row is not None else "ENDED (no exit code)"


def _safe(task: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", task)


def live_slurm_ids(listing: Listing, slurm_id: str | None) -> bool:
    """Whether Slurm lists anything of this job (any array task) as not yet finished."""
    if slurm_id is None:
        return True
    mine = (r for r in listing.queue if r.slurm_id == slurm_id or r.slurm_id.startswith(slurm_id + "_"))
    return any(r.live for r in mine)


def abandoned_submits(listing: Listing, deadline_s: float = SUBMIT_DEADLINE_S) -> list[str]:
    """Job directories that are provably no job and no submit in progress (the module docstring's rule):
    no Slurm id recorded or named in squeue's comments, and begun longer ago than the deadline."""
    return [
        d.job_id for d in listing.dirs if d.slurm_id is None and d.age_s is not None and d.age_s > deadline_s
    ]


def stranded_env_dirs(listing: Listing) -> list[str]:
    """Job directories whose env file no task will read any more: Slurm shows nothing of the job pending
    or running (slurm_script.py's rule; never by age)."""
    return [d.job_id for d in listing.dirs if d.has_env and not live_slurm_ids(listing, d.slurm_id)]


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
