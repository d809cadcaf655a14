"""A contract `FakeExecutor` for unit tests (DESIGN.md §4): it answers only the commands a test scripts.

A test lists what the code under test must ask of the host, and what each call does:

    ex = FakeExecutor(
        run(("docker", "create", ...), stdout="c0ffee\\n"),
        stream(("docker", "start", "--attach", "job"), raises=KeyboardInterrupt()),
        run(("docker", "stop", "--time", "10", "job")),
        host="gpu1",
    )
    with ex:                      # on leaving: fails unless every scripted call was made
        launch_job(ex, spec, {}, echo=print)

Any other call fails the test: the fake raises `UnexpectedCall` (a BaseException, so no `except
Exception` in the code under test can swallow it) and also records it, so that `verify()` still fails
the test when the code under test caught it anyway (`except BaseException: cleanup; raise` elsewhere,
or a worker thread that died). Interruptions are scripted as `raises=` (KeyboardInterrupt,
signals.Terminated/HungUp/OutputClosed, errors.LinkLostError, ...) on the call where they arrive;
`block=` holds a call until the test sets an Event (a host that hangs).

`ordered=True` (the default) requires the calls in script order; `ordered=False` lets each call match
any scripted call not yet used (for work that runs in threads or whose order is not the point).
`require_deadlines=True` also fails any `run` without a timeout (a frozen daemon must never hang us).
"""

from __future__ import annotations

import shlex
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from taoremote.hosts import Completed, Executor

# How long a `block=` call waits for its Event before it gives up and fails the test: a forgotten
# `event.set()` must not hang the suite.
BLOCK_LIMIT_S = 10.0


class UnexpectedCall(BaseException):
    """A call the test did not script (or made out of order). BaseException: it must reach the test."""


@dataclass(frozen=True)
class Prefix:
    """Matches any argv that starts with HEAD (for argv with parts the test cannot know)."""

    head: tuple[str, ...]

    def matches(self, argv: tuple[str, ...]) -> bool:
        return argv[: len(self.head)] == self.head

    def __str__(self) -> str:
        return shlex.join(self.head) + " ..."


ArgvPattern = tuple[str, ...] | Prefix


class _Any:
    def __repr__(self) -> str:
        return "ANY"


ANY: object = _Any()  # an Expect field that is not checked


@dataclass(frozen=True)
class Expect:
    """One scripted call: which method with which argv, and what it answers (or raises)."""

    method: str  # "run" | "stream" | "stream_answered" | "run_visible" | "hand_off_env"
    argv: ArgvPattern = ()
    returncode: int = 0
    stdout: str = ""
    stderr: str = ""
    raises: BaseException | None = None
    block: threading.Event | None = None  # answer only once the test sets it
    tty: bool | None = None  # stream: the tty flag it must get (None: either)
    stdin: object = ANY  # run: what it must be fed (a str; None: nothing; ANY: not checked)
    values: Mapping[str, str] | None = None  # hand_off_env: the values it must get
    path: str | None = None  # hand_off_env: the env-file path it answers
    then: Callable[[], None] | None = None  # runs when the call is made, before it answers
    answer: int | None = None  # stream_answered: the marked number it answers (None: no marked line)

    def matches(self, call: Call) -> bool:
        if call.method != self.method:
            return False
        if call.method == "hand_off_env":
            return self.values is None or dict(self.values) == dict(call.values or {})
        pattern = self.argv
        ok = pattern.matches(call.argv) if isinstance(pattern, Prefix) else tuple(pattern) == call.argv
        fed = self.stdin is ANY or self.stdin == call.stdin
        return ok and fed and (self.tty is None or self.tty == call.tty)

    def __str__(self) -> str:
        if self.method == "hand_off_env":
            shown = "any values" if self.values is None else sorted(self.values)
            return f"hand_off_env({shown})"
        argv = str(self.argv) if isinstance(self.argv, Prefix) else shlex.join(self.argv)
        fed = "" if self.stdin is ANY else f" (stdin={self.stdin!r})"
        return f"{self.method}: {argv}{fed}"


def run(
    argv: ArgvPattern,
    *,
    rc: int = 0,
    stdout: str = "",
    stderr: str = "",
    raises: BaseException | None = None,
    block: threading.Event | None = None,
    stdin: object = ANY,
    then: Callable[[], None] | None = None,
) -> Expect:
    return Expect("run", argv, rc, stdout, stderr, raises, block, stdin=stdin, then=then)


def stream(
    argv: ArgvPattern,
    *,
    rc: int = 0,
    raises: BaseException | None = None,
    tty: bool | None = None,
    block: threading.Event | None = None,
    then: Callable[[], None] | None = None,
) -> Expect:
    return Expect("stream", argv, rc, raises=raises, block=block, tty=tty, then=then)


def stream_answered(
    argv: ArgvPattern,
    *,
    answer: int | None,
    raises: BaseException | None = None,
    block: threading.Event | None = None,
    then: Callable[[], None] | None = None,
) -> Expect:
    return Expect("stream_answered", argv, raises=raises, block=block, then=then, answer=answer)


def run_visible(
    argv: ArgvPattern, *, rc: int = 0, stderr: str = "", raises: BaseException | None = None
) -> Expect:
    return Expect("run_visible", argv, rc, stderr=stderr, raises=raises)


def hand_off(
    values: Mapping[str, str] | None = None,
    *,
    path: str | None = "/fake/taoremote-env/env",
    raises: BaseException | None = None,
) -> Expect:
    """hand_off_env of an env-file holding these values (None: any); it answers PATH."""
    return Expect("hand_off_env", raises=raises, values=values, path=path)


@dataclass(frozen=True)
class Call:
    """One call the code under test made, as it made it."""

    method: str
    argv: tuple[str, ...] = ()
    timeout: float | None = None
    tty: bool | None = None
    values: Mapping[str, str] | None = None
    stdin: str | None = None


class FakeExecutor:
    """Implements hosts.Executor (checked against the protocol by tests/unit/test_fakes.py)."""

    host: str
    follow_detached: bool

    def __init__(
        self,
        *script: Expect,
        host: str = "local",
        follow_detached: bool | None = None,
        env_file_on_create: bool | None = None,
        ordered: bool = True,
        require_deadlines: bool = False,
    ) -> None:
        self.script: list[Expect] = list(script)
        self.host = host
        # as the real ones: SSH (any host but this machine) follows detached jobs
        self.follow_detached = host != "local" if follow_detached is None else follow_detached
        # as the real ones: over SSH the command that creates the container writes the env-file from
        # its stdin (pending_env_file gives the content); locally hand_off_env has written it already
        self.env_file_on_create = host != "local" if env_file_on_create is None else env_file_on_create
        self._pending: dict[str, str] = {}
        self.ordered = ordered
        self.require_deadlines = require_deadlines
        self.calls: list[Call] = []  # every call made, scripted or not
        self.closed = 0
        self.failures: list[str] = []
        self._lock = threading.Lock()

    # --- the Executor protocol --------------------------------------------------------------------

    def run(
        self, argv: Sequence[str], *, timeout: float | None = None, stdin: str | None = None
    ) -> Completed:
        if self.require_deadlines and timeout is None:
            self._fail(f"{self.host}: run: {shlex.join(argv)} was given no deadline (timeout)")
        expect = self._take(Call("run", tuple(argv), timeout=timeout, stdin=stdin))
        return Completed(self.host, tuple(argv), expect.returncode, expect.stdout, expect.stderr)

    def stream(self, argv: Sequence[str], *, tty: bool = False) -> int:
        return self._take(Call("stream", tuple(argv), tty=tty)).returncode

    def stream_answered(self, argv: Sequence[str], *, marker: str) -> int | None:
        """Scripted as stream_answered(Prefix(...), answer=CODE) (the marker is a fresh nonce):
        CODE is the exit code the command marked; None: it ended without one."""
        expect = self._take(Call("stream_answered", tuple(argv)))
        if isinstance(expect.argv, Prefix) and tuple(argv)[len(expect.argv.head) :] != (marker,):
            self._fail(f"{self.host}: stream_answered: {shlex.join(argv)} does not end with its marker")
        return expect.answer

    def run_visible(self, argv: Sequence[str]) -> Completed:
        expect = self._take(Call("run_visible", tuple(argv)))
        return Completed(self.host, tuple(argv), expect.returncode, "", expect.stderr)

    def hand_off_env(self, content: str) -> str:
        # scripted by the values the env-file holds (`NAME=value` lines; `#` lines are comments)
        values = dict(ln.split("=", 1) for ln in content.splitlines() if ln and not ln.startswith("#"))
        path = self._take(Call("hand_off_env", values=values)).path
        assert path is not None, "hand_off_env always answers a path"
        if self.env_file_on_create:
            with self._lock:
                self._pending[path] = content
        return path

    def pending_env_file(self, path: str) -> str | None:
        """Bookkeeping, not a call to the host: answered unscripted, as the real executors do."""
        with self._lock:
            return self._pending.get(path)

    def close(self) -> None:
        with self._lock:
            self.closed += 1

    # --- the contract -----------------------------------------------------------------------------

    def _take(self, call: Call) -> Expect:
        with self._lock:
            self.calls.append(call)
            expect = self._match(call)
        if expect.then is not None:
            expect.then()
        if expect.block is not None and not expect.block.wait(BLOCK_LIMIT_S):
            self._fail(f"{self.host}: {expect} was held for {BLOCK_LIMIT_S:.0f} s and never released")
        if expect.raises is not None:
            raise expect.raises
        return expect

    def _match(self, call: Call) -> Expect:
        candidates = self.script[:1] if self.ordered else self.script
        for index, expect in enumerate(candidates):
            if expect.matches(call):
                return self.script.pop(index)
        shown = _describe(call)
        if self.ordered and any(e.matches(call) for e in self.script):
            problem = f"{self.host}: {shown} came out of order; the next scripted call is {self.script[0]}"
        elif self.script:
            problem = f"{self.host}: unexpected {shown}; still scripted: " + "; ".join(map(str, self.script))
        else:
            problem = f"{self.host}: unexpected {shown}; nothing more was scripted"
        self.failures.append(problem)
        raise UnexpectedCall(problem)

    def _fail(self, problem: str) -> None:
        with self._lock:
            self.failures.append(problem)
        raise UnexpectedCall(problem)

    def verify(self) -> None:
        """Fail unless every scripted call was made and no unexpected one was."""
        with self._lock:
            problems = list(self.failures)
            problems += [f"{self.host}: scripted but never called: {e}" for e in self.script]
        if problems:
            raise AssertionError("FakeExecutor contract broken:\n  " + "\n  ".join(problems))

    def __enter__(self) -> FakeExecutor:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, UnexpectedCall):
            return  # already the clearest message
        self.verify()


def _describe(call: Call) -> str:
    if call.method == "hand_off_env":
        return f"hand_off_env({sorted(call.values or {})})"
    extra = f" (tty={call.tty})" if call.method == "stream" else ""
    if call.stdin is not None:
        extra = f" (stdin={call.stdin!r})"
    return f"{call.method}: {shlex.join(call.argv)}{extra}"


def opener(*fakes: FakeExecutor) -> Callable[..., FakeExecutor]:
    """A stand-in for hosts.open_executor that hands out these fakes by host name (None: "local");
    any other host fails the test."""
    by_host = {f.host: f for f in fakes}

    def open_executor(host: str | None, *, ssh_config: str | None = None) -> FakeExecutor:
        name = host or "local"
        if name not in by_host:
            raise UnexpectedCall(f"open_executor({name!r}): no FakeExecutor for that host")
        return by_host[name]

    return open_executor


def _conforms(fake: FakeExecutor) -> Executor:
    """mypy's proof that FakeExecutor satisfies the hosts.Executor protocol (`mypy tests/unit/fakes.py`)."""
    return fake
