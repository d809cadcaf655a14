"""Before a sweep queues anything: the definition, the plan, and every host checked (the probe: mount sources,
the spec, the driver; the spec read on each host and found the same; no trial dir that this sweep did not
create holds anything). The `--dry-run` report. Used by sweep_run.py (the driver) and sweep_cmds.py."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from taoremote import paths, sweep, sweep_poll
from taoremote.config import Mount
from taoremote.errors import DockerError, PreflightError, TaoRemoteError, UsageError
from taoremote.progress import framework_of, status_path
from taoremote.trials import trial_dir_of

if TYPE_CHECKING:
    from taoremote.backend import JobBackend
    from taoremote.command import RunSpec
    from taoremote.plan import Prepared
    from taoremote.settings import Globals
    from taoremote.sweep_state import TrialRecord

PROBE_JOB_ID = "sweep-probe"


@dataclass
class HostContext:
    """One host of the sweep: its backend, the run spec every trial there starts from, its mounts."""

    name: str  # "local" for this machine
    backend: JobBackend
    template: RunSpec
    env_values: Mapping[str, str]
    mounts: tuple[Mount, ...]  # as written ("~" is the host's $HOME, expanded by the host's shell)
    bound: tuple[Mount, ...]  # as the probe resolved them: for the results label
    pull: bool = False  # the image is missing there: the first launch pulls it
    up: bool = True
    down_since: float | None = None
    retry_at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def host_path(self, container_path: str, *, resolved: bool = False) -> str:
        mapped = paths.host_path_of(container_path, self.bound if resolved else self.mounts)
        if mapped is None:
            raise UsageError(f"{container_path} is under no mount: a trial's files must be on a mount")
        return mapped[1]


@dataclass(frozen=True)
class Setup:
    plan: sweep.SweepPlan
    prepared: Prepared
    spec_text: str | None


def target_of(host: str) -> str | None:
    return None if host == "local" else host


def hosts_of(definition: Mapping[str, Any]) -> list[str]:
    return list(definition.get("hosts") or []) or ["local"]


def make_setup(g: Globals, definition: Mapping[str, Any]) -> Setup:
    """The plan: the task, image and mounts (a usage or config error comes out here, before any host)."""
    from taoremote import actions, tasks
    from taoremote.plan import prepare
    from taoremote.request import LaunchOptions, parse_task_argv

    task_map = tasks.load_task_map(tasks.user_config_path())
    request = parse_task_argv(definition["task"], task_map)
    opts = LaunchOptions(
        image=g.image,
        # the probe checks the driver for every GPU; each trial gets its own `device=`. On Slurm the probe
        # runs on the login node (mount sources; no GPU there) and each task asks Slurm for its GPUs
        gpus=str(definition.get("gpus_per_trial") or 1) if g.slurm else "all",
        detach=True,
        preflight=g.preflight and not g.slurm,
        override_registry=os.environ.get("OVERRIDE_REGISTRY") or None,
        inspect_image=not g.slurm,
    )
    prepared = prepare(request, actions.load_mounts(g), task_map, opts)
    plan = sweep.make_plan(definition, request, framework_of(prepared.image))
    return Setup(plan, prepared, None)


def open_host(g: Globals, setup: Setup, host: str) -> tuple[HostContext, str | None]:
    """Probe HOST as a launch would (a missing mount source or spec is refused here), and read the spec."""
    from taoremote.fleet import open_backend
    from taoremote.launch import local_user, run_probe
    from taoremote.plan import finish

    backend = open_backend(g, target_of(host))
    try:
        probe = run_probe(backend.executor, setup.prepared)
        plan = finish(
            setup.prepared,
            probe,
            host=host,
            job_id=PROBE_JOB_ID,
            now=datetime.now(timezone.utc),
            user=local_user(),
        )
        bound = tuple(Mount(m.source, m.destination, m.read_only) for m in plan.spec.mounts)
        ctx = HostContext(host, backend, plan.spec, plan.env_values, setup.prepared.mounts, bound)
        ctx.pull = not plan.image_present
        text = None
        if setup.plan.spec_kind == "protobuf" and setup.plan.spec_path:
            result = backend.executor.run(
                sweep_poll.build_read_argv(ctx.host_path(setup.plan.spec_path)), timeout=30
            )
            if result.returncode != 0:
                raise PreflightError(
                    f"cannot read the spec {setup.plan.spec_path}: {result.stderr.strip()[:200]}", host=host
                )
            text = result.stdout
        return ctx, text
    except BaseException:
        backend.close()
        raise


def open_hosts(g: Globals, setup: Setup, hosts: Sequence[str]) -> tuple[list[HostContext], Setup]:
    """Every host at once; any failure refuses the sweep (nothing is queued yet). The spec must read the
    same on every host: trials are meant to differ in the swept values only."""
    results: dict[str, tuple[HostContext, str | None] | BaseException] = {}

    def one(host: str) -> None:
        try:
            results[host] = open_host(g, setup, host)
        except TaoRemoteError as exc:
            results[host] = exc

    threads = [threading.Thread(target=one, args=(h,), daemon=True) for h in hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    opened = [r for r in results.values() if isinstance(r, tuple)]
    failed = [r for r in results.values() if isinstance(r, BaseException)] or (
        [TaoRemoteError("a host did not answer within 120 s")] if len(results) < len(hosts) else []
    )
    if failed:
        for ctx, _ in opened:
            ctx.backend.close()
        raise failed[0]
    texts = {text for _, text in opened}
    if len(texts) > 1:
        for ctx, _ in opened:
            ctx.backend.close()
        raise UsageError(f"the spec {setup.plan.spec_path} differs between the hosts; make them the same")
    sweep.check_spec(setup.plan, next(iter(texts)))
    ordered = [results[h][0] for h in hosts]  # type: ignore[index]
    return ordered, replace(setup, spec_text=next(iter(texts)))


def check_trial_dirs(contexts: Sequence[HostContext], plan: sweep.SweepPlan, indexes: Sequence[int]) -> None:
    """A trial dir that this sweep has not used yet must be empty or absent on every host."""
    for ctx in contexts:
        dirs = [ctx.host_path(trial_dir_of(plan.results_dir, i)) for i in indexes]
        if not dirs:
            return
        result = ctx.backend.executor.run(sweep_poll.build_nonempty_dirs_argv(dirs), timeout=60)
        full = [line for line in result.stdout.splitlines() if line.strip()]
        if full:
            where = "" if ctx.name == "local" else f" on {ctx.name}"
            raise UsageError(
                f"{len(full)} trial dir(s) of this sweep hold files it did not write{where}: "
                f"{', '.join(full[:3])}; use another results dir or sweep name, or empty them"
            )


def in_parallel(hosts: Sequence[str], work: Callable[[str], None], *, deadline: float) -> None:
    """WORK for every host at once; a host that fails (a TaoRemoteError) or hangs costs only itself."""

    def guarded(host: str) -> None:
        with contextlib.suppress(TaoRemoteError):
            work(host)

    threads = [threading.Thread(target=guarded, args=(h,), daemon=True) for h in hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(deadline)


def stop_trials(hosts: Sequence[HostContext], name: str) -> None:
    """Stop every live container of sweep NAME that this user launched, on every host at once."""
    from taoremote.launch import local_user

    argv = sweep_poll.build_stop_sweep_argv(name, local_user())
    by_name = {h.name: h for h in hosts}

    def one(host: str) -> None:
        by_name[host].backend.executor.run(argv, timeout=60)

    in_parallel(list(by_name), one, deadline=70)


def launch_trial(ctx: HostContext, work: sweep.TrialWork, spec: RunSpec) -> None:
    """Write the trial's spec copy on its host, then start its container (detached). Trials freed at once
    start side by side; only while the image is missing is one launch at a time (it is pulled once, and
    the others wait for it)."""
    if work.spec_copy is not None:
        path, text = work.spec_copy
        argv = sweep_poll.build_write_file_argv(ctx.host_path(path))
        wrote = ctx.backend.executor.run(argv, timeout=30, stdin=text)
        if wrote.returncode != 0:
            raise DockerError(f"cannot write {path}: {wrote.stderr.strip()[:200]}", host=ctx.name)
    with ctx.lock:
        if ctx.pull:
            ctx.backend.launch(spec, ctx.env_values, pull=True)
            ctx.pull = False
            return
    ctx.backend.launch(spec, ctx.env_values, pull=False)


def status_host_path(ctx: HostContext, plan: sweep.SweepPlan, index: int) -> str:
    return ctx.host_path(status_path(trial_dir_of(plan.results_dir, index), plan.framework))


def trial_spec(
    ctx: HostContext,
    plan: sweep.SweepPlan,
    work: sweep.TrialWork,
    record: TrialRecord,
    sweep_name: str,
    gpus: str,
) -> RunSpec:
    """The detached run of one trial: the host's template with the trial's command, job id, GPUs, labels."""
    from taoremote.plan import command_label

    labels = dict(ctx.template.labels)
    labels.update(
        {
            "taoremote.command": command_label(work.command),
            "taoremote.gpus": gpus,
            "taoremote.started": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            sweep_poll.SWEEP_LABEL: sweep_name,
            sweep_poll.TRIAL_LABEL: str(record.index),
            sweep_poll.RESULTS_LABEL: ctx.host_path(work.trial_dir, resolved=True),
        }
    )
    return replace(
        ctx.template,
        command=work.command,
        job_id=record.job_id,
        gpus=gpus,
        detach=True,
        tty=False,
        interactive=False,
        labels=tuple(labels.items()),
    )
