"""`taoremote [group] task …`: the task request planned against the host's one probe, `--clean-results`,
then the launch through the job backend, and the reattach command when the link or the terminal goes.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from taoremote.actions import err, load_mounts, out, single_host, user_task_config
from taoremote.errors import HungUp, Interrupted, LinkLostError, PreflightError, UsageError
from taoremote.fleet import open_backend
from taoremote.gpus import parse_gpus

if TYPE_CHECKING:
    from taoremote.executor import Executor
    from taoremote.paths import ResultsDir
    from taoremote.settings import Globals


def run_task(argv: list[str], g: Globals) -> int:
    from taoremote import launch, tasks
    from taoremote.hosts import stdio_is_terminal
    from taoremote.plan import describe_plan, without_results_warning
    from taoremote.request import LaunchOptions, parse_task_argv

    host = single_host(g)
    task_map = tasks.load_task_map(user_task_config())
    group_help = tasks.group_help_request(argv, task_map)
    if group_help is not None:
        out(group_help)
        return 0
    request = parse_task_argv(argv, task_map)
    for warning in request.warnings:
        err(f"warning: {warning}")
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
        inspect_image=not g.slurm,  # a GPU node pulls it: the login node's images mean nothing
    )
    needs_host = not g.dry_run or parse_gpus(g.gpus).kind == "auto"  # auto:N asks the host's GPUs
    # a Slurm dry run shows the batch script, whose job directory is under the login node's home
    backend = open_backend(g, host) if needs_host or g.slurm else None
    try:
        probe_on = None
        if backend is not None and needs_host:
            # a backend may ask its own facts on the probe's round trip (Slurm: the login node's)
            runner = getattr(backend, "probe_runner", None)
            probe_on = runner() if runner is not None else backend.executor
        plan = launch.plan_launch(request, mounts, task_map, opts, probe_on)
        if g.dry_run:
            # a backend that submits a script rather than `docker run` (Slurm) shows what it would submit
            describe = getattr(backend, "describe_launch", None)
            out(describe(plan) if describe is not None else describe_plan(plan))
            return 0
        if os.environ.get("TAO_LAUNCHER_DEBUG") == "1":  # the launcher's debug switch: show the command
            err(describe_plan(plan))
        for note in plan.notes:
            err(f"note: {note}")
        assert backend is not None
        if plan.results and g.clean_results:
            _clean_results(backend.executor, plan.results, assume_yes=g.yes, terminal=opts.terminal)
            plan = without_results_warning(plan)
        for warning in plan.warnings:
            err(f"warning: {warning}")
        try:
            launched = backend.launch(plan.spec, plan.env_values, pull=not plan.image_present)
        except LinkLostError as exc:
            reattach = f"the job keeps running. Reattach with: {_reattach(g, plan.spec.job_id)}"
            raise LinkLostError(exc.problem, host=exc.host, fix=reattach) from None
        except HungUp as exc:
            reattach = f"the job keeps running. Reattach with: {_reattach(g, plan.spec.job_id)}"
            raise Interrupted("the terminal hung up", exc.signum, fix=reattach) from None
        if launched.exit_code is None:  # detached: it runs on, known by its id
            out(launched.job_id)
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
    err(f"emptied {emptied} on {ex.host}")


def _reattach(g: Globals, job_id: str) -> str:
    import shlex

    parts = ["taoremote"]
    if g.ssh_config:
        parts += ["--ssh-config", g.ssh_config]
    parts += [a for h in g.hosts for a in ("--host", h)]
    parts += ["--slurm", g.slurm] if g.slurm else []
    parts += ["logs", "-f", job_id]
    return shlex.join(parts)
