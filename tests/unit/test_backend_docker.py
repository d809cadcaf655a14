"""The docker backend (jobs.DockerBackend) against the contract FakeExecutor: which docker commands a
launch, stop, prune, logs and wait issue, and what each interruption (Ctrl-C, SIGTERM, SIGHUP, closed
output, lost link) at each phase of a launch does to the job - locally and over SSH (follow_detached)."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest

from taoremote import command, fleet, hosts
from taoremote.backend import JobBackend, Launched
from taoremote.command import (
    ENV_FILE_END,
    RunSpec,
    build_create_argv,
    build_ps_argv,
    build_run_argv,
    build_then_delete_env_file_argv,
    build_write_env_file_then_argv,
    with_env_file,
)
from taoremote.errors import (
    DockerError,
    HungUp,
    ImageUnavailable,
    Interrupted,
    JobNotFoundError,
    LinkLostError,
    OutputClosed,
    StartFailed,
    Terminated,
)
from taoremote.interrupts import Reaction, reaction
from taoremote.jobs import DockerBackend
from taoremote.settings import Globals
from tests.unit.fakes import (
    Expect,
    FakeExecutor,
    Prefix,
    hand_off,
    opener,
    run,
    run_visible,
    stream,
    stream_answered,
)

SPEC = RunSpec(image="img", command=("t",), job_id="0a1b2c3d", task="t", gpus="none")
NAME = "taoremote-t-0a1b2c3d"
ENV = "/fake/taoremote-env/env"

CREATE = build_create_argv(SPEC)
RUN_DETACHED = build_run_argv(replace(SPEC, detach=True))
START_ATTACHED = ("docker", "start", "--attach", NAME)
START = ("docker", "start", NAME)
INSPECT = ("docker", "container", "inspect", "--format", "{{json .State}}", NAME)
LOGS_FOLLOW = ("docker", "logs", "--follow", NAME)
WAIT_THEN_RM = ("sh", "-c", 'docker wait "$1" && docker rm --force "$1" >/dev/null', "sh", NAME)
# over SSH a foreground job is followed, waited for and removed by one command; its last argument is
# the marker (a fresh nonce) its exit code comes after
FOLLOW_WAIT_RM = Prefix(("sh", "-c", command.FOLLOW_WAIT_RM, "sh", NAME))
STOP = ("docker", "stop", "--time", "10", NAME)
RM_FORCE = ("docker", "rm", "--force", NAME)
# over SSH a `docker run -d` we stopped waiting for goes on: it is removed once it exists, in the background
REMOVE_ONCE_CREATED = command.build_remove_once_created_argv(NAME)
RM = ("docker", "rm", NAME)
PS_ALL = build_ps_argv(include_stopped=True)


def _state(status: str, exit_code: int = 0, error: str = "") -> str:
    return json.dumps({"Status": status, "ExitCode": exit_code, "Error": error})


def _row(name: str, state: str, user: str = "me", status: str = "") -> str:
    fields = {"id": name * 4, "name": name, "state": state, "job": name, "user": user, "status": status}
    return json.dumps(fields)


def _local(*script: Expect) -> FakeExecutor:
    return FakeExecutor(*script, require_deadlines=True)


def _remote(*script: Expect) -> FakeExecutor:
    return FakeExecutor(*script, host="gpu1", require_deadlines=True)


# ---------------------------------------------------------------------------------------------- launch


def test_a_local_foreground_job_is_created_then_started_attached_and_docker_gives_its_exit_code() -> None:
    with _local(
        run(CREATE, stdout="id\n"),
        stream(START_ATTACHED, rc=3, tty=False),
        run(INSPECT, stdout=_state("exited", 3)),
        run(RM, stdout=f"{NAME}\n"),  # collected: it goes, without force
    ) as ex:
        assert DockerBackend(ex).launch(SPEC, {}) == Launched("0a1b2c3d", 3)


def test_a_start_failure_is_dockers_not_the_tasks_and_leaves_nothing() -> None:
    error = "unable to find user x: no matching entries"
    with (
        _local(
            run(CREATE, stdout="id\n"),
            stream(START_ATTACHED, rc=1),
            run(INSPECT, stdout=_state("created", 128, error)),
            run(RM_FORCE, stdout=f"{NAME}\n"),
        ) as ex,
        pytest.raises(StartFailed, match="could not start img: unable to find user x") as info,
    ):
        DockerBackend(ex).launch(SPEC, {})
    assert info.value.exit_code == 69


def test_a_remote_foreground_job_starts_detached_and_is_followed_then_removed_with_its_exit_code() -> None:
    with _remote(run(RUN_DETACHED, stdout="id\n"), stream_answered(FOLLOW_WAIT_RM, answer=3)) as ex:
        assert DockerBackend(ex).launch(SPEC, {}) == Launched("0a1b2c3d", 3)


def test_each_remote_follow_has_its_own_marker() -> None:
    with _remote(
        run(RUN_DETACHED),
        stream_answered(FOLLOW_WAIT_RM, answer=0),
        run(RUN_DETACHED),
        stream_answered(FOLLOW_WAIT_RM, answer=0),
    ) as ex:
        DockerBackend(ex).launch(SPEC, {})
        DockerBackend(ex).launch(SPEC, {})
    markers = [c.argv[-1] for c in ex.calls if c.method == "stream_answered"]
    assert len(set(markers)) == 2 and all(len(m) > 32 for m in markers)


def test_without_a_marked_exit_code_docker_wait_is_asked_once_more_for_dockers_error() -> None:
    with (
        _remote(
            run(RUN_DETACHED),
            stream_answered(FOLLOW_WAIT_RM, answer=None),
            run(
                WAIT_THEN_RM,
                rc=1,
                stderr="Cannot connect to the Docker daemon at unix:///var/run/docker.sock.",
            ),
        ) as ex,
        pytest.raises(DockerError) as info,
    ):
        DockerBackend(ex).launch(SPEC, {})
    assert info.value.exit_code == 69


@pytest.mark.parametrize("make", [_local, _remote], ids=["local", "remote"])
def test_a_detached_job_is_started_and_left_running_without_an_exit_code(
    make: Callable[..., FakeExecutor],
) -> None:
    with make(run(RUN_DETACHED, stdout="id\n")) as ex:
        assert DockerBackend(ex).launch(replace(SPEC, detach=True), {}) == Launched("0a1b2c3d", None)


def test_env_values_go_through_a_file_that_the_create_itself_deletes() -> None:
    create = build_then_delete_env_file_argv(build_create_argv(with_env_file(SPEC, ENV)), ENV)
    with _local(
        hand_off({"KEY": "v"}, path=ENV),
        run(create, stdin=None),
        stream(START_ATTACHED, rc=3),
        run(INSPECT, stdout=_state("exited", 3)),
        run(RM),
    ) as ex:
        assert DockerBackend(ex).launch(SPEC, {"KEY": "v"}).exit_code == 3
    assert not any("v" in c.argv for c in ex.calls)  # the value is in no argv


def test_over_ssh_the_env_file_travels_on_the_stdin_of_the_command_that_starts_the_job() -> None:
    detached = replace(SPEC, detach=True)
    start = build_write_env_file_then_argv(build_run_argv(with_env_file(detached, ENV)), ENV)
    with _remote(hand_off({"KEY": "v"}, path=ENV), run(start, stdin="KEY=v\n" + ENV_FILE_END)) as ex:
        assert DockerBackend(ex).launch(detached, {"KEY": "v"}) == Launched("0a1b2c3d", None)
    assert not any("v" in c.argv for c in ex.calls)


def test_a_missing_image_is_pulled_first() -> None:
    with _local(
        run_visible(("docker", "pull", "img")),
        run(RUN_DETACHED),
    ) as ex:
        DockerBackend(ex).launch(replace(SPEC, detach=True), {}, pull=True)


def test_a_failed_pull_is_one_clear_error_and_nothing_is_created() -> None:
    denied = "Error response from daemon: pull access denied for img, repository does not exist\n"
    ex = _local(run_visible(("docker", "pull", "img"), rc=1, stderr=denied))
    with pytest.raises(ImageUnavailable):
        DockerBackend(ex).launch(SPEC, {}, pull=True)
    ex.verify()


def test_a_failed_create_is_dockers_error_and_removes_what_it_may_have_left() -> None:
    taken = (
        'docker: Error response from daemon: Conflict. The container name "/x" is already in use by container'
    )
    with _local(run(CREATE, rc=125, stderr=taken), run(RM_FORCE, rc=1)) as ex, pytest.raises(DockerError):
        DockerBackend(ex).launch(SPEC, {})


# ---------------------------------------------------------------------------------------------- interruptions
#
# Each signal at each phase of a launch: the calls up to the phase (the last one is where the signal
# arrives), then what must follow, then what is raised.

SIGNALS: dict[str, Callable[[], BaseException]] = {
    "ctrl-c": KeyboardInterrupt,
    "sigterm": lambda: Terminated(signal.SIGTERM),
    "sighup": lambda: HungUp(signal.SIGHUP),
    "output-closed": OutputClosed,
    "link-lost": lambda: LinkLostError("lost the link to gpu1", host="gpu1"),
}


@dataclass(frozen=True)
class Phase:
    remote: bool
    # the calls before the signal; the signal arrives on the last one
    calls: Callable[[BaseException], tuple[Expect, ...]]
    started: bool  # the job may be running: Ctrl-C stops it (else it is removed, never started)
    state_after_hangup: str | None  # what `docker inspect` then says (None: no such container)
    env: bool = False


PHASES = {
    # locally: create, then start attached (the attached client is the following)
    "local:before-create": Phase(False, lambda s: (hand_off(raises=s),), False, None, env=True),
    "local:during-create": Phase(False, lambda s: (run(CREATE, raises=s),), False, None),
    "local:between-create-and-start": Phase(
        False, lambda s: (run(CREATE), stream(START_ATTACHED, raises=s)), True, "created"
    ),
    "local:while-following": Phase(
        False, lambda s: (run(CREATE), stream(START_ATTACHED, raises=s)), True, "running"
    ),
    # over SSH: `docker run -d`, then one command that follows, waits and removes (FOLLOW_WAIT_RM);
    # `docker wait` again only when that one gave no exit code
    "remote:before-create": Phase(True, lambda s: (hand_off(raises=s),), False, None, env=True),
    "remote:during-create": Phase(True, lambda s: (run(RUN_DETACHED, raises=s),), False, None),
    "remote:between-create-and-start": Phase(
        True, lambda s: (run(RUN_DETACHED, raises=s),), False, "created"
    ),
    "remote:while-following": Phase(
        True,
        lambda s: (run(RUN_DETACHED), stream_answered(FOLLOW_WAIT_RM, answer=None, raises=s)),
        True,
        "running",
    ),
    "remote:while-waiting-again": Phase(
        True,
        lambda s: (
            run(RUN_DETACHED),
            stream_answered(FOLLOW_WAIT_RM, answer=None),
            run(WAIT_THEN_RM, raises=s),
        ),
        True,
        "running",
    ),
}


def _reaction_calls(signal_name: str, phase: Phase) -> tuple[Expect, ...]:
    if phase.env:  # the env-file is handed over before anything exists: nothing to clean up
        return ()
    stop_and_remove = (run(STOP), run(RM_FORCE))
    if signal_name in ("ctrl-c", "sigterm"):
        if phase.started:
            return stop_and_remove
        return (run(REMOVE_ONCE_CREATED if phase.remote else RM_FORCE),)
    if signal_name == "output-closed":
        return stop_and_remove
    if signal_name == "sighup":
        state = phase.state_after_hangup
        inspect = (
            run(INSPECT, rc=1, stderr="No such container")
            if state is None
            else run(INSPECT, stdout=_state(state))
        )
        return (inspect, run(START)) if state == "created" else (inspect,)
    return ()  # link-lost: the job goes on, the caller prints how to reattach


@pytest.mark.parametrize("signal_name", sorted(SIGNALS))
@pytest.mark.parametrize("phase_name", sorted(PHASES))
def test_each_signal_at_each_phase_issues_exactly_these_docker_commands(
    phase_name: str, signal_name: str
) -> None:
    phase = PHASES[phase_name]
    arrived = SIGNALS[signal_name]()
    make = _remote if phase.remote else _local
    ex = make(*phase.calls(arrived), *_reaction_calls(signal_name, phase))
    with pytest.raises(BaseException) as info:
        DockerBackend(ex).launch(SPEC, {"KEY": "v"} if phase.env else {})
    ex.verify()
    raised = info.value
    if signal_name == "output-closed":
        assert isinstance(raised, OutputClosed) and raised.signum == signal.SIGPIPE
        assert raised.job_stopped is not phase.env  # "the job was stopped" only when it was
    elif signal_name == "sighup" and not phase.remote and phase.state_after_hangup is None and not phase.env:
        # locally a create that never happened is certain: nothing runs, and we say so
        assert isinstance(raised, Interrupted) and raised.exit_code == 129
        assert "before the job was created; nothing runs" in str(raised)
    else:
        assert raised is arrived


def test_removing_a_never_started_job_after_ctrl_c_is_answered_in_seconds() -> None:
    ex = _local(run(CREATE, raises=KeyboardInterrupt()), run(RM_FORCE))
    with pytest.raises(KeyboardInterrupt):
        DockerBackend(ex).launch(SPEC, {})
    ex.verify()
    assert ex.calls[-1].timeout is not None and ex.calls[-1].timeout <= 10


@pytest.mark.parametrize("make", [_local, _remote], ids=["local", "remote"])
@pytest.mark.parametrize("signal_name", ["ctrl-c", "sigterm", "link-lost"])
def test_a_detached_job_is_left_alone_by_an_interruption_during_its_start(
    make: Callable[..., FakeExecutor], signal_name: str
) -> None:
    arrived = SIGNALS[signal_name]()
    ex = make(run(RUN_DETACHED, raises=arrived))
    with pytest.raises(type(arrived)):
        DockerBackend(ex).launch(replace(SPEC, detach=True), {})
    ex.verify()


def test_a_hang_up_during_a_detached_start_still_starts_a_job_left_created() -> None:
    ex = _remote(
        run(RUN_DETACHED, raises=HungUp(signal.SIGHUP)), run(INSPECT, stdout=_state("created")), run(START)
    )
    with pytest.raises(HungUp):
        DockerBackend(ex).launch(replace(SPEC, detach=True), {})
    ex.verify()


def test_a_hang_up_whose_start_docker_refuses_removes_the_job_and_says_why() -> None:
    ex = _local(
        run(CREATE),
        stream(START_ATTACHED, raises=HungUp(signal.SIGHUP)),
        run(INSPECT, stdout=_state("created")),
        run(START, rc=1, stderr="Error response from daemon: unable to find user x"),
        run(RM_FORCE),
    )
    with pytest.raises(
        Interrupted, match=r"could not be started: docker failed: .*unable to find user x"
    ) as info:
        DockerBackend(ex).launch(SPEC, {})
    ex.verify()
    assert info.value.exit_code == 129


def test_a_hang_up_stops_an_interactive_shell_nobody_can_type_into() -> None:
    shell = replace(SPEC, command=(), interactive=True, tty=True)
    ex = _local(
        run(build_create_argv(shell)),
        stream(
            ("docker", "start", "--attach", "--interactive", NAME), tty=True, raises=HungUp(signal.SIGHUP)
        ),
        run(STOP),
        run(RM_FORCE),
    )
    with pytest.raises(HungUp):
        DockerBackend(ex).launch(shell, {})
    ex.verify()


def test_a_followed_output_closed_over_ssh_stops_the_job() -> None:
    ex = _remote(
        run(RUN_DETACHED),
        stream_answered(FOLLOW_WAIT_RM, answer=None, raises=OutputClosed()),
        run(STOP),
        run(RM_FORCE),
    )
    with pytest.raises(OutputClosed) as info:
        DockerBackend(ex).launch(SPEC, {})
    ex.verify()
    assert info.value.job_stopped


def test_a_stop_that_fails_during_an_interruption_does_not_hide_it() -> None:
    ex = _local(
        run(CREATE),
        stream(START_ATTACHED, raises=KeyboardInterrupt()),
        run(STOP, raises=DockerError("no answer from docker")),  # and no rm after a stop that got no answer
    )
    with pytest.raises(KeyboardInterrupt):
        DockerBackend(ex).launch(SPEC, {})
    ex.verify()


# the policy itself, as a table: interrupts.py is what a sweep and the Slurm backend follow too
@pytest.mark.parametrize(
    ("arrived", "started", "detach", "interactive", "expected"),
    [
        (KeyboardInterrupt(), False, False, False, Reaction.REMOVE_UNSTARTED),
        (KeyboardInterrupt(), True, False, False, Reaction.STOP),
        (KeyboardInterrupt(), True, True, False, Reaction.LEAVE),
        (Terminated(signal.SIGTERM), True, False, False, Reaction.STOP),
        (HungUp(signal.SIGHUP), True, False, False, Reaction.KEEP_RUNNING),
        (HungUp(signal.SIGHUP), True, False, True, Reaction.STOP),
        (OutputClosed(), False, False, False, Reaction.STOP),
        (OutputClosed(), True, True, False, Reaction.LEAVE),
        (LinkLostError("lost"), True, False, False, Reaction.LEAVE),
        (DockerError("refused"), True, False, False, None),
    ],
)
def test_the_interruption_policy(
    arrived: BaseException, started: bool, detach: bool, interactive: bool, expected: Reaction | None
) -> None:
    assert reaction(arrived, started=started, detach=detach, interactive=interactive) is expected


# ---------------------------------------------------------------------------------------------- stop


def test_stop_stops_the_named_jobs_in_one_call_and_leaves_unknown_ids_to_the_caller() -> None:
    rows = "\n".join([_row("a", "running"), _row("b", "paused"), _row("c", "running")])
    with _local(run(PS_ALL, stdout=rows), run(("docker", "stop", "--time", "10", "a", "b"))) as ex:
        answer = DockerBackend(ex).stop(["a", "nope", "b"])
    assert [j.name for j in answer.stopped] == ["a", "b"]
    assert [j.name for j in answer.known] == ["a", "b", "c"]  # to tell why "nope" matched nothing


def test_stop_of_only_unknown_ids_stops_nothing() -> None:
    with _local(run(PS_ALL, stdout=_row("a", "running"))) as ex:
        assert DockerBackend(ex).stop(["nope"]).stopped == []


def test_a_stop_docker_refuses_is_its_error() -> None:
    down = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"
    with (
        _local(
            run(PS_ALL, stdout=_row("a", "running")),
            run(("docker", "stop", "--time", "10", "a"), rc=1, stderr=down),
        ) as ex,
        pytest.raises(DockerError, match="not running or not reachable"),
    ):
        DockerBackend(ex).stop(["a"])


def test_stop_all_removes_created_stops_running_and_paused_and_passes_again_until_none_is_live() -> None:
    first = [_row("c", "created"), _row("r", "running"), _row("p", "paused"), _row("x", "exited")]
    first.append(_row("o", "running", user="other"))
    with _local(
        run(PS_ALL, stdout="\n".join(first)),
        run(("docker", "rm", "c"), rc=1, stderr="cannot remove a running container"),  # it started meanwhile
        run(("docker", "stop", "--time", "10", "r", "p"), stdout="r\np\n"),
        run(PS_ALL, stdout="\n".join([_row("c", "running"), _row("n", "created")])),
        run(("docker", "rm", "n"), stdout="n\n"),
        run(("docker", "stop", "--time", "10", "c"), stdout="c\n"),
        run(PS_ALL, stdout=_row("c", "exited")),
    ) as ex:
        stopped = DockerBackend(ex).stop_all(user="me")
    assert sorted(j.name for j in stopped) == ["c", "n", "p", "r"]


def test_stop_all_of_every_user_includes_colleagues_jobs() -> None:
    rows = "\n".join([_row("r", "running"), _row("o", "running", user="other")])
    with _local(
        run(PS_ALL, stdout=rows),
        run(("docker", "stop", "--time", "10", "r", "o")),
        run(PS_ALL, stdout=""),
    ) as ex:
        assert sorted(j.name for j in DockerBackend(ex).stop_all(user=None)) == ["o", "r"]


def test_stop_all_tolerates_a_job_that_went_meanwhile() -> None:
    with _local(
        run(PS_ALL, stdout=_row("r", "running")),
        run(
            ("docker", "stop", "--time", "10", "r"),
            rc=1,
            stderr="Error response from daemon: No such container: r",
        ),
        run(PS_ALL, stdout=""),
    ) as ex:
        assert [j.name for j in DockerBackend(ex).stop_all(user="me")] == ["r"]


# ---------------------------------------------------------------------------------------------- prune


def test_prune_removes_only_finished_jobs_and_never_with_force() -> None:
    rows = [
        _row(n, s)
        for n, s in [("a", "exited"), ("b", "dead"), ("c", "created"), ("d", "paused"), ("e", "running")]
    ]
    rows.append(_row("f", "exited", user="other"))
    with _local(
        run(PS_ALL, stdout="\n".join(rows)),
        run(
            ("docker", "rm", "a", "b"), rc=1, stdout="a\n", stderr="Error: No such container: b\n"
        ),  # b: a concurrent prune
    ) as ex:
        assert [j.name for j in DockerBackend(ex).prune(user="me")] == ["a"]


def test_prune_with_nothing_finished_removes_nothing() -> None:
    with _local(run(PS_ALL, stdout=_row("e", "running"))) as ex:
        assert DockerBackend(ex).prune(user=None) == []


def test_prune_reports_a_refusal_docker_gives() -> None:
    with (
        _local(
            run(PS_ALL, stdout=_row("a", "exited")),
            run(
                ("docker", "rm", "a"),
                rc=1,
                stderr="Error response from daemon: cannot remove a running container",
            ),
        ) as ex,
        pytest.raises(DockerError),
    ):
        DockerBackend(ex).prune(user="me")


# ---------------------------------------------------------------------------------------- list, logs, wait


def test_list_find_logs_and_wait_through_the_backend() -> None:
    row = _row("taoremote-t-0a1b2c3d", "exited", status="Exited (3) 1 second ago")
    with _remote(
        run(PS_ALL, stdout=row),
        run(PS_ALL, stdout=row),
        stream(("docker", "logs", NAME), rc=0),
        stream(LOGS_FOLLOW, rc=0),
        run(("docker", "wait", NAME), stdout="3\n"),  # a reattach leaves the job where it is: no rm
        run(("docker", "wait", NAME), stdout="3\n"),
    ) as ex:
        backend = DockerBackend(ex)
        (job,) = backend.list_jobs(include_stopped=True)
        assert (job.host, job.exit_code) == ("gpu1", 3)
        assert backend.find(NAME) == job
        assert backend.logs(job, follow=False) == 0
        assert backend.logs(job, follow=True) == 3
        assert backend.wait(job, timeout=5) == 3


def test_find_of_an_unknown_id_says_where_it_looked() -> None:
    ex = _remote(run(PS_ALL, stdout=_row("a", "running")))
    with pytest.raises(JobNotFoundError, match="no taoremote job 'nope' on host gpu1"):
        DockerBackend(ex).find("nope")
    ex.verify()


def test_close_closes_the_executor() -> None:
    ex = _local()
    DockerBackend(ex).close()
    assert ex.closed == 1


def test_every_command_fans_out_over_backends_opened_by_fleet(monkeypatch: pytest.MonkeyPatch) -> None:
    a = _remote(run(build_ps_argv(include_stopped=False), stdout=_row("x", "running")))
    b = FakeExecutor(run(build_ps_argv(include_stopped=False), stdout=""), host="gpu2")
    monkeypatch.setattr(hosts, "open_executor", opener(a, b))
    g = Globals(None, ("gpu1", "gpu2"), None, None, "all", False, False, True, "table")

    def work(backend: JobBackend) -> list[str]:
        return [j.name for j in backend.list_jobs(include_stopped=False, timeout=5)]

    results = fleet.fan_out_backends(g, work)
    assert [(r.host, r.value, r.error) for r in results] == [("gpu1", ["x"], None), ("gpu2", [], None)]
    for ex in (a, b):
        ex.verify()
        assert ex.closed == 1
