"""fleet.fan_out: every host at once, each with its own deadline; a host that fails or hangs costs
only itself. The hosts are FakeExecutors handed out in place of hosts.open_executor."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar, cast

import pytest

from taoremote import fleet, hosts
from taoremote.errors import DockerError, HostError, TaoRemoteError
from taoremote.hosts import Executor
from tests.unit.fakes import BLOCK_LIMIT_S, FakeExecutor, opener, run

if TYPE_CHECKING:
    from taoremote.cli import Globals

T = TypeVar("T")
PS = ("docker", "ps")


@dataclass(frozen=True)
class Targets:
    """What fan_out reads of the global options."""

    hosts: tuple[str, ...] = ()
    ssh_config: str | None = None
    slurm: str | None = None  # --slurm LOGIN: the one target is the cluster


def ps(ex: Executor) -> str:
    return ex.run(PS, timeout=5).stdout


def fan_out(targets: Targets, work: Callable[[Executor], T], **kwargs: float) -> list[fleet.HostResult[T]]:
    # fan_out reads only .hosts and .ssh_config of the global options
    return fleet.fan_out(cast("Globals", targets), work, **kwargs)


Install = Callable[..., None]


@pytest.fixture
def use(monkeypatch: pytest.MonkeyPatch) -> Install:
    """use(*fakes): fan_out opens these FakeExecutors instead of real hosts."""

    def install(*fakes: FakeExecutor) -> None:
        monkeypatch.setattr(hosts, "open_executor", opener(*fakes))

    return install


def _wait_closed(ex: FakeExecutor, limit_s: float = 5.0) -> None:
    end = time.monotonic() + limit_s
    while not ex.closed and time.monotonic() < end:
        time.sleep(0.01)


def test_a_host_that_hangs_costs_only_itself(use: Install) -> None:
    release = threading.Event()
    a = FakeExecutor(run(PS, stdout="a-jobs"), host="a")
    b = FakeExecutor(run(PS, stdout="b-jobs", block=release), host="b")
    c = FakeExecutor(run(PS, stdout="c-jobs"), host="c")
    use(a, b, c)
    started = time.monotonic()
    try:
        results = fan_out(Targets(("a", "b", "c")), ps, deadline=0.3)
        elapsed = time.monotonic() - started
    finally:
        release.set()  # let the hung worker finish, so it closes its executor
    assert [(r.host, r.value) for r in results] == [("a", "a-jobs"), ("b", None), ("c", "c-jobs")]
    assert results[0].error is None and results[2].error is None
    assert isinstance(results[1].error, TaoRemoteError)
    assert str(results[1].error).startswith("host b: no answer within ")
    # had fan_out waited for b, it would have taken the fake's whole block limit
    assert elapsed < BLOCK_LIMIT_S / 2
    _wait_closed(b)
    for ex in (a, b, c):
        ex.verify()
        assert ex.closed == 1


def test_a_host_that_fails_costs_only_itself_and_keeps_its_error(use: Install) -> None:
    refused = DockerError("docker failed on host b: Cannot connect to the Docker daemon")
    a = FakeExecutor(run(PS, stdout="a-jobs"), host="a")
    b = FakeExecutor(run(PS, raises=refused), host="b")
    use(a, b)
    results = fan_out(Targets(("a", "b")), ps)
    assert [(r.host, r.value, r.error) for r in results] == [("a", "a-jobs", None), ("b", None, refused)]
    for ex in (a, b):
        ex.verify()
        assert ex.closed == 1  # closed on failure too


def test_a_host_that_cannot_be_reached_is_reported_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    a = FakeExecutor(run(PS, stdout="a-jobs"), host="a")
    unreachable = HostError("cannot connect to down: Connection refused")
    fakes = opener(a)

    def open_executor(host: str | None, *, ssh_config: str | None = None) -> FakeExecutor:
        if host == "down":
            raise unreachable
        return fakes(host, ssh_config=ssh_config)

    monkeypatch.setattr(hosts, "open_executor", open_executor)
    results = fan_out(Targets(("down", "a")), ps)
    assert [(r.host, r.value, r.error) for r in results] == [
        ("down", None, unreachable),
        ("a", "a-jobs", None),
    ]
    a.verify()


def test_results_come_in_the_order_of_the_hosts_not_of_the_answers(use: Install) -> None:
    c_answered = threading.Event()
    a = FakeExecutor(run(PS, stdout="a-jobs", block=c_answered), host="a")
    b = FakeExecutor(run(PS, stdout="b-jobs", block=c_answered), host="b")
    c = FakeExecutor(run(PS, stdout="c-jobs", then=c_answered.set), host="c")
    use(a, b, c)
    results = fan_out(Targets(("a", "b", "c")), ps, deadline=BLOCK_LIMIT_S)
    assert [r.value for r in results] == ["a-jobs", "b-jobs", "c-jobs"]
    for ex in (a, b, c):
        ex.verify()


def test_the_ssh_config_reaches_every_host(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str | None, str | None]] = []
    fakes = opener(FakeExecutor(host="a"), FakeExecutor(host="b"))

    def open_executor(host: str | None, *, ssh_config: str | None = None) -> FakeExecutor:
        seen.append((host, ssh_config))
        return fakes(host)

    monkeypatch.setattr(hosts, "open_executor", open_executor)
    fan_out(Targets(("a", "b"), ssh_config="/cfg"), lambda ex: ex.host)
    assert sorted(seen) == [("a", "/cfg"), ("b", "/cfg")]


def test_no_host_means_this_machine(use: Install) -> None:
    local = FakeExecutor(run(PS, stdout="mine"))
    use(local)
    results = fan_out(Targets(), ps)
    assert [(r.host, r.value, r.error) for r in results] == [("local", "mine", None)]
    local.verify()
    assert local.closed == 1


def test_one_host_runs_in_the_callers_thread_so_ctrl_c_reaches_it(use: Install) -> None:
    local = FakeExecutor(run(PS, raises=KeyboardInterrupt()))
    use(local)
    with pytest.raises(KeyboardInterrupt):
        fan_out(Targets(), ps)
    local.verify()
    assert local.closed == 1  # the connection is closed on the way out


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # that thread dies
def test_a_host_whose_work_asks_something_unscripted_fails_the_test(use: Install) -> None:
    # the fake's contract holds inside fan_out's worker threads too: the thread dies, verify() says why
    a = FakeExecutor(host="a")
    b = FakeExecutor(run(PS), host="b")
    use(a, b)
    results = fan_out(Targets(("a", "b")), ps, deadline=1.0)
    assert results[0].error is not None
    with pytest.raises(AssertionError, match="a: unexpected run: docker ps"):
        a.verify()
    b.verify()
