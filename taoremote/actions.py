"""What each CLI command does, as plain functions returning an exit code (cli.py stays thin).

Commands that take several hosts fan out in parallel, one connection and one docker call per host,
each host with its own deadline; an unreachable host is reported while the others still answer.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taoremote import redact
from taoremote.containers import LIVE_STATES, Job, match_job, unmatched_message
from taoremote.errors import HungUp, Interrupted, LinkLostError, PreflightError, UsageError
from taoremote.fleet import HOST_DEADLINE_S, HostResult, fan_out, fan_out_backends, open_backend
from taoremote.gpus import parse_gpus
from taoremote.output import Format, render, render_mapping

if TYPE_CHECKING:
    from taoremote.backend import JobBackend, Stopped
    from taoremote.config import MountsConfig
    from taoremote.executor import Executor
    from taoremote.paths import ResultsDir
    from taoremote.settings import Globals


def _err(message: str) -> None:
    print(redact.mask(f"taoremote: {message}"), file=sys.stderr)


def _out(text: str) -> None:
    print(redact.mask(text), flush=True)


# ---------------------------------------------------------------------------------------------- hosts


def _report_failures(results: Sequence[HostResult[Any]]) -> int:
    failed = [r for r in results if r.error is not None]
    for r in failed:
        _err(f"error: {r.error}")
    if failed and len(failed) == len(results) and len(results) == 1:
        return failed[0].error.exit_code  # type: ignore[union-attr]
    return 1 if failed else 0


def _single_host(g: Globals) -> str | None:
    if len(g.hosts) > 1:
        raise UsageError("this command runs on one host; give a single --host")
    return g.hosts[0] if g.hosts else None


# ---------------------------------------------------------------------------------------------- run


def run_task(argv: list[str], g: Globals) -> int:
    from taoremote import launch, tasks
    from taoremote.hosts import stdio_is_terminal
    from taoremote.plan import describe_plan, without_results_warning
    from taoremote.request import LaunchOptions, parse_task_argv

    host = _single_host(g)
    task_map = tasks.load_task_map(_user_task_config())
    group_help = tasks.group_help_request(argv, task_map)
    if group_help is not None:
        _out(group_help)
        return 0
    request = parse_task_argv(argv, task_map)
    for warning in request.warnings:
        _err(f"warning: {warning}")
    mounts = load_mounts(g)
    opts = LaunchOptions(
        host=host or (g.slurm if g.slurm != "local" else None),
        image=g.image,
        gpus=g.gpus,
        detach=g.detach,
        dry_run=g.dry_run,
        # on Slurm the probe runs on the login node, which has no GPU: `doctor --probe-node` judges the driver
        preflight=g.preflight and not g.slurm,
        terminal=stdio_is_terminal(),
        override_registry=os.environ.get("OVERRIDE_REGISTRY") or None,
    )
    needs_host = not g.dry_run or parse_gpus(g.gpus).kind == "auto"  # auto:N asks the host's GPUs
    # a Slurm dry run shows the batch script, whose job directory is under the login node's home
    backend = open_backend(g, host) if needs_host or g.slurm else None
    try:
        probe_on = backend.executor if backend is not None and needs_host else None
        plan = launch.plan_launch(request, mounts, task_map, opts, probe_on)
        if g.dry_run:
            # a backend that submits a script rather than `docker run` (Slurm) shows what it would submit
            describe = getattr(backend, "describe_launch", None)
            _out(describe(plan) if describe is not None else describe_plan(plan))
            return 0
        if os.environ.get("TAO_LAUNCHER_DEBUG") == "1":  # the launcher's debug switch: show the command
            _err(describe_plan(plan))
        for note in plan.notes:
            _err(f"note: {note}")
        assert backend is not None
        if plan.results and g.clean_results:
            _clean_results(backend.executor, plan.results, assume_yes=g.yes, terminal=opts.terminal)
            plan = without_results_warning(plan)
        for warning in plan.warnings:
            _err(f"warning: {warning}")
        try:
            launched = backend.launch(plan.spec, plan.env_values, pull=not plan.image_present)
        except LinkLostError as exc:
            reattach = f"the job keeps running. Reattach with: {_reattach(g, plan.spec.job_id)}"
            raise LinkLostError(exc.problem, host=exc.host, fix=reattach) from None
        except HungUp as exc:
            reattach = f"the job keeps running. Reattach with: {_reattach(g, plan.spec.job_id)}"
            raise Interrupted("the terminal hung up", exc.signum, fix=reattach) from None
        if launched.exit_code is None:  # detached: it runs on, known by its id
            _out(launched.job_id)
            return 0
        return launched.exit_code
    finally:
        if backend is not None:
            backend.close()


def _clean_results(ex: Executor, results: ResultsDir, *, assume_yes: bool, terminal: bool) -> None:
    """Every rule of what may be deleted is checked on the host, by the command that deletes
    (command.CLEAN_SCRIPT); a question first asks the host which directory that would be."""
    from taoremote.command import CLEAN_REFUSED, CLEAN_REFUSED_RC, build_clean_dir_argv

    def on_host(argv: tuple[str, ...]) -> str:
        result = ex.run(argv, timeout=600)
        refused = [line for line in result.stderr.splitlines() if line.startswith(CLEAN_REFUSED)]
        if result.returncode == CLEAN_REFUSED_RC and refused:
            reason = refused[-1].removeprefix(CLEAN_REFUSED).strip()
            raise UsageError(f"refusing to empty {results.container_path} on {ex.host}: {reason}")
        if result.returncode != 0:
            why = (result.stderr.strip().splitlines() or ["find failed"])[-1]
            raise PreflightError(
                f"could not empty {results.container_path} on {ex.host} ({why}); files a container wrote "
                "as root need root to delete - remove them with sudo, and set DockerOptions.user to avoid "
                "it next time"
            )
        return result.stdout.strip()

    expected = ""
    if not assume_yes:
        directory = on_host(build_clean_dir_argv(results.source, results.below, check_only=True))
        if not terminal:
            raise UsageError(
                f"--clean-results would delete everything in {directory} on {ex.host}; add --yes"
            )
        answer = input(f"Delete everything in {directory} on {ex.host}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            raise UsageError("results directory left as it is; not launching")
        expected = directory
    emptied = on_host(build_clean_dir_argv(results.source, results.below, expected=expected))
    _err(f"emptied {emptied} on {ex.host}")


def _reattach(g: Globals, job_id: str) -> str:
    import shlex

    parts = ["taoremote"]
    if g.ssh_config:
        parts += ["--ssh-config", g.ssh_config]
    parts += [a for h in g.hosts for a in ("--host", h)]
    parts += ["--slurm", g.slurm] if g.slurm else []
    parts += ["logs", "-f", job_id]
    return shlex.join(parts)


def load_mounts(g: Globals) -> MountsConfig:
    from taoremote import config

    home = os.path.expanduser("~")
    loaded = config.load_mounts_config(
        config.find_mounts_file(g.mounts, os.environ, home),
        redact.launching_environ(),
        cache_dir=config.default_cache_dir(os.environ, home),
    )
    redact.register(e.value for e in loaded.envs if e.secret)
    redact.hide_from_children(config.hidden_from_children(loaded))
    return loaded


def _user_task_config() -> str | None:
    from taoremote.tasks import user_config_path

    return user_config_path()


# ---------------------------------------------------------------------------------------------- manage


def list_cmd(g: Globals, *, include_stopped: bool, fmt: str) -> int:
    checked = _fmt(fmt)  # before any host is asked
    results = fan_out_backends(
        g, lambda b: b.list_jobs(include_stopped=include_stopped, timeout=HOST_DEADLINE_S, progress=True)
    )
    jobs = [job for r in results for job in (r.value or [])]
    # the table grows its progress and trial columns only when some job has them; JSON always has them
    shown = ListColumns(
        host=len(results) > 1 or bool(g.hosts),
        progress=checked == "json" or any(j.results for j in jobs),
        trial=any(j.sweep for j in jobs),
    )
    rows = [job_row(job, shown, checked) for job in jobs]
    if rows or any(r.error is None for r in results):
        _out(render(rows, checked))  # "No jobs." only when some host could actually say so
    return _report_failures(results)


@dataclass(frozen=True)
class ListColumns:
    host: bool
    progress: bool = False
    trial: bool = False


def job_row(job: Job, shown: ListColumns, fmt: Format = "table") -> dict[str, object]:
    """One job as `list` shows it. JSON: `epoch`/`max_epoch` (epochs done / total), `eta` (whole seconds
    left, as of the last status line; null once the job has ended), `metric` ({name, value}), null when
    unknown; `sweep`/`trial` for a sweep's trials. The table: PROGRESS `3/10`, ETA `12m`, METRIC
    `mAP=0.412`, TRIAL `NAME#3`."""
    row: dict[str, object] = {"host": job.host} if shown.host else {}
    row.update(
        {
            "job": job.job_id,
            "container_id": job.container_id[:12],
            "task": job.task,
            "status": job.status,
            "exit_code": job.exit_code if job.exit_code is not None else "",
        }
    )
    if shown.trial and fmt == "table":
        row["trial"] = f"{job.sweep}#{job.trial}" if job.sweep else ""
    elif job.sweep:
        row.update({"sweep": job.sweep, "trial": int(job.trial) if job.trial.isdigit() else job.trial})
    if shown.progress:
        row.update(_progress_cells(job, fmt))
    row.update({"gpus": job.gpus, "user": job.user, "command": job.command})
    return row


def _progress_cells(job: Job, fmt: Format) -> dict[str, object]:
    done = total = eta = metric = None
    if job.status_files:  # only then is there anything to parse: progress.py is not imported otherwise
        from taoremote import progress

        found = progress.job_progress(job.image, job.task, dict(job.status_files))
        if found is not None:
            done, total, metric = found.epoch, found.max_epoch, found.metric
            live = job.state in LIVE_STATES  # an ended job's last ETA is no ETA
            eta = round(found.eta) if live and found.eta is not None else None
    if fmt == "json":
        shown_metric = None if metric is None else {"name": metric.name, "value": metric.value}
        return {"epoch": done, "max_epoch": total, "eta": eta, "metric": shown_metric}
    cells: dict[str, object] = {"progress": "", "eta": "", "metric": ""}
    if done is not None or total is not None:
        cells["progress"] = f"{'?' if done is None else done}/{'?' if total is None else total}"
    if eta is not None:
        from taoremote.progress import eta_text

        cells["eta"] = eta_text(eta)
    if metric is not None:
        from taoremote.progress import metric_text

        cells["metric"] = metric_text(metric)
    return cells


def current_user() -> str:
    from taoremote.launch import local_user

    return local_user()


def stop_cmd(g: Globals, wanted: list[str], *, stop_all: bool, all_users: bool = False) -> int:
    from taoremote.backend import Stopped

    # on a shared GPU host --all means *my* jobs; colleagues' multi-day runs need --all-users
    user = None if all_users else current_user()

    def work(b: JobBackend) -> Stopped:
        return Stopped(b.stop_all(user=user), []) if stop_all else b.stop(wanted)

    results = fan_out_backends(g, work, deadline=3 * HOST_DEADLINE_S)  # --all may take a second pass
    answers = [(r.host, r.value) for r in results if r.value is not None]
    for host, answer in answers:
        for job in answer.stopped:
            _out(f"stopped {job.job_id} ({job.name}){' on ' + host if host != 'local' else ''}")
    code = _report_failures(results)
    # an id is "not found" only if every host answered; otherwise it may be on the silent one
    found = {
        i
        for _, answer in answers
        for i in wanted
        if match_job(answer.known, i) is not None or i in answer.groups
    }
    missing = [i for i in wanted if i not in found] if len(answers) == len(results) else []
    known_everywhere = [job for _, answer in answers for job in answer.known]
    for ident in missing:
        _err(f"error: {unmatched_message(known_everywhere, ident, _targets(g))}")
    if stop_all and code == 0 and not any(answer.stopped for _, answer in answers):
        _out("No running taoremote jobs.")
    return code or (1 if missing else 0)


def _targets(g: Globals) -> str:
    if g.slurm:
        return f"the Slurm cluster of {g.slurm}"
    return ", ".join(g.hosts) if g.hosts else "this machine"


def logs_cmd(g: Globals, ident: str, *, follow: bool) -> int:
    backend = open_backend(g, _single_host(g))
    try:
        return backend.logs(backend.find(ident), follow=follow)
    finally:
        backend.close()


def prune_cmd(g: Globals, *, all_users: bool = False) -> int:
    user = None if all_users else current_user()
    results = fan_out_backends(g, lambda b: b.prune(user=user))
    for r in results:
        for job in r.value or []:
            _out(f"removed {job.job_id} ({job.status}){' on ' + r.host if r.host != 'local' else ''}")
    return _report_failures(results)


def info_cmd(g: Globals, *, verbose: bool, fmt: str) -> int:
    from taoremote import config, tasks

    _fmt(fmt)
    task_map = tasks.load_task_map(_user_task_config())
    mounts_path = config.find_mounts_file(g.mounts, os.environ, os.path.expanduser("~"))
    mounts = load_mounts(g)
    data: dict[str, object] = {
        "version": _version(),
        "mounts_file": mounts_path or "(none: no mounts, no envs)",
        "task_map": task_map.source,
        "override_registry": os.environ.get("OVERRIDE_REGISTRY") or "",
        "hosts": list(g.hosts) or ["local"],
        "task_groups": sorted(k for k in task_map.groups if tasks.is_task_group(task_map, k)),
        "mounts": [f"{m.source} -> {m.destination}{' (ro)' if m.read_only else ''}" for m in mounts.mounts],
        "envs": [
            f"{e.name}{' (secret)' if e.secret else ''}{' from $' + e.from_env if e.from_env else ''}"
            for e in mounts.envs
        ],
    }
    if verbose:
        data["tasks"] = {
            f"{group} {task}": str(ref)
            for group, entries in task_map.groups.items()
            for task, ref in sorted(entries.items())
        }
    if fmt == "json":
        _out(render_mapping(data, "json"))
        return 0
    tasks_view = data.pop("tasks", None)
    _out(render_mapping(data, "table"))
    if isinstance(tasks_view, dict):
        rows = [{"task": k, "image": v} for k, v in tasks_view.items()]
        _out("")
        _out(render(rows, "table"))
    return 0


def _version() -> str:
    from taoremote import __version__

    return __version__


def doctor_cmd(g: Globals, *, fmt: str, probe_node: bool = False) -> int:
    from taoremote import doctor, tasks

    task_map = tasks.load_task_map(_user_task_config())
    override = os.environ.get("OVERRIDE_REGISTRY") or None
    images = [g.image] if g.image else doctor.task_images(task_map.groups, override)
    mounts = load_mounts(g)
    if g.slurm:
        from taoremote import slurm_doctor

        results = fan_out_backends(
            g, lambda b: slurm_doctor.check_cluster(b, images, mounts, probe_node=probe_node), deadline=900
        )
    elif probe_node:
        raise UsageError("--probe-node goes with --slurm LOGIN (on a host, doctor probes the host itself)")
    else:
        results = fan_out(g, lambda ex: doctor.check_host(ex, images, mounts))
    rows, failed = doctor.verdict_rows(results, _fmt(fmt))
    _out(render(rows, _fmt(fmt), empty="No checks ran."))
    if failed:
        _err(f"{failed} required check(s) failed")
    return 1 if failed else 0


def _fmt(fmt: str) -> Format:
    if fmt not in ("table", "json"):
        raise UsageError(f"--format {fmt!r}: expected table or json")
    return "json" if fmt == "json" else "table"
