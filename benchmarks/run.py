#!/usr/bin/env python3
"""taoremote speed, as ratios against plain docker / ssh / python measured in the same run.

`make bench` (= .venv/bin/python benchmarks/run.py). Not a test: it never asserts a timing; it prints,
for each measure, the medians (min-max) of taoremote and of its baseline, measured alternately
(A, B, A, B, ... after one warm-up run of each), their ratio, the issue's goal and whether it is met.
The summary is also written to .bench/results.json.

Local  ("local launch"):  launch vs `docker run`, --help/--dry-run vs `python -c pass`,
                          `list` with 50 running jobs vs `docker ps` (and exactly one `docker ps` call).
Remote ("remote hosts"):  `list` on 8 hosts vs 1 host vs `ssh host docker ps`, and a remote launch vs
                          `ssh host docker run`, every host 50 ms RTT away (tc netem in network
                          namespaces where the kernel has sch_netem, else benchmarks/latency_proxy.py).

Remote hosts are real sshd instances (the approach of tests/integration/conftest.py) that log in a
dedicated user created for the run (shell /bin/sh, group docker), so no login runs root's ~/.bashrc
(pyenv init costs ~0.1 s per ssh command); both sides of every ratio use the same hosts and user.
Everything made here (containers, user, sshd, proxy, namespaces) is removed at the end, on error
and on Ctrl-C / SIGTERM too. Needs root (user, sshd, namespaces), a running dockerd and the test
images (`make setup`). Options: --runs N (or BENCH_RUNS=N), --quick, --latency auto|netem|proxy|netns|none,
--delay-ms, --skip-remote, --only local,startup,list,remote.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo: taoremote, tests.proctree
from tests.proctree import descendants

REPO = Path(__file__).resolve().parents[1]
RESULTS_JSON = REPO / ".bench" / "results.json"
REGISTRY = "taoremote.test"
IMAGE = f"{REGISTRY}/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5"  # what `detectnet_v2` maps to with the override
TASK_ARGS = ("detectnet_v2", "train", "x")
SMI_HEADER = REPO / "tests" / "data" / "nvidia-smi" / "header-r580.txt"
SMI_QUERY = "0, NVIDIA H100 80GB HBM3, GPU-4d1a7c55-1b1e-4f5e-9a1a-000000000000, 1, 81559, 0, 9.0\n"
SSHD = "/usr/sbin/sshd"
BENCH_USER = "taoremote-bench"  # created for the run, removed at the end
N_JOBS = 50
N_HOSTS = 8
ONE_WAY_DELAY_MS = 25.0  # 50 ms round trip

DEFAULT_RUNS = {
    "local_launch": 20,
    "probe": 15,
    "startup": 30,
    "list_local": 25,
    "remote_list": 15,
    "remote_launch": 15,
    "remote_probe": 15,
}


VANISHED: set[str] = set()  # containers a failed run said were gone


def log(msg: str = "") -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------------- timing


@dataclasses.dataclass
class Cmd:
    label: str
    argv: list[str]
    env: dict[str, str]
    expect_rc: int = 0
    expect_out: str | None = None  # a substring stdout must contain


@dataclasses.dataclass
class Sample:
    label: str
    times: list[float] = dataclasses.field(default_factory=list)
    failures: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.times) and not self.failures

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times else float("nan")

    def cell(self) -> str:
        if not self.times:
            return f"FAILED ({len(self.failures)} runs)"
        text = f"{fmt_s(self.median)} ({fmt_s(min(self.times), unit=False)}–{fmt_s(max(self.times))})"
        if self.failures:
            text += f" [{len(self.failures)} FAILED]"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "median_s": round(self.median, 6) if self.times else None,
            "min_s": round(min(self.times), 6) if self.times else None,
            "max_s": round(max(self.times), 6) if self.times else None,
            "runs": len(self.times),
            "times_s": [round(t, 6) for t in self.times],
            "failures": self.failures[:5],
        }


def fmt_s(seconds: float, unit: bool = True) -> str:
    if seconds != seconds:  # nan
        return "n/a"
    if seconds < 1:
        return f"{seconds * 1000:.0f}{' ms' if unit else ''}"
    return f"{seconds:.2f}{' s' if unit else ''}"


def run_cmd(
    cmd: Cmd, timeout: float = 180
) -> tuple[float, str | None, subprocess.CompletedProcess[str] | None]:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd.argv,
            env=cmd.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            cwd=REPO,
        )
    except subprocess.TimeoutExpired:
        return time.perf_counter() - t0, f"timed out after {timeout:.0f} s", None
    elapsed = time.perf_counter() - t0
    error = None
    if proc.returncode != cmd.expect_rc:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-3:]
        error = f"rc {proc.returncode} (expected {cmd.expect_rc}): {' | '.join(tail)}"
    elif cmd.expect_out is not None and cmd.expect_out not in proc.stdout:
        error = f"stdout lacks {cmd.expect_out!r}: {proc.stdout.strip()[:200]!r}"
    return elapsed, error, proc


def alternate(cmds: Sequence[Cmd], runs: int, warmup: int = 1) -> dict[str, Sample]:
    """One warm-up run of each, then A, B, (C,) A, B, ... `runs` rounds; failed runs are not timed."""
    samples = {c.label: Sample(c.label) for c in cmds}
    for _ in range(warmup):
        for c in cmds:
            _, error, _ = run_cmd(c)
            if error:
                samples[c.label].failures.append(f"warm-up: {error}")
    for _ in range(runs):
        for c in cmds:
            elapsed, error, _ = run_cmd(c)
            if error:
                samples[c.label].failures.append(error)
            else:
                samples[c.label].times.append(elapsed)
    for s in samples.values():
        if s.failures:
            log(f"  !! {s.label}: {len(s.failures)} failed run(s), first: {s.failures[0]}")
            for f in s.failures:
                VANISHED.update(re.findall(r"No such container: (taoremote-[\w.-]+)", f))
    return samples


def time_call(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------- results


@dataclasses.dataclass
class Row:
    key: str
    issue: str
    measure: str
    taoremote: Sample | str
    baseline: Sample | str
    goal: float | None = None  # ratio taoremote/baseline must be <= goal
    goal_text: str | None = None
    met: bool | None = None
    ratio: float | None = None
    note: str = ""

    def finish(self) -> Row:
        a, b = self.taoremote, self.baseline
        if isinstance(a, Sample) and isinstance(b, Sample) and a.times and b.times:
            self.ratio = a.median / b.median
            if self.goal is not None:
                self.met = self.ratio <= self.goal if a.ok and b.ok else False
        if self.goal_text is None:
            self.goal_text = f"≤ {self.goal:g}×" if self.goal is not None else "(info)"
        return self

    def cells(self) -> list[str]:
        def cell(v: Sample | str) -> str:
            return v.cell() if isinstance(v, Sample) else v

        ratio = "—"
        if self.ratio is not None:  # 3 decimals where 2 would round onto the goal
            close = self.goal is not None and abs(self.ratio - self.goal) < 0.005
            ratio = f"{self.ratio:.3f}×" if close else f"{self.ratio:.2f}×"
        met = {True: "yes", False: "NO", None: "—"}[self.met]
        return [self.measure, cell(self.taoremote), cell(self.baseline), ratio, self.goal_text or "", met]

    def to_json(self) -> dict[str, Any]:
        def js(v: Sample | str) -> Any:
            return v.to_json() if isinstance(v, Sample) else v

        return {
            "key": self.key,
            "issue": self.issue,
            "measure": self.measure,
            "taoremote": js(self.taoremote),
            "baseline": js(self.baseline),
            "ratio": round(self.ratio, 4) if self.ratio is not None else None,
            "goal": self.goal_text,
            "met": self.met,
            "note": self.note,
        }


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "-+-".join("-" * w for w in widths)
    out = [" | ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)), line]
    out += [" | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


SUMMARY_HEADER = ("measure", "taoremote", "baseline", "ratio", "goal", "met?")


def print_rows(rows: Sequence[Row]) -> None:
    log(table(SUMMARY_HEADER, [r.cells() for r in rows]))
    for r in rows:
        if r.note:
            log(f"  · {r.measure}: {r.note}")


# ---------------------------------------------------------------------------------------------- cleanup


class Cleanup:
    """Undo actions, run last-in first-out at the end, on error, Ctrl-C and SIGTERM/SIGHUP."""

    def __init__(self) -> None:
        self._stack: list[tuple[str, Callable[[], None]]] = []
        self._done = False

    def add(self, what: str, fn: Callable[[], None]) -> None:
        self._stack.append((what, fn))

    def run(self) -> None:
        if self._done:
            return
        self._done = True
        while self._stack:
            what, fn = self._stack.pop()
            try:
                fn()
            except BaseException as exc:  # keep cleaning: one failure must not leak the rest
                log(f"  !! cleanup {what}: {type(exc).__name__}: {exc}")


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def kill_tree(proc: subprocess.Popen[Any]) -> None:
    """Kill a process we started and everything under it (by pid, never by name)."""
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


class EventWatcher:
    """`docker events` for the whole run: who removed what. Other sessions' integration tests remove
    every container labelled taoremote.job on this shared dockerd (tests/integration/conftest.py,
    clean_jobs), which can remove this run's jobs and launches under it; this makes that visible."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._out = open(path, "w")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            ["docker", "events", "--filter", "type=container", "--format", "{{json .}}"],
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def stop(self) -> None:
        kill_tree(self.proc)
        self._out.close()

    def events(self) -> list[dict[str, Any]]:
        out = []
        with contextlib.suppress(OSError):
            for line in self.path.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out


def interference(b: Bench) -> list[str]:
    """Bench containers destroyed by someone else while the bench measured (before its own cleanup)."""
    watcher: EventWatcher | None = b.facts.get("watcher")
    if watcher is None:
        return []
    time.sleep(0.2)  # let the last events arrive
    until = b.facts.get("jobs_removed_at", float("inf"))
    mine = b.facts.get("self_removed", set())
    lost_jobs = set()
    by_name: dict[str, list[str]] = {}
    for ev in watcher.events():
        attrs = ev.get("Actor", {}).get("Attributes", {})
        name = attrs.get("name", "")
        if attrs.get("taoremote.user") != b.owner_label:
            continue
        by_name.setdefault(name, []).append(ev.get("Action", ev.get("status", "?")))
        if (
            ev.get("Action") == "destroy"
            and attrs.get("taoremote.bench") == b.runid
            and ev.get("timeNano", 0) / 1e9 < until
            and name not in mine
        ):
            lost_jobs.add(name)
    notes = []
    if lost_jobs:
        notes.append(
            f"{len(lost_jobs)} of the {N_JOBS} bench job containers were removed by another process during "
            "the run (`docker rm -f` of every taoremote.job container, as the integration tests' clean_jobs "
            "does); missing ones were restarted before each list measure"
        )
    for name in b.facts.get("vanished_launches", []):
        seq = by_name.get(name, [])
        notes.append(
            f"failed launch {name}: docker events {', '.join(seq) or '(none seen)'} — removed before "
            "taoremote's `docker wait`, i.e. not by taoremote (taoremote removes it only after the wait)"
            if "destroy" in seq
            else f"failed launch {name}: docker events {', '.join(seq) or '(none seen)'}"
        )
    return notes


# ---------------------------------------------------------------------------------------------- context


@dataclasses.dataclass
class Bench:
    args: argparse.Namespace
    tmp: Path
    runid: str
    cleanup: Cleanup
    rows: list[Row] = dataclasses.field(default_factory=list)
    facts: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def owner_label(self) -> str:
        # taoremote labels its containers taoremote.user=<getpass.getuser()>, i.e. $LOGNAME: a per-run
        # value finds every container this run made (launches interrupted midway included) and only those.
        return f"taoremote-bench-{self.runid}"

    def runs(self, key: str) -> int:
        if self.args.runs:
            return self.args.runs
        n = DEFAULT_RUNS[key]
        return max(3, n // 3) if self.args.quick else n

    @property
    def taoremote(self) -> list[str]:
        script = Path(sys.executable).parent / "taoremote"
        return [str(script)] if script.exists() else [sys.executable, "-m", "taoremote"]


def write_fake_nvidia_smi(bin_dir: Path) -> None:
    """Like tests/integration/taorun.py: the captured R580 table by default, CSV for --query-gpu."""
    data = bin_dir / ".nvidia-smi.d"
    data.mkdir(parents=True, exist_ok=True)
    (data / "default").write_text(SMI_HEADER.read_text())
    (data / "query").write_text(SMI_QUERY)
    tool = bin_dir / "nvidia-smi"
    tool.write_text(
        f'#!/bin/sh\ncase "$*" in *--query-gpu*) cat "{data}/query";; *) cat "{data}/default";; esac\n'
    )
    tool.chmod(0o755)


def base_env(b: Bench, bin_dir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LAUNCHER_", "TAOREMOTE_", "OVERRIDE_", "SSH_AUTH_SOCK", "PYTHON"))
    }
    env.update(
        HOME=str(b.tmp / "home"),
        PATH=f"{bin_dir}:{os.environ.get('PATH', '/usr/local/bin:/usr/bin:/bin')}",
        OVERRIDE_REGISTRY=REGISTRY,
        LAUNCHER_MOUNTS=str(b.tmp / "mounts.json"),
        LOGNAME=b.owner_label,
        USER=b.owner_label,
    )
    return env


def remove_owned_containers(b: Bench) -> int:
    ids: set[str] = set()
    for flt in (f"label=taoremote.user={b.owner_label}", f"label=taoremote.bench={b.runid}"):
        ids.update(docker("ps", "-aq", "--filter", flt).stdout.split())
    if ids:
        docker("rm", "-f", *sorted(ids), timeout=300)
    return len(ids)


# ---------------------------------------------------------------------------------------------- local


def bench_local(b: Bench) -> None:
    env = b.facts["local_env"]
    tr = b.taoremote
    log("\n== 1. local launch (issue 'local launch') ==")
    log(f"   taoremote {' '.join(TASK_ARGS)}  vs  docker run --rm --init --gpus all {IMAGE} ...")
    log("   (mounts file with one mount, fake nvidia-smi printing the R580 header first on PATH)")
    launch = Cmd("taoremote launch", [*tr, *TASK_ARGS], env, expect_out="TASK<detectnet_v2>")
    nopf = Cmd("taoremote --no-preflight", [*tr, "--no-preflight", *TASK_ARGS], env, expect_out="TASK<")
    plain = Cmd(
        "docker run",
        ["docker", "run", "--rm", "--init", "--gpus", "all", IMAGE, *TASK_ARGS],
        env,
        expect_out="TASK<detectnet_v2>",
    )
    s = alternate([launch, plain, nopf], b.runs("local_launch"))

    probe_row: Row
    try:
        from taoremote.probe import build_probe_argv

        probe_argv = list(build_probe_argv(IMAGE, [str(b.tmp / "data")]))
        probe = Cmd("preflight probe (sh -c PROBE_SCRIPT)", probe_argv, env, expect_out="@@taoremote:probe")
        ps = alternate([probe], b.runs("probe"))
        b.facts["probe_local_s"] = ps[probe.label].median
        probe_row = Row(
            "local_probe",
            "local launch",
            "preflight probe alone / launch",
            ps[probe.label],
            s[launch.label],
            note="taoremote.probe.build_probe_argv(image, [mount source]) run directly as a process; "
            "the ratio is its share of a whole local launch",
        )
    except Exception as exc:  # the package is edited concurrently: report, don't die
        probe_row = Row("local_probe", "local launch", "preflight probe alone", f"n/a ({exc})", "—")
        b.facts["probe_local_s"] = float("nan")

    rows = [
        Row(
            "local_launch",
            "local launch",
            "local launch (preflight on)",
            s[launch.label],
            s[plain.label],
            1.10,
        ),
        Row(
            "local_launch_nopf",
            "local launch",
            "local launch --no-preflight",
            s[nopf.label],
            s[plain.label],
            note="the probe still runs with --no-preflight (mount sources and image presence come from it)",
        ),
        probe_row,
    ]
    for r in rows:
        b.rows.append(r.finish())
    print_rows(rows)
    b.facts["local_launch_s"] = s[launch.label].median
    b.facts["docker_run_s"] = s[plain.label].median


def local_breakdown(b: Bench) -> None:
    f = b.facts
    if not all(k in f for k in ("local_launch_s", "docker_run_s", "dry_run_s", "probe_local_s")):
        return
    over = f["local_launch_s"] - f["docker_run_s"]
    log(
        f"\n   local launch overhead over `docker run`: {fmt_s(over)} ≈ start-up + config + argv "
        f"(the dry run: {fmt_s(f['dry_run_s'])}) + probe ({fmt_s(f['probe_local_s'])}) "
        f"+ rest ({fmt_s(over - f['dry_run_s'] - f['probe_local_s'])}); a 1.10× goal allows "
        f"{fmt_s(0.10 * f['docker_run_s'])}"
    )


def bench_startup(b: Bench) -> None:
    env = b.facts["local_env"]
    tr = b.taoremote
    log("\n== 2. start-up: --help and --dry-run vs `python -c pass` (same interpreter) ==")
    helpc = Cmd("taoremote --help", [*tr, "--help"], env, expect_out="Usage")
    dry = Cmd("taoremote --dry-run", [*tr, "--dry-run", *TASK_ARGS], env, expect_out="docker run")
    py = Cmd("python -c pass", [sys.executable, "-c", "pass"], env)
    s = alternate([helpc, py, dry], b.runs("startup"))
    rows = [
        Row("help", "local launch", "taoremote --help", s[helpc.label], s[py.label], 3.0),
        Row("dry_run", "local launch", "taoremote --dry-run detectnet_v2 …", s[dry.label], s[py.label], 3.0),
    ]
    for r in rows:
        b.rows.append(r.finish())
    print_rows(rows)
    b.facts["dry_run_s"] = s[dry.label].median
    b.facts["help_s"] = s[helpc.label].median
    b.facts["python_s"] = s[py.label].median
    importtime_report(b, [*tr, "--dry-run", *TASK_ARGS], env)
    local_breakdown(b)


def importtime_report(b: Bench, argv: list[str], env: dict[str, str]) -> None:
    """`python -X importtime` of the dry run: min over 3 runs per module (less noise than one run)."""
    # argv is [script, args...] or [python, -m, taoremote, args...]: run the same under -X importtime
    cmd = [sys.executable, "-X", "importtime", *(argv[1:] if argv[0] == sys.executable else argv)]
    best: dict[str, tuple[int, int, int]] = {}  # name -> (self_us, cumulative_us, depth)
    order: list[str] = []
    for _ in range(3):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        for line in proc.stderr.splitlines():
            m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
            if not m:
                continue
            self_us, cum_us, depth, name = int(m[1]), int(m[2]), len(m[3]) // 2, m[4]
            if name not in best:
                order.append(name)
                best[name] = (self_us, cum_us, depth)
            else:
                o = best[name]
                best[name] = (min(o[0], self_us), min(o[1], cum_us), o[2])
    if not best:
        log("   (python -X importtime produced nothing)")
        return
    total = sum(v[0] for v in best.values())
    by_pkg: dict[str, int] = {}
    for name, (self_us, _, _) in best.items():
        root = name.split(".")[0]
        by_pkg[root] = by_pkg.get(root, 0) + self_us
    top = sorted(best.items(), key=lambda kv: -kv[1][1])[:18]
    log(f"\n   python -X importtime {' '.join(shlex.quote(a) for a in argv[1:])} (min of 3 runs per module)")
    log(f"   all imports: {total / 1000:.0f} ms self time in total; top cumulative modules:")
    log(
        table(
            ["cumulative", "self", "module"],
            [[f"{c / 1000:.1f} ms", f"{s / 1000:.1f} ms", "  " * d + n] for n, (s, c, d) in top],
        )
    )
    pk = sorted(by_pkg.items(), key=lambda kv: -kv[1])[:12]
    log("   self time by top-level package: " + ", ".join(f"{k} {v / 1000:.0f} ms" for k, v in pk))
    b.facts["importtime_dry_run"] = {
        "total_ms": round(total / 1000, 1),
        "top_cumulative": [
            {"module": n, "cumulative_ms": c / 1000, "self_ms": s / 1000} for n, (s, c, _) in top
        ],
        "by_package_ms": {k: round(v / 1000, 1) for k, v in pk},
    }
    interesting = [
        n for n in ("pydantic", "rich", "fabric", "paramiko", "jsonschema", "tabulate") if n in by_pkg
    ]
    if interesting:
        log(f"   imported by a dry run: {', '.join(interesting)}")


# ---------------------------------------------------------------------------------------------- list


def ensure_jobs(b: Bench) -> int:
    """N_JOBS running containers that look like taoremote jobs (label taoremote.job=<id>), named
    taoremote-bench-<i>; starts whichever is missing (other sessions' tests may remove every
    container labelled taoremote.job on this shared dockerd). Returns how many it had to start."""
    if "job_ids" not in b.facts:
        stale = docker("ps", "-aq", "--filter", "name=^taoremote-bench-").stdout.split()
        if stale:  # left by an earlier, killed run: the names are this benchmark's own
            docker("rm", "-f", *stale)
        b.facts["job_ids"] = [secrets.token_hex(4) for _ in range(N_JOBS)]
    ids = b.facts["job_ids"]
    out = docker(
        "ps", "-a", "--filter", f"label=taoremote.bench={b.runid}", "--format", "{{.Names}} {{.State}}"
    )
    states = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    missing = [i for i in range(N_JOBS) if states.get(f"taoremote-bench-{i}") != "running"]
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def one(i: int) -> str | None:
        if f"taoremote-bench-{i}" in states:
            b.facts.setdefault("self_removed", set()).add(f"taoremote-bench-{i}")
            docker("rm", "-f", f"taoremote-bench-{i}")
        r = docker(
            "run", "-d", "--init", "--name", f"taoremote-bench-{i}",
            "--label", f"taoremote.job={ids[i]}", "--label", "taoremote.task=detectnet_v2",
            "--label", "taoremote.command=run sleep 600", "--label", "taoremote.gpus=all",
            "--label", f"taoremote.started={started}", "--label", f"taoremote.user={b.owner_label}",
            "--label", f"taoremote.bench={b.runid}",
            IMAGE, "sleep", "600",
        )  # fmt: skip
        return None if r.returncode == 0 else r.stderr.strip()

    with ThreadPoolExecutor(4) as pool:
        errors = [e for e in pool.map(one, missing) if e]
    if errors:
        log(f"  !! {len(errors)} job containers failed to start: {errors[0]}")
    return len(missing)


def running_bench_jobs(b: Bench) -> int:
    return len(docker("ps", "-q", "--filter", f"label=taoremote.bench={b.runid}").stdout.split())


def count_docker_execs(argv: list[str], env: dict[str, str], tmp: Path) -> tuple[list[list[str]], str]:
    """Every successful execve of a `docker` binary while argv runs (strace -f), as argv lists."""
    if shutil.which("strace") is None:
        return [], "strace not installed"
    out = tmp / f"strace-{secrets.token_hex(3)}.txt"
    subprocess.run(
        ["strace", "-f", "-qq", "-s", "256", "-e", "trace=execve", "-o", str(out), *argv],
        env=env,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    calls = []
    for line in out.read_text(errors="replace").splitlines():
        m = re.search(r'execve\("([^"]+)", \[(.*?)\](?:, 0x[0-9a-f]+| /\*.*?\*/|, \[.*?\])*.*= 0\s*$', line)
        if m and os.path.basename(m[1]) == "docker":
            calls.append(re.findall(r'"((?:[^"\\]|\\.)*)"', m[2]))
    return calls, "strace -f -e trace=execve"


def bench_list_local(b: Bench) -> None:
    env = b.facts["local_env"]
    tr = b.taoremote
    log(f"\n== 3. `taoremote list` with {N_JOBS} running jobs vs `docker ps` ==")
    ensure_jobs(b)
    running = running_bench_jobs(b)
    check = run_cmd(Cmd("list json", [*tr, "list", "--format", "json"], env))[2]
    seen = 0
    if check is not None and check.returncode == 0:
        with contextlib.suppress(ValueError):
            seen = len(json.loads(check.stdout or "[]"))
    log(f"   {running} bench jobs running; `taoremote list --format json` shows {seen} jobs")
    lst = Cmd("taoremote list", [*tr, "list"], env)
    ps = Cmd("docker ps", ["docker", "ps"], env)
    s = alternate([lst, ps], b.runs("list_local"))
    after = running_bench_jobs(b)
    if after != running:
        log(f"  !! bench jobs changed during the measure: {running} -> {after} (removed by someone else?)")
    calls, how = count_docker_execs([*tr, "list"], env, b.tmp)
    ps_calls = [c for c in calls if c[1:2] == ["ps"]]
    row = Row("list_local", "local launch", f"list, {seen} jobs (local)", s[lst.label], s[ps.label], 1.5)
    row.note = f"{seen} jobs listed; {len(calls)} docker exec(s) ({how}): " + "; ".join(
        shlex.join(c[:4]) + (" …" if len(c) > 4 else "") for c in calls
    )
    calls_row = Row(
        "list_local_docker_ps_calls",
        "local launch",
        "list: `docker ps` calls",
        str(len(ps_calls)),
        "1",
        goal_text="exactly 1",
        met=len(ps_calls) == 1 and len(calls) == 1,
    )
    for r in (row, calls_row):
        b.rows.append(r.finish())
    print_rows([row, calls_row])
    if "help_s" in b.facts and s[lst.label].times and s[ps.label].times:
        log(
            f"   list {fmt_s(s[lst.label].median)} ≈ start-up floor (`--help`: {fmt_s(b.facts['help_s'])}) "
            f"+ one `docker ps` ({fmt_s(s[ps.label].median)}) + the rest "
            f"({fmt_s(s[lst.label].median - b.facts['help_s'] - s[ps.label].median)}); "
            f"`python -c pass` alone is {fmt_s(b.facts['python_s'])}, a 1.5× goal allows "
            f"{fmt_s(1.5 * s[ps.label].median)} in all"
        )


# ---------------------------------------------------------------------------------------------- remote


@dataclasses.dataclass
class Host:
    name: str
    index: int
    sshd: subprocess.Popen[bytes] | None = None
    listen: tuple[str, int] = ("127.0.0.1", 0)  # where sshd listens
    connect: tuple[str, int] = ("127.0.0.1", 0)  # where clients connect (the proxy, or the netns address)
    log_path: Path | None = None
    bin_dir: Path | None = None


class Network:
    """Where the simulated hosts live and how 50 ms of round trip gets between them and us."""

    mode = "none"
    description = "loopback, no added latency"

    def __init__(self, b: Bench, delay_ms: float) -> None:
        self.b = b
        self.delay_ms = delay_ms

    def prepare(self, hosts: list[Host]) -> None:
        for h in hosts:
            h.listen = ("127.0.0.1", _free_port())

    def sshd_prefix(self, h: Host) -> list[str]:
        return []

    def expose(self, hosts: list[Host]) -> None:
        for h in hosts:
            h.connect = h.listen


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ProxyNetwork(Network):
    mode = "proxy"

    def __init__(self, b: Bench, delay_ms: float, why: str) -> None:
        super().__init__(b, delay_ms)
        self.description = (
            f"TCP delay proxy on 127.0.0.1 (benchmarks/latency_proxy.py): every chunk delayed "
            f"{delay_ms:g} ms each way, connect costs one RTT as a TCP handshake would "
            f"({2 * delay_ms:g} ms RTT); "
            f"used because tc netem is not available here: {why}"
        )

    def expose(self, hosts: list[Host]) -> None:
        targets = [f"{h.listen[0]}:{h.listen[1]}" for h in hosts]
        proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("latency_proxy.py")),
                "--delay-ms",
                str(self.delay_ms),
                *targets,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.b.cleanup.add("latency proxy", lambda: kill_tree(proc))
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("latency_proxy.py exited before listening")
        ports = json.loads(line)
        for h, t in zip(hosts, targets, strict=True):
            h.connect = ("127.0.0.1", int(ports[t]))


class NetemNetwork(Network):
    """One network namespace per host, a veth pair to it, `netem delay` on both ends."""

    mode = "netem"

    def __init__(self, b: Bench, delay_ms: float) -> None:
        super().__init__(b, delay_ms)
        self.description = (
            f"network namespaces + veth pairs, tc netem delay {delay_ms:g} ms on both ends "
            f"({2 * delay_ms:g} ms RTT)"
            if delay_ms
            else "network namespaces + veth pairs, no added delay"
        )

    @staticmethod
    def names(i: int) -> tuple[str, str, str, str, str]:
        # 10.231.<i>.0/30 exists only on the veth pairs made here
        return f"taoremote-bench-{i}", f"trbh{i}", f"trbn{i}", f"10.231.{i}.1", f"10.231.{i}.2"

    def prepare(self, hosts: list[Host]) -> None:
        for h in hosts:
            ns, hv, nv, hip, nip = self.names(h.index)
            _ip("netns", "del", ns, check=False)  # left by a killed run
            _ip("link", "del", hv, check=False)
            _ip("netns", "add", ns)
            self.b.cleanup.add(f"netns {ns}", lambda ns=ns: _ip("netns", "del", ns, check=False))
            _ip("link", "add", hv, "type", "veth", "peer", "name", nv)
            self.b.cleanup.add(f"veth {hv}", lambda hv=hv: _ip("link", "del", hv, check=False))
            _ip("link", "set", nv, "netns", ns)
            _ip("addr", "add", f"{hip}/30", "dev", hv)
            _ip("link", "set", hv, "up")
            _ip("-n", ns, "addr", "add", f"{nip}/30", "dev", nv)
            _ip("-n", ns, "link", "set", nv, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            if self.delay_ms:
                _run(["tc", "qdisc", "add", "dev", hv, "root", "netem", "delay", f"{self.delay_ms:g}ms"])
                _run(
                    [
                        "ip",
                        "netns",
                        "exec",
                        ns,
                        "tc",
                        "qdisc",
                        "add",
                        "dev",
                        nv,
                        "root",
                        "netem",
                        "delay",
                        f"{self.delay_ms:g}ms",
                    ]
                )
            h.listen = (nip, 22)

    def sshd_prefix(self, h: Host) -> list[str]:
        return ["ip", "netns", "exec", self.names(h.index)[0]]


def _run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)}: {r.stderr.strip()}")
    return r


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run(["ip", *args], check=check)


def netem_available() -> tuple[bool, str]:
    """Try netem on a throwaway veth pair (no namespace needed for the test)."""
    if shutil.which("tc") is None or shutil.which("ip") is None:
        return False, "`ip`/`tc` not installed (apt: iproute2)"
    a, z = "trbprobe0", "trbprobe1"
    _ip("link", "del", a, check=False)
    try:
        r = _ip("link", "add", a, "type", "veth", "peer", "name", z, check=False)
        if r.returncode != 0:
            return False, f"cannot create a veth pair: {r.stderr.strip()}"
        t = _run(["tc", "qdisc", "add", "dev", a, "root", "netem", "delay", "1ms"], check=False)
        if t.returncode != 0:
            return False, f"`tc qdisc add … netem` says: {t.stderr.strip()} (no sch_netem in this kernel)"
        n = _ip("netns", "add", "taoremote-bench-probe", check=False)
        _ip("netns", "del", "taoremote-bench-probe", check=False)
        if n.returncode != 0:
            return False, f"`ip netns add` says: {n.stderr.strip()}"
        return True, "netem works"
    finally:
        _ip("link", "del", a, check=False)


class Fleet:
    """Real sshd instances (one per simulated host) for a dedicated login user with a plain sh."""

    def __init__(self, b: Bench, network: Network) -> None:
        self.b = b
        self.net = network
        self.root = b.tmp / "ssh"
        self.root.mkdir()
        self.key = self.root / "id_ed25519"
        self.config = self.root / "ssh_config"
        self.known_hosts = self.root / "known_hosts"
        self.authorized = self.root / "authorized_keys"
        self.hosts: list[Host] = []
        self.home = b.tmp / "remote-home"
        self.docker_log = b.tmp / "count" / "docker.log"

    def create_user(self) -> None:
        if subprocess.run(["getent", "passwd", BENCH_USER], capture_output=True).returncode == 0:
            _run(["userdel", "--force", BENCH_USER], check=False)  # left by a killed run
        self.home.mkdir()
        _run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--home-dir",
                str(self.home),
                "--shell",
                "/bin/sh",
                "--groups",
                "docker",
                "--no-user-group",
                "--gid",
                "docker",
                BENCH_USER,
            ]
        )
        self.b.cleanup.add(
            f"user {BENCH_USER}", lambda: _run(["userdel", "--force", BENCH_USER], check=False)
        )
        # '!' (useradd's default) is a locked account, which sshd without PAM refuses even for keys
        _run(["usermod", "--password", "*", BENCH_USER])
        shutil.chown(self.home, BENCH_USER, "docker")

    def start(self, names: list[str]) -> None:
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "taoremote-bench", "-f", str(self.key)])
        self.authorized.write_text(self.key.with_suffix(".pub").read_text())
        self.authorized.chmod(0o644)
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
        self.hosts = [Host(n, i + 1) for i, n in enumerate(names)]
        self.net.prepare(self.hosts)
        shared_bin = self.b.tmp / "remote-bin"
        write_fake_nvidia_smi(shared_bin)
        count_bin = self.b.tmp / "count"
        write_fake_nvidia_smi(count_bin)
        self.docker_log.touch()
        self.docker_log.chmod(0o666)
        real_docker = shutil.which("docker") or "/usr/bin/docker"
        wrapper = count_bin / "docker"
        wrapper.write_text(
            "#!/bin/sh\n"
            f'printf \'%s %s\\n\' "$(date +%s.%N)" "$*" >> {self.docker_log}\n'
            f'exec {real_docker} "$@"\n'
        )
        wrapper.chmod(0o755)
        host_keys = []
        for h in self.hosts:
            hdir = self.root / h.name
            hdir.mkdir()
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", h.name, "-f", str(hdir / "host_key")])
            h.bin_dir = count_bin if h.name == "count" else shared_bin
            h.log_path = hdir / "sshd.log"
            cfg = hdir / "sshd_config"
            cfg.write_text(
                f"ListenAddress {h.listen[0]}\nPort {h.listen[1]}\n"
                f"HostKey {hdir / 'host_key'}\nPidFile {hdir / 'sshd.pid'}\n"
                f"AuthorizedKeysFile {self.authorized}\n"
                "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                f"UsePAM no\nStrictModes no\nAllowUsers {BENCH_USER}\nUseDNS no\n"
                "PrintMotd no\nPrintLastLog no\nX11Forwarding no\n"
                "MaxStartups 200:100:400\nMaxSessions 200\nLoginGraceTime 30\n"
                "Subsystem sftp internal-sftp\n"
                f"SetEnv PATH={h.bin_dir}:/usr/local/bin:/usr/bin:/bin\n"
                # VERBOSE logs one "Starting session: command ..." per remote command: the count below
                "LogLevel VERBOSE\n"
            )
            with open(h.log_path, "ab") as logf:
                h.sshd = subprocess.Popen(
                    [*self.net.sshd_prefix(h), SSHD, "-D", "-e", "-f", str(cfg)],
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=logf,
                    start_new_session=True,
                )
            self.b.cleanup.add(f"sshd {h.name}", lambda p=h.sshd: kill_tree(p))
            pub = (hdir / "host_key.pub").read_text().split()
            host_keys.append((h, pub))
        for h in self.hosts:
            self._wait_listening(h)
        self.net.expose(self.hosts)
        lines, blocks = [], []
        for h, pub in host_keys:
            addr = h.connect[0] if h.connect[1] == 22 else f"[{h.connect[0]}]:{h.connect[1]}"
            lines.append(f"{addr} {pub[0]} {pub[1]}\n")
            blocks.append(
                f"Host {h.name}\n    HostName {h.connect[0]}\n    Port {h.connect[1]}\n"
                f"    User {BENCH_USER}\n"
                f"    IdentityFile {self.key}\n    IdentitiesOnly yes\n"
                f"    UserKnownHostsFile {self.known_hosts}\n    GlobalKnownHostsFile /dev/null\n"
                "    StrictHostKeyChecking yes\n    BatchMode yes\n    ConnectTimeout 10\n"
            )
        self.known_hosts.write_text("".join(lines))
        self.config.write_text("\n".join(blocks))
        for h in self.hosts:
            r = _run(self.ssh_argv(h.name, "docker version --format {{.Server.Version}}"), check=False)
            if r.returncode != 0:
                raise RuntimeError(
                    f"ssh to {h.name} failed: {r.stderr.strip()}\n{h.log_path.read_text()[-800:]}"
                )

    def _wait_listening(self, h: Host) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert h.sshd is not None
            if h.sshd.poll() is not None:
                raise RuntimeError(f"sshd {h.name} exited: {h.log_path.read_text()[-800:]}")  # type: ignore[union-attr]
            # a namespace's veth address is reachable from here too
            with contextlib.suppress(OSError), socket.create_connection(h.listen, timeout=0.5):
                return
            time.sleep(0.05)
        raise RuntimeError(f"sshd {h.name} did not listen on {h.listen}")

    def ssh_argv(self, host: str, command: str) -> list[str]:
        return ["ssh", "-F", str(self.config), host, command]

    def log_offsets(self) -> dict[str, int]:
        return {h.name: h.log_path.stat().st_size for h in self.hosts if h.log_path}

    def log_since(self, name: str, offset: int) -> str:
        h = next(h for h in self.hosts if h.name == name)
        assert h.log_path is not None
        with open(h.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")


def sshd_activity(text: str) -> dict[str, Any]:
    """What sshd (LogLevel VERBOSE) says happened: connections, remote commands, subsystems."""
    return {
        "connections": len(re.findall(r"Accepted publickey for ", text)),
        "commands": len(re.findall(r"Starting session: command ", text)),
        "subsystems": len(
            re.findall(r"Starting session: (?:forced-command \(config\) 'internal-sftp'|subsystem)", text)
        ),
        "shells": len(re.findall(r"Starting session: shell ", text)),
    }


def bench_remote(b: Bench) -> None:
    if os.geteuid() != 0:
        log("\n== 4./5. remote: skipped (needs root: a bench user, sshd, namespaces) ==")
        b.rows.append(Row("remote", "remote hosts", "remote measures", "skipped (not root)", "—").finish())
        return
    delay = b.args.delay_ms
    mode = b.args.latency
    why = ""
    if mode in ("auto", "netem"):
        ok, why = netem_available()
        if not ok and mode == "netem":
            raise RuntimeError(f"--latency netem: {why}")
        mode = "netem" if ok else "proxy"
    network: Network
    if mode == "netem":
        network = NetemNetwork(b, delay)
    elif mode == "proxy":
        network = ProxyNetwork(b, delay, why or "--latency proxy given")
    elif mode == "netns":
        network = NetemNetwork(b, 0)
    else:
        network = Network(b, 0)
    log(
        f"\n== remote hosts: {N_HOSTS} sshd + 1 counting host, "
        f"login user '{BENCH_USER}' (/bin/sh, group docker) =="
    )
    log(f"   latency: {network.description}")
    b.facts["latency_mode"] = network.mode
    b.facts["latency"] = network.description
    b.facts["ssh_login"] = (
        f"dedicated user {BENCH_USER} (created for the run, shell /bin/sh, group docker): no rc files run "
        "at login, on both sides of every ratio"
    )
    fleet = Fleet(b, network)
    fleet.create_user()
    names = [f"h{i}" for i in range(1, N_HOSTS + 1)] + ["count"]
    t0 = time.perf_counter()
    fleet.start(names)
    log(f"   hosts up in {time.perf_counter() - t0:.1f} s; ssh config {fleet.config}")
    env = dict(b.facts["local_env"])
    b.facts["remote_mount_source"] = str(b.tmp / "data")
    tr = [*b.taoremote, "--ssh-config", str(fleet.config)]
    ssh_rtt(b, fleet, env)
    bench_remote_list(b, fleet, tr, env)
    b.facts["jobs_cleanup"]()
    bench_remote_launch(b, fleet, tr, env)


def ssh_rtt(b: Bench, fleet: Fleet, env: dict[str, str]) -> None:
    """A sanity figure: an established connection's round trip, from `ssh` with a ControlMaster."""
    ctl = b.tmp / "ctl-%C"
    base = ["ssh", "-F", str(fleet.config), "-o", f"ControlPath={ctl}"]
    master = subprocess.Popen(
        [*base, "-o", "ControlMaster=yes", "-N", "h1"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    b.cleanup.add("ssh control master", lambda: kill_tree(master))
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if _run([*base, "-O", "check", "h1"], check=False).returncode == 0:
                break
            time.sleep(0.05)
        times = [time_call(lambda: _run([*base, "h1", "true"], check=False)) for _ in range(5)]
        b.facts["rtt_check_s"] = statistics.median(times)
        log(
            "   check: `ssh h1 true` over an open ControlMaster connection: "
            f"{fmt_s(statistics.median(times))}"
            f" (≈ 2 RTT: channel open, exec + exit status; RTT is {2 * b.args.delay_ms:g} ms)"
        )
    finally:
        kill_tree(master)


def bench_remote_list(b: Bench, fleet: Fleet, tr: list[str], env: dict[str, str]) -> None:
    log(f"\n== 4. `list` across {N_HOSTS} hosts vs 1 host vs `ssh host docker ps` (issue 'remote hosts') ==")
    hosts8 = [a for i in range(1, N_HOSTS + 1) for a in ("--host", f"h{i}")]
    restarted = ensure_jobs(b)
    if restarted:
        log(f"   (re)started {restarted} bench job containers that had disappeared")
    check = run_cmd(Cmd("list8 json", [*tr, *hosts8, "list", "--format", "json"], env))[2]
    seen = 0
    if check is not None and check.returncode == 0:
        with contextlib.suppress(ValueError):
            seen = len(json.loads(check.stdout or "[]"))
    log(
        f"   {running_bench_jobs(b)} bench jobs running (every host shares this dockerd); "
        f"list over {N_HOSTS} hosts shows {seen} rows"
    )
    l8 = Cmd(f"list {N_HOSTS} hosts", [*tr, *hosts8, "list"], env)
    l1 = Cmd("list 1 host", [*tr, "--host", "h1", "list"], env)
    ssh = Cmd("ssh h1 docker ps", fleet.ssh_argv("h1", "docker ps"), env)
    running = running_bench_jobs(b)
    s = alternate([l8, l1, ssh], b.runs("remote_list"))
    if running_bench_jobs(b) != running:
        log(f"  !! bench jobs changed during the measure: {running} -> {running_bench_jobs(b)}")
    # what one remote list costs in SSH terms, on the counting host
    off = fleet.log_offsets()
    doff = fleet.docker_log.stat().st_size
    run_cmd(Cmd("list count", [*tr, "--host", "count", "list"], env))
    act = sshd_activity(fleet.log_since("count", off["count"]))
    dcalls = fleet.docker_log.read_text()[doff:].splitlines()
    note_cost = (
        f"one remote list = {act['connections']} SSH connection(s), {act['commands']} remote command(s), "
        f"{len(dcalls)} docker call(s): " + "; ".join(" ".join(c.split()[1:4]) for c in dcalls)
    )
    rows = [
        Row(
            "remote_list_8_vs_1",
            "remote hosts",
            f"list {N_HOSTS} hosts vs 1 host",
            s[l8.label],
            s[l1.label],
            1.5,
        ),
        Row(
            "remote_list_8_vs_ssh",
            "remote hosts",
            f"list {N_HOSTS} hosts vs ssh docker ps",
            s[l8.label],
            s[ssh.label],
            1.3,
            note=note_cost,
        ),
        Row(
            "remote_list_1_vs_ssh", "remote hosts", "list 1 host vs ssh docker ps", s[l1.label], s[ssh.label]
        ),
    ]
    for r in rows:
        b.rows.append(r.finish())
    print_rows(rows)


def bench_remote_launch(b: Bench, fleet: Fleet, tr: list[str], env: dict[str, str]) -> None:
    log("\n== 5. remote launch vs `ssh host docker run` (same latency) ==")
    launch = Cmd("remote launch", [*tr, "--host", "h1", *TASK_ARGS], env, expect_out="TASK<detectnet_v2>")
    nopf = Cmd(
        "remote --no-preflight",
        [*tr, "--host", "h1", "--no-preflight", *TASK_ARGS],
        env,
        expect_out="TASK<detectnet_v2>",
    )
    plain_cmd = shlex.join(["docker", "run", "--rm", "--init", "--gpus", "all", IMAGE, *TASK_ARGS])
    ssh = Cmd("ssh h1 docker run", fleet.ssh_argv("h1", plain_cmd), env, expect_out="TASK<detectnet_v2>")
    s = alternate([launch, ssh, nopf], b.runs("remote_launch"))

    # the launch's SSH cost, on the counting host (docker there is a logging wrapper: not timed above)
    off = fleet.log_offsets()
    doff = fleet.docker_log.stat().st_size
    t_start = time.time()
    elapsed, err, _ = run_cmd(
        Cmd("launch count", [*tr, "--host", "count", *TASK_ARGS], env, expect_out="TASK<")
    )
    act = sshd_activity(fleet.log_since("count", off["count"]))
    dcalls = fleet.docker_log.read_text()[doff:].splitlines()
    off2 = fleet.log_offsets()
    run_cmd(Cmd("ssh count", fleet.ssh_argv("count", plain_cmd), env))
    act_ssh = sshd_activity(fleet.log_since("count", off2["count"]))
    log(
        f"   one remote launch (on host 'count', {fmt_s(elapsed)}{', FAILED: ' + err if err else ''}): "
        f"{act['connections']} SSH connection, {act['commands']} remote commands, "
        f"{act['subsystems']} sftp session(s); plain ssh: {act_ssh['connections']} connection, "
        f"{act_ssh['commands']} command"
    )
    log("   docker calls on the host, seconds after taoremote started:")
    for c in dcalls:
        ts, _, rest = c.partition(" ")
        words = rest.split()
        shown = " ".join(words[:2] + (["…"] if len(words) > 2 else []))
        log(f"     +{float(ts) - t_start:6.3f} s  docker {shown}")
    b.facts["remote_launch_cost"] = {"taoremote": act, "ssh": act_ssh, "docker_calls": dcalls}

    # the preflight's share: the probe as one more command on an open connection
    probe_s, true_s = remote_probe_share(b, fleet)
    launch_med = s[launch.label].median
    share = ""
    rtt = 2 * b.args.delay_ms / 1000
    if "remote_connect_s" in b.facts and rtt > 0:
        log(
            f"   taoremote's SSH costs at {rtt * 1000:g} ms RTT (in-process SshExecutor): connect "
            f"{fmt_s(b.facts['remote_connect_s'])} (≈ {b.facts['remote_connect_s'] / rtt:.1f} RTT), "
            f"each further command `true` {fmt_s(true_s)} "
            f"(≈ {true_s / rtt:.1f} RTT: channel open + exec, then output)"
        )
    if probe_s == probe_s and launch_med == launch_med:
        share = (
            f"probe on the open connection {fmt_s(probe_s)} (`true` {fmt_s(true_s)}) = "
            f"{100 * probe_s / launch_med:.0f}% of the launch"
        )
    rows = [
        Row(
            "remote_launch",
            "remote hosts",
            "remote launch (preflight on)",
            s[launch.label],
            s[ssh.label],
            1.3,
            note=f"{act['connections']} connection, {act['commands']} remote commands "
            f"(plain ssh: {act_ssh['commands']}); {share}",
        ),
        Row(
            "remote_launch_nopf",
            "remote hosts",
            "remote launch --no-preflight",
            s[nopf.label],
            s[ssh.label],
            note="the probe still runs (mounts, image presence)",
        ),
    ]
    for r in rows:
        b.rows.append(r.finish())
    print_rows(rows)


def remote_probe_share(b: Bench, fleet: Fleet) -> tuple[float, float]:
    """Time the probe vs `true` as commands on one open taoremote SshExecutor connection (in-process)."""
    try:
        from taoremote.ssh import SshExecutor
        from taoremote.probe import build_probe_argv

        argv = build_probe_argv(IMAGE, [str(b.tmp / "data")])
        first = []  # connect + the first command, on fresh connections
        for _ in range(3):
            fresh = SshExecutor("h1", ssh_config=str(fleet.config))
            try:
                first.append(time_call(lambda fresh=fresh: fresh.run(["true"])))
            finally:
                fresh.close()
        ex = SshExecutor("h1", ssh_config=str(fleet.config))
        try:
            ex.run(["true"])
            probe_t, true_t = [], []
            for _ in range(b.runs("remote_probe")):
                probe_t.append(time_call(lambda: ex.run(argv, timeout=60)))
                true_t.append(time_call(lambda: ex.run(["true"])))
        finally:
            ex.close()
        b.facts["remote_probe_s"] = statistics.median(probe_t)
        b.facts["remote_true_s"] = statistics.median(true_t)
        b.facts["remote_connect_s"] = statistics.median(first) - statistics.median(true_t)
        return statistics.median(probe_t), statistics.median(true_t)
    except Exception as exc:
        log(f"   (probe share not measured: {type(exc).__name__}: {exc})")
        return float("nan"), float("nan")


# ---------------------------------------------------------------------------------------------- main


def preflight_checks() -> None:
    if shutil.which("docker") is None:
        raise SystemExit("bench: no docker client on PATH (make setup)")
    r = docker("info", "--format", "{{.ServerVersion}}", timeout=30)
    if r.returncode != 0:
        raise SystemExit(f"bench: dockerd not reachable: {r.stderr.strip()} (make setup)")
    if docker("image", "inspect", IMAGE).returncode != 0:
        log(f"bench: {IMAGE} missing; building the test images")
        subprocess.run(["bash", str(REPO / "scripts" / "build-test-images.sh")], check=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="taoremote benchmarks (ratios against plain docker/ssh)")
    p.add_argument(
        "-n",
        "--runs",
        type=int,
        default=int(os.environ.get("BENCH_RUNS", "0")) or None,
        help="timed runs per measure (default: 10-30 by measure; env BENCH_RUNS)",
    )
    p.add_argument("--quick", action="store_true", help="a third of the default runs (at least 3)")
    p.add_argument(
        "--latency",
        choices=("auto", "netem", "proxy", "netns", "none"),
        default="auto",
        help="how remote hosts get their round trip: auto = netem if the kernel has it, else proxy; "
        "netns = namespaces without delay, none = plain loopback (both for debugging)",
    )
    p.add_argument("--delay-ms", type=float, default=ONE_WAY_DELAY_MS, help="one-way delay (RTT = 2x)")
    p.add_argument("--skip-remote", action="store_true", help="local measures only")
    p.add_argument("--only", default=None, help="comma list of sections: local,startup,list,remote")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    preflight_checks()
    # Ctrl-C must clean up even where the parent started us with SIGINT ignored (`cmd &` in a script)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)
    cleanup = Cleanup()
    tmp = Path(tempfile.mkdtemp(prefix="taoremote-bench-"))
    tmp.chmod(0o755)  # the bench login user reads the fake tools and the mount source in here
    cleanup.add("temp dir", lambda: shutil.rmtree(tmp, ignore_errors=True))
    b = Bench(args, tmp, secrets.token_hex(3), cleanup)
    sections = set((args.only or "local,startup,list,remote").split(","))
    if args.skip_remote:
        sections.discard("remote")
    started = time.perf_counter()
    interrupted = False
    try:
        cleanup.add("containers", lambda: log(f"   removed {remove_owned_containers(b)} container(s)"))
        watcher = EventWatcher(tmp / "docker-events.jsonl")
        cleanup.add("docker events", watcher.stop)
        b.facts["watcher"] = watcher
        (tmp / "home").mkdir()
        (tmp / "data").mkdir()
        (tmp / "data" / "README").write_text("bench mount source\n")
        bin_dir = tmp / "bin"
        write_fake_nvidia_smi(bin_dir)
        (tmp / "mounts.json").write_text(
            json.dumps({"Mounts": [{"source": str(tmp / "data"), "destination": "/workspace/data"}]})
        )
        b.facts["local_env"] = base_env(b, bin_dir)
        log(
            f"taoremote bench: {os.cpu_count()} CPUs, python {sys.version.split()[0]}, "
            f"docker {docker('version', '--format', '{{.Server.Version}}').stdout.strip()}, run {b.runid}, "
            f"runs per measure: {args.runs or ('quick' if args.quick else 'defaults')}"
        )
        log(f"image {IMAGE}; every figure: median (min–max) of wall time, A/B measured alternately")
        if "local" in sections:
            bench_local(b)
        if "startup" in sections:
            bench_startup(b)
        jobs_removed = threading.Event()

        def remove_jobs() -> None:
            if not jobs_removed.is_set():
                jobs_removed.set()
                b.facts["jobs_removed_at"] = time.time()
                ids = docker("ps", "-aq", "--filter", f"label=taoremote.bench={b.runid}").stdout.split()
                if ids:
                    docker("rm", "-f", *ids, timeout=300)

        b.facts["jobs_cleanup"] = remove_jobs
        if sections & {"list", "remote"}:
            t0 = time.perf_counter()
            cleanup.add("bench jobs", remove_jobs)
            ensure_jobs(b)
            log(f"\n   started {running_bench_jobs(b)} job containers in {time.perf_counter() - t0:.1f} s")
        if "list" in sections:
            bench_list_local(b)
        if "remote" in sections:
            bench_remote(b)
        remove_jobs()
    except KeyboardInterrupt:
        interrupted = True
        log("\nbench: interrupted; cleaning up")
    finally:
        b.facts["vanished_launches"] = sorted(VANISHED)
        with contextlib.suppress(Exception):
            b.facts["interference"] = interference(b)
        log("\n== cleanup ==")
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the cleanup
        try:
            cleanup.run()
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        leftovers = verify_clean(b)
        log("   nothing left behind" if not leftovers else f"   !! left behind: {'; '.join(leftovers)}")
    if interrupted:
        return 130
    summary(b, time.perf_counter() - started)
    return 0


def verify_clean(b: Bench) -> list[str]:
    left = []
    if docker("ps", "-aq", "--filter", f"label=taoremote.user={b.owner_label}").stdout.split():
        left.append("containers")
    if subprocess.run(["getent", "passwd", BENCH_USER], capture_output=True).returncode == 0:
        left.append(f"user {BENCH_USER}")
    ns = (
        subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        if shutil.which("ip")
        else ""
    )
    if "taoremote-bench" in ns:
        left.append("network namespaces")
    if b.tmp.exists():
        left.append(str(b.tmp))
    return left


def summary(b: Bench, elapsed: float) -> None:
    log(f"\n== summary (whole bench {elapsed:.0f} s) ==")
    if "latency" in b.facts:
        log(f"remote latency: {b.facts['latency']}")
        log(f"ssh logins: {b.facts['ssh_login']}")
    print_rows(b.rows)
    for note in b.facts.get("interference", []):
        log(f"  !! {note}")
    met = [r for r in b.rows if r.met is not None]
    log(f"\ngoals met: {sum(1 for r in met if r.met)}/{len(met)}")
    RESULTS_JSON.parent.mkdir(exist_ok=True)
    facts = {
        k: v
        for k, v in b.facts.items()
        if k not in ("local_env", "jobs_cleanup", "job_ids", "watcher", "self_removed")
    }
    doc = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "elapsed_s": round(elapsed, 1),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "runs": b.args.runs or ("quick" if b.args.quick else DEFAULT_RUNS),
        "facts": facts,
        "rows": [r.to_json() for r in b.rows],
    }
    RESULTS_JSON.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    log(f"written: {RESULTS_JSON.relative_to(REPO)}")


if __name__ == "__main__":
    sys.exit(main())
