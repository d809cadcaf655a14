"""The host sweep driver's trial launches (sweep_run.Driver inherits them): each launch runs detached on a
thread of its own so that ticks go on meanwhile, its outcome is recorded from the driver's thread (`_join`),
each live trial is reconciled with its container as the tick's poll saw it (adopted, started when a cut
launch left it created, launched again when provably absent, finished), and a trial's end is recorded once
(`_finish`, told to TPE). The state it works on is the driver's, declared here, set in Driver.__init__.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from taoremote import sweep, sweep_poll
from taoremote.errors import DockerError, DockerTimeout, NameInUse, TaoRemoteError
from taoremote.placement import Placement
from taoremote.trials import Trial

if TYPE_CHECKING:
    from taoremote.sweep_setup import HostContext, Setup
    from taoremote.sweep_state import SweepStore, TrialRecord
    from taoremote.sweep_tpe import TpeSearch

LIVE = ("launching", "running", "unknown")


class TrialLaunches:
    """The launch and reconcile half of sweep_run.Driver (a mixin: Driver.__init__ sets this state)."""

    store: SweepStore
    name: str
    setup: Setup
    plan: sweep.SweepPlan
    hosts: dict[str, HostContext]
    stopping: bool
    launches: int
    threads: dict[int, threading.Thread]
    outcomes: list[tuple[int, str | None]]
    tpe: TpeSearch | None

    def _reconcile(self, records: dict[int, TrialRecord], polls: dict[str, sweep_poll.Poll]) -> None:
        for r in records.values():
            if r.state not in LIVE or r.host is None or r.index in self.threads:
                continue  # a launch in flight: its container may not exist yet
            poll = polls.get(r.host)
            if poll is None:
                if r.state != "unknown" and not self.hosts[r.host].up:
                    self._move(self.store.mark_unknown, r.index)
                continue
            found = poll.containers.get(r.container or "")
            if found is None:
                if r.state == "launching":  # provably absent: launched again, same host, same name
                    self._launch(r, Placement(r.index, r.host, r.gpus))
                else:
                    self._finish(r.index, "failed", None, "its container is gone")
            elif found.state == "created":  # a launch cut between create and start: it ran nothing
                self._start_created(r)
            elif found.state in ("exited", "dead"):
                code = found.exit_code
                state = "stopped" if self.stopping else ("succeeded" if code == 0 else "failed")
                self._finish(r.index, state, code)
            elif r.state != "running":
                self._move(self.store.mark_running, r.index)

    def _start_created(self, r: TrialRecord) -> None:
        """A container that is only created runs nothing and would keep its trial `running` forever: start
        it (its env is in the container since the create); if docker refuses, the trial failed to start."""
        from taoremote.command import build_rm_argv

        ex = self.hosts[r.host or ""].backend.executor
        try:
            result = ex.run(sweep_poll.build_start_trial_argv(r.container or ""), timeout=40)
        except TaoRemoteError:
            return  # the link or a slow daemon: the next tick looks again
        if result.returncode == 0:
            self._move(self.store.mark_running, r.index)
            return
        with contextlib.suppress(TaoRemoteError):
            ex.run(build_rm_argv([r.container or ""], force=True), timeout=40)
        said = (result.stderr.strip().splitlines() or ["no reason given"])[-1]
        self._finish(r.index, "failed", None, f"docker could not start it: {said}")

    def _finish(self, index: int, state: str, code: int | None, why: str = "") -> None:
        with contextlib.suppress(ValueError):  # `sweep stop` may have recorded it first
            self.store.mark_finished(self.name, index, state, code)
            if why:
                self.store.add_event(self.name, f"trial {index} {state}: {why}", index)
            if self.tpe is not None:
                self.tpe.tell(self.store.trial(self.name, index))

    def _move(self, mark: Callable[[str, int], None], index: int) -> None:
        with contextlib.suppress(ValueError):
            mark(self.name, index)

    def _launch(self, record: TrialRecord, placement: Placement) -> None:
        from taoremote.command import container_name
        from taoremote.sweep_setup import launch_trial, trial_spec

        ctx = self.hosts[placement.host]
        work = sweep.trial_work(self.plan, Trial(record.index, record.params), self.setup.spec_text)
        name = container_name(self.plan.request.task, record.job_id)
        if record.state == "queued":
            self.store.mark_launching(self.name, record.index, placement.host, placement.gpus, name)
        spec = trial_spec(ctx, self.plan, work, record, self.name, placement.gpus_option)

        def go() -> None:
            try:
                launch_trial(ctx, work, spec)
                self.outcomes.append((record.index, None))
            except NameInUse:
                pass  # a launch of a driver that died got there first: the next poll adopts it
            except DockerTimeout:
                pass  # no answer is no verdict: the container may exist; stays `launching`, the poll decides
            except DockerError as exc:
                self.outcomes.append((record.index, str(exc)))
            except TaoRemoteError:
                pass  # the link: stays `launching`, settled when the host answers again

        thread = threading.Thread(target=go, daemon=True)
        self.launches += 1
        self.threads[record.index] = thread
        thread.start()

    def _join(self, *, wait: bool = True) -> None:
        """Record what the launches did (the state is written from this thread only): those that ended,
        or (WAIT) all of them once they end."""
        for index, thread in list(self.threads.items()):
            if wait:
                thread.join(120)
            if not thread.is_alive():
                del self.threads[index]
        while self.outcomes:
            index, error = self.outcomes.pop(0)
            if error is None:
                self._move(self.store.mark_running, index)
            else:
                self._finish(index, "failed", None, error)
