"""The sweep driver: trials placed on free GPUs of every host, followed, pruned, ranked (DESIGN.md §5).
Each tick (POLL_S; HANDOFF_POLL_S while a queued trial's GPU is about to free) is one command per host,
all hosts at once (sweep_poll.py); the state moves only here (sweep_state's launch protocol: `launching` is
committed before `docker run`). Queued trials start only while the driver runs. Ctrl-C/SIGTERM stop every
trial; a hang-up, closed output or every host lost for LOST_GRACE_S leave them running and print the resume
command. Launching a trial and reconciling it with its container are sweep_launch.py's (Driver inherits them).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import TYPE_CHECKING

from taoremote import sweep, sweep_poll, sweep_view
from taoremote.errors import HungUp, OutputClosed, TaoRemoteError, Terminated
from taoremote.placement import Placement, assign, machines
from taoremote.progress import parse_status
from taoremote.sweep_launch import LIVE, TrialLaunches
from taoremote.sweep_setup import in_parallel, stop_trials

if TYPE_CHECKING:
    from taoremote.sweep_setup import HostContext, Setup
    from taoremote.sweep_state import SweepStore, TrialRecord

POLL_S = 0.5
HANDOFF_POLL_S = 0.25  # while trials wait and a running one is in its last epoch: its GPU frees soon
LOST_GRACE_S = 60.0
RETRY_S = 2.0


class Driver(TrialLaunches):
    def __init__(
        self,
        store: SweepStore,
        name: str,
        setup: Setup,
        hosts: list[HostContext],
        *,
        terminal: bool,
        resume: str,
    ) -> None:
        self.store, self.name, self.setup, self.plan = store, name, setup, setup.plan
        self.hosts = {h.name: h for h in hosts}
        self.order = [h.name for h in hosts]
        self.terminal, self.resume = terminal, resume
        self.texts: dict[int, str] = {}
        self.lives: dict[int, sweep_view.Live] = {}
        self.histories: dict[int, dict[int, float]] = {}
        self.loaded: set[int] = set()
        self.shown: dict[int, TrialRecord] = {}
        self.shown_lives: dict[int, sweep_view.Live] = {}
        self.stopping = False
        self.handoff_near = False  # poll faster: a queued trial's GPU is about to free
        self.launches = 0  # how many launches this driver began
        self.threads: dict[int, threading.Thread] = {}  # launches in flight, by trial: ticks go on meanwhile
        self.outcomes: list[tuple[int, str | None]] = []  # (trial, launch error or None), from the threads
        self.tpe = None
        if self.plan.search == "tpe":
            from taoremote.sweep_tpe import TpeSearch  # Optuna: this path only

            self.tpe = TpeSearch(self.plan, store.trials(name))

    def run(self) -> int:
        try:
            while True:
                start = time.monotonic()
                if self._tick():
                    break
                interval = HANDOFF_POLL_S if self.handoff_near else POLL_S
                time.sleep(max(0.0, interval - (time.monotonic() - start)))
        except (HungUp, OutputClosed) as exc:
            return self._leave(exc.problem, 128 + exc.signum)
        except _AllLost:
            return self._leave("no host answers", 255)
        except (KeyboardInterrupt, Terminated) as exc:
            self._join()
            self._stop_everything("stopped")
            _say("interrupted; every trial was stopped")
            return 128 + (exc.signum if isinstance(exc, Terminated) else 2)
        finally:
            self._join()
        records = self.store.trials(self.name)
        return 0 if records and all(r.state in ("succeeded", "pruned") for r in records) else 1

    def _leave(self, why: str, code: int) -> int:
        self._join()
        _say(f"{why}; the trials keep running. Resume with: {self.resume}")
        return code

    def _tick(self) -> bool:
        self._join(wait=False)  # the launches that ended since the last tick
        launches = self.launches
        info = self.store.sweep(self.name)
        if info is not None and info.stop_requested and not self.stopping:
            self._stop_everything("stopped")
        records = {r.index: r for r in self.store.trials(self.name)}
        waiting = [r for r in records.values() if r.state == "queued"]
        need_gpus = not self.stopping and (bool(waiting) or self._may_ask(records))
        polls = self._poll(records, need_gpus)
        self._reconcile(records, polls)
        self._prune(records)
        records = {r.index: r for r in self.store.trials(self.name)}
        if not self.stopping:
            self._schedule(records, polls)
        self._show()
        records = {r.index: r for r in self.store.trials(self.name)}
        self.handoff_near = self._handoff_near(records, launched=self.launches > launches)
        pending = LIVE if self.stopping else (*LIVE, "queued")
        return not any(r.state in pending for r in records.values()) and (
            self.stopping or not self._may_ask(records)
        )

    def _handoff_near(self, records: dict[int, TrialRecord], *, launched: bool) -> bool:
        """Trials wait, and a GPU is about to free: a running trial is in its last epoch, or trials were
        just started (trials started together end together: the rest of their wave is near)."""
        waiting = any(r.state == "queued" for r in records.values()) or self._may_ask(records)
        ending = any(r.state == "running" and _last_epoch(self.lives.get(r.index)) for r in records.values())
        return not self.stopping and waiting and (launched or ending)

    def _poll(self, records: dict[int, TrialRecord], need_gpus: bool) -> dict[str, sweep_poll.Poll]:
        from taoremote.sweep_setup import status_host_path

        follow: dict[str, list[tuple[int, int, str]]] = {h: [] for h in self.order}
        for r in records.values():
            if r.host in follow and (r.state in LIVE or r.index not in self.loaded):
                path = status_host_path(self.hosts[r.host], self.plan, r.index)
                follow[r.host].append((r.index, len(self.texts.get(r.index, "").encode()), path))
        now = time.monotonic()
        asked = [h for h in self.order if self.hosts[h].up or now >= self.hosts[h].retry_at]
        answers: dict[str, sweep_poll.Poll] = {}

        def one(host: str) -> None:
            ctx = self.hosts[host]
            argv = sweep_poll.build_poll_argv(self.name, follow[host], gpu_state=need_gpus)
            result = ctx.backend.executor.run(argv, timeout=30)
            answers[host] = sweep_poll.parse_poll(result.stdout, host=host, gpu_state=need_gpus)

        in_parallel(asked, one, deadline=35)
        for host in self.order:
            ctx = self.hosts[host]
            if host in answers:
                ctx.up, ctx.down_since = True, None
            elif host in asked:
                ctx.up, ctx.retry_at = False, now + RETRY_S
                ctx.down_since = ctx.down_since or now
        if all(
            not self.hosts[h].up and now - (self.hosts[h].down_since or now) > LOST_GRACE_S
            for h in self.order
        ):
            raise _AllLost()
        for poll in answers.values():
            for index, text in poll.grown.items():
                self._progress(index, text)
                self.loaded.add(index)
        return answers

    def _progress(self, index: int, grown: str) -> None:
        self.texts[index] = self.texts.get(index, "") + grown
        progress = parse_status(self.texts[index], framework=self.plan.framework, metric=self.plan.metric)
        value = progress.metric.value if progress.metric else None
        live = sweep_view.Live(progress.epoch, progress.max_epoch, value)
        if self.lives.get(index) != live:  # for `sweep status` in another process
            self.store.record_progress(self.name, index, live.epoch, live.max_epoch, live.metric)
        self.lives[index] = live
        self.histories[index] = dict(progress.history)
        best = progress.best(self.plan.direction)
        if best is not None:
            with contextlib.suppress(KeyError):
                record = self.store.trial(self.name, index)
                if (record.best_metric, record.best_epoch) != (best[1], best[0]):
                    self.store.record_metric(self.name, index, best[1], best[0])

    def _prune(self, records: dict[int, TrialRecord]) -> None:
        if self.plan.definition.get("prune") != "median" or self.stopping:
            return
        completed = [self.histories.get(r.index, {}) for r in records.values() if r.state == "succeeded"]
        warmup = int(self.plan.definition.get("prune_warmup") or 0)
        for r in records.values():
            if r.state != "running" or r.host is None or not self.hosts[r.host].up:
                continue
            verdict = sweep.should_prune(
                self.histories.get(r.index, {}), completed, direction=self.plan.direction, warmup=warmup
            )
            if verdict is None:
                continue
            argv = sweep_poll.build_stop_trial_argv(r.container or "")
            try:
                result = self.hosts[r.host].backend.executor.run(argv, timeout=40)
            except TaoRemoteError:
                continue  # the link: the next tick decides again
            if result.returncode == 0:
                epoch, best, median = verdict
                why = f"at epoch {epoch} its best {best:.6g} is worse than the median {median:.6g}"
                # its exit code is the stop's (143 on SIGTERM); the state `pruned` says why it ended
                self._finish(r.index, "pruned", sweep_poll.parse_exit_code(result.stdout), why)

    def _may_ask(self, records: dict[int, TrialRecord]) -> bool:
        return self.tpe is not None and len(records) < self.plan.size

    def _schedule(self, records: dict[int, TrialRecord], polls: dict[str, sweep_poll.Poll]) -> None:
        live = [r for r in records.values() if r.state in LIVE]
        limit = self.plan.definition.get("max_parallel")
        slots = len(records) + self.plan.size if limit is None else max(0, int(limit) - len(live))
        states = [polls[h].gpus for h in self.order if h in polls and polls[h].gpus is not None]
        if not states:
            return
        fleet = machines(states)  # type: ignore[arg-type]
        running = [Placement(r.index, r.host, r.gpus) for r in live if r.host]
        per = int(self.plan.definition.get("gpus_per_trial") or 1)
        if self.tpe is not None and not any(r.state == "queued" for r in records.values()):
            free = sum(len(m.free) for m in fleet) // per
            for _ in range(min(free, self.plan.size - len(records), slots if limit else free)):
                index = len(self.store.trials(self.name))
                self.store.add_trials(self.name, [self.tpe.ask(index)])
            records = {r.index: r for r in self.store.trials(self.name)}
        waiting = [r.index for r in sorted(records.values(), key=lambda r: r.index) if r.state == "queued"]
        if limit is not None:
            waiting = waiting[:slots]
        for placement in assign(waiting, fleet, per, running):
            self._launch(records[placement.trial], placement)
        # not joined here: a trial that ends while these start gets its GPU's successor on the next tick

    def _stop_everything(self, state: str) -> None:
        """Every trial's container stopped (this user's, by the sweep's label), and recorded so."""
        self.stopping = True
        self._join()  # a launch in flight makes its container first: then it is stopped with the rest
        stop_trials(list(self.hosts.values()), self.name)
        for r in self.store.trials(self.name):
            if r.state in LIVE:
                self._finish(r.index, state, None)

    def _show(self) -> None:
        records = self.store.trials(self.name)
        text = sweep_view.changes(records, self.lives, self.shown, self.shown_lives, terminal=self.terminal)
        if text:
            print(text, flush=True)
        self.shown, self.shown_lives = {r.index: r for r in records}, dict(self.lives)


def _last_epoch(live: sweep_view.Live | None) -> bool:
    """The trial has begun its last epoch (epochs done/total): it ends within an epoch or its wrap-up."""
    return (
        live is not None
        and live.epoch is not None
        and bool(live.max_epoch)
        and (live.epoch >= (live.max_epoch or 0) - 1)
    )


def _say(text: str) -> None:
    with contextlib.suppress(OSError):  # stderr may be the terminal that went away
        print(f"taoremote: {text}", file=sys.stderr, flush=True)


class _AllLost(Exception):
    pass
