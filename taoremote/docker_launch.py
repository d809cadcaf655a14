"""The docker backend's launch path: create or start a job, follow it to its exit code (locally
attached, remotely one command with a trailer: command.FOLLOW_WAIT_RM), pull its image, and clean up
after an interruption. jobs.py manages jobs once they exist (list, stop, logs, prune) and makes the
DockerBackend of both. Local or remote is not known here.

What to do about an interruption is interrupts.py's policy; this module carries it out with docker
commands.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace

from taoremote.command import (
    ENV_FILE_END,
    STOP_TIMEOUT_S,
    RunSpec,
    build_create_argv,
    build_follow_wait_rm_argv,
    build_inspect_state_argv,
    build_logs_argv,
    build_pull_argv,
    build_remove_once_created_argv,
    build_rm_argv,
    build_run_argv,
    build_start_argv,
    build_start_attached_argv,
    build_stop_argv,
    build_then_delete_env_file_argv,
    build_wait_argv,
    build_write_env_file_then_argv,
    container_name,
    format_env_file,
    with_env_file,
)
from taoremote.containers import parse_state, where
from taoremote.docker_errors import checked, first_line, parse_docker_error
from taoremote.errors import (
    DaemonUnreachable,
    DockerError,
    DockerMissing,
    DockerPermission,
    DockerTimeout,
    HungUp,
    ImageUnavailable,
    Interrupted,
    OutputClosed,
    StartFailed,
)
from taoremote.hosts import Completed, Executor
from taoremote.interrupts import Reaction, reaction

DOCKER_TIMEOUT_S = 30.0  # every docker call but the followed output: a frozen daemon never hangs us
INTERRUPT_CLEANUP_TIMEOUT_S = 10.0  # after Ctrl-C the user is waiting: answer in seconds


def launch_job(ex: Executor, spec: RunSpec, env_values: Mapping[str, str]) -> int | None:
    """Run the job to completion and return its exit code, or (spec.detach) start it: None.

    Foreground jobs where the link cannot drop (local) and interactive shells are created, then
    started attached: a failed create is one clear docker error (never confused with a task that
    exits 125), the env-file goes the moment the container exists, and an interruption at any step
    can clean up by name. Elsewhere the job starts detached and is followed."""
    env_file = ex.hand_off_env(format_env_file(env_values)) if env_values else None
    spec = with_env_file(spec, env_file)
    name = container_name(spec.task, spec.job_id)
    attached = spec.interactive or (not spec.detach and not ex.follow_detached)
    started = False  # until then an interruption removes a container that never ran: nothing to stop
    try:
        if attached:
            _create_or_start(ex, build_create_argv(spec), spec, env_file)
            started = True
            return _start_attached(ex, spec, name)
        _create_or_start(ex, build_run_argv(replace(spec, detach=True)), spec, env_file)
        started = True
        if spec.detach:
            return None
        return follow_job(ex, name, remove_after=True)  # on Ctrl-C the except below stops it, once
    except BaseException as exc:
        what = reaction(exc, started=started, detach=spec.detach, interactive=spec.interactive)
        if what is Reaction.STOP:
            stop_quietly(ex, [name], remove=True)
        elif what is Reaction.REMOVE_UNSTARTED:
            remove_unstarted_quietly(ex, name)
        elif what is Reaction.KEEP_RUNNING and isinstance(exc, HungUp):
            _keep_running_after_hangup(ex, name, exc)
        if isinstance(exc, OutputClosed):
            raise OutputClosed(job_stopped=what is Reaction.STOP) from None
        raise


def _create_or_start(ex: Executor, argv: tuple[str, ...], spec: RunSpec, env_file: str | None) -> None:
    """`docker create` or `docker run -d`; the env-file is deleted by the same command."""
    name = container_name(spec.task, spec.job_id)
    pending = ex.pending_env_file(env_file) if env_file else None
    if env_file and pending is not None:  # written by this very command, from its stdin
        argv = build_write_env_file_then_argv(argv, env_file)
    elif env_file:
        argv = build_then_delete_env_file_argv(argv, env_file)
    stdin = None if pending is None else pending + ENV_FILE_END
    # no answer in time raises at once: a daemon that froze would not answer a clean-up either
    result = ex.run(argv, timeout=DOCKER_TIMEOUT_S, stdin=stdin)
    if result.returncode != 0:
        # the container may exist even though the command failed (created, then start refused)
        with contextlib.suppress(DockerError):
            ex.run(build_rm_argv([name], force=True), timeout=DOCKER_TIMEOUT_S)
    checked(result, spec.image)


def _start_attached(ex: Executor, spec: RunSpec, name: str) -> int:
    """`docker start -a`, then the exit code and whether it ever ran from `docker inspect`, then the
    container goes (it was created without --rm so that a job outliving us keeps both)."""
    # on Ctrl-C the client is ended (it forwards the signal) and launch_job stops and removes the job
    code = ex.stream(build_start_attached_argv(name, interactive=spec.interactive), tty=spec.tty)
    if code == 0 and not spec.interactive:
        # the task ran and exited 0: a start docker refuses, a killed client or closed output are never
        # 0, and without stdin attached there are no detach keys - nothing to ask docker, only the rm
        with contextlib.suppress(DockerError):  # a concurrent prune may have removed it: fine
            ex.run(build_rm_argv([name], force=False), timeout=DOCKER_TIMEOUT_S)
        return 0
    state = inspect_state(ex, name)
    if state is None:  # already gone (a prune after it exited): start -a had its exit code
        return code
    status, error = state.get("Status"), str(state.get("Error") or "")
    if status in ("running", "paused", "restarting"):
        raise OutputClosed()  # the attached client died (its output closed) while the job runs on
    if status == "created" or error:
        # docker could not start it (unknown user, refused mount, no NVIDIA runtime): docker's
        # failure, not the task's - and a container that never ran has nothing worth keeping
        with contextlib.suppress(DockerError):
            ex.run(build_rm_argv([name], force=True), timeout=DOCKER_TIMEOUT_S)
        said = Completed(ex.host, (), 1, "", error or "see docker's message above")
        raise parse_docker_error(
            said, spec.image, failed=f"docker could not start {spec.image}", otherwise=StartFailed
        )
    exit_code = state.get("ExitCode")
    with contextlib.suppress(DockerError):  # a concurrent prune may have removed it: fine
        ex.run(build_rm_argv([name], force=False), timeout=DOCKER_TIMEOUT_S)
    return exit_code if isinstance(exit_code, int) else code


def inspect_state(ex: Executor, name: str) -> dict[str, object] | None:
    """docker's State of one container (Status, ExitCode, Error, ...); None if there is none."""
    result = ex.run(build_inspect_state_argv(name), timeout=DOCKER_TIMEOUT_S)
    return parse_state(result.stdout) if result.returncode == 0 else None


def _keep_running_after_hangup(ex: Executor, name: str, hangup: HungUp) -> None:
    """A hang-up between `docker create` and `docker start` must not leave the job created and never
    run while we say it keeps running: start it detached. If it was never created, say so instead."""
    try:
        state = inspect_state(ex, name)
        if state is None:
            if ex.follow_detached:  # a remote `docker run -d` goes on without us: it may yet create it
                return
            raise Interrupted("the terminal hung up before the job was created; nothing runs", hangup.signum)
        if state.get("Status") != "created":
            return  # running (or already ended): the reattach hint is true
        result = ex.run(build_start_argv(name), timeout=DOCKER_TIMEOUT_S)
    except DockerError:
        return  # docker cannot be asked now: the reattach hint is still the best advice
    if result.returncode != 0:
        remove_unstarted_quietly(ex, name)
        reason = parse_docker_error(result)
        raise Interrupted(
            f"the terminal hung up and the job could not be started: {reason.problem}",
            hangup.signum,
            host=reason.host,
            fix=reason.fix,
        )


def follow_job(ex: Executor, name: str, *, remove_after: bool) -> int:
    """Show the job's output until it ends; return its exit code.

    An interruption only ends the following: launch_job, which started the job, stops it; after a
    reattach (`logs -f`) the job goes on."""
    if remove_after:  # one remote command follows, waits and removes (command.FOLLOW_WAIT_RM)
        marker = f"@@taoremote-exit-{os.urandom(16).hex()}@@"
        code = ex.stream_answered(build_follow_wait_rm_argv(name, marker), marker=marker)
        if code is not None:
            return code
        # `docker wait` failed (its words are above): ask once more, for docker's error as a value
    else:
        followed = ex.stream(build_logs_argv(name, follow=True))
        if followed < 0:  # `docker logs -f` killed by a signal (SIGPIPE: our output closed): don't wait on
            raise OutputClosed()
    return waited(ex.run(build_wait_argv(name, remove=remove_after), timeout=DOCKER_TIMEOUT_S))


def waited(result: Completed) -> int:
    """The exit code `docker wait` prints."""
    return int(checked(result).stdout.strip().splitlines()[0])


def stop_quietly(ex: Executor, names: Sequence[str], *, remove: bool = False) -> None:
    """Best effort during an interruption: the job must not outlive a Ctrl-C, but a second error
    here must not hide the first. remove: a foreground job leaves nothing (its client has ended)."""
    with contextlib.suppress(OSError):  # stderr may be the closed pipe that got us here
        print(f"taoremote: stopping {', '.join(names)} on {ex.host} ...", file=sys.stderr)
    with contextlib.suppress(Exception):  # a stop that got no answer is not followed by an rm that would not
        ex.run(build_stop_argv(names), timeout=STOP_TIMEOUT_S + DOCKER_TIMEOUT_S)
        if remove:
            ex.run(build_rm_argv(names, force=True), timeout=DOCKER_TIMEOUT_S)


def remove_unstarted_quietly(ex: Executor, name: str) -> None:
    """A container we created and never started ran nothing: remove it without stopping, quickly, so
    that an interruption during a create is answered in seconds even by a daemon that hangs. A remote
    `docker run -d` we stopped waiting for goes on without us: it is removed once it exists."""
    argv = build_remove_once_created_argv(name) if ex.follow_detached else build_rm_argv([name], force=True)
    with contextlib.suppress(Exception):
        ex.run(argv, timeout=INTERRUPT_CLEANUP_TIMEOUT_S)


def pull_image(ex: Executor, image: str) -> None:
    """Pull before `docker run`, so a failed pull is one clear error and never a half-created job."""
    print(f"taoremote: {image} is not on {where(ex.host)}; pulling it", file=sys.stderr)
    result = ex.run_visible(build_pull_argv(image))
    if result.returncode != 0:
        reason = parse_docker_error(result, image)
        if isinstance(reason, _NO_DOCKER):  # docker itself cannot be used: say that, not "no image"
            raise reason
        raise ImageUnavailable(
            f"image {image} is missing and could not be pulled: {first_line(result.stderr)}", host=ex.host
        )


# A pull that failed for these reasons says nothing about the image
_NO_DOCKER = (DaemonUnreachable, DockerPermission, DockerTimeout, DockerMissing)
