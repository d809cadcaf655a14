"""The Slurm backend's login node (DESIGN.md §6): the Executor that reaches it (this machine with `--slurm
local`, else SSH), what it is (home, Slurm, pyxis), the listing of the user's jobs there, and scancel.
slurm_submit.py adds the submit path on top, slurm.py the job management; nothing here knows whether the
login node is local or remote.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from taoremote.errors import SlurmError
from taoremote.executor import Completed, Executor
from taoremote.slurm_commands import (
    CANCEL_SCRIPT,
    INFO_SCRIPT,
    LoginInfo,
    parse_info,
    split_login_info,
    with_login_info,
)
from taoremote.slurm_script import Runtime

if TYPE_CHECKING:
    from taoremote.slurm_queue import Listing

QUERY_TIMEOUT_S = 30.0
CANCEL_TIMEOUT_S = 60.0  # scancel and the wait until Slurm has ended the job (within KillWait)
NO_SLURM_FIX = (
    "install the Slurm client tools (sbatch, squeue, scancel) on the login node and make sure a login "
    "shell finds them, or point --slurm at the cluster's login node"
)


@dataclass(frozen=True)
class SlurmOptions:
    sbatch_args: tuple[str, ...] = ()
    runtime: Runtime | None = None  # None: pyxis when srun offers --container-image, else docker


class SlurmLogin:
    """One login node: its facts, asked once per backend, the listing and scancel."""

    def __init__(self, executor: Executor, options: SlurmOptions = SlurmOptions()) -> None:
        self.executor = executor
        self.host = executor.host
        self.options = options
        self._info: LoginInfo | None = None
        self._probed: LoginInfo | None = None  # what a launch's probe brought along (LoginProbe)

    # ------------------------------------------------------------------------------------------ login node

    def login_info(self) -> LoginInfo:
        if self._info is None:
            info = self._probed
            if info is None:
                done = self.executor.run(("sh", "-c", INFO_SCRIPT), timeout=QUERY_TIMEOUT_S)
                info = parse_info(done.stdout)
            if not info.has_slurm:
                raise SlurmError("no Slurm here (sbatch/squeue not found)", host=self.host, fix=NO_SLURM_FIX)
            if not info.home.startswith("/"):
                raise SlurmError(f"the login directory {info.home!r} is not an absolute path", host=self.host)
            self._info = info
        return self._info

    def probe_runner(self) -> LoginProbe:
        """What runs a launch's preflight probe here: its one round trip also asks the login node's facts,
        so that the submit needs no query of its own."""
        return LoginProbe(self)

    def runtime(self) -> Runtime:
        return self.options.runtime or ("pyxis" if self.login_info().has_pyxis else "docker")

    def _run(
        self, argv: Sequence[str], *, timeout: float = QUERY_TIMEOUT_S, stdin: str | None = None
    ) -> Completed:
        return self.executor.run(argv, timeout=timeout, stdin=stdin)

    def cancel(self, slurm_ids: Sequence[str]) -> None:
        if slurm_ids:
            done = self._run(("sh", "-c", CANCEL_SCRIPT, "sh", *slurm_ids), timeout=CANCEL_TIMEOUT_S)
            if done.returncode != 0:
                raise SlurmError(f"scancel failed: {slurm_reason(done.stderr)}", host=self.host)

    # ------------------------------------------------------------------------------------------ listing

    def listing(self, timeout: float = QUERY_TIMEOUT_S) -> Listing:
        from taoremote import slurm_queue as q  # not on a submit's path: its start-up stays lean

        done = self._run(("sh", "-c", q.LIST_SCRIPT, "sh"), timeout=timeout)
        listing = q.parse_listing(done.stdout)
        if listing.squeue_rc == 127:
            raise SlurmError("no Slurm here (squeue not found)", host=self.host, fix=NO_SLURM_FIX)
        if listing.squeue_rc != 0 or done.returncode != 0:
            raise SlurmError(f"squeue failed: {slurm_reason(done.stderr)}", host=self.host)
        return listing

    def close(self) -> None:
        self.executor.close()


class LoginProbe:
    """Runs one `sh -c` command (the probe) asking the login node's facts on the way (launch.ProbeRunner)."""

    def __init__(self, login: SlurmLogin) -> None:
        self.login = login
        self.host = login.host

    def run(
        self, argv: Sequence[str], *, timeout: float | None = None, stdin: str | None = None
    ) -> Completed:
        done = self.login.executor.run(with_login_info(argv), timeout=timeout, stdin=stdin)
        info, rest = split_login_info(done.stdout)
        if info is not None:
            self.login._probed = info
        return replace(done, argv=tuple(argv), stdout=rest)


def slurm_reason(stderr: str) -> str:
    """Slurm's own reason: the last `error:` line (`sbatch: error: Batch job submission failed: ...`)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    last = (errors or lines or ["no reason given"])[-1]
    return last.split("error:", 1)[-1].strip() if "error:" in last else last


def say(message: str) -> None:
    with contextlib.suppress(OSError):
        print(f"taoremote: {message}", file=sys.stderr, flush=True)
