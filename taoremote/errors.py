"""Every failure taoremote knows about, each with the exit code it maps to (DESIGN.md §3).

A task's own failure is not here: its exit code is simply passed through.
Anything that is not a TaoRemoteError is a bug and is allowed to show a traceback.
"""

from __future__ import annotations


class TaoRemoteError(Exception):
    """Base class: one clear line for the user and an exit code."""

    exit_code = 1


class UsageError(TaoRemoteError):
    """The command line itself is wrong (unknown task, bad option value)."""

    exit_code = 2


class ConfigError(TaoRemoteError):
    """A config file is unreadable or invalid; the message lists every problem with its $.path."""

    exit_code = 78  # os.EX_CONFIG


class HostError(TaoRemoteError):
    """SSH could not connect, authenticate, or trust the host key."""

    exit_code = 68  # os.EX_NOHOST


class DockerError(TaoRemoteError):
    """No docker client, daemon down, image missing, pull or create failed."""

    exit_code = 69  # os.EX_UNAVAILABLE


class PreflightError(TaoRemoteError):
    """The host cannot run this image: no NVIDIA driver, driver too old, missing mount source."""

    exit_code = 69


class JobNotFoundError(TaoRemoteError):
    """An id given to stop/logs matches no taoremote job on the target host(s)."""

    exit_code = 1


class LinkLostError(TaoRemoteError):
    """The SSH link dropped while following a job; the job itself keeps running."""

    exit_code = 255


class Interrupted(TaoRemoteError):
    """SIGINT or SIGTERM arrived; the container was stopped. Exit 128 + signal number."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum
