"""Executors: with ssh.py and ssh_link.py, the only modules that start processes or open SSH connections.

LocalExecutor runs argv lists with subprocess (never a shell). ssh.SshExecutor runs the same argv
on a remote host, shell-joined exactly once; ssh.py (fabric, paramiko) is imported only when a
remote host is used (they cost more start-up time than everything else together).
Both return the same Completed value, so jobs.py never needs to know where it runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence

from taoremote.docker_errors import docker_missing
from taoremote.errors import DockerError, DockerTimeout, HostError, HungUp
from taoremote.executor import Completed, Executor

__all__ = ["Completed", "Executor", "LocalExecutor", "evaluate_ssh_config", "open_executor"]


class LocalExecutor:
    host = "local"
    follow_detached = False

    def __init__(self) -> None:
        self._env_files: list[str] = []  # deleted by the command that reads them, or at close()

    def run(
        self, argv: Sequence[str], *, timeout: float | None = None, stdin: str | None = None
    ) -> Completed:
        # Own session, and not killed at once on Ctrl-C: a `docker create` half-way through should finish
        # so that the caller can then stop and remove it by name. A daemon that does not answer within
        # the grace gets the call killed: Ctrl-C is answered in seconds, never after a deadline.
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                start_new_session=True,
            )
        except FileNotFoundError:
            raise _missing_binary(argv[0]) from None
        try:
            out, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            raise DockerTimeout(f"`{_what(argv)}` did not answer within {timeout:.0f} s") from None
        except HungUp:
            # nobody is waiting for an answer any more, but the job should still come into being
            try:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.communicate(timeout=timeout or INTERRUPTED_CALL_GRACE_S)
            finally:  # a second signal during the grace: the call must not finish behind our back
                _kill_group(proc)
            raise
        except BaseException:
            try:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.communicate(timeout=INTERRUPTED_CALL_GRACE_S)
            finally:  # a second Ctrl-C during the grace: a create left running would leave a container
                _kill_group(proc)
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

    def stream_answered(self, argv: Sequence[str], *, marker: str) -> int | None:
        # a foreground job here is started attached (follow_detached is False): nothing follows one
        raise NotImplementedError("local jobs are not followed detached")

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

    def hand_off_env(self, content: str) -> str:
        """A 0600 env-file in a private temp dir, deleted once the container exists. Not `-e NAME` with
        the value in the docker client's environment: DOCKER_HOST, HOME, PATH or a proxy variable in
        Envs would then reconfigure the client itself."""
        import tempfile

        directory = path = None
        try:
            directory = tempfile.mkdtemp(prefix="taoremote-env-")  # mode 0700
            path = os.path.join(directory, "env")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(content)
        except OSError as exc:
            # a full disk must not leave half a secret behind: the file and its directory go at once
            for remove, what in ((os.unlink, path), (os.rmdir, directory)):
                if what is not None:
                    with contextlib.suppress(OSError):
                        remove(what)
            where = os.path.dirname(directory) if directory else tempfile.gettempdir()
            raise DockerError(
                f"cannot write the env-file in {where} ({exc.strerror or exc})",
                fix="free space there or point TMPDIR at another directory",
            ) from None
        self._env_files.append(path)
        return path

    def pending_env_file(self, path: str) -> str | None:
        return None  # written by hand_off_env already

    def close(self) -> None:
        # a create killed half-way (no answer, Ctrl-C) never reached its wrapper's `rm`
        for path in self._env_files:
            with contextlib.suppress(OSError):
                os.unlink(path)
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(path))


INTERRUPTED_CALL_GRACE_S = 5  # a healthy daemon answers a create or an inspect well within it


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """The command and what it started (a wrapper's docker client): nothing hangs on after us."""
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _what(argv: Sequence[str]) -> str:
    """`docker create` for a wrapped docker call, else the first words."""
    if "docker" in argv:
        i = list(argv).index("docker")
        return " ".join(argv[i : i + 2])
    return " ".join(argv[:3])


def _missing_binary(name: str) -> DockerError:
    if name == "docker":
        return docker_missing(None)
    return DockerError(f"{name}: command not found")


def evaluate_ssh_config(argv: Sequence[str]) -> Completed | None:
    """`ssh -G ...` by the local OpenSSH client, which evaluates ssh config (Include, Match) and
    connects to nothing; None where there is no OpenSSH client (ssh.py then parses the files itself)."""
    try:
        done = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=SSH_CONFIG_TIMEOUT_S,
        )
    except FileNotFoundError:
        return None
    except subprocess.TimeoutExpired:  # a `Match exec` command that hangs
        raise HostError(f"`{' '.join(argv)}` did not answer within {SSH_CONFIG_TIMEOUT_S} s") from None
    return Completed("local", tuple(argv), done.returncode, done.stdout, done.stderr)


SSH_CONFIG_TIMEOUT_S = 10


def stdio_is_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def open_executor(host: str | None, *, ssh_config: str | None = None) -> Executor:
    if host is None or host in ("local", "localhost-docker"):
        return LocalExecutor()
    from taoremote.ssh import SshExecutor  # deferred: fabric/paramiko cost more start-up than the rest

    # ssh -G runs here, the one module that starts processes; ssh.py gets the means, not the import
    return SshExecutor(host, ssh_config=ssh_config, evaluate=evaluate_ssh_config)
