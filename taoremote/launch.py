"""What a launch needs from outside plan.py, which is pure: the host probe run through the Executor, and
what only this machine knows (a fresh job id, the clock, the user, and where a local dry run's mount
sources are). plan_launch strings them together: prepare → probe → finish.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Protocol

from taoremote.config import Mount, MountsConfig
from taoremote.errors import PreflightError
from taoremote.executor import Completed
from taoremote.plan import LaunchPlan, Prepared, finish, prepare, probe_argv, read_probe
from taoremote.request import LaunchOptions, TaskRequest
from taoremote.tasks import TaskMap

if TYPE_CHECKING:
    from taoremote.probe import Probe


class ProbeRunner(Protocol):
    """What the probe needs of a host: an Executor, or a backend's runner that asks its own facts on the
    same round trip (slurm_login.LoginProbe)."""

    host: str

    def run(
        self, argv: Sequence[str], *, timeout: float | None = None, stdin: str | None = None
    ) -> Completed: ...


def plan_launch(
    request: TaskRequest,
    config: MountsConfig,
    task_map: TaskMap,
    opts: LaunchOptions,
    ex: ProbeRunner | None,
) -> LaunchPlan:
    """ex is None for a dry run: nothing is asked of the host, sources are shown as written (resolved on
    this machine when it is the one that would run the job)."""
    prepared = prepare(request, config, task_map, opts)
    probe = run_probe(ex, prepared) if ex is not None else None
    host = ex.host if ex is not None else (opts.host or "local")
    local_dry_run = ex is None and opts.host is None
    return finish(
        prepared,
        probe,
        host=host,
        job_id=os.urandom(4).hex(),  # what secrets.token_hex(4) returns, without its ~4 ms import (hmac)
        now=datetime.now(timezone.utc),
        user=local_user(),
        sources=local_sources(prepared.mounts) if local_dry_run else None,
    )


def run_probe(ex: ProbeRunner, prepared: Prepared) -> Probe:
    result = ex.run(probe_argv(prepared), timeout=60)
    if result.returncode != 0:
        raise PreflightError(f"the preflight probe failed: {result.stderr.strip()[:300]}", host=ex.host)
    return read_probe(prepared, result.stdout, host=ex.host)


def local_sources(mounts: Sequence[Mount]) -> dict[str, str]:
    """Mount sources as docker on this machine would get them: `~` expanded, relative to the working dir."""
    return {m.source: os.path.abspath(os.path.expanduser(m.source)) for m in mounts}


def local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
