"""A sweep on a Slurm cluster (DESIGN.md §5-§6): `sweep run/stop` and the dry run with `--slurm`. Slurm
queues the trials; the driver (sweep_slurm_driver.py) only submits and follows.

- Grid and random trials go to Slurm as ONE job array (`--array=0-(N-1)%K` for `--max-parallel K`, each task
  asking `--gpus-per-trial` GPUs); TPE submits one job per suggestion, keeping at most K (default
  TPE_PARALLEL) pending or running. Before a submit, every trial's results dir and spec copy are written on
  the login node (the cluster's filesystem is shared); mount sources and the spec were checked there first.
- Every submit is recorded before sbatch runs, so that no trial is submitted twice, and a resumed driver
  adopts what it finds (sweep_slurm_driver.py).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from taoremote import sweep
from taoremote.errors import TaoRemoteError, UsageError
from taoremote.slurm_login import say as _say
from taoremote.sweep_launch import LIVE
from taoremote.sweep_slurm_driver import TPE_PARALLEL, SlurmDriver, job_ids

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from taoremote.settings import Globals
    from taoremote.sweep_setup import HostContext, Setup
    from taoremote.sweep_state import SweepStore


def slurm_globals(g: Globals, definition: Mapping[str, Any]) -> Globals:
    """The options a sweep runs under: a Slurm sweep keeps its login node and --sbatch args (a bare
    resume needs neither); another --slurm than the stored one is a usage error."""
    stored = definition.get("slurm")
    if g.slurm and g.slurm != stored:
        was = f"--slurm {stored}" if stored else "hosts"
        raise UsageError(f"this sweep was run on {was}, not --slurm {g.slurm}; resume it as it was run")
    if not stored:
        return g
    return replace(g, slurm=stored, hosts=(), sbatch_args=tuple(definition.get("sbatch") or ()))


def definition_with_slurm(definition: dict[str, Any], g: Globals) -> dict[str, Any]:
    if g.slurm:
        definition.update(slurm=g.slurm, sbatch=list(g.sbatch_args) or None)
    return definition


def open_login(g: Globals, setup: Setup) -> tuple[HostContext, Setup]:
    """The login node, probed as a Slurm launch is (mount sources there; no GPU check: it has none),
    with the spec read there and checked."""
    from taoremote.sweep_setup import open_host

    assert g.slurm is not None
    ctx, text = open_host(g, setup, g.slurm)
    try:
        sweep.check_spec(setup.plan, text)
    except BaseException:
        ctx.backend.close()
        raise
    return ctx, replace(setup, spec_text=text)


def run_locked(
    g: Globals,
    store: SweepStore,
    name: str,
    definition: Mapping[str, Any],
    *,
    new: bool,
    terminal: bool,
    resume: str,
    report: Callable[[Setup, Mapping[str, HostContext]], None],
) -> int:
    """REPORT prints the ranking and the best trial (sweep_cmds'), given the login node for every trial."""
    from taoremote.sweep_setup import check_trial_dirs, make_setup

    setup = make_setup(g, definition)
    ctx, setup = open_login(g, setup)
    try:
        plan = setup.plan
        trials = sweep.initial_trials(plan)
        for trial in trials:  # every value checked against the spec before anything is submitted
            sweep.trial_work(plan, trial, setup.spec_text)
        used = {r.index for r in store.trials(name) if r.state != "queued"}
        check_trial_dirs([ctx], plan, [i for i in range(plan.size) if i not in used])
        if new:
            store.define(name, definition)
        store.add_trials(name, trials)
        how = "one job array" if plan.search != "tpe" else "one job per TPE suggestion"
        _say(
            f"sweep {name}: {plan.size} trial(s) as {how} on the Slurm cluster of {g.slurm}; Slurm queues "
            f"them (Ctrl-C cancels every trial; resume with `{resume}`)"
        )
        driver = SlurmDriver(store, name, setup, ctx, terminal=terminal, resume=resume)
        code = driver.run()
        if code in (0, 1):
            report(setup, {r.host or "": ctx for r in store.trials(name)})
        return code
    finally:
        ctx.backend.close()


def dry_run(g: Globals, name: str, definition: Mapping[str, Any], out: Callable[[str], None]) -> int:
    """What `sweep run` would submit: the array (or TPE's jobs), each trial's command and spec diff.
    The login node is asked (mount sources, the spec), nothing is written or submitted."""
    from taoremote.command import render_command
    from taoremote.sweep_setup import make_setup

    ctx, setup = open_login(g, make_setup(g, definition))
    try:
        plan = setup.plan
        limit = definition.get("max_parallel")
        per = int(definition.get("gpus_per_trial") or 1)
        if plan.search == "tpe":
            at_once = int(limit or TPE_PARALLEL)
            out(
                f"# sweep {name}: {plan.size} TPE trials, each its own Slurm job on {g.slurm} as TPE "
                f"suggests it (at most {at_once} at once), --gpus={per} each; nothing was submitted"
            )
        trials = sweep.initial_trials(plan)
        if trials:
            cap = f"%{limit}" if limit else ""
            out(
                f"# sweep {name}: one Slurm job array on {g.slurm}: --array=0-{len(trials) - 1}{cap}, "
                f"--gpus={per} per task; nothing was submitted"
            )
        for trial in trials:
            work = sweep.trial_work(plan, trial, setup.spec_text)
            out(f"# trial {trial.index} [{trial.describe()}]: array task {trial.index}")
            out(render_command(work.command))
            if work.spec_diff:
                out(work.spec_diff)
        return 0
    finally:
        ctx.backend.close()


def stop(g: Globals, store: SweepStore, name: str) -> int:
    """`sweep stop` of a Slurm sweep: cancel its jobs (the array whole, pending tasks too) and record every
    unfinished trial as stopped, so that a rerun never submits it."""
    from taoremote.fleet import open_backend

    info = store.sweep(name)
    assert info is not None
    store.request_stop(name)
    records = store.trials(name)
    ids = job_ids([r for r in records if r.state in LIVE], info.sweep_id)
    failed = False
    if ids:
        try:
            backend = open_backend(g, None)
            try:
                backend.stop(ids)
            finally:
                backend.close()
        except TaoRemoteError as exc:
            _say(f"error: {exc}")
            failed = True
    stopped = store.mark_unfinished_stopped(name, unknown_too=not failed)
    print(f"sweep {name}: {stopped} trial(s) stopped", flush=True)
    return 1 if failed else 0
