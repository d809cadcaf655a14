"""The `sweep` commands (cli.py calls these): run (or resume, or --dry-run), status, best, stop, list."""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from typing import TYPE_CHECKING, Any

from taoremote import redact, sweep, sweep_poll, sweep_view
from taoremote.errors import TaoRemoteError, UsageError
from taoremote.trials import Trial, trial_dir_of

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from taoremote.output import Format
    from taoremote.settings import Globals
    from taoremote.sweep_setup import HostContext, Setup
    from taoremote.sweep_state import SweepStore, TrialRecord


def _out(text: str) -> None:
    print(redact.mask(text), flush=True)


def _err(text: str) -> None:
    print(redact.mask(f"taoremote: {text}"), file=sys.stderr, flush=True)


def _store(*, create: bool) -> SweepStore:
    from taoremote.sweep_state import SweepStore, state_dir

    return SweepStore(state_dir(os.environ, os.path.expanduser("~")), create=create)


def resume_command(g: Globals, name: str) -> str:
    parts = ["taoremote"]
    parts += ["--ssh-config", g.ssh_config] if g.ssh_config else []
    parts += ["--mounts", g.mounts] if g.mounts else []
    parts += ["--slurm", g.slurm] if g.slurm else []
    return shlex.join([*parts, "sweep", "run", name])


# ---------------------------------------------------------------------------------------------- run


def run_cmd(
    g: Globals, name: str, options: sweep.SweepOptions | None, *, dry_run: bool, terminal: bool
) -> int:
    from taoremote.sweep_state import check_name

    check_name(name)
    definition = sweep.make_definition(options, list(g.hosts)) if options is not None else None
    if definition is not None:
        from taoremote.sweep_slurm import definition_with_slurm

        definition = definition_with_slurm(definition, g)
    if dry_run:
        return _dry_run(g, name, definition)
    store = _store(create=True)
    try:
        lock = store.lock(name)
        try:
            return _run_locked(g, store, name, definition, terminal)
        finally:
            lock.release()
    finally:
        store.close()


def _run_locked(
    g: Globals, store: SweepStore, name: str, given: dict[str, Any] | None, terminal: bool
) -> int:
    from taoremote.sweep_run import Driver
    from taoremote.sweep_setup import check_trial_dirs, hosts_of, make_setup, open_hosts

    existing = store.sweep(name)
    definition = store.define(name, given).definition if existing is not None or given is None else given
    if definition["search"] == "tpe":  # its absence refused before the sweep is stored or a host asked
        from taoremote.sweep_tpe import require_optuna

        require_optuna()
    from taoremote.sweep_slurm import run_locked, slurm_globals

    g = slurm_globals(g, definition)
    if g.slurm:  # Slurm queues the trials: the driver submits and follows
        resume = resume_command(g, name)

        def report(setup: Setup, hosts: Mapping[str, HostContext]) -> None:
            records = store.trials(name)
            plan = setup.plan
            _out(sweep_view.render(sweep_view.ranking_rows(records, plan.direction, plan.metric), "table"))
            _out(sweep_view.best_text(_best(g, setup, records, hosts), plan.metric))

        new = existing is None
        return run_locked(
            g, store, name, definition, new=new, terminal=terminal, resume=resume, report=report
        )
    setup = make_setup(g, definition)
    hosts, setup = open_hosts(g, setup, hosts_of(definition))
    try:
        plan = setup.plan
        trials = sweep.initial_trials(plan)
        for trial in trials:  # every value checked against the spec before anything starts
            sweep.trial_work(plan, trial, setup.spec_text)
        used = {r.index for r in store.trials(name) if r.state != "queued"}
        check_trial_dirs(hosts, plan, [i for i in range(plan.size) if i not in used])
        if existing is None:
            store.define(name, definition)
        store.add_trials(name, trials)
        where = ", ".join(h.name for h in hosts)
        _err(
            f"sweep {name}: {plan.size} trial(s) over {where}; queued trials start only while this runs "
            f"(Ctrl-C stops every trial; resume with `{resume_command(g, name)}`)"
        )
        driver = Driver(store, name, setup, hosts, terminal=terminal, resume=resume_command(g, name))
        code = driver.run()
        if code in (0, 1):
            records = store.trials(name)
            _out(sweep_view.render(sweep_view.ranking_rows(records, plan.direction, plan.metric), "table"))
            best = _best(g, setup, records, {h.name: h for h in hosts})
            _out(sweep_view.best_text(best, plan.metric))
        return code
    finally:
        for ctx in hosts:
            ctx.backend.close()


def _dry_run(g: Globals, name: str, definition: Mapping[str, Any] | None) -> int:
    from taoremote.command import build_run_argv, container_name, render_command
    from taoremote.placement import assign, build_gpu_state_argv, machines, parse_gpu_state
    from taoremote.sweep_setup import hosts_of, make_setup, open_hosts, trial_spec
    from taoremote.sweep_state import TrialRecord, job_id_for

    if definition is None:
        store = _store(create=False)
        stored = store.sweep(name)
        store.close()
        if stored is None:
            raise UsageError(f"no sweep named {name}: give its --param options and the task")
        definition = stored.definition
    from taoremote.sweep_slurm import dry_run, slurm_globals

    g = slurm_globals(g, definition)
    if g.slurm:
        return dry_run(g, name, definition, _out)
    setup = make_setup(g, definition)
    hosts, setup = open_hosts(g, setup, hosts_of(definition))
    try:
        plan = setup.plan
        states = [
            parse_gpu_state(h.backend.executor.run(build_gpu_state_argv(), timeout=30).stdout, host=h.name)
            for h in hosts
        ]
        trials = sweep.initial_trials(plan)
        limit = definition.get("max_parallel")
        indexes = [t.index for t in trials][: int(limit) if limit else None]
        per = int(definition.get("gpus_per_trial") or 1)
        placed = {p.trial: p for p in assign(indexes, machines(states), per, [])}
        ctx_of = {h.name: h for h in hosts}
        if plan.search == "tpe":
            _out(f"# --search tpe: {plan.size} trials, each asked of Optuna as a GPU frees up")
        for trial in trials:
            work = sweep.trial_work(plan, trial, setup.spec_text)
            record = TrialRecord(trial.index, trial.params, "queued", job_id_for("<id>", trial.index))
            p = placed.get(trial.index)
            ctx = ctx_of[p.host] if p else hosts[0]
            where = f"host {p.host} --gpus {p.gpus_option}" if p else "queued until GPUs free up"
            spec = trial_spec(ctx, plan, work, record, name, p.gpus_option if p else "device=?")
            job = container_name(spec.task, spec.job_id)
            _out(f"# trial {trial.index} [{trial.describe()}]: {where}; {job}")
            _out(render_command(build_run_argv(spec)))
            if work.spec_diff:
                _out(work.spec_diff)
        return 0
    finally:
        for ctx in hosts:
            ctx.backend.close()


# ---------------------------------------------------------------------------------------------- best


def _best(
    g: Globals, setup: Setup, records: Sequence[TrialRecord], hosts: Mapping[str, HostContext]
) -> sweep_view.Best | None:
    plan = setup.plan
    ranked = [r for r in sweep_view.ranking(records, plan.direction) if r.best_metric is not None]
    if not ranked or ranked[0].state in ("failed", "stopped", "unknown"):
        return None
    best = ranked[0]
    work = sweep.trial_work(plan, Trial(best.index, best.params), None)
    trial_dir = trial_dir_of(plan.results_dir, best.index)
    host_dir = checkpoint = None
    ctx = hosts.get(best.host or "")
    if ctx is not None:
        with contextlib.suppress(TaoRemoteError):
            host_dir = ctx.host_path(trial_dir, resolved=True)
            found = ctx.backend.executor.run(
                sweep_poll.build_newest_checkpoint_argv(ctx.host_path(trial_dir), sweep.CHECKPOINT_SUFFIXES),
                timeout=30,
            ).stdout.strip()
            if found.startswith("./"):  # relative to the trial dir: the same below it in the container
                checkpoint = f"{trial_dir}/{found[2:]}"
    if g.slurm:  # the follow-up runs where the trial ran: on the cluster
        prefix = ["taoremote", "--slurm", g.slurm]
    else:
        prefix = ["taoremote", *(["--host", best.host] if best.host and best.host != "local" else [])]
    evaluate = (*prefix, *sweep.follow_up_command(plan, work, "evaluate", checkpoint))
    export = (*prefix, *sweep.follow_up_command(plan, work, "export", checkpoint))
    return sweep_view.Best(best, trial_dir, host_dir, checkpoint, evaluate, export)


def best_cmd(g: Globals, name: str, fmt: Format) -> int:
    from taoremote.sweep_setup import hosts_of, make_setup, open_host

    store = _store(create=False)
    try:
        info = store.sweep(name)
        if info is None:
            raise UsageError(f"no sweep named {name}")
        records = store.trials(name)
    finally:
        store.close()
    from taoremote.sweep_slurm import slurm_globals

    g = slurm_globals(g, info.definition)
    setup = make_setup(g, info.definition)
    hosts: dict[str, HostContext] = {}
    ranked = [r for r in sweep_view.ranking(records, setup.plan.direction) if r.best_metric is not None]
    if ranked and g.slurm:  # its checkpoint is looked for on the login node (a shared filesystem)
        with contextlib.suppress(TaoRemoteError):
            ctx, _ = open_host(g, setup, g.slurm)
            hosts[ranked[0].host or ""] = ctx
    elif ranked and ranked[0].host in hosts_of(info.definition):
        with contextlib.suppress(TaoRemoteError):
            ctx, _ = open_host(g, setup, ranked[0].host or "local")
            hosts[ctx.name] = ctx
    try:
        best = _best(g, setup, records, hosts)
    finally:
        for ctx in hosts.values():
            ctx.backend.close()
    if fmt == "json":
        import json

        _out(json.dumps(sweep_view.best_json(best, setup.plan.metric), indent=2))
    else:
        _out(sweep_view.best_text(best, setup.plan.metric))
    return 0 if best is not None else 1


# ---------------------------------------------------------------------------------------------- others


def status_cmd(name: str, fmt: Format) -> int:
    store = _store(create=False)
    try:
        info = store.sweep(name)
        if info is None:
            raise UsageError(f"no sweep named {name}")
        lives = {i: sweep_view.Live(*p) for i, p in store.progress(name).items()}  # as the driver read it
        _out(sweep_view.table(store.trials(name), lives, fmt))
    finally:
        store.close()
    return 0


def list_cmd(fmt: Format) -> int:
    from taoremote.output import render

    try:
        store = _store(create=False)
    except UsageError:
        _out(render([], fmt, empty="No sweeps."))
        return 0
    try:
        sweeps = store.sweeps()
        rows = sweep_view.list_rows(sweeps, {s.name: store.trials(s.name) for s in sweeps})
    finally:
        store.close()
    _out(render(rows, fmt, empty="No sweeps."))
    return 0


def stop_cmd(g: Globals, name: str) -> int:
    """Ask the driver (if one runs) to stop, stop every trial's container on the sweep's hosts, and record
    unfinished trials as stopped: a rerun never runs them."""
    from taoremote.fleet import open_backend
    from taoremote.launch import local_user
    from taoremote.sweep_setup import hosts_of, target_of

    store = _store(create=False)
    try:
        info = store.sweep(name)
        if info is None:
            raise UsageError(f"no sweep named {name}")
        from taoremote.sweep_slurm import slurm_globals, stop

        if info.definition.get("slurm"):  # scancel its jobs, on the cluster it was run on
            return stop(slurm_globals(g, info.definition), store, name)
        store.request_stop(name)
        failed = 0
        for host in hosts_of(info.definition):
            try:
                backend = open_backend(g, target_of(host))
                try:
                    result = backend.executor.run(
                        sweep_poll.build_stop_sweep_argv(name, local_user()), timeout=120
                    )
                finally:
                    backend.close()
                if result.returncode != 0:
                    raise TaoRemoteError(f"docker stop failed: {result.stderr.strip()[:200]}", host=host)
            except TaoRemoteError as exc:
                _err(f"error: {exc}")
                failed += 1
        stopped = store.mark_unfinished_stopped(name, unknown_too=not failed)
        _out(f"sweep {name}: {stopped} trial(s) stopped")
        return 1 if failed else 0
    finally:
        store.close()
