"""The Slurm backend (DESIGN.md §6): backend.JobBackend through sbatch, squeue and scancel on a login node.
slurm_login.py reaches the login node and lists the user's jobs there, slurm_submit.py submits and
follows a job; this module manages them: list, find, stop, logs, wait and prune. Slurm's word on the queue
comes from `squeue`, a task's exit code from its file (slurm_queue.py reads both).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from taoremote.backend import Stopped
from taoremote.containers import Job, match_job, unmatched_message
from taoremote.errors import JobNotFoundError, SlurmError
from taoremote.slurm_commands import job_dir, remove_argv
from taoremote.slurm_login import QUERY_TIMEOUT_S
from taoremote.slurm_script import output_name
from taoremote.slurm_submit import SlurmSubmit


class SlurmBackend(SlurmSubmit):
    """The whole JobBackend: the login node (SlurmLogin), the submit path (SlurmSubmit) and management."""

    def list_jobs(
        self, *, include_stopped: bool, timeout: float = QUERY_TIMEOUT_S, progress: bool = False
    ) -> list[Job]:
        # progress: Slurm jobs carry no results label (yet), so there is no status.json to read
        from taoremote import slurm_queue as q  # deferred, as in SlurmLogin.listing

        jobs = q.jobs_of(self.host, self.listing(timeout))
        return jobs if include_stopped else [j for j in jobs if j.state in ("created", "pending", "running")]

    def find(self, ident: str) -> Job:
        known = self.list_jobs(include_stopped=True)
        job = _match(known, ident)
        if job is None:
            raise JobNotFoundError(unmatched_message(known, ident, f"Slurm login node {self.host}"))
        return job

    def stop(self, idents: Sequence[str]) -> Stopped:
        """One job or array task per id; a job array's own id (taoremote's or Slurm's base id) names
        every task of it, and is cancelled whole (its pending tasks too, listed or not)."""
        known = self.list_jobs(include_stopped=True)
        chosen: dict[str, Job] = {}
        cancel: dict[str, None] = {}  # Slurm ids, in order, once each
        arrays = []
        for ident in idents:
            tasks = _array_tasks(known, ident)
            one = None if tasks else _match(known, ident)
            for job in tasks or ([one] if one is not None else []):
                chosen[job.job_id] = job
            if tasks:
                arrays.append(ident)
                if any(t.state in ("pending", "running") for t in tasks):
                    cancel[tasks[0].container_id.split("_", 1)[0]] = None
            elif one is not None and one.state in ("pending", "running"):
                cancel[one.container_id] = None
        self.cancel(list(cancel))
        self._remove_stranded_env_files()
        return Stopped(list(chosen.values()), known, groups=tuple(arrays))

    def stop_all(self, *, user: str | None) -> list[Job]:
        live = [j for j in self.list_jobs(include_stopped=False) if user is None or j.user == user]
        self.cancel([j.container_id for j in live if j.container_id])
        self._remove_stranded_env_files()
        return live

    def _remove_stranded_env_files(self) -> None:
        """Env files no task will read (slurm_script.py's rule: nothing of the job pending or running)."""
        from taoremote import slurm_queue as q

        stranded = q.stranded_env_dirs(self.listing())
        if stranded:
            self._run(remove_argv(stranded, env_only=True))

    def logs(self, job: Job, *, follow: bool) -> int:
        job_dir, task = self._where(job)
        if not follow:
            return self.executor.stream(("cat", "--", f"{job_dir}/{output_name(task)}"))
        self.follow(job_dir, job.container_id, task=task)
        return self._collect(job_dir, job.container_id, remove=False, task=task)

    def wait(self, job: Job, *, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            now = _match(self.list_jobs(include_stopped=True), job.job_id)
            what = f"Slurm job {job.container_id}"
            if now is None or now.state in ("exited", "dead"):
                if now is None or now.exit_code is None:
                    raise SlurmError(f"{what} ended without an exit code", host=self.host)
                return now.exit_code
            if deadline is not None and time.monotonic() > deadline:
                raise SlurmError(f"{what} did not end within {timeout:.0f} s", host=self.host)
            time.sleep(2)

    def prune(self, *, user: str | None) -> list[Job]:
        """Finished jobs' directories (output, exit codes, stranded env files) go; nothing of a job Slurm
        still lists as pending or running is touched. A directory whose submit was killed before sbatch
        answered goes once it is provably no job (slurm_queue.abandoned_submits), never while young."""
        from taoremote import slurm_queue as q

        listing = self.listing()
        abandoned = set(q.abandoned_submits(listing))
        done_dirs = {
            d.job_id
            for d in listing.dirs
            if (
                d.job_id in abandoned
                or (d.slurm_id is not None and not q.live_slurm_ids(listing, d.slurm_id))
            )
            and (user is None or d.meta.get("user") == user)
        }
        if done_dirs:
            self._run(remove_argv(sorted(done_dirs), env_only=False))
        jobs = q.jobs_of(self.host, listing)
        return [j for j in jobs if j.job_id in done_dirs or j.job_id.rsplit("-", 1)[0] in done_dirs]

    def _where(self, job: Job) -> tuple[str, int | None]:
        home = self.login_info().home
        sid = job.container_id
        if "_" in sid:  # an array task: <job>-<task>, Slurm id <id>_<task>
            return job_dir(home, job.job_id.rsplit("-", 1)[0]), int(sid.rsplit("_", 1)[1])
        return job_dir(home, job.job_id), None


def _array_tasks(jobs: Sequence[Job], ident: str) -> list[Job]:
    """Every task of the job array IDENT names exactly: by taoremote's job id (tasks are `<id>-<n>`) or
    by Slurm's base id (tasks are `<id>_<n>`); [] when IDENT is no array's."""
    return [
        j
        for j in jobs
        if "_" in j.container_id
        and (j.job_id.rsplit("-", 1)[0] == ident or j.container_id.split("_", 1)[0] == ident)
    ]


def _match(jobs: Sequence[Job], ident: str) -> Job | None:
    """By job id, name, container-id prefix (containers.match_job) or the exact Slurm job id."""
    return match_job(jobs, ident) or next((j for j in jobs if j.container_id == ident), None)
