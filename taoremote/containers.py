"""PURE: what `docker ps` tells about taoremote's jobs, next to the template that asks for it.

The template and its parser change together: a field asked for here is read back here. Every backend
returns the same `Job` value (the Slurm backend too), so `list`, `stop` and `logs` match and show jobs
the same way whatever runs them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

LABEL_PREFIX = "taoremote."
JOB_LABEL = "taoremote.job"

# `docker ps --format PS_TEMPLATE` prints one JSON object per container; every field is named because
# `{{json .}}` joins labels with commas, which is ambiguous for label values (a command holding ",")
_PS_FIELDS = {
    "id": ".ID",
    "name": ".Names",
    "image": ".Image",
    "state": ".State",
    "status": ".Status",
    "created": ".CreatedAt",
    **{
        key: f'(.Label "{LABEL_PREFIX}{key}")'
        for key in ("job", "task", "command", "gpus", "started", "user", "results", "sweep", "trial")
    },
}
PS_TEMPLATE = "{" + ",".join(f'"{k}":{{{{json {v}}}}}' for k, v in _PS_FIELDS.items()) + "}"
RESULTS_LABEL = "taoremote.results"  # the job's results dir on its host, when the launch knew it

LIVE_STATES = ("created", "running", "paused", "restarting")
FINISHED_STATES = ("exited", "dead")


@dataclass(frozen=True)
class Job:
    host: str
    job_id: str
    name: str
    container_id: str
    task: str
    command: str
    image: str
    state: str  # created | running | exited | ...
    status: str  # docker's human text: "Up 3 minutes", "Exited (3) 2 hours ago"
    exit_code: int | None
    created: str
    gpus: str
    user: str = ""  # who launched it (taoremote.user): shared GPU hosts run several people's jobs
    results: str = ""  # its results dir on the host (taoremote.results); "" when the launch did not know it
    sweep: str = ""  # the sweep it is a trial of (taoremote.sweep), and which trial (taoremote.trial)
    trial: str = ""
    # (path below `results`, the tail of its text) of each status.json that `list` read with the rows
    status_files: tuple[tuple[str, str], ...] = ()


def parse_ps(host: str, stdout: str) -> list[Job]:
    """Rows from `docker ps --format PS_TEMPLATE`: one JSON object per line."""
    return [_job(host, json.loads(line)) for line in stdout.splitlines() if line.strip()]


def _job(host: str, row: dict[str, str | None]) -> Job:
    status = row.get("status") or ""
    return Job(
        host=host,
        job_id=row.get("job") or "",
        name=row.get("name") or "",
        container_id=row.get("id") or "",
        task=row.get("task") or "",
        command=row.get("command") or "",
        image=row.get("image") or "",
        state=row.get("state") or "",
        status=status,
        exit_code=exit_code_of(status),
        created=row.get("created") or "",
        gpus=row.get("gpus") or "",
        user=row.get("user") or "",
        results=row.get("results") or "",
        sweep=row.get("sweep") or "",
        trial=row.get("trial") or "",
    )


# `list` reads each job's status.json in the same command as `docker ps` (no round trip more): `sh -c
# LIST_SCRIPT sh MARKER <docker ps ... --format LIST_TEMPLATE>`. Each row is PS_TEMPLATE's JSON, a tab,
# the full container id and the raw results label (JSON holds no raw tab, an id no tab, so `read` splits
# it right; the label is data, never evaluated). After the rows, for each job with an absolute results
# dir and a readable regular status.json, a header line `#status MARKER <id> <path below results>` and
# the file's last STATUS_TAIL_BYTES: MARKER is random per call, so no file content or label can pass for
# a header. One `tail` per file and nothing per line: `list` stays near a bare `docker ps`. Both
# candidates are read (TF1's `status.json`, PyTorch's and TF2's `train/status.json`); which one counts
# is decided from the image (progress.job_progress). A failing docker fails the script with its own
# status and message; a file that cannot be read only has no section.
LIST_TEMPLATE = PS_TEMPLATE + '\t{{.ID}}\t{{.Label "' + RESULTS_LABEL + '"}}'
STATUS_FILES = ("status.json", "train/status.json")
# The lines written last: the epoch, the ETA and the latest metric (kpi repeats on every line) are in
# the last few lines; 16 KB holds a dozen PyTorch epochs, and reading and parsing more costs `list` time.
STATUS_TAIL_BYTES = 16384
LIST_SCRIPT = (
    'm=$1; shift; rows=$("$@") || exit; printf "%s\\n" "$rows"; '
    'printf "%s\\n" "$rows" | while IFS="\t" read -r _ id results; do '
    'case $id in ""|*[!0-9a-f]*) continue;; esac; case $results in /*) ;; *) continue;; esac; '
    f"for at in {' '.join(STATUS_FILES)}; do "
    'f="${results%/}/$at"; [ -f "$f" ] && [ -r "$f" ] || continue; '
    'printf "#status %s %s %s\\n" "$m" "$id" "$at"; '
    f'tail -c {STATUS_TAIL_BYTES} "$f" 2>/dev/null; echo; '
    "done; done; exit 0"
)


def status_marker(nonce: str) -> str:
    """LIST_SCRIPT's MARKER from random hex (the caller draws it: this module stays pure)."""
    if not nonce or not all(c in "0123456789abcdef" for c in nonce):
        raise ValueError("the list marker must be lowercase hex")
    return nonce


def parse_list(host: str, stdout: str, marker: str) -> list[Job]:
    """Jobs from LIST_SCRIPT's output: the rows, each with the status.json tails read for it."""
    rows, *sections = stdout.split(f"\n#status {marker} ")  # every header starts a line of its own
    files: dict[str, list[tuple[str, str]]] = {}
    for section in sections:
        head, _, text = section.partition("\n")
        container_id, _, at = head.partition(" ")
        files.setdefault(container_id, []).append((at, text.rstrip("\n")))  # and the script's echo
    decoder = json.JSONDecoder()
    jobs: list[Job] = []
    for line in rows.splitlines():
        if not line.startswith("{"):
            continue  # blank, or the rest of a label that holds a newline
        try:  # the JSON, then the tab-separated fields the script read
            row, _ = decoder.raw_decode(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            jobs.append(_with_files(_job(host, row), files.get(row.get("id") or "", [])))
    return jobs


def _with_files(job: Job, found: Sequence[tuple[str, str]]) -> Job:
    # only a label the script could have read whole (no newline or tab in it) is the one it read
    if not found or not job.results.startswith("/") or any(c in job.results for c in "\n\t"):
        return job
    return replace(job, status_files=tuple((at, text) for at, text in found if at in STATUS_FILES))


def exit_code_of(status: str) -> int | None:
    """The exit code in docker's status text ("Exited (3) 2 hours ago"); None unless it exited."""
    match = re.match(r"Exited \((-?\d+)\)", status)
    return int(match.group(1)) if match else None


def parse_state(stdout: str) -> dict[str, object] | None:
    """docker's State of one container (`docker container inspect --format '{{json .State}}'`)."""
    try:
        state = json.loads(stdout)
    except ValueError:
        return None
    return state if isinstance(state, dict) else None


def match_job(jobs: Sequence[Job], ident: str) -> Job | None:
    """A job by its id, container name, or a container-id prefix of at least 4 characters."""
    for job in jobs:
        if ident in (job.job_id, job.name):
            return job
    by_prefix = prefix_matches(jobs, ident)
    return by_prefix[0] if len(by_prefix) == 1 else None  # docker too refuses an ambiguous prefix


def prefix_matches(jobs: Sequence[Job], ident: str) -> list[Job]:
    return [j for j in jobs if len(ident) >= 4 and j.container_id.startswith(ident)]


def unmatched_message(jobs: Sequence[Job], ident: str, where: str) -> str:
    several = prefix_matches(jobs, ident)
    if len(several) > 1:
        ids = ", ".join(j.job_id for j in several)
        return f"'{ident}' matches several jobs on {where} ({ids}); give more of it"
    return f"no taoremote job '{ident}' on {where} (see `taoremote list --all`)"


def where(host: str) -> str:
    """How messages name a host: this machine, or `host NAME`."""
    return "this machine" if host == "local" else f"host {host}"
