"""PURE: the Slurm backend's listing - squeue and the user's job directories, read by ONE login-node
command - and what it means: Jobs, what is live, what prune may remove (DESIGN.md §6). The commands that
make, follow and cancel a job, and the job directory's layout, are in slurm_commands.py.

The listing asks Slurm with plain `squeue -h -o` (`squeue --json` ignores every filter on 22.05; we
filter client-side anyway), and reads the exit-code files the batch scripts write (`sacct --json`
reports 0 for failed jobs on 22.05). Nothing here runs anything.

A job directory without a Slurm id ("submitting") is a submit that sbatch has not answered yet, or one
that was killed before it did (or before it recorded the id). `prune` removes it only once it is
provably no job and no submit in progress (`abandoned_submits`): no Slurm id recorded, no job in
`squeue` carries its job id in its comment (a job whose id was lost is found that way, and is a job
like any other), and its meta file is older than SUBMIT_DEADLINE_S on the login node's own clock. A
submit writes that file first, and gives up after slurm_submit.SUBMIT_TIMEOUT_S; sbatch's own retries end
well within the deadline. Never by age alone, and never a directory with a Slurm id (those go by Slurm's
word).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from taoremote.containers import Job
from taoremote.slurm_commands import JOBS_DIR, META_FILE, SLURM_ID_FILE
from taoremote.slurm_script import COMMENT_PREFIX, ENV_FILE, EXIT_CODE_FILE, FINAL_STATES

FINAL = frozenset(FINAL_STATES.split("|"))
SQUEUE_FORMAT = "%i|%T|%r|%k"  # the comment last: it is the only free text
SUBMIT_DEADLINE_S = 300  # a submit older than this has ended, answered or not (see the docstring)

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
