"""PURE: what `docker ps` tells about taoremote's jobs, next to the template that asks for it.

The template and its parser change together: a field asked for here is read back here. Every backend
returns the same `Job` value (the Slurm backend too), so `list`, `stop` and `logs` match and show jobs
the same way whatever runs them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

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
        for key in ("job", "task", "command", "gpus", "started", "user")
    },
}
PS_TEMPLATE = "{" + ",".join(f'"{k}":{{{{json {v}}}}}' for k, v in _PS_FIELDS.items()) + "}"

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


def parse_ps(host: str, stdout: str) -> list[Job]:
    """Rows from `docker ps --format PS_TEMPLATE`: one JSON object per line."""
    jobs = []
    for line in stdout.splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        jobs.append(
            Job(
                host=host,
                job_id=row.get("job") or "",
                name=row.get("name") or "",
                container_id=row.get("id") or "",
                task=row.get("task") or "",
                command=row.get("command") or "",
                image=row.get("image") or "",
                state=row.get("state") or "",
                status=row.get("status") or "",
                exit_code=exit_code_of(row.get("status") or ""),
                created=row.get("created") or "",
                gpus=row.get("gpus") or "",
                user=row.get("user") or "",
            )
        )
    return jobs


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
