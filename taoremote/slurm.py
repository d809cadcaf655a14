"""The Slurm backend (DESIGN.md §6): the job operations of backend.JobBackend through sbatch, squeue and
scancel on a login node, reached by an Executor (this machine with `--slurm local`, else SSH).

A job is a private directory on the cluster's shared filesystem (slurm_queue.JOBS_DIR/<job id>, 0700)
holding the batch script (slurm_script.py), the 0600 env file, the output and the exit-code file; it is
submitted with `sbatch --parsable` plus the user's `--sbatch` arguments, one argv element each. Slurm's
word on the queue comes from `squeue`, a task's exit code from its file. Nothing here knows whether the
login node is local or remote; the commands and parsers are in slurm_queue.py (pure).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from taoremote import slurm_queue as q
from taoremote.backend import Launched, Stopped
from taoremote.containers import Job, match_job, unmatched_message
from taoremote.errors import JobNotFoundError, OutputClosed, SlurmError, UsageError
from taoremote.executor import Completed, Executor
from taoremote.interrupts import Reaction, reaction
from taoremote.slurm_script import (
    Runtime,
    SlurmJob,
    build_batch_script,
    build_sbatch_argv,
    env_file_text,
    exit_code_name,
    output_name,
    pyxis_dropped_options,
)

if TYPE_CHECKING:
    from taoremote.command import RunSpec
    from taoremote.plan import LaunchPlan

SUBMIT_TIMEOUT_S = 60.0
QUERY_TIMEOUT_S = 30.0
CANCEL_TIMEOUT_S = 60.0  # scancel and the wait until Slurm has ended the job (within KillWait)
NO_SLURM_FIX = (
    "install the Slurm client tools (sbatch, squeue, scancel) on the login node and make sure a login "
    "shell finds them, or point --slurm at the cluster's login node"
)


@dataclass(frozen=True)
class SlurmOptions:
    sbatch_args: tuple[str, ...] = ()
    runtime: Runtime | None = None  # None: pyxis when srun offers --container-image, else docker


class SlurmBackend:
    def __init__(self, executor: Executor, options: SlurmOptions = SlurmOptions()) -> None:
        self.executor = executor
        self.host = executor.host
        self.options = options
        self._info: q.LoginInfo | None = None

    # ------------------------------------------------------------------------------------------ login node

    def login_info(self) -> q.LoginInfo:
        if self._info is None:
            done = self.executor.run(("sh", "-c", q.INFO_SCRIPT), timeout=QUERY_TIMEOUT_S)
            info = q.parse_info(done.stdout)
            if not info.has_slurm:
                raise SlurmError("no Slurm here (sbatch/squeue not found)", host=self.host, fix=NO_SLURM_FIX)
            if not info.home.startswith("/"):
                raise SlurmError(f"the login directory {info.home!r} is not an absolute path", host=self.host)
            self._info = info
        return self._info

    def runtime(self) -> Runtime:
        return self.options.runtime or ("pyxis" if self.login_info().has_pyxis else "docker")

    def _run(
        self, argv: Sequence[str], *, timeout: float = QUERY_TIMEOUT_S, stdin: str | None = None
    ) -> Completed:
        return self.executor.run(argv, timeout=timeout, stdin=stdin)

    # ------------------------------------------------------------------------------------------ launch

    def launch(self, spec: RunSpec, env_values: Mapping[str, str], *, pull: bool = False) -> Launched:
        """Submit; with spec.detach return at once, else follow the job to its end. `pull` means nothing
        here: the node that runs the job fetches the image (docker run, or enroot for pyxis)."""
        slurm_id = None
        try:
            slurm_id, job = self.submit(spec, env_values)
            if spec.detach:
                _say(f"submitted as Slurm job {slurm_id} on {self.host}")
                return Launched(spec.job_id)
            self.follow(job.job_dir, slurm_id, task=None)
            return Launched(spec.job_id, self._collect(job.job_dir, slurm_id, remove=True))
        except BaseException as exc:
            # interrupts.py's policy; before sbatch answered, the job (if any) is found by its directory
            # (started=True: a submit may have reached sbatch, and a queued job must be cancelled too)
            if reaction(exc, started=True, detach=spec.detach, interactive=False) is Reaction.STOP:
                self._cancel_quietly(spec.job_id, slurm_id)
                if isinstance(exc, OutputClosed):
                    raise OutputClosed(job_stopped=True) from None
            raise

    def _cancel_quietly(self, job_id: str, slurm_id: str | None) -> None:
        """Best effort during an interruption: the job must not outlive a Ctrl-C, and nothing of it stays."""
        _say(f"cancelling {'Slurm job ' + slurm_id if slurm_id else job_id} on {self.host} ...")
        with contextlib.suppress(Exception):
            if slurm_id is None:  # an interrupted submit: sbatch may have answered all the same
                known = {d.job_id: d.slurm_id for d in self.listing().dirs}
                slurm_id = known.get(job_id)
            if slurm_id is not None:
                self.cancel([slurm_id])
            self._run(q.remove_argv([job_id], env_only=False))

    def submit(
        self,
        spec: RunSpec,
        env_values: Mapping[str, str],
        *,
        task_commands: tuple[tuple[str, ...], ...] = (),
        max_parallel: int | None = None,
    ) -> tuple[str, SlurmJob]:
        """sbatch it (task_commands: a job array for a sweep, listed as `<job>-<task>`); its Slurm id."""
        job = self._job(spec, env_values, task_commands, max_parallel)
        script = build_batch_script(job)  # usage errors (device=, auto:, pyxis paths) before anything runs
        for warning in self._warnings(job):
            _say(f"warning: {warning}")
        spec, labels = job.spec, dict(job.spec.labels)
        meta = q.meta_text(
            job_id=spec.job_id,
            task=spec.task,
            command=labels.get("taoremote.command", ""),
            image=spec.image,
            gpus=spec.gpus,
            user=job.user,
            started=labels.get("taoremote.started", ""),
            tasks=len(job.task_commands),
            runtime=job.runtime,
        )
        return self._sbatch(job, script, meta, env_values), job

    def _job(
        self,
        spec: RunSpec,
        env_values: Mapping[str, str],
        task_commands: tuple[tuple[str, ...], ...] = (),
        max_parallel: int | None = None,
    ) -> SlurmJob:
        if spec.interactive:
            raise UsageError("an interactive shell cannot run in Slurm's batch queue; give a subtask")
        home = self.login_info().home
        spec = replace(spec, env_names=tuple(env_values), tty=False)
        user = dict(spec.labels).get("taoremote.user", "") or "unknown"
        return SlurmJob(spec, q.job_dir(home, spec.job_id), user, self.runtime(), task_commands, max_parallel)

    @staticmethod
    def _warnings(job: SlurmJob) -> list[str]:
        if job.runtime != "pyxis":
            return []
        return [
            f"DockerOptions.{n} has no pyxis equivalent and is not applied"
            for n in pyxis_dropped_options(job)
        ]

    def describe_launch(self, plan: LaunchPlan) -> str:
        """The dry run: the batch script as it would be submitted, then where its files would go and the
        exact sbatch argv. Asks the login node only where home is and which runtime it has (read-only):
        no directory is made, nothing submitted. Env values never are in the script; here secrets show
        as ****."""
        job = self._job(plan.spec, plan.env_values)
        script = build_batch_script(job)
        shown = {k: ("****" if k in plan.secret_names else v) for k, v in plan.env_values.items()}
        lines = [
            "# ---- taoremote dry run: nothing was submitted, no job directory made ----",
            f"# Slurm login node: {self.host}; container runtime: {job.runtime}",
            f"# the script above is written to {job.job_dir}/job.sbatch (a private 0700 directory)",
        ]
        if shown:
            lines.append(
                f"# env values reach the job through a 0600 file {job.job_dir}/env, never the script:"
            )
            lines.extend(f"#   {k}={v}" for k, v in shown.items())
        lines.append(f"# sbatch argv: {json.dumps(build_sbatch_argv(job.job_dir, self.options.sbatch_args))}")
        lines.extend(f"# note: {n}" for n in plan.notes)
        lines.extend(f"# warning: {w}" for w in (*plan.warnings, *self._warnings(job)))
        return script + "\n".join(lines)

    def _sbatch(self, job: SlurmJob, script: str, meta: str, env_values: Mapping[str, str]) -> str:
        with_env = bool(env_values)
        stdin = q.env_payload(env_file_text(job.runtime, env_values)) if with_env else None
        sbatch = build_sbatch_argv(job.job_dir, self.options.sbatch_args)
        flag = "1" if with_env else "0"
        argv = ("sh", "-c", q.SUBMIT_SCRIPT, "sh", job.job_dir, script, meta, flag, *sbatch)
        done = self._run(argv, timeout=SUBMIT_TIMEOUT_S, stdin=stdin)
        if done.returncode == 127:
            raise SlurmError("no Slurm here (sbatch not found)", host=self.host, fix=NO_SLURM_FIX)
        if done.returncode != 0 or not done.stdout.strip():
            raise SlurmError(f"sbatch refused the job: {_reason(done.stderr)}", host=self.host)
        return done.stdout.strip().splitlines()[-1]

    def follow(self, job_dir: str, slurm_id: str, *, task: int | None) -> int:
        """The queue state while it waits, then its output until it ends; the stream's own code."""
        argv = ("sh", "-c", q.FOLLOW_SCRIPT, "sh", slurm_id, f"{job_dir}/{output_name(task)}",
                f"{job_dir}/{exit_code_name(task)}")  # fmt: skip
        code = self.executor.stream(argv)
        if code < 0:
            raise OutputClosed()
        return code

    def _collect(self, job_dir: str, slurm_id: str, *, remove: bool, task: int | None = None) -> int:
        flag = "1" if remove else "0"
        argv = ("sh", "-c", q.COLLECT_SCRIPT, "sh", job_dir, slurm_id, flag, exit_code_name(task))
        done = self._run(argv, timeout=QUERY_TIMEOUT_S)
        text = done.stdout.strip()
        if done.returncode != 0 or not text.lstrip("-").isdigit():
            raise SlurmError(
                f"Slurm job {slurm_id} ended without an exit code from its task (cancelled, or its node "
                f"failed); its output is in {job_dir}",
                host=self.host,
            )
        return int(text)

    def cancel(self, slurm_ids: Sequence[str]) -> None:
        if slurm_ids:
            done = self._run(("sh", "-c", q.CANCEL_SCRIPT, "sh", *slurm_ids), timeout=CANCEL_TIMEOUT_S)
            if done.returncode != 0:
                raise SlurmError(f"scancel failed: {_reason(done.stderr)}", host=self.host)

    # ------------------------------------------------------------------------------------------ manage

    def listing(self, timeout: float = QUERY_TIMEOUT_S) -> q.Listing:
        done = self._run(("sh", "-c", q.LIST_SCRIPT, "sh"), timeout=timeout)
        listing = q.parse_listing(done.stdout)
        if listing.squeue_rc == 127:
            raise SlurmError("no Slurm here (squeue not found)", host=self.host, fix=NO_SLURM_FIX)
        if listing.squeue_rc != 0 or done.returncode != 0:
            raise SlurmError(f"squeue failed: {_reason(done.stderr)}", host=self.host)
        return listing

    def list_jobs(
        self, *, include_stopped: bool, timeout: float = QUERY_TIMEOUT_S, progress: bool = False
    ) -> list[Job]:
        # progress: Slurm jobs carry no results label (yet), so there is no status.json to read
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
        stranded = q.stranded_env_dirs(self.listing())
        if stranded:
            self._run(q.remove_argv(stranded, env_only=True))

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
            self._run(q.remove_argv(sorted(done_dirs), env_only=False))
        jobs = q.jobs_of(self.host, listing)
        return [j for j in jobs if j.job_id in done_dirs or j.job_id.rsplit("-", 1)[0] in done_dirs]

    def _where(self, job: Job) -> tuple[str, int | None]:
        home = self.login_info().home
        sid = job.container_id
        if "_" in sid:  # an array task: <job>-<task>, Slurm id <id>_<task>
            return q.job_dir(home, job.job_id.rsplit("-", 1)[0]), int(sid.rsplit("_", 1)[1])
        return q.job_dir(home, job.job_id), None

    def close(self) -> None:
        self.executor.close()


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


def _reason(stderr: str) -> str:
    """Slurm's own reason: the last `error:` line (`sbatch: error: Batch job submission failed: ...`)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    last = (errors or lines or ["no reason given"])[-1]
    return last.split("error:", 1)[-1].strip() if "error:" in last else last


def _say(message: str) -> None:
    with contextlib.suppress(OSError):
        print(f"taoremote: {message}", file=sys.stderr, flush=True)
