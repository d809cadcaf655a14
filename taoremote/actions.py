"""What each CLI command does, as plain functions returning an exit code (cli.py stays thin): list, stop,
logs, prune and doctor here, with what every command shares (messages, the mounts file, --format); the
run command is run.py, `info` is info.py, a job's `list` row is list_rows.py.

Commands that take several hosts fan out in parallel, one connection and one docker call per host,
each host with its own deadline; an unreachable host is reported while the others still answer.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from taoremote import redact
from taoremote.containers import match_job, unmatched_message
from taoremote.errors import UsageError
from taoremote.fleet import HOST_DEADLINE_S, HostResult, fan_out, fan_out_backends, open_backend
from taoremote.output import Format, render

if TYPE_CHECKING:
    from taoremote.backend import JobBackend, Stopped
    from taoremote.config import MountsConfig
    from taoremote.settings import Globals


def err(message: str) -> None:
    print(redact.mask(f"taoremote: {message}"), file=sys.stderr)


def out(text: str) -> None:
    print(redact.mask(text), flush=True)


# ---------------------------------------------------------------------------------------------- hosts


def report_failures(results: Sequence[HostResult[Any]]) -> int:
    failed = [r for r in results if r.error is not None]
    for r in failed:
        err(f"error: {r.error}")
    if failed and len(failed) == len(results) and len(results) == 1:
        return failed[0].error.exit_code  # type: ignore[union-attr]
    return 1 if failed else 0


def single_host(g: Globals) -> str | None:
    if len(g.hosts) > 1:
        raise UsageError("this command runs on one host; give a single --host")
    return g.hosts[0] if g.hosts else None


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


def user_task_config() -> str | None:
    from taoremote.tasks import user_config_path

    return user_config_path()


# ---------------------------------------------------------------------------------------------- manage


def list_cmd(g: Globals, *, include_stopped: bool, fmt: str) -> int:
    from taoremote.list_rows import ListColumns, job_row

    checked = check_format(fmt)  # before any host is asked
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
        out(render(rows, checked))  # "No jobs." only when some host could actually say so
    return report_failures(results)


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
            out(f"stopped {job.job_id} ({job.name}){' on ' + host if host != 'local' else ''}")
    code = report_failures(results)
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
        err(f"error: {unmatched_message(known_everywhere, ident, _targets(g))}")
    if stop_all and code == 0 and not any(answer.stopped for _, answer in answers):
        out("No running taoremote jobs.")
    return code or (1 if missing else 0)


def _targets(g: Globals) -> str:
    if g.slurm:
        return f"the Slurm cluster of {g.slurm}"
    return ", ".join(g.hosts) if g.hosts else "this machine"


def logs_cmd(g: Globals, ident: str, *, follow: bool) -> int:
    backend = open_backend(g, single_host(g))
    try:
        return backend.logs(backend.find(ident), follow=follow)
    finally:
        backend.close()


def prune_cmd(g: Globals, *, all_users: bool = False) -> int:
    user = None if all_users else current_user()
    results = fan_out_backends(g, lambda b: b.prune(user=user))
    for r in results:
        for job in r.value or []:
            out(f"removed {job.job_id} ({job.status}){' on ' + r.host if r.host != 'local' else ''}")
    return report_failures(results)


def doctor_cmd(g: Globals, *, fmt: str, probe_node: bool = False) -> int:
    from taoremote import doctor, tasks

    task_map = tasks.load_task_map(user_task_config())
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
    rows, failed = doctor.verdict_rows(results, check_format(fmt))
    out(render(rows, check_format(fmt), empty="No checks ran."))
    if failed:
        err(f"{failed} required check(s) failed")
    return 1 if failed else 0


def check_format(fmt: str) -> Format:
    if fmt not in ("table", "json"):
        raise UsageError(f"--format {fmt!r}: expected table or json")
    return "json" if fmt == "json" else "table"
