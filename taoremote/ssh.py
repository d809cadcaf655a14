"""SSH hosts: SshExecutor runs argv on a remote host through fabric/paramiko, shell-joined exactly once.

Imported only when a remote host is used (hosts.open_executor): fabric and paramiko cost more
start-up time than everything else together. The connection, host keys and keepalives are ssh_link.py's;
this module drives the commands over it: one channel per `run`, fabric for what streams to our terminal.
"""

from __future__ import annotations

import functools
import os
import secrets
import shlex
import sys
import threading
import time
from collections.abc import Sequence

import paramiko

from taoremote.errors import DockerError, DockerTimeout, HostError, LinkLostError, OutputClosed, UsageError
from taoremote.executor import Completed
from taoremote.ssh_link import SshLink
from taoremote.trailer import MarkedAnswer

__all__ = ["SshExecutor"]

INTERRUPTED_CALL_GRACE_S = 5  # Ctrl-C during a create: time for it to finish, so it can be stopped by name
# env-files live under the login directory's .cache (not /tmp: a snap docker has a private /tmp)
ENV_DIR_PREFIX = ".cache/taoremote-env-"
# OpenSSH refuses a packet over 256 KiB: a longer command would drop the connection unstarted
MAX_COMMAND_BYTES = 250_000
OUTPUT_AFTER_EXIT_S = 2  # how long output may stay open after the command exited


class SshExecutor(SshLink):
    follow_detached = True

    @functools.cached_property
    def _env_files(self) -> dict[str, str]:
        """path -> content, written by the command that reads it"""
        return {}

    # ------------------------------------------------------------------------------------------ commands

    def run(
        self, argv: Sequence[str], *, timeout: float | None = None, stdin: str | None = None
    ) -> Completed:
        command = _encode(shlex.join(argv), "an argument")
        data = _encode(stdin, "an env value") if stdin is not None else None
        if len(command) > MAX_COMMAND_BYTES:
            raise UsageError(
                f"the command is {len(command) // 1024} KiB; an SSH server takes at most 256 KiB in one "
                "command: pass long arguments in a file"
            )
        transport = self._open()
        try:
            channel = transport.open_session(timeout=self._timeout)
            channel.exec_command(command)
        except Exception as exc:  # nothing ran: never claim a job keeps running
            raise HostError(f"the command could not be started ({self._why(exc)})", host=self.host) from None
        code, out, err = self._collect(channel, transport, data, timeout, _what(argv))
        return Completed(self.host, tuple(argv), code, _decode(out), _decode(err))

    def _collect(
        self,
        channel: paramiko.Channel,
        transport: paramiko.Transport,
        data: bytes | None,
        timeout: float | None,
        what: str,
    ) -> tuple[int, bytes, bytes]:
        out, err = bytearray(), bytearray()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            if data:
                channel.sendall(data)
            channel.shutdown_write()
            exited_at = None
            while True:
                while channel.recv_ready():
                    out += channel.recv(65536)
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                if channel.closed or (channel.exit_status_ready() and channel.eof_received):
                    break
                if not transport.is_active():
                    raise self._lost()
                if deadline is not None and time.monotonic() > deadline:
                    channel.close()
                    raise DockerTimeout(f"`{what}` did not answer within {timeout:.0f} s", host=self.host)
                if channel.exit_status_ready():
                    # exited, output still open: a child it left behind holds it; the command is done
                    exited_at = exited_at or time.monotonic()
                    if time.monotonic() - exited_at > OUTPUT_AFTER_EXIT_S:
                        break
                    time.sleep(0.005)
                else:
                    channel.status_event.wait(0.02)  # wakes at once when the command exits
        except (LinkLostError, DockerError):
            raise
        except (OSError, EOFError, paramiko.SSHException):
            raise self._lost() from None
        except BaseException:
            # Ctrl-C: a `docker create` half-way through should finish, so it can be stopped by name
            channel.status_event.wait(INTERRUPTED_CALL_GRACE_S)
            raise
        while channel.recv_ready():
            out += channel.recv(65536)
        while channel.recv_stderr_ready():
            err += channel.recv_stderr(65536)
        code = channel.recv_exit_status()
        if code == -1 and not transport.is_active():  # killed with the link, never finished
            raise self._lost()
        return code, bytes(out), bytes(err)

    def stream(self, argv: Sequence[str], *, tty: bool = False) -> int:
        transport = self._open()
        command = shlex.join(argv)
        if tty:
            # interactive: invoke forwards ^C to the remote PTY as \x03, which is what a shell expects
            exited = int(self._conn.run(command, hide=False, warn=True, pty=True).exited)
            if exited == -1 and not transport.is_active():
                raise self._lost()
            return exited
        return self._streamed(transport, command)

    def stream_answered(self, argv: Sequence[str], *, marker: str) -> int | None:
        answer = MarkedAnswer(marker, sys.stderr)
        try:
            self._streamed(self._open(), shlex.join(argv), answer)
        finally:
            answer.finish()
        return answer.code

    def _streamed(
        self, transport: paramiko.Transport, command: str, answer: MarkedAnswer | None = None
    ) -> int:
        # invoke swallows Ctrl-C while it waits and then joins reader threads that never end while
        # `docker logs -f` runs, so the command runs in a worker thread and the interrupt stays ours.
        errors: list[BaseException] = []
        exits: list[int] = []

        def work() -> None:
            try:
                result = self._conn.run(
                    command,
                    hide=False,
                    warn=True,
                    in_stream=False,
                    err_stream=answer or sys.stderr,
                    watchers=[answer] if answer else [],
                )
                exits.append(int(result.exited))
            except BaseException as exc:
                errors.append(exc)

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        # an interruption propagates from here; the worker's remote command ends with the job
        while worker.is_alive():
            worker.join(0.1)
            if not transport.is_active():
                raise self._lost()
        if errors:
            if _broken_pipe(errors[0]):
                raise OutputClosed()
            if not isinstance(errors[0], Exception):
                raise errors[0]
            raise self._link_error(errors[0], None)
        if not exits or exits[0] == -1 or not transport.is_active():
            raise self._lost()
        return exits[0]

    def run_visible(self, argv: Sequence[str]) -> Completed:
        self._open()
        try:
            result = self._conn.run(shlex.join(argv), hide="err", warn=True, in_stream=False)
        except Exception as exc:
            raise self._link_error(exc, None) from None
        if result.exited == -1 and not self._active():
            raise self._lost()
        return Completed(self.host, tuple(argv), result.exited, "", result.stderr)

    def hand_off_env(self, content: str) -> str:
        """No upload, no SFTP: the command that creates the container writes the file from its stdin
        (build_write_env_file_then_argv), so values never sit on the host before or after it."""
        path = f"{ENV_DIR_PREFIX}{os.getpid()}-{secrets.token_hex(8)}/env"
        self._env_files[path] = content
        return path

    def pending_env_file(self, path: str) -> str | None:
        return self._env_files.get(path)


def _what(argv: Sequence[str]) -> str:
    """`docker create` for a wrapped docker call, else the first words (as hosts.py says it locally)."""
    words = list(argv)
    if "docker" in words:
        start = words.index("docker")
        return " ".join(words[start : start + 2])
    return " ".join(words[:3])


def _encode(text: str, what: str) -> bytes:
    # surrogateescape: an argument that was not UTF-8 on our command line reaches the host byte for byte
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise UsageError(f"{what} holds a character that cannot be sent (a lone surrogate)") from None


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _broken_pipe(error: object) -> bool:
    """invoke wraps a failed write to our stdout in a ThreadException around BrokenPipeError."""
    inner = [getattr(e, "value", None) for e in getattr(error, "exceptions", ())]
    return isinstance(error, BrokenPipeError) or any(isinstance(e, BrokenPipeError) for e in inner)
