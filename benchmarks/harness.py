"""The benchmark harness: commands timed alternately in one run, medians, ratios, the final table.

A measure compares taoremote with its floor (what the same work costs without taoremote), both
timed in the same run, alternately (one warm-up of each, then A, B, A, B, ...), so a machine that
gets busier or quieter halfway affects both sides alike. Never an assertion: it prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.proctree import descendants

REPO = Path(__file__).resolve().parents[1]
RESULTS_JSON = REPO / ".bench" / "results.json"
TYPER_IMPORT = [sys.executable, "-c", "import typer"]


def log(msg: str = "") -> None:
    print(msg, flush=True)


def fmt_s(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "n/a"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


# ---------------------------------------------------------------------------------------------- timing


@dataclasses.dataclass(frozen=True)
class Cmd:
    """What one timed run executes: one or more argvs, one after another (a floor is
    `python -c 'import typer'` followed by the docker command)."""

    label: str
    steps: tuple[tuple[str, ...], ...]
    env: dict[str, str]
    expect_out: str | None = None  # a substring the last step's stdout must contain

    @classmethod
    def of(cls, label: str, *steps: Sequence[str], env: dict[str, str], expect_out: str | None = None) -> Cmd:
        return cls(label, tuple(tuple(s) for s in steps), env, expect_out)


@dataclasses.dataclass
class Sample:
    label: str
    times: list[float] = dataclasses.field(default_factory=list)
    failures: list[str] = dataclasses.field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times else float("nan")

    def cell(self) -> str:
        if not self.times:
            return f"FAILED ({len(self.failures)} runs)"
        spread = f"{fmt_s(min(self.times))}–{fmt_s(max(self.times))}"
        failed = f" [{len(self.failures)} failed]" if self.failures else ""
        return f"{fmt_s(self.median)} ({spread}){failed}"

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "median_s": round(self.median, 4) if self.times else None,
            "times_s": [round(t, 4) for t in self.times],
            "failures": self.failures[:3],
        }


def run_once(cmd: Cmd, timeout: float = 120) -> tuple[float, str | None]:
    """Wall time of the whole command and the reason it failed (None when it did not)."""
    t0 = time.perf_counter()
    for argv in cmd.steps:
        try:
            proc = subprocess.run(
                argv,
                env=cmd.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout,
                cwd=REPO,
            )
        except subprocess.TimeoutExpired:
            return time.perf_counter() - t0, f"timed out after {timeout:.0f} s"
        if proc.returncode != 0:
            tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-2:]
            return time.perf_counter() - t0, f"{argv[0]}: rc {proc.returncode}: {' | '.join(tail)}"
    elapsed = time.perf_counter() - t0
    if cmd.expect_out is not None and cmd.expect_out not in proc.stdout:
        return elapsed, f"stdout lacks {cmd.expect_out!r}: {proc.stdout.strip()[:160]!r}"
    return elapsed, None


def alternate(
    cmds: Sequence[Cmd], runs: int, *, before: Callable[[], None] | None = None
) -> dict[str, Sample]:
    """One warm-up of each, then `runs` rounds of A, B, C, ...; `before` (untimed) precedes every run."""
    samples = {c.label: Sample(c.label) for c in cmds}
    for round_ in range(runs + 1):
        for c in cmds:
            if before is not None:
                before()
            elapsed, error = run_once(c)
            if error:
                samples[c.label].failures.append(error)
            elif round_ > 0:
                samples[c.label].times.append(elapsed)
    for s in samples.values():
        if s.failures:
            log(f"  !! {s.label}: {len(s.failures)} failed run(s), first: {s.failures[0]}")
    return samples


# ---------------------------------------------------------------------------------------------- results


@dataclasses.dataclass
class Row:
    """One line of the final table. goal: a ratio (taoremote / floor ≤ goal) or, with
    `absolute`, seconds (taoremote's median ≤ goal)."""

    measure: str
    taoremote: Sample
    floor: Sample | None
    goal: float | None
    absolute: bool = False
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.floor is None or not self.taoremote.times or not self.floor.times:
            return None
        return self.taoremote.median / self.floor.median

    @property
    def met(self) -> bool | None:
        if self.goal is None:
            return None
        if self.taoremote.failures or not self.taoremote.times:
            return False
        value = self.taoremote.median if self.absolute else self.ratio
        return value is not None and value <= self.goal

    def cells(self) -> list[str]:
        ratio = self.ratio
        goal = (
            "(info)" if self.goal is None else f"≤ {self.goal:g} s" if self.absolute else f"≤ {self.goal:g}×"
        )
        return [
            self.measure,
            self.taoremote.cell(),
            self.floor.cell() if self.floor else "—",
            "—" if ratio is None else f"{ratio:.2f}×",
            goal,
            {True: "yes", False: "NO", None: "—"}[self.met],
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "measure": self.measure,
            "taoremote": self.taoremote.to_json(),
            "floor": self.floor.to_json() if self.floor else None,
            "ratio": round(self.ratio, 3) if self.ratio is not None else None,
            "goal": self.goal,
            "goal_unit": "s" if self.absolute else "ratio",
            "met": self.met,
            "note": self.note,
        }


HEADER = ("measure", "taoremote", "floor", "ratio", "goal", "met")


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def print_rows(rows: Sequence[Row]) -> None:
    log(table(HEADER, [r.cells() for r in rows]))
    for r in rows:
        if r.note:
            log(f"  · {r.measure}: {r.note}")


def write_results(rows: Sequence[Row], facts: dict[str, Any], elapsed: float) -> Path:
    RESULTS_JSON.parent.mkdir(exist_ok=True)
    doc = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "elapsed_s": round(elapsed, 1),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "facts": facts,
        "rows": [r.to_json() for r in rows],
    }
    RESULTS_JSON.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return RESULTS_JSON


# ---------------------------------------------------------------------------------------------- cleanup


class Cleanup:
    """Undo actions, run last-in first-out at the end, on error, Ctrl-C and SIGTERM/SIGHUP."""

    def __init__(self) -> None:
        self._stack: list[tuple[str, Callable[[], object]]] = []

    def add(self, what: str, fn: Callable[[], object]) -> None:
        self._stack.append((what, fn))

    def run(self) -> None:
        while self._stack:
            what, fn = self._stack.pop()
            try:
                fn()
            except BaseException as exc:  # keep cleaning: one failure must not leak the rest
                log(f"  !! cleanup of {what}: {type(exc).__name__}: {exc}")


def kill_tree(proc: subprocess.Popen[Any]) -> None:
    """Kill a process this run started and everything below it (by pid, never by name)."""
    if proc.poll() is None:
        for pid in descendants(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


# ---------------------------------------------------------------------------------------------- context


@dataclasses.dataclass
class Bench:
    """What every section needs: where to write, who the run launches as, how many runs."""

    tmp: Path
    user: str  # $LOGNAME/$USER of every taoremote run: its jobs carry taoremote.user=<user>
    env: dict[str, str]  # local environment: fake nvidia-smi first on PATH, mounts file, registry
    cleanup: Cleanup
    quick: bool = False
    runs_override: int | None = None
    rows: list[Row] = dataclasses.field(default_factory=list)
    facts: dict[str, Any] = dataclasses.field(default_factory=dict)

    def runs(self, default: int) -> int:
        if self.runs_override:
            return self.runs_override
        return max(3, default // 3) if self.quick else default

    @property
    def taoremote(self) -> list[str]:
        script = Path(sys.executable).parent / "taoremote"
        return [str(script)] if script.exists() else [sys.executable, "-m", "taoremote"]

    def add(self, *rows: Row) -> None:
        self.rows.extend(rows)
        print_rows(rows)

    def own_containers(self) -> list[str]:
        return docker("ps", "-aq", "--filter", f"label=taoremote.user={self.user}").stdout.split()

    def remove_own_containers(self) -> int:
        ids = self.own_containers()
        if ids:
            docker("rm", "-f", *ids, timeout=300)
        return len(ids)
