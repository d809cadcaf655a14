"""Every failure taoremote knows about, each with the exit code it maps to (DESIGN.md §3).

Each error carries what the user needs as fields: `host` (None: this machine), `problem` (what went
wrong, one line) and `fix` (what to do about it, when we know). `str(error)` renders them as the one
line the CLI prints, so no code ever builds or takes apart message text: a caller that must tell two
failures apart checks the class (the DockerError subclasses below), never the words.

A task's own failure is not here: its exit code is simply passed through.
Anything that is not a TaoRemoteError is a bug and is allowed to show a traceback.
"""

from __future__ import annotations

import signal

# Every preflight refusal ends with it: the check can be skipped by one who knows better.
SKIP_HINT = "--no-preflight skips this check"

# The canonical exit-code table: `--help`'s exit-code line and README.md's "Exit codes" table follow it
# (tests/unit/test_exit_codes.py). (code, meaning); "own" is the task's own exit code.
EXIT_CODES: tuple[tuple[str, str], ...] = (
    ("own", "the task ran: its own exit code"),
    ("1", "a job id that matches no job, or a failed check (`doctor`) or host (`list`, `stop`)"),
    ("2", "usage error: unknown task, bad option value"),
    ("68", "SSH connect, auth or host-key failure"),
    (
        "69",
        "docker missing, daemon down, image missing, pull/create failed; driver too old for the image; "
        "Slurm: sbatch refused the job (Slurm's reason), or no Slurm on the login node",
    ),
    ("78", "invalid config (every problem listed with its $.path)"),
    ("129", "SIGHUP: the terminal went away (the job keeps running)"),
    ("130", "Ctrl-C (the container is stopped first)"),
    ("141", "our output closed, e.g. `| head` (the foreground job is stopped)"),
    ("143", "SIGTERM (the container is stopped first)"),
    ("255", "SSH link lost while following (the job keeps running)"),
)


class TaoRemoteError(Exception):
    """Base class: where, what went wrong and what to do, rendered as one line; and an exit code."""

    exit_code = 1

    def __init__(self, problem: str, *, host: str | None = None, fix: str | None = None) -> None:
        # executors name this machine "local": it is no host to name in a message
        self.host = None if host in (None, "local") else host
        self.problem = problem
        self.fix = fix or None
        super().__init__(problem)

    def __str__(self) -> str:
        where = f"host {self.host}: " if self.host else ""
        return f"{where}{self.problem}" + (f"; {self.fix}" if self.fix else "")


class UsageError(TaoRemoteError):
    """The command line itself is wrong (unknown task, bad option value)."""

    exit_code = 2


class ConfigError(TaoRemoteError):
    """A config file is unreadable or invalid; the message lists every problem with its $.path."""

    exit_code = 78  # os.EX_CONFIG


class HostError(TaoRemoteError):
    """SSH could not connect, authenticate, or trust the host key."""

    exit_code = 68  # os.EX_NOHOST


class JobNotFoundError(TaoRemoteError):
    """An id given to stop/logs matches no taoremote job on the target host(s)."""

    exit_code = 1


class LinkLostError(TaoRemoteError):
    """The SSH link dropped while following a job; the job itself keeps running."""

    exit_code = 255


class Interrupted(TaoRemoteError):
    """SIGINT, SIGTERM or SIGHUP arrived and was dealt with (the container stopped, or left running
    with the way back printed). Exit 128 + signal number."""

    def __init__(self, problem: str, signum: int, *, host: str | None = None, fix: str | None = None) -> None:
        super().__init__(problem, host=host, fix=fix)
        self.exit_code = 128 + signum


# ------------------------------------------------------------------------------------------------ docker


class DockerError(TaoRemoteError):
    """No docker client, daemon down, image missing, pull or create failed (docker_errors.py reads
    docker's own text into the subclass that says which)."""

    exit_code = 69  # os.EX_UNAVAILABLE


class DockerMissing(DockerError):
    """No docker client on the host."""


class DaemonUnreachable(DockerError):
    """The docker client is there, but its daemon is not running or cannot be reached."""


class DockerPermission(DockerError):
    """The user may not use the daemon's socket."""


class DockerTimeout(DockerError):
    """A docker call got no answer within its deadline (a frozen daemon)."""


class ImageUnavailable(DockerError):
    """The image is not on the host and cannot be pulled (unknown, private, no registry)."""


class PortInUse(DockerError):
    """A port of DockerOptions.ports is taken on the host."""


class NameInUse(DockerError):
    """A container of this name exists already."""


class NoGpuRuntime(DockerError):
    """dockerd has no NVIDIA runtime, so `--gpus` cannot be honoured."""


class StartFailed(DockerError):
    """docker created the container but could not start it (unknown user, refused mount, ...)."""


class SlurmError(TaoRemoteError):
    """Slurm refused or could not be asked: no Slurm on the login node, sbatch rejected the job (bad
    partition, over a limit: Slurm's own reason), squeue/scancel failed."""

    exit_code = 69


# --------------------------------------------------------------------------------------------- preflight


class PreflightError(TaoRemoteError):
    """The host cannot run this image: no NVIDIA driver, driver too old, missing mount source.

    skippable: the refusal is the preflight's own judgement, so `--no-preflight` (SKIP_HINT) gets past it."""

    exit_code = 69

    def __init__(
        self, problem: str, *, host: str | None = None, fix: str | None = None, skippable: bool = False
    ) -> None:
        super().__init__(problem, host=host, fix=fix)
        self.skippable = skippable

    def __str__(self) -> str:
        return super().__str__() + (f"; {SKIP_HINT}" if self.skippable else "")


class DriverRequirement(PreflightError):
    """The container runtime itself refused the image: the host driver does not meet its
    NVIDIA_REQUIRE_* (nvidia-container-cli: requirement error)."""


# ----------------------------------------------------------------------------------------------- signals
# BaseException, not TaoRemoteError: no `except Exception` may eat them, and the job is dealt with first.


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM/SIGHUP (signals.py installs the handlers)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def problem(self) -> str:
        return "terminated"


class HungUp(Terminated):
    """SIGHUP: the user's terminal (or the session it ran in) went away. A job is left running and
    the way to reattach is printed, as when the SSH link to the host drops."""


class OutputClosed(Terminated):
    """Our stdout went away (`| head`, a closed `less`): nobody can watch the foreground job any more,
    so it is stopped like on SIGTERM, and we exit 141 as a process killed by SIGPIPE would."""

    def __init__(self, job_stopped: bool = False) -> None:
        super().__init__(signal.SIGPIPE)
        self.job_stopped = job_stopped

    @property
    def problem(self) -> str:
        return "output closed; the job was stopped" if self.job_stopped else "output closed"
