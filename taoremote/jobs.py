"""The docker backend (backend.JobBackend): jobs through an Executor. docker_launch.py creates, starts
and follows a job; this module manages jobs once they exist - list, find, stop, logs, wait, prune - and
DockerBackend is both. Local or remote is not known here.

A job is a container named `taoremote-<task>-<id>` carrying the label `taoremote.job=<id>`; it is
found again with one `docker ps --filter label=...` per host, never by image name.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from taoremote.backend import Launched, Stopped
from taoremote.command import (
    RunSpec,
    build_list_argv,
    build_logs_argv,
    build_ps_argv,
    build_rm_argv,
    build_stop_argv,
    build_wait_argv,
)
from taoremote.containers import (
    FINISHED_STATES,
    LIVE_STATES,
    Job,
    match_job,
    parse_list,
    parse_ps,
    unmatched_message,
    where,
)
from taoremote.docker_errors import checked, is_no_such_container
from taoremote.docker_launch import DOCKER_TIMEOUT_S, follow_job, launch_job, pull_image, waited
from taoremote.errors import JobNotFoundError
from taoremote.hosts import Completed, Executor

LIST_TIMEOUT_S = 30.0


def list_jobs(
    ex: Executor, *, include_stopped: bool, timeout: float = DOCKER_TIMEOUT_S, progress: bool = False
) -> list[Job]:
    """progress: with the tail of each job's status.json, read by the same command (`list`)."""
    if progress:
        marker = list_marker()
        argv = build_list_argv(include_stopped=include_stopped, marker=marker)
        return parse_list(ex.host, checked(ex.run(argv, timeout=timeout)).stdout, marker)
    result = checked(ex.run(build_ps_argv(include_stopped=include_stopped), timeout=timeout))
    return parse_ps(ex.host, result.stdout)


def list_marker() -> str:
    """Random per call: no status.json's content (nor a label) can pass for a section header."""
    return os.urandom(8).hex()


def find_job(ex: Executor, ident: str) -> Job:
    known = list_jobs(ex, include_stopped=True, timeout=LIST_TIMEOUT_S)
    job = match_job(known, ident)
    if job is None:
        raise JobNotFoundError(unmatched_message(known, ident, where(ex.host)))
    return job


def stop_jobs(ex: Executor, jobs: Sequence[Job]) -> Completed:
    """One `docker stop` for all of them: docker stops the containers in parallel."""
    return ex.run(build_stop_argv([j.name for j in jobs]), timeout=120)


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
            checked(stop_jobs(ex, others), gone_is_fine=True)
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
        if line.strip() and not is_no_such_container(line)  # a concurrent prune was first
    ]
    if problems:
        checked(replace(result, stderr="\n".join(problems)))
    return [j for j in finished if j.name in removed]


def show_logs(ex: Executor, job: Job, *, follow: bool) -> int:
    if follow:
        return follow_job(ex, job.name, remove_after=False)
    return ex.stream(build_logs_argv(job.name, follow=False))


class DockerBackend:
    """backend.JobBackend over an Executor: docker on this machine or on an SSH host."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.host = executor.host

    def launch(self, spec: RunSpec, env_values: Mapping[str, str], *, pull: bool = False) -> Launched:
        if pull:
            pull_image(self.executor, spec.image)
        return Launched(spec.job_id, launch_job(self.executor, spec, env_values))

    def list_jobs(
        self, *, include_stopped: bool, timeout: float = DOCKER_TIMEOUT_S, progress: bool = False
    ) -> list[Job]:
        return list_jobs(self.executor, include_stopped=include_stopped, timeout=timeout, progress=progress)

    def find(self, ident: str) -> Job:
        return find_job(self.executor, ident)

    def stop(self, idents: Sequence[str]) -> Stopped:
        known = list_jobs(self.executor, include_stopped=True, timeout=LIST_TIMEOUT_S)
        chosen = [j for ident in idents if (j := match_job(known, ident)) is not None]
        if chosen:
            checked(stop_jobs(self.executor, chosen))
        return Stopped(chosen, known)

    def stop_all(self, *, user: str | None) -> list[Job]:
        return stop_every_job(self.executor, lambda j: user is None or j.user == user)

    def logs(self, job: Job, *, follow: bool) -> int:
        return show_logs(self.executor, job, follow=follow)

    def wait(self, job: Job, *, timeout: float | None = None) -> int:
        return waited(self.executor.run(build_wait_argv(job.name), timeout=timeout))

    def prune(self, *, user: str | None) -> list[Job]:
        return prune_jobs(self.executor, lambda j: user is None or j.user == user)

    def close(self) -> None:
        self.executor.close()
