"""The executor contract: what jobs.py may ask of a host, and the one result value it gets back.

hosts.LocalExecutor and ssh.SshExecutor implement it; kept apart from both so that neither needs the
other (no import cycle) and a fake can implement it in tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Completed:
    host: str
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class Executor(Protocol):
    host: str
    # True where the link to the host can drop (SSH): jobs then start detached and are followed,
    # so a lost connection never takes the job with it.
    follow_detached: bool

    def run(
        self, argv: Sequence[str], *, timeout: float | None = None, stdin: str | None = None
    ) -> Completed:
        """Run to completion, output captured; stdin: what the command reads (else nothing)."""
        ...

    def stream(
        self,
        argv: Sequence[str],
        *,
        tty: bool = False,
    ) -> int:
        """Run with output going to our stdout/stderr; return the exit code.

        An interruption ends the command (locally the child is reaped) and propagates; stopping the
        job is the caller's business (docker_launch.launch_job), so a reattached `logs -f` leaves it running.
        """
        ...

    def stream_answered(self, argv: Sequence[str], *, marker: str) -> int | None:
        """stream() for a command that ends by printing MARKER and a number on stderr, then waits for a
        line on its stdin before it finishes (command.FOLLOW_WAIT_RM): that line is kept from our stderr
        and answered; the number, or None when the command ended without it. Only executors that
        follow detached jobs (follow_detached) are asked."""
        ...

    def run_visible(self, argv: Sequence[str]) -> Completed:
        """Run with stdout shown live (progress) and stderr captured (to turn into one clear error)."""
        ...

    def hand_off_env(self, content: str) -> str:
        """A private 0600 env-file on the host for this content; its path. Locally it is written at
        once; over SSH the command that creates the container writes it (see pending_env_file)."""
        ...

    def pending_env_file(self, path: str) -> str | None:
        """The content that the command using `path` must write there from its stdin (None: the file
        is on the host already): no SFTP needed, and nothing on the host before or after that command."""
        ...

    def close(self) -> None: ...
