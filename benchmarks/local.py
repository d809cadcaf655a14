"""Local measures: a launch, `list` of 30 jobs and `stop --all` of 30 jobs, each against its floor:
`python -c 'import typer'` followed by the same docker command(s)."""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks import breakdown
from benchmarks.harness import TYPER_IMPORT, Bench, Cmd, Row, alternate, docker, fmt_s, log
from tests.integration.taorun import REGISTRY

IMAGE = f"{REGISTRY}/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5"  # what detectnet_v2 maps to with the override
TASK_ARGS = ("detectnet_v2", "train", "x")
TASK_OUTPUT = "TASK<detectnet_v2>"  # what the test image prints for it
N_JOBS = 30
STATUS_EPOCHS = 300  # 300 lines, ~110 KB: past both of `list`'s bounds (200 lines, 64 KB)


def dry_run_argv(b: Bench, *options: str) -> list[str]:
    """The `docker run --rm` that taoremote's --dry-run prints, without --name (so it can run again):
    the floor's docker command."""
    argv = [*b.taoremote, *options, "--dry-run", *TASK_ARGS]
    proc = subprocess.run(argv, env=b.env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip() and not ln.startswith("#")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"taoremote --dry-run failed: {proc.stderr.strip()}")
    argv = shlex.split(lines[-1])
    if "--name" in argv:
        i = argv.index("--name")
        del argv[i : i + 2]
    return argv


def write_status(results: Path, epochs: int = STATUS_EPOCHS) -> None:
    """A TF1 training's status.json well into a long run: more lines and bytes than `list` reads of it."""
    results.mkdir(parents=True)
    lines = [
        json.dumps(
            {
                "epoch": e,
                "max_epoch": 2 * epochs,
                "time_per_epoch": "0:01:02.500000",
                "eta": "1:00:00",
                "date": "3/4/2025",
                "time": "5:6:7",
                "status": "RUNNING",
                "verbosity": "INFO",
                "message": "Training loop in progress",
                "graphical": {
                    "loss": f"{1 / e:.5f}",
                    "learning_rate": "0.001",
                    "mean average precision": f"{e / 600:.5f}",
                },
                "kpi": {"mean average precision": f"{e / 600:.5f}"},
            }
        )
        for e in range(1, epochs + 1)
    ]
    (results / "status.json").write_text("\n".join(lines) + "\n")


class Jobs:
    """N_JOBS containers that look like taoremote jobs of this run's user (its labels), created once,
    (re)started before each measure that needs them running. Each has a results dir (taoremote.results)
    holding a status.json, so `list` reads every job's progress as well."""

    def __init__(self, b: Bench) -> None:
        self.b = b
        self.names = [f"{b.user}-job{i}" for i in range(N_JOBS)]
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for i in range(N_JOBS):
            write_status(b.tmp / "results" / f"job{i}")

        def create(i: int) -> str:
            return docker(
                "create", "--init", "--name", self.names[i],
                "--label", f"taoremote.job=bench{i:04d}", "--label", "taoremote.task=detectnet_v2",
                "--label", "taoremote.command=detectnet_v2 train x", "--label", "taoremote.gpus=all",
                "--label", f"taoremote.started={started}", "--label", f"taoremote.user={b.user}",
                "--label", f"taoremote.results={b.tmp / 'results' / f'job{i}'}",
                IMAGE, "sleep", "600",
            ).stderr.strip()  # fmt: skip

        t0 = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            errors = [e for e in pool.map(create, range(N_JOBS)) if e]
        if errors:
            raise RuntimeError(f"docker create failed: {errors[0]}")
        self.start()
        log(f"   {N_JOBS} job containers created and started in {time.perf_counter() - t0:.1f} s")

    def start(self) -> None:
        r = docker("start", *self.names)
        if r.returncode != 0:
            raise RuntimeError(f"docker start of the bench jobs failed: {r.stderr.strip()}")


def launch(b: Bench) -> None:
    log("\n== local launch of a container that exits at once, preflight on (stand-in nvidia-smi) ==")
    floor_docker = dry_run_argv(b)
    plain_docker = ["docker", "run", "--rm", "--init", "--gpus", "all", IMAGE, *TASK_ARGS]
    log(f"   floor: python -c 'import typer'; {shlex.join(floor_docker[:4])} … (the --dry-run line)")
    tr = Cmd.of("taoremote", [*b.taoremote, *TASK_ARGS], env=b.env, expect_out=TASK_OUTPUT)
    floor = Cmd.of("floor", TYPER_IMPORT, floor_docker, env=b.env, expect_out=TASK_OUTPUT)
    plain = Cmd.of("docker run --rm", plain_docker, env=b.env, expect_out=TASK_OUTPUT)
    s = alternate([tr, floor, plain], b.runs(12))
    b.add(
        Row("local launch (preflight on)", s[tr.label], s[floor.label], 1.15),
        Row("local launch vs plain docker run --rm", s[tr.label], s[plain.label], None),
    )
    over = s[tr.label].median - s[floor.label].median
    log(
        f"   taoremote spends {fmt_s(over)} more than its floor; "
        f"1.15× allows {fmt_s(0.15 * s[floor.label].median)}"
    )
    breakdown.processes([*b.taoremote, *TASK_ARGS], b.env, b.tmp, "taoremote detectnet_v2 train x")
    breakdown.syscalls([*b.taoremote, *TASK_ARGS], b.env, b.tmp, "taoremote detectnet_v2 train x")


def list_jobs(b: Bench, jobs: Jobs) -> list[str]:
    """Returns the `docker ps` argv that taoremote ran (the remote floor runs it too)."""
    log(f"\n== `taoremote list` with {N_JOBS} running jobs ==")
    jobs.start()
    argv = [*b.taoremote, "list"]
    calls = breakdown.processes(argv, b.env, b.tmp, "taoremote list")
    ps_calls = [c for c in calls if c[1:2] == ["ps"]]
    if not ps_calls:
        raise RuntimeError("taoremote list ran no `docker ps` (strace saw none)")
    tr = Cmd.of("taoremote list", argv, env=b.env)
    floor = Cmd.of("floor", TYPER_IMPORT, *ps_calls, env=b.env)
    s = alternate([tr, floor], b.runs(15))
    seen = len(docker("ps", "-q", "--filter", "label=taoremote.job").stdout.split())
    note = f"{len(calls)} docker call(s), {len(ps_calls)} `docker ps`; {seen} taoremote jobs on the daemon"
    if seen != N_JOBS:
        note += f" ({seen - N_JOBS} of them other sessions')"
    b.add(Row(f"list of {N_JOBS} jobs", s[tr.label], s[floor.label], 1.15, note=note))
    return ps_calls[0]


def stop_all(b: Bench, jobs: Jobs) -> None:
    log(f"\n== `taoremote stop --all` of {N_JOBS} running jobs (jobs restarted, untimed, before each run) ==")
    argv = [*b.taoremote, "stop", "--all"]
    jobs.start()
    calls = breakdown.processes(argv, b.env, b.tmp, "taoremote stop --all")
    if not any(c[1:2] == ["stop"] for c in calls):
        raise RuntimeError("taoremote stop --all ran no `docker stop` (strace saw none)")
    tr = Cmd.of("taoremote stop --all", argv, env=b.env, expect_out="stopped")
    floor = Cmd.of("floor", TYPER_IMPORT, *calls, env=b.env)
    s = alternate([tr, floor], b.runs(3), before=jobs.start)
    note = "floor: python -c 'import typer'; " + "; ".join(shlex.join(c[:3]) + " …" for c in calls)
    b.add(Row(f"stop --all of {N_JOBS} jobs", s[tr.label], s[floor.label], 3.0, absolute=True, note=note))
