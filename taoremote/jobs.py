"""Jobs through an Executor: launch, follow, list, stop, logs. Local or remote is not known here.

A job is a container named `taoremote-<task>-<id>` carrying the label `taoremote.job=<id>`; it is
found again with one `docker ps --filter label=...` per host, never by image name.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from taoremote.command import (
    ENV_FILE_END,
    STOP_TIMEOUT_S,
    RunSpec,
    build_create_argv,
    build_inspect_state_argv,
    build_logs_argv,
    build_ps_argv,
    build_pull_argv,
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
from taoremote.errors import DockerError, Interrupted, JobNotFoundError, PreflightError
from taoremote.hosts import Completed, Executor
from taoremote.signals import HungUp, OutputClosed, Terminated

LIST_TIMEOUT_S = 30.0
DOCKER_TIMEOUT_S = 30.0  # every docker call but the followed output: a frozen daemon never hangs us
INTERRUPT_CLEANUP_TIMEOUT_S = 10.0  # after Ctrl-C the user is waiting: answer in seconds


@dataclass(frozen=True)
class Job:
    host: str
    job_id: str
    name: str
    container_id: str
    task: str
    command: str
    image: str
    state: str  # created | running | exited | ...
    status: str  # docker's human text: "Up 3 minutes", "Exited (3) 2 hours ago"
    exit_code: int | None
    created: str
    gpus: str
    user: str = ""  # who launched it (taoremote.user): shared GPU hosts run several people's jobs


def parse_ps(host: str, stdout: str) -> list[Job]:
    """Rows from `docker ps --format PS_TEMPLATE`: one JSON object per line."""
    jobs = []
    for line in stdout.splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        jobs.append(
            Job(
                host=host,
                job_id=row.get("job") or "",
                name=row.get("name") or "",
                container_id=row.get("id") or "",
                task=row.get("task") or "",
                command=row.get("command") or "",
                image=row.get("image") or "",
                state=row.get("state") or "",
                status=row.get("status") or "",
                exit_code=_exit_code(row.get("status") or ""),
                created=row.get("created") or "",
                gpus=row.get("gpus") or "",
                user=row.get("user") or "",
            )
        )
    return jobs


def _exit_code(status: str) -> int | None:
    match = re.match(r"Exited \((-?\d+)\)", status)
    return int(match.group(1)) if match else None


def parse_docker_error(
    result: Completed, image: str | None = None, *, failed: str | None = None
) -> DockerError | PreflightError:
    """One clear line for a failed docker CLI call, with the fix where we know it; `failed` says what
    failed where the cause is not one we know."""
    text = result.stderr.strip() or result.stdout.strip() or f"exit code {result.returncode}"
    where = f"host {result.host}" if result.host != "local" else "this machine"
    lowered = text.lower()
    if "port is already allocated" in lowered or "address already in use" in lowered:
        return DockerError(f"a port in DockerOptions.ports is already in use on {where}: {_first_line(text)}")
    if "is already in use by container" in lowered:
        return DockerError(f"a container with this name already exists on {where}: {_first_line(text)}")
    if "cannot connect to the docker daemon" in lowered or "is the docker daemon running" in lowered:
        return DockerError(
            f"the Docker daemon on {where} is not running or not reachable ({_first_line(text)})"
        )
    if "permission denied" in lowered and "docker" in lowered and "sock" in lowered:
        return DockerError(f"no permission to use Docker on {where}: add the user to the 'docker' group")
    if "could not select device driver" in lowered:
        return DockerError(
            f"Docker on {where} has no NVIDIA GPU support (could not select device driver): install the "
            "NVIDIA Container Toolkit and restart dockerd, or pass --gpus none"
        )
    if "requirement error" in lowered and "nvidia-container-cli" in lowered:
        return PreflightError(f"{where}: {_first_line(text)} (the host driver is too old for this image)")
    if any(
        s in lowered
        for s in ("no such image", "unable to find image", "pull access denied", "manifest unknown")
    ):
        what = f"image {image}" if image else "the image"
        return DockerError(f"{what} is not available on {where}: {_first_line(text)}")
    if re.search(r"docker: (command )?not found|docker: no such file", lowered):
        return DockerError(f"docker is not installed on {where}")
    return DockerError(f"{failed or f'docker failed on {where}'}: {_first_line(text)}")


def _first_line(text: str) -> str:
    # docker ends with "See 'docker run --help'." and may start with "Unable to find image ...":
    # the error itself is the last line that is neither.
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    meaningful = [ln for ln in lines if not ln.startswith(("See '", "Run '"))] or lines or [text]
    return meaningful[-1].removeprefix("docker: ")


# ---------------------------------------------------------------------------------------------- launch


def launch_job(
    ex: Executor, spec: RunSpec, env_values: Mapping[str, str], *, echo: Callable[[str], None]
) -> int:
    """Run the job to completion (or start it, with spec.detach); return the code to exit with.

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
            echo(spec.job_id)
            return 0
        return follow_job(ex, name, remove_after=True)  # on Ctrl-C the except below stops it, once
    except HungUp as hangup:
        if spec.interactive:  # a shell nobody can type into any more only holds GPUs
            stop_quietly(ex, [name], remove=True)
            raise
        # the terminal went away, not the user's wish to stop: the job goes on, and it must have begun
        _keep_running_after_hangup(ex, name, hangup)
        raise
    except OutputClosed:
        if not spec.detach:
            stop_quietly(ex, [name], remove=True)
        raise OutputClosed("output closed; the job was stopped") from None
    except (KeyboardInterrupt, Terminated):
        # whatever step the interruption hit, a job we started in the foreground must not outlive it
        if not spec.detach:
            if started:
                stop_quietly(ex, [name], remove=True)
            else:
                remove_unstarted_quietly(ex, name)
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
        raise parse_docker_error(result, spec.image)


def _start_attached(ex: Executor, spec: RunSpec, name: str) -> int:
    """`docker start -a`, then the exit code and whether it ever ran from `docker inspect`, then the
    container goes (it was created without --rm so that a job outliving us keeps both)."""
    # on Ctrl-C the client is ended (it forwards the signal) and launch_job stops and removes the job
    code = ex.stream(build_start_attached_argv(name, interactive=spec.interactive), tty=spec.tty)
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
            said, spec.image, failed=f"docker could not start {spec.image} on {_where(ex)}"
        )
    exit_code = state.get("ExitCode")
    with contextlib.suppress(DockerError):  # a concurrent prune may have removed it: fine
        ex.run(build_rm_argv([name], force=False), timeout=DOCKER_TIMEOUT_S)
    return exit_code if isinstance(exit_code, int) else code


def inspect_state(ex: Executor, name: str) -> dict[str, object] | None:
    """docker's State of one container (Status, ExitCode, Error, ...); None if there is none."""
    result = ex.run(build_inspect_state_argv(name), timeout=DOCKER_TIMEOUT_S)
    if result.returncode != 0:
        return None
    try:
        state = json.loads(result.stdout)
    except ValueError:
        return None
    return state if isinstance(state, dict) else None


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
        raise Interrupted(f"the terminal hung up and the job could not be started: {reason}", hangup.signum)


def follow_job(ex: Executor, name: str, *, remove_after: bool) -> int:
    """Show the job's output until it ends; return its exit code.

    An interruption only ends the following: launch_job, which started the job, stops it; after a
    reattach (`logs -f`) the job goes on."""
    followed = ex.stream(build_logs_argv(name, follow=True))
    if followed < 0:  # `docker logs -f` killed by a signal (SIGPIPE: our output closed): don't wait on
        raise OutputClosed()
    result = ex.run(build_wait_argv(name, remove=remove_after), timeout=DOCKER_TIMEOUT_S)
    if result.returncode != 0:
        raise parse_docker_error(result)
    return int(result.stdout.strip().splitlines()[0])


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
    that an interruption during a create is answered in seconds even by a daemon that hangs."""
    with contextlib.suppress(Exception):
        ex.run(build_rm_argv([name], force=True), timeout=INTERRUPT_CLEANUP_TIMEOUT_S)


def pull_image(ex: Executor, image: str) -> None:
    """Pull before `docker run`, so a failed pull is one clear error and never a half-created job."""
    print(f"taoremote: {image} is not on {_where(ex)}; pulling it", file=sys.stderr)
    result = ex.run_visible(build_pull_argv(image))
    if result.returncode != 0:
        reason = parse_docker_error(result, image)
        if "not running or not reachable" in str(reason) or "permission" in str(reason):
            raise reason
        raise DockerError(
            f"image {image} is not on {_where(ex)} and could not be pulled: {_first_line(result.stderr)}"
        )


# ---------------------------------------------------------------------------------------------- manage


def list_jobs(ex: Executor, *, include_stopped: bool, timeout: float = DOCKER_TIMEOUT_S) -> list[Job]:
    result = ex.run(build_ps_argv(include_stopped=include_stopped), timeout=timeout)
    if result.returncode != 0:
        raise parse_docker_error(result)
    return parse_ps(ex.host, result.stdout)


def match_job(jobs: Sequence[Job], ident: str) -> Job | None:
    """A job by its id, container name, or a container-id prefix of at least 4 characters."""
    for job in jobs:
        if ident in (job.job_id, job.name):
            return job
    by_prefix = prefix_matches(jobs, ident)
    return by_prefix[0] if len(by_prefix) == 1 else None  # docker too refuses an ambiguous prefix


def prefix_matches(jobs: Sequence[Job], ident: str) -> list[Job]:
    return [j for j in jobs if len(ident) >= 4 and j.container_id.startswith(ident)]


def unmatched_message(jobs: Sequence[Job], ident: str, where: str) -> str:
    several = prefix_matches(jobs, ident)
    if len(several) > 1:
        ids = ", ".join(j.job_id for j in several)
        return f"'{ident}' matches several jobs on {where} ({ids}); give more of it"
    return f"no taoremote job '{ident}' on {where} (see `taoremote list --all`)"


def find_job(ex: Executor, ident: str) -> Job:
    known = list_jobs(ex, include_stopped=True, timeout=LIST_TIMEOUT_S)
    job = match_job(known, ident)
    if job is None:
        raise JobNotFoundError(unmatched_message(known, ident, _where(ex)))
    return job


def stop_jobs(ex: Executor, jobs: Sequence[Job]) -> Completed:
    """One `docker stop` for all of them: docker stops the containers in parallel."""
    return ex.run(build_stop_argv([j.name for j in jobs]), timeout=120)


LIVE_STATES = ("created", "running", "paused", "restarting")
FINISHED_STATES = ("exited", "dead")
STOP_ALL_PASSES = 5


def stop_every_job(ex: Executor, wanted: Callable[[Job], bool]) -> list[Job]:
    """Stop every wanted job that is created, running, paused or restarting, including those that
    come into being while we stop: list again until a pass finds none (a few passes at most).

    A job that is only created is removed (`docker rm` without force): were it started meanwhile,
    docker refuses, and the next pass stops it - it can never start after we have passed it by."""
    handled: dict[str, Job] = {}
    for _ in range(STOP_ALL_PASSES):
        live = [j for j in list_jobs(ex, include_stopped=True) if j.state in LIVE_STATES and wanted(j)]
        if not live:
            break
        created = [j for j in live if j.state == "created"]
        if created:
            ex.run(build_rm_argv([j.name for j in created], force=False), timeout=DOCKER_TIMEOUT_S)
        others = [j for j in live if j.state != "created"]
        if others:
            result = stop_jobs(ex, others)
            if result.returncode != 0 and "no such container" not in result.stderr.lower():
                raise parse_docker_error(result)
        handled.update({j.name: j for j in live})
    return list(handled.values())


def prune_jobs(ex: Executor, wanted: Callable[[Job], bool]) -> list[Job]:
    """Remove the wanted jobs that have finished. `docker rm` without force: a job that is starting
    or running cannot be removed, whatever happens between our listing and our removal."""
    finished = [j for j in list_jobs(ex, include_stopped=True) if j.state in FINISHED_STATES and wanted(j)]
    if not finished:
        return []
    result = ex.run(build_rm_argv([j.name for j in finished], force=False), timeout=120)
    removed = set(result.stdout.split())  # docker prints each name it removed
    problems = [
        line
        for line in result.stderr.splitlines()
        if line.strip() and "no such container" not in line.lower()  # a concurrent prune was first
    ]
    if result.returncode != 0 and problems:
        raise parse_docker_error(replace(result, stderr="\n".join(problems)))
    return [j for j in finished if j.name in removed]


def show_logs(ex: Executor, job: Job, *, follow: bool) -> int:
    if follow:
        return follow_job(ex, job.name, remove_after=False)
    code = ex.stream(build_logs_argv(job.name, follow=False))
    return code


def _where(ex: Executor) -> str:
    return "this machine" if ex.host == "local" else f"host {ex.host}"
