"""Sweeps (issue 9, "Speed") on this machine's dockerd, with a stand-in nvidia-smi of G=4 GPUs and the test
image's `train` (5 epochs of 1 s: a 5-second trial):

- a grid of N=8 trials on the 4 GPUs: the wall time of `sweep run` against 1.1 × ⌈N/G⌉ × one trial's time,
  where one trial's time is the wall time of a one-trial `sweep run` of the same task (its start-up,
  probe and ranking included), timed alternately in this run. Goal: ratio ≤ 1.1 (≤ 1.0 of the bound).
- scheduling: from a trial's exit to the start of the queued trial that takes its GPU, from docker's own
  State.FinishedAt / State.StartedAt of the grid's containers. Goal: ≤ 2 s (the worst one is in the note).

Bounded (about a minute; no run starts once SECTION_BUDGET_S is spent) and self-cleaning: every trial is a
container of the bench user (run.py's cleanup removes them); state and results live in the bench's temp dir.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
import subprocess
import time
from datetime import datetime

from benchmarks.harness import Bench, Row, Sample, docker, fmt_s, log
from tests.integration.taorun import write_gpu_nvidia_smi

N, G = 8, 4
EPOCHS, EPOCH_S = 5, 1
RUNS = 3  # grid runs (and as many one-trial runs), alternately
SECTION_BUDGET_S = 100.0
SPEC = f"""\
training_config {{
  batch_size_per_gpu: 8
  num_epochs: {EPOCHS}
  learning_rate {{
    soft_start_annealing_schedule {{
      max_learning_rate: 1e-3
    }}
  }}
}}
"""
LR = "training_config.learning_rate.soft_start_annealing_schedule.max_learning_rate"
BS = "training_config.batch_size_per_gpu"


class _Sweeps:
    def __init__(self, b: Bench) -> None:
        self.b = b
        root = b.tmp / "sweep"
        self.ws = root / "ws"
        self.ws.mkdir(parents=True)
        (self.ws / "spec.txt").write_text(SPEC)
        bin_dir = root / "bin"
        write_gpu_nvidia_smi(bin_dir, G)
        mounts = root / "mounts.json"
        mounts.write_text(
            json.dumps(
                {
                    "Mounts": [{"source": str(self.ws), "destination": "/workspace/ws"}],
                    "Envs": [{"variable": "SWEEP_EPOCH_S", "value": str(EPOCH_S)}],
                }
            )
        )
        self.env = {
            **b.env,
            "PATH": f"{bin_dir}:{b.env['PATH']}",
            "LAUNCHER_MOUNTS": str(mounts),
            "XDG_STATE_HOME": str(root / "state"),
        }
        self.count = 0

    def run(self, trials: int) -> tuple[float, str]:
        """One `sweep run` of TRIALS trials (a grid over the learning rate): its wall time and its name."""
        self.count += 1
        name = f"bench-{self.count}"
        rates = ",".join(f"{k + 1}e-3" for k in range(trials))
        argv = [*self.b.taoremote, "sweep", "run", name, "--param", f"{LR}={rates}", "--"]
        argv += ["detectnet_v2", "train", "-e", "/workspace/ws/spec.txt", "-r", f"/workspace/ws/{name}"]
        t0 = time.perf_counter()
        done = subprocess.run(
            argv, env=self.env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
        )
        elapsed = time.perf_counter() - t0
        if done.returncode != 0:
            raise RuntimeError(f"sweep run {name} failed ({done.returncode}): {done.stderr.strip()[-300:]}")
        return elapsed, name

    def containers(self, name: str) -> list[dict[str, object]]:
        ids = docker(
            "ps", "-aq", "--filter", f"label=taoremote.sweep={name}",
            "--filter", f"label=taoremote.user={self.b.user}",
        ).stdout.split()  # fmt: skip
        return json.loads(docker("inspect", *ids).stdout) if ids else []


def _time(text: str) -> float:
    """Docker's RFC 3339 time with nanoseconds, as seconds since the epoch."""
    head, _, frac = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(head + "+00:00").timestamp() + float(f"0.{frac or 0}")


def _handoffs(containers: list[dict[str, object]]) -> tuple[list[float], list[float]]:
    """(each container's run time, each exit → next start on the same GPU)."""
    by_gpu: dict[str, list[tuple[float, float]]] = {}
    runs = []
    for c in containers:
        state, host = c["State"], c["HostConfig"]
        assert isinstance(state, dict) and isinstance(host, dict)
        start, end = _time(state["StartedAt"]), _time(state["FinishedAt"])
        runs.append(end - start)
        for request in host["DeviceRequests"] or []:
            for gpu in request["DeviceIDs"] or []:
                by_gpu.setdefault(gpu, []).append((start, end))
    gaps = []
    for spans in by_gpu.values():
        spans.sort()
        gaps += [nxt[0] - prev[1] for prev, nxt in itertools.pairwise(spans)]
    return runs, gaps


def run(b: Bench) -> None:
    log(f"\n== sweep: a grid of {N} trials on {G} GPUs, {EPOCHS} × {EPOCH_S} s trials; scheduling latency ==")
    began = time.perf_counter()
    s = _Sweeps(b)
    s.run(1)  # warm-up: the image's first start, byte-compiled modules
    grid, one = Sample(f"sweep of {N} on {G} GPUs"), Sample("one-trial sweep")
    bound = Sample(f"1.1 × ⌈{N}/{G}⌉ × one trial")
    runs_s: list[float] = []
    gaps: list[float] = []
    spans: list[float] = []
    for _ in range(RUNS):
        if time.perf_counter() - began > SECTION_BUDGET_S:
            log("   budget spent: fewer runs")
            break
        elapsed, _ = s.run(1)
        one.times.append(elapsed)
        elapsed, name = s.run(N)
        grid.times.append(elapsed)
        containers = s.containers(name)
        if len(containers) != N:
            raise RuntimeError(f"sweep {name} made {len(containers)} containers, not {N}")
        trial_runs, handoffs = _handoffs(containers)
        runs_s += trial_runs
        gaps += handoffs
        starts = [_time(c["State"]["StartedAt"]) for c in containers]  # type: ignore[index]
        ends = [_time(c["State"]["FinishedAt"]) for c in containers]  # type: ignore[index]
        spans.append(max(ends) - min(starts))
    waves = math.ceil(N / G)
    bound.times = [1.1 * waves * t for t in one.times]
    latency = Sample("exit → next start", times=gaps)
    b.add(
        Row(
            f"sweep grid of {N} on {G} GPUs vs 1.1 × {waves} × one trial",
            grid,
            bound,
            1.0,
            note=(
                f"one-trial sweep {fmt_s(statistics.median(one.times))}; a trial's container runs "
                f"{fmt_s(statistics.median(runs_s))}; first start to last exit of the grid "
                f"{fmt_s(statistics.median(spans))} (docker's times)"
            ),
        ),
        Row(
            "sweep scheduling: a trial's exit → the next trial's start",
            latency,
            None,
            2.0,
            absolute=True,
            note=f"{len(gaps)} hand-offs, worst {fmt_s(max(gaps))} (docker's FinishedAt → StartedAt)",
        ),
    )
    log(f"   section took {time.perf_counter() - began:.0f} s")
