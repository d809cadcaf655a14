"""The FakeExecutor's own contract: it answers what a test scripts, and it can fail a test."""

from __future__ import annotations

import contextlib
import inspect
import signal
import threading

import pytest

from taoremote import hosts, jobs
from taoremote.command import build_ps_argv
from taoremote.errors import LinkLostError
from taoremote.hosts import Completed, Executor
from taoremote.signals import HungUp, OutputClosed, Terminated
from tests.unit.fakes import (
    FakeExecutor,
    Prefix,
    UnexpectedCall,
    hand_off,
    opener,
    run,
    run_visible,
    stream,
)

PS = ("docker", "ps", "--all")

# --- it is an Executor --------------------------------------------------------------------------------


def _protocol_methods() -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(Executor).items()
        if callable(member) and not name.startswith("_")
    }


def test_the_protocol_has_the_methods_the_fake_is_checked_against() -> None:
    # if the protocol grows a method, this list says so and the next test checks the fake has it
    assert set(_protocol_methods()) >= {"run", "stream", "run_visible", "hand_off_env", "close"}


@pytest.mark.parametrize("name", sorted(_protocol_methods()))
def test_the_fake_has_every_protocol_method_with_the_same_parameters(name: str) -> None:
    wanted = _protocol_methods()[name]
    have = inspect.signature(getattr(FakeExecutor, name))
    shape = [(p.name, p.kind, p.default) for p in wanted.parameters.values()]
    assert [(p.name, p.kind, p.default) for p in have.parameters.values()] == shape


def test_the_fake_has_the_protocols_attributes() -> None:
    ex = FakeExecutor()
    for attribute in Executor.__annotations__:
        assert hasattr(ex, attribute), attribute


def test_only_an_ssh_host_follows_detached_jobs_as_the_real_executors_do() -> None:
    assert FakeExecutor().follow_detached is hosts.LocalExecutor.follow_detached is False
    assert FakeExecutor(host="gpu1").follow_detached is True
    assert FakeExecutor(host="gpu1", follow_detached=False).follow_detached is False


# --- it answers what is scripted ----------------------------------------------------------------------


def test_scripted_calls_are_answered_as_scripted() -> None:
    with FakeExecutor(
        hand_off({"KEY": "v"}, path="/h/env"),
        run(PS, stdout="row\n"),
        stream(("docker", "logs", "-f", "j"), rc=3, tty=False),
        run_visible(("docker", "pull", "img"), rc=1, stderr="denied\n"),
        run(("docker", "rm", "j"), rc=1, stderr="gone\n"),
        host="gpu1",
    ) as ex:
        assert ex.hand_off_env("KEY=v\n") == "/h/env"
        assert ex.run(PS, timeout=5) == Completed("gpu1", PS, 0, "row\n", "")
        assert ex.stream(["docker", "logs", "-f", "j"]) == 3
        assert ex.run_visible(("docker", "pull", "img")) == Completed(
            "gpu1", ("docker", "pull", "img"), 1, "", "denied\n"
        )
        assert ex.run(("docker", "rm", "j")).stderr == "gone\n"
    assert [c.method for c in ex.calls] == ["hand_off_env", "run", "stream", "run_visible", "run"]
    assert ex.calls[1].timeout == 5


def test_an_env_file_written_by_hand_off_env_needs_no_stdin() -> None:
    with FakeExecutor(hand_off({"A": "1"}, path="/h/env")) as ex:
        assert ex.pending_env_file(ex.hand_off_env("A=1\n# comment\n")) is None


def test_over_ssh_the_env_file_is_written_by_the_create_from_its_stdin() -> None:
    # as ssh.SshExecutor: the content waits for the command that creates the container
    with FakeExecutor(hand_off({"A": "1"}, path="/h/env"), host="gpu1") as ex:
        assert ex.pending_env_file(ex.hand_off_env("A=1\n")) == "A=1\n"
        assert ex.pending_env_file("/other") is None


def test_stdin_is_checked_when_scripted() -> None:
    with FakeExecutor(run(("sh", "-c", "cat"), stdin="A=1\n"), run(("true",), stdin=None)) as ex:
        ex.run(("sh", "-c", "cat"), stdin="A=1\n")
        ex.run(("true",))
    assert [c.stdin for c in ex.calls] == ["A=1\n", None]
    ex = FakeExecutor(run(("sh", "-c", "cat"), stdin="A=1\n"))
    with pytest.raises(UnexpectedCall, match=r"unexpected run: sh -c cat \(stdin='B=2\\n'\)"):
        ex.run(("sh", "-c", "cat"), stdin="B=2\n")


def test_a_prefix_matches_argv_whose_tail_the_test_cannot_know() -> None:
    with FakeExecutor(run(Prefix(("docker", "create")), stdout="id\n")) as ex:
        assert ex.run(("docker", "create", "--name", "random-1234", "img")).stdout == "id\n"


def test_unordered_script_takes_calls_in_any_order() -> None:
    with FakeExecutor(run(("a",)), run(("b",)), ordered=False) as ex:
        ex.run(("b",))
        ex.run(("a",))


def test_real_code_runs_against_the_fake() -> None:
    argv = build_ps_argv(include_stopped=True)
    with FakeExecutor(run(argv, stdout=""), host="gpu1") as ex:
        assert jobs.list_jobs(ex, include_stopped=True) == []


def test_close_is_counted() -> None:
    ex = FakeExecutor()
    ex.close()
    ex.close()
    assert ex.closed == 2


# --- it fails the test --------------------------------------------------------------------------------


def test_an_unscripted_command_fails_with_its_argv_in_the_message() -> None:
    ex = FakeExecutor(run(PS), host="gpu1")
    message = "gpu1: unexpected run: docker rm --force j; still scripted: run: docker ps --all"
    with pytest.raises(UnexpectedCall, match=message):
        ex.run(("docker", "rm", "--force", "j"))


def test_a_command_after_the_script_ran_out_fails() -> None:
    ex = FakeExecutor()
    with pytest.raises(UnexpectedCall, match=r"unexpected stream: docker logs j \(tty=True\); nothing more"):
        ex.stream(("docker", "logs", "j"), tty=True)


def test_an_unexpected_command_cannot_be_swallowed_by_except_exception() -> None:
    ex = FakeExecutor()
    # contextlib.suppress(Exception) is what careless clean-up code does: it must not hide the call
    with pytest.raises(UnexpectedCall), contextlib.suppress(Exception):
        ex.run(("docker", "stop", "j"))


def test_an_unexpected_command_the_code_swallowed_still_fails_verify() -> None:
    ex = FakeExecutor()
    with contextlib.suppress(BaseException):  # the code under test may catch everything
        ex.run(("docker", "stop", "j"))
    with pytest.raises(AssertionError, match="unexpected run: docker stop j"):
        ex.verify()


def test_a_scripted_call_never_made_fails_on_leaving_the_block() -> None:
    never = "scripted but never called: run: docker rm j"
    with pytest.raises(AssertionError, match=never), FakeExecutor(run(PS), run(("docker", "rm", "j"))) as ex:
        ex.run(PS)


def test_calls_out_of_order_fail_an_ordered_script() -> None:
    ex = FakeExecutor(run(("a",)), run(("b",)))
    with pytest.raises(UnexpectedCall, match="run: b came out of order; the next scripted call is run: a"):
        ex.run(("b",))


def test_the_wrong_tty_fails() -> None:
    ex = FakeExecutor(stream(("docker", "start", "-a", "j"), tty=True))
    with pytest.raises(UnexpectedCall):
        ex.stream(("docker", "start", "-a", "j"), tty=False)


def test_other_env_values_fail() -> None:
    ex = FakeExecutor(hand_off({"A": "1"}))
    with pytest.raises(UnexpectedCall, match=r"hand_off_env\(\['B'\]\)"):
        ex.hand_off_env("B=1\n")


def test_a_run_without_a_deadline_fails_when_deadlines_are_required() -> None:
    ex = FakeExecutor(run(PS), require_deadlines=True)
    with pytest.raises(UnexpectedCall, match="docker ps --all was given no deadline"):
        ex.run(PS)
    ex = FakeExecutor(run(PS), require_deadlines=True)
    ex.run(PS, timeout=5)
    ex.verify()


def test_a_clean_run_passes_verify() -> None:
    ex = FakeExecutor(run(PS))
    ex.run(PS)
    ex.verify()


# --- interruptions and hangs --------------------------------------------------------------------------

INTERRUPTIONS = [
    KeyboardInterrupt(),
    Terminated(signal.SIGTERM),
    HungUp(signal.SIGHUP),
    OutputClosed(),
    LinkLostError("lost the link to gpu1"),
]


@pytest.mark.parametrize("interruption", INTERRUPTIONS, ids=lambda e: type(e).__name__)
def test_an_interruption_arrives_at_the_scripted_run(interruption: BaseException) -> None:
    with FakeExecutor(run(PS), run(("docker", "create", "img"), raises=interruption)) as ex:
        ex.run(PS)
        with pytest.raises(type(interruption)) as info:
            ex.run(("docker", "create", "img"))
        assert info.value is interruption


@pytest.mark.parametrize("interruption", INTERRUPTIONS, ids=lambda e: type(e).__name__)
def test_an_interruption_arrives_while_streaming(interruption: BaseException) -> None:
    ex = FakeExecutor(stream(("docker", "logs", "-f", "j"), raises=interruption), host="gpu1")
    with pytest.raises(type(interruption)):
        ex.stream(("docker", "logs", "-f", "j"))
    ex.verify()


def test_a_blocked_call_answers_once_released() -> None:
    release = threading.Event()
    ex = FakeExecutor(run(PS, stdout="late", block=release))
    answers: list[str] = []
    worker = threading.Thread(target=lambda: answers.append(ex.run(PS).stdout))
    worker.start()
    worker.join(0.2)
    assert worker.is_alive() and answers == []
    release.set()
    worker.join(5)
    assert answers == ["late"]
    ex.verify()


def test_then_runs_when_the_call_is_made() -> None:
    seen: list[str] = []
    with FakeExecutor(run(PS, then=lambda: seen.append("called"))) as ex:
        assert seen == []
        ex.run(PS)
    assert seen == ["called"]


# --- an opener for code that opens its own executors --------------------------------------------------


def test_the_opener_hands_out_fakes_by_host_and_refuses_others() -> None:
    local, gpu1 = FakeExecutor(), FakeExecutor(host="gpu1")
    open_executor = opener(local, gpu1)
    assert open_executor(None) is local
    assert open_executor("gpu1", ssh_config="/x") is gpu1
    with pytest.raises(UnexpectedCall, match="no FakeExecutor for that host"):
        open_executor("gpu2")
