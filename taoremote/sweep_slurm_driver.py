"""The Slurm sweep driver (DESIGN.md §5-§6): sweep_run.Driver's loop with Slurm in place of GPU placement.
sweep_slurm.py starts it; Slurm queues the trials, the driver only submits and follows.

- No trial submitted twice (sweep_state's protocol, for Slurm): the trials are recorded `launching` with
  `container = submitting:<job id>` BEFORE sbatch; once sbatch answered, each trial gets its Slurm id
  (`<array>_<task>`, or the job's own id) and `host = slurm:<id>`. A resumed driver settles a submit it
  finds in flight by the job's directory on the login node (the Slurm backend's listing): a Slurm id there
  is adopted; a directory without one is waited for until slurm_queue's submit deadline, then removed and
  submitted again; no directory is submitted again (the submit's own `mkdir` refuses a second one).
- Each tick is ONE command on the login node (sweep_slurm_poll.py): squeue, the exit-code files and the
  trials' status.json. A trial stays `launching` while Slurm holds it pending, `running` once it runs.
- Ctrl-C / SIGTERM cancel every job of the sweep (scancel) and exit 130 / 143; SIGHUP, a closed output or
  a login node lost for LOST_GRACE_S leave them queued or running and print the resume command.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from taoremote import slurm_queue as q
from taoremote import sweep, sweep_poll
from taoremote.errors import SlurmError, TaoRemoteError
from taoremote.slurm_commands import remove_argv
from taoremote.slurm_login import say as _say
from taoremote.slurm_script import ARRAY_TASK
from taoremote.sweep_launch import LIVE
from taoremote.sweep_run import LOST_GRACE_S, POLL_S, Driver, _AllLost
from taoremote.sweep_slurm_poll import (
    SUBMITTING,
    build_poll_argv,
    build_prepare_trials_argv,
    parse_poll,
    prepare_trials_stdin,
)
from taoremote.trials import Trial

if TYPE_CHECKING:
    from collections.abc import Sequence

    from taoremote.command import RunSpec
    from taoremote.containers import Job
    from taoremote.slurm import SlurmBackend
    from taoremote.sweep_setup import HostContext, Setup
    from taoremote.sweep_state import SweepStore, TrialRecord

SLURM_POLL_S = 2.0  # squeue is the cluster's, shared with everyone: a tick every 2 s, not POLL_S
TPE_PARALLEL = 2  # TPE trials pending or running at once without --max-parallel (it learns between them)


def job_ids(records: Sequence[TrialRecord], sweep_id: str) -> list[str]:
    """The taoremote job ids of a sweep's Slurm jobs: the array's (the sweep id) and each TPE trial's."""
    found: dict[str, None] = {}
    for r in records:
        if r.container and r.container.startswith(SUBMITTING):
            found[r.container[len(SUBMITTING) :]] = None
        elif r.container and "_" in r.container:
            found[sweep_id] = None
        elif r.container:
            found[r.job_id] = None
    return list(found)


class SlurmDriver(Driver):
    """sweep_run.Driver's loop, signals and bookkeeping, with Slurm in place of GPU placement."""

    def __init__(
        self, store: SweepStore, name: str, setup: Setup, ctx: HostContext, *, terminal: bool, resume: str
    ) -> None:
        super().__init__(store, name, setup, [ctx], terminal=terminal, resume=resume)
        self.ctx = ctx
        self.backend: SlurmBackend = ctx.backend  # type: ignore[assignment]
        info = store.sweep(name)
        assert info is not None
        self.sweep_id = info.sweep_id
        self.listing: q.Listing | None = None
        self.jobs: dict[str, Job] = {}  # by Slurm id (`<array>_<task>` or the job's own)
        limit = self.plan.definition.get("max_parallel")
        self.limit = int(limit) if limit else None

    # ------------------------------------------------------------------------------------------ a tick

    def _tick(self) -> bool:
        time.sleep(max(0.0, SLURM_POLL_S - POLL_S))  # run() sleeps the rest of POLL_S
        return super()._tick()

    def _poll(self, records: dict[int, TrialRecord], need_gpus: bool) -> dict[str, sweep_poll.Poll]:
        from taoremote.sweep_setup import status_host_path

        read = {i: len(t.encode()) for i, t in self.texts.items()}
        follow = [
            (r.index, read.get(r.index, 0), status_host_path(self.ctx, self.plan, r.index))
            for r in records.values()
            if _submitted(r) and (r.state in LIVE or r.index not in self.loaded)
        ]
        now = time.monotonic()
        try:
            done = self.backend.executor.run(build_poll_argv(follow), timeout=30)
            listing, grown = parse_poll(done.stdout)
            if listing.squeue_rc != 0 or done.returncode != 0:
                raise SlurmError(f"squeue failed: {done.stderr.strip()[:200]}", host=self.ctx.name)
        except TaoRemoteError:
            self.ctx.up = False
            self.ctx.down_since = self.ctx.down_since or now
            if now - self.ctx.down_since > LOST_GRACE_S:
                raise _AllLost() from None
            return {}
        self.ctx.up, self.ctx.down_since = True, None
        self.listing = listing
        self.jobs = {j.container_id: j for j in q.jobs_of(self.ctx.name, listing)}
        for index, text in grown.items():
            self._progress(index, text)
            self.loaded.add(index)
        return {self.ctx.name: sweep_poll.Poll(self.ctx.name, {})}

    def _reconcile(self, records: dict[int, TrialRecord], polls: dict[str, sweep_poll.Poll]) -> None:
        for r in records.values():
            if r.state not in LIVE or not _submitted(r):
                continue
            if not polls:
                if r.state != "unknown":
                    self._move(self.store.mark_unknown, r.index)
                continue
            job = self.jobs.get(r.container or "")
            if job is None:
                why = "its Slurm job and its directory on the login node are gone"
                self._finish(r.index, "stopped" if self.stopping else "failed", None, why)
            elif job.state == "exited":
                code = job.exit_code
                ended = "succeeded" if code == 0 else "failed"
                self._finish(r.index, "stopped" if self.stopping else ended, code)
            elif job.state == "dead":
                why = f"Slurm ended it without an exit code ({job.status})"
                self._finish(r.index, "stopped" if self.stopping else "failed", None, why)
            elif job.state == "running" and r.state != "running":
                self._move(self.store.mark_running, r.index)

    def _prune(self, records: dict[int, TrialRecord]) -> None:
        if self.plan.definition.get("prune") != "median" or self.stopping or not self.ctx.up:
            return
        completed = [self.histories.get(r.index, {}) for r in records.values() if r.state == "succeeded"]
        warmup = int(self.plan.definition.get("prune_warmup") or 0)
        for r in records.values():
            if r.state != "running" or not _submitted(r):
                continue
            verdict = sweep.should_prune(
                self.histories.get(r.index, {}), completed, direction=self.plan.direction, warmup=warmup
            )
            if verdict is None:
                continue
            try:
                self.backend.cancel([r.container or ""])
            except TaoRemoteError:
                continue  # the link: the next tick decides again
            epoch, best, median = verdict
            why = f"at epoch {epoch} its best {best:.6g} is worse than the median {median:.6g}"
            self._finish(r.index, "pruned", None, why)

    # ------------------------------------------------------------------------------------------ submits

    def _schedule(self, records: dict[int, TrialRecord], polls: dict[str, sweep_poll.Poll]) -> None:
        if not polls or self.listing is None:
            return  # the login node did not answer: nothing is submitted blind
        self._settle(records)
        records = {r.index: r for r in self.store.trials(self.name)}
        if self.tpe is None:
            queued = sorted((r for r in records.values() if r.state == "queued"), key=lambda r: r.index)
            if queued:
                self._submit(self.sweep_id, queued, array=True)
            return
        limit = self.limit or TPE_PARALLEL
        busy = [r for r in records.values() if r.state in (*LIVE, "queued")]
        for _ in range(max(0, min(limit - len(busy), self.plan.size - len(records)))):
            index = len(self.store.trials(self.name))
            self.store.add_trials(self.name, [self.tpe.ask(index)])
        records = {r.index: r for r in self.store.trials(self.name)}
        live = sum(r.state in LIVE for r in records.values())
        queued = sorted((r for r in records.values() if r.state == "queued"), key=lambda r: r.index)
        for r in queued[: max(0, limit - live)]:
            self._submit(r.job_id, [r], array=False)

    def _settle(self, records: dict[int, TrialRecord]) -> None:
        """Submits a driver before this one began and never saw answered (see the module docstring)."""
        assert self.listing is not None
        groups: dict[str, list[TrialRecord]] = {}
        for r in sorted(records.values(), key=lambda r: r.index):
            if r.state == "launching" and r.container and r.container.startswith(SUBMITTING):
                groups.setdefault(r.container[len(SUBMITTING) :], []).append(r)
        dirs = {d.job_id: d for d in self.listing.dirs}
        for job_id, group in groups.items():
            found = dirs.get(job_id)
            if found is not None and found.slurm_id is not None:
                self._record(found.slurm_id, group, array=job_id == self.sweep_id)
            elif found is None:
                self._submit(job_id, group, array=job_id == self.sweep_id)
            elif found.age_s is not None and found.age_s > q.SUBMIT_DEADLINE_S:
                self.backend.executor.run(remove_argv([job_id], env_only=False), timeout=30)
                self._submit(job_id, group, array=job_id == self.sweep_id)
            # else: that submit may still be under way; the next tick looks again

    def _submit(self, job_id: str, group: Sequence[TrialRecord], *, array: bool) -> None:
        for r in group:
            if r.state == "queued":
                self.store.mark_launching(self.name, r.index, "slurm", (), SUBMITTING + job_id)
        works = [sweep.trial_work(self.plan, Trial(r.index, r.params), self.setup.spec_text) for r in group]
        host = self.ctx.host_path
        argv = build_prepare_trials_argv(
            [(host(w.trial_dir), host(w.spec_copy[0]) if w.spec_copy else None) for w in works]
        )
        stdin = prepare_trials_stdin([w.spec_copy[1] for w in works if w.spec_copy])
        wrote = self.backend.executor.run(argv, timeout=120, stdin=stdin)
        if wrote.returncode != 0:
            why = wrote.stderr.strip()[:200]
            raise SlurmError(f"cannot make the trials' dirs and spec copies: {why}", host=self.ctx.name)
        spec = self._spec(job_id, works, array=array)
        commands = tuple(w.command for w in works) if array else ()
        slurm_id, _ = self.backend.submit(
            spec, self.ctx.env_values, task_commands=commands, max_parallel=self.limit if array else None
        )
        self._record(slurm_id, group, array=array)

    def _record(self, slurm_id: str, group: Sequence[TrialRecord], *, array: bool) -> None:
        for task, r in enumerate(group):
            sid = f"{slurm_id}_{task}" if array else slurm_id
            with contextlib.suppress(ValueError):
                self.store.record_submitted(self.name, r.index, f"slurm:{sid}", sid)
        if array:
            limit = f", at most {self.limit} at once" if self.limit else ""
            text = f"submitted as Slurm job array {slurm_id} ({len(group)} tasks{limit})"
        else:
            text = f"trial {group[0].index} submitted as Slurm job {slurm_id}"
        self.store.add_event(self.name, text, None if array else group[0].index)
        _say(text)

    def _spec(self, job_id: str, works: Sequence[sweep.TrialWork], *, array: bool) -> RunSpec:
        """The template the login node's probe gave, as the trials' job: their GPUs per task, labels
        naming the sweep and trial (in an array, the task id stands for the trial)."""
        from taoremote.plan import command_label

        trial = ARRAY_TASK if array else str(works[0].index)
        results = self.ctx.host_path(self.plan.results_dir, resolved=True).rstrip("/")
        command = self.plan.request.command if array else works[0].command
        gpus = str(int(self.plan.definition.get("gpus_per_trial") or 1))
        labels = dict(self.ctx.template.labels)
        labels.update(
            {
                "taoremote.command": command_label(command),
                "taoremote.gpus": gpus,
                "taoremote.started": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                sweep_poll.SWEEP_LABEL: self.name,
                sweep_poll.TRIAL_LABEL: trial,
                sweep_poll.RESULTS_LABEL: f"{results}/trial-{trial}",
            }
        )
        return replace(
            self.ctx.template,
            command=() if array else works[0].command,
            job_id=job_id,
            gpus=gpus,
            detach=True,
            tty=False,
            interactive=False,
            labels=tuple(labels.items()),
        )

    # ------------------------------------------------------------------------------------------ stop

    def _stop_everything(self, state: str) -> None:
        """scancel every job of the sweep (the array whole: its pending tasks too), then record it."""
        self.stopping = True
        records = self.store.trials(self.name)
        ids = job_ids([r for r in records if r.state in LIVE], self.sweep_id)
        if ids:
            _say(f"cancelling the sweep's Slurm job(s) on {self.ctx.name} ...")
            try:
                self.backend.stop(ids)
            except TaoRemoteError as exc:
                _say(f"error: {exc}")
        for r in records:
            if r.state in LIVE:
                self._finish(r.index, state, None)


def _submitted(r: TrialRecord) -> bool:
    return bool(r.container) and not (r.container or "").startswith(SUBMITTING)
