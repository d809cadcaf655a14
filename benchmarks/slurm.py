"""Slurm (issue 10) on the one-node test cluster of scripts/start-slurm.sh, each against its floor timed
alternately in this run: a detached submit vs `python -c 'import typer'` then `sbatch` of the same batch
script (the one `--dry-run` prints); `list` of 50 Slurm jobs vs the typer import then the same `squeue`;
and, as information, the time from the start of a submit to its container's start on the idle cluster.

Bounded and self-cleaning: the timed jobs are submitted held (`--hold`: they never run, so they load
nothing), every job of this section carries the bench user in its comment (`taoremote job=… user=<bench
user>`), and the cleanup cancels exactly those (never another session's or a person's jobs). The whole
section stops adding runs once it has used SECTION_BUDGET_S.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks import breakdown
from benchmarks.harness import TYPER_IMPORT, Bench, Cmd, Row, alternate, docker, fmt_s, log

N_JOBS = 50
SECTION_BUDGET_S = 80.0  # the section must stay under 90 s, cleanup included
TASK = ("detectnet_v2", "run", "true")
STARTS = 3  # submit → container start, measured this many times


class SlurmJobs:
    """This section's jobs on the cluster, known by the bench user in their comment."""

    def __init__(self, b: Bench) -> None:
        self.b = b
        b.cleanup.add("Slurm jobs", lambda: log(f"   cancelled {self.cancel_all()} Slurm job(s) of {b.user}"))

    def ids(self) -> list[str]:
        return _commented(f"user={self.b.user}")

    def cancel_all(self) -> int:
        ids = self.ids()
        if ids:
            subprocess.run(["scancel", *ids], capture_output=True, timeout=60)
        return len(ids)

    def submit_held(self, count: int) -> None:
        argv = [*self.b.taoremote, "--slurm", "local", "--sbatch", "--hold", "-d", *TASK]

        def one(_: int) -> str:
            done = subprocess.run(argv, env=self.b.env, capture_output=True, text=True, timeout=60)
            return "" if done.returncode == 0 else done.stderr.strip()

        with ThreadPoolExecutor(4) as pool:
            errors = [e for e in pool.map(one, range(count)) if e]
        if errors:
            raise RuntimeError(f"taoremote --slurm submit failed: {errors[0]}")


def available() -> str | None:
    """Why the section cannot run here (None: it can)."""
    if shutil.which("sbatch") is None or shutil.which("squeue") is None:
        return "no Slurm client tools (make setup runs scripts/start-slurm.sh)"
    up = subprocess.run(["sinfo", "-h", "-o", "%a"], capture_output=True, text=True, timeout=30)
    if up.returncode != 0 or "up" not in up.stdout.split():
        return f"the test cluster does not answer ({(up.stderr or up.stdout).strip()[:120]})"
    return None


def run(b: Bench) -> None:
    log("\n== Slurm: submit, list of 50 jobs, submit → container start (one-node test cluster) ==")
    why = available()
    if why is not None:
        log(f"   skipped: {why}")
        return
    started = time.monotonic()
    jobs = SlurmJobs(b)
    submit(b, jobs)
    if time.monotonic() - started < SECTION_BUDGET_S - 30:
        list_jobs(b, jobs)
    if time.monotonic() - started < SECTION_BUDGET_S - 15:
        start_latency(b, jobs, deadline=started + SECTION_BUDGET_S)
    log(f"   Slurm section: {time.monotonic() - started:.0f} s before its cleanup")


def _script_for_floor(b: Bench) -> Path:
    """The batch script a submit would write, as `--dry-run --slurm` prints it, with its output file in
    a directory of the floor's own (sbatch does not make directories)."""
    argv = [*b.taoremote, "--slurm", "local", "--sbatch", "--hold", "--dry-run", *TASK]
    done = subprocess.run(argv, env=b.env, capture_output=True, text=True, timeout=60)
    if done.returncode != 0 or not done.stdout.startswith("#!"):
        raise RuntimeError(f"taoremote --slurm --dry-run failed: {done.stderr.strip()}")
    floor_dir = b.tmp / "slurm-floor"
    floor_dir.mkdir(exist_ok=True)
    lines = [
        f"#SBATCH --output={floor_dir}/output" if line.startswith("#SBATCH --output=") else line
        for line in done.stdout.splitlines()
    ]
    script = floor_dir / "job.sbatch"
    script.write_text("\n".join(lines) + "\n")
    return script


def _over(b: Bench, ratio: float | None, goal: float, argv: list[str], title: str) -> None:
    """Where the time goes, printed when a ratio misses its goal."""
    if ratio is None or ratio <= goal:
        return
    log(f"   {title}: {ratio:.2f}× misses {goal:g}×; where the time goes:")
    b.facts[f"importtime {title}"] = breakdown.importtime(argv[len(b.taoremote) :], b.env, runs=2, top=8)
    breakdown.processes(argv, b.env, b.tmp, title)
    breakdown.syscalls(argv, b.env, b.tmp, title, top=6)


def submit(b: Bench, jobs: SlurmJobs) -> None:
    script = _script_for_floor(b)
    argv = [*b.taoremote, "--slurm", "local", "--sbatch", "--hold", "-d", *TASK]
    sbatch = ["sbatch", "--parsable", "--hold", str(script)]
    log(f"   floor: python -c 'import typer'; {shlex.join(sbatch)} (the script --dry-run prints); held jobs")
    tr = Cmd.of("taoremote submit", argv, env=b.env)
    floor = Cmd.of("floor", TYPER_IMPORT, sbatch, env=b.env)
    s = alternate([tr, floor], b.runs(12))
    row = Row("Slurm submit (-d, held)", s[tr.label], s[floor.label], 1.15)
    b.add(row)
    _over(b, row.ratio, 1.15, argv, "taoremote --slurm local -d submit")


def list_jobs(b: Bench, jobs: SlurmJobs) -> None:
    home_jobs = b.tmp / "home" / ".cache" / "taoremote" / "slurm"
    have = sum(1 for _ in home_jobs.iterdir()) if home_jobs.exists() else 0
    if have < N_JOBS:
        jobs.submit_held(N_JOBS - have)
    have = sum(1 for _ in home_jobs.iterdir())
    argv = [*b.taoremote, "--slurm", "local", "list"]
    listed = subprocess.run([*argv, "--format", "json"], env=b.env, capture_output=True, text=True)
    rows = json.loads(listed.stdout) if listed.returncode == 0 else []
    squeue = ["squeue", "-h", "-r", "-t", "all", "-u", _login_user(), "-o", "%i|%T|%r|%k"]
    log(f"   {len(rows)} Slurm jobs listed ({have} job directories); floor: python -c 'import typer'; "
        f"{shlex.join(squeue)}")  # fmt: skip
    tr = Cmd.of(f"taoremote list ({N_JOBS})", argv, env=b.env)
    floor = Cmd.of("floor", TYPER_IMPORT, squeue, env=b.env)
    s = alternate([tr, floor], b.runs(12))
    in_queue = len(subprocess.run(squeue, capture_output=True, text=True, timeout=30).stdout.splitlines())
    note = f"squeue: {in_queue} rows (every job of {_login_user()} the cluster still lists)"
    row = Row(f"Slurm list of {len(rows)} jobs", s[tr.label], s[floor.label], 1.15, note=note)
    b.add(row)
    _over(b, row.ratio, 1.15, argv, "taoremote --slurm local list")


def _login_user() -> str:
    return subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()


def start_latency(b: Bench, jobs: SlurmJobs, *, deadline: float) -> None:
    """Submit (not held) a job whose container sleeps; read the container's StartedAt from docker."""
    argv = [*b.taoremote, "--slurm", "local", "-d", "detectnet_v2", "run", "sleep", "60"]
    waits: list[float] = []
    for _ in range(STARTS):
        if time.monotonic() > deadline - 10:
            break
        t0 = time.time()
        done = subprocess.run(argv, env=b.env, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            log(f"   !! submit failed: {done.stderr.strip()}")
            break
        job_id = done.stdout.strip()
        started = _container_start(job_id, deadline)
        if started is None:
            log(f"   !! the container of job {job_id} did not start in time")
            break
        waits.append(started - t0)
        _scancel_job(job_id)
    if waits:
        shown = ", ".join(fmt_s(w) for w in waits)
        median = sorted(waits)[len(waits) // 2]
        log(f"   submit → container start on the idle cluster: {shown} (median {fmt_s(median)})")
        b.facts["slurm_submit_to_container_start_s"] = [round(w, 3) for w in waits]


def _container_start(job_id: str, deadline: float) -> float | None:
    """The container's StartedAt (epoch seconds), once docker shows it running."""
    while time.monotonic() < deadline:
        ids = docker("ps", "-q", "--filter", f"label=taoremote.job={job_id}").stdout.split()
        if ids:
            at = docker("inspect", "--format", "{{.State.StartedAt}}", ids[0]).stdout.strip()
            return _epoch(at)
        time.sleep(0.05)
    return None


def _epoch(rfc3339: str) -> float:
    """docker's StartedAt (`2025-01-02T03:04:05.123456789Z`) as epoch seconds."""
    from datetime import datetime, timezone

    whole, _, frac = rfc3339.rstrip("Z").partition(".")
    base = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    return base + float(f"0.{frac or 0}")


def _scancel_job(job_id: str) -> None:
    ids = _commented(f"job={job_id}")
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, timeout=60)


def _commented(word: str) -> list[str]:
    """Slurm ids of the jobs whose comment holds WORD (`user=<bench user>`, `job=<id>`): ours only."""
    out = subprocess.run(["squeue", "-h", "-o", "%i|%k"], capture_output=True, text=True, timeout=30).stdout
    return [i for i, _, k in (line.partition("|") for line in out.splitlines()) if word in k.split()]
