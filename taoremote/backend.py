"""The job-backend seam (DESIGN.md §2): what `actions.py` (and the sweep driver) may ask of wherever
jobs run, without knowing where that is.

A backend launches a planned `RunSpec`, and lists, stops, shows, waits for and prunes the jobs it
launched, as `containers.Job` values with one set of exit codes (errors.py; a task's own code passes
through). `jobs.DockerBackend` runs containers through an executor (this machine or an SSH host);
a Slurm backend submits the same RunSpec to a cluster. `fleet.open_backend` picks one from the
global options; nothing else asks which one it holds.

Interruptions follow one policy (interrupts.py) in every backend: Ctrl-C or SIGTERM stops a
foreground job, a hang-up or a lost link leaves it running, closed output stops it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from taoremote.command import RunSpec
    from taoremote.containers import Job
    from taoremote.executor import Executor


@dataclass(frozen=True)
class Launched:
    """What a launch ends with: the job's id (what `list`, `stop` and `logs` know it by) and, for a
    foreground job, its exit code; None when it was started detached and runs on."""

    job_id: str
    exit_code: int | None = None


@dataclass(frozen=True)
class Stopped:
    """The jobs a `stop ID...` stopped, and every job the backend listed to find them: an id that
    matched none is explained from those (unknown, or an ambiguous prefix) across all hosts."""

    stopped: list[Job]
    known: list[Job]
    # ids that named a group of jobs rather than one (a Slurm job array by its own id): found, though no
    # single job in `known` answers to them
    groups: tuple[str, ...] = ()


class JobBackend(Protocol):
    # where the jobs run, as messages name it: "local", an SSH host, a Slurm login node
    host: str
    # the host the plan is probed on and the mount sources live on (a Slurm cluster's login node)
    executor: Executor

    def launch(self, spec: RunSpec, env_values: Mapping[str, str], *, pull: bool = False) -> Launched:
        """Run the job to its end (exit code) or, with spec.detach, start it (no exit code). The env
        values reach the job in a private file, never an argv. pull: the image must be fetched first
        (a failed pull is one clear error, never a half-created job). An interruption is answered
        by interrupts.py's policy and propagates."""
        ...

    def list_jobs(self, *, include_stopped: bool, timeout: float, progress: bool = False) -> list[Job]:
        """taoremote's jobs here, everyone's (Job.user says whose); finished ones too with
        include_stopped. timeout: the whole answer, so one silent host costs only itself. progress:
        each job's status.json tail too (Job.status_files), in the same round trip, where the backend
        can read it (`list`)."""
        ...

    def find(self, ident: str) -> Job:
        """One job by its id, name or an unambiguous id prefix; JobNotFoundError otherwise."""
        ...

    def stop(self, idents: Sequence[str]) -> Stopped:
        """Stop the jobs these ids name (unknown ids stop nothing and are left for the caller to
        report, as an id may be on another host)."""
        ...

    def stop_all(self, *, user: str | None) -> list[Job]:
        """Stop every live job of this user (None: everyone's), including those that are only created
        or paused, and those that come into being meanwhile; the jobs stopped."""
        ...

    def logs(self, job: Job, *, follow: bool) -> int:
        """Show the job's output; with follow, until it ends, and return its exit code (Ctrl-C ends
        the following, never the job)."""
        ...

    def wait(self, job: Job, *, timeout: float | None = None) -> int:
        """Its exit code, once it has ended."""
        ...

    def prune(self, *, user: str | None) -> list[Job]:
        """Remove this user's (None: everyone's) finished jobs, never a live one; the jobs removed."""
        ...

    def close(self) -> None: ...
