"""Executors: with ssh.py, the only modules that start processes or open SSH connections.

LocalExecutor runs argv lists with subprocess (never a shell). ssh.SshExecutor runs the same argv
on a remote host, shell-joined exactly once; ssh.py (fabric, paramiko) is imported only when a
remote host is used (they cost more start-up time than everything else together).
Both return the same Completed value, so jobs.py never needs to know where it runs.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from taoremote.errors import DockerError
from taoremote.signals import HungUp


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

    def run(self, argv: Sequence[str], *, timeout: float | None = None) -> Completed:
        """Run to completion, output captured."""
        ...

    def stream(
        self,
        argv: Sequence[str],
        *,
        tty: bool = False,
    ) -> int:
        """Run with output going to our stdout/stderr; return the exit code.

        An interruption ends the command (locally the child is reaped) and propagates; stopping the
        job is the caller's business (jobs.launch_job), so a reattached `logs -f` leaves it running.
        """
        ...

    def run_visible(self, argv: Sequence[str]) -> Completed:
        """Run with stdout shown live (progress) and stderr captured (to turn into one clear error)."""
        ...

    def hand_off_env(self, values: Mapping[str, str]) -> str | None:
        """Write the values to a private 0600 env-file on the host; its path (None: no values)."""
        ...

    def close(self) -> None: ...


class LocalExecutor:
    host = "local"
    follow_detached = False

    def run(self, argv: Sequence[str], *, timeout: float | None = None) -> Completed:
        # Own session, and never killed on Ctrl-C: a `docker create` half-way through must finish (and
        # its wrapper delete the env-file) so that the caller can then stop and remove it by name.
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                start_new_session=True,
            )
        except FileNotFoundError:
            raise _missing_binary(argv[0]) from None
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise DockerError(f"`{' '.join(argv[:3])}` did not answer within {timeout:.0f} s") from None
        except BaseException:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=60)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            raise
        return Completed(self.host, tuple(argv), proc.returncode, out, err)

    def stream(
        self,
        argv: Sequence[str],
        *,
        tty: bool = False,
    ) -> int:
        # Without a terminal the child gets its own session: Ctrl-C then reaches only us, and we stop
        # the container deliberately instead of racing docker's own signal proxy. With a terminal the
        # child must stay in our foreground group to own it (interactive shells handle ^C themselves).
        try:
            proc = subprocess.Popen(list(argv), start_new_session=not tty)
        except FileNotFoundError:
            raise _missing_binary(argv[0]) from None
        try:
            return proc.wait()
        except HungUp:
            raise  # the terminal is gone, not the user's wish to stop: the job goes on
        except BaseException:
            proc.terminate()  # the client only: `docker start -a` passes it on, `logs -f` just ends
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise

    def run_visible(self, argv: Sequence[str]) -> Completed:
        try:
            proc = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace"
            )
        except FileNotFoundError:
            raise _missing_binary(argv[0]) from None
        try:
            _, err = proc.communicate()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        return Completed(self.host, tuple(argv), proc.returncode, "", err)

    def hand_off_env(self, values: Mapping[str, str]) -> str | None:
        """A 0600 env-file in a private temp dir, deleted once the container exists. Not `-e NAME` with
        the value in the docker client's environment: DOCKER_HOST, HOME, PATH or a proxy variable in
        Envs would then reconfigure the client itself."""
        if not values:
            return None
        import tempfile

        from taoremote.command import format_env_file

        directory = tempfile.mkdtemp(prefix="taoremote-env-")  # mode 0700
        path = os.path.join(directory, "env")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(format_env_file(values))
        return path

    def close(self) -> None:
        return None


def _missing_binary(name: str) -> DockerError:
    if name == "docker":
        return DockerError(
            "docker: command not found on this machine; "
            "install Docker Engine (docs.docker.com/engine/install)"
        )
    return DockerError(f"{name}: command not found")


def stdio_is_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def open_executor(host: str | None, *, ssh_config: str | None = None) -> Executor:
    if host is None or host in ("local", "localhost-docker"):
        return LocalExecutor()
    from taoremote.ssh import SshExecutor  # deferred: fabric/paramiko cost more start-up than the rest

    return SshExecutor(host, ssh_config=ssh_config)
