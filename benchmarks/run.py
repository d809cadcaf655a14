#!/usr/bin/env python3
"""taoremote speed: `make bench`. Each figure is a ratio against its floor, timed alternately in this run.

Floors (issue 8, "Speed"): a typer CLI that runs docker costs at least `python -c 'import typer'`
followed by the same docker command; --help and a local --dry-run cost at least the typer import;
a remote launch costs at least `ssh host docker run --rm`, a remote list one `ssh host docker ps`.
Sections: local.py (launch, list, stop --all), startup.py (--help, --dry-run), remote.py (hosts 50 ms
away, remote launch), fleet.py (list over 1, 8, 32 hosts), slurm.py (submit, list of 50 jobs, submit to
container start on the one-node test cluster), sweep.py (a grid of 8 trials on 4 GPUs, scheduling
latency); harness.py times and tabulates;
breakdown.py shows where the time goes. Results also go to .bench/results.json.

Every taoremote run here launches as its own user name ($LOGNAME/$USER = taoremote-bench-<id>), so its
jobs carry taoremote.user=<that> and the cleanup removes those containers only: tests, other benchmarks
and people's jobs on the same dockerd are left alone. Every process started here is killed at the end,
on error and on Ctrl-C/SIGTERM too.

Options: --runs N (or BENCH_RUNS), --quick, --only local,startup,list,stop,remote,fleet,slurm,sweep,
--hosts 1,8,32, --delay-ms 25 (one way: 50 ms RTT).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo: benchmarks.*, tests.*

from benchmarks import fleet, local, remote, slurm, startup, sweep
from benchmarks.harness import REPO, Bench, Cleanup, docker, log, print_rows, write_results
from tests.integration.taorun import DEFAULT_SMI, base_env, write_fake_nvidia_smi

SECTIONS = ("local", "startup", "list", "stop", "remote", "fleet", "slurm", "sweep")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="taoremote benchmarks: ratios against their floors, in one run")
    p.add_argument("-n", "--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "0")) or None)
    p.add_argument("--quick", action="store_true", help="a third of the default runs (at least 3)")
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma list of: {','.join(SECTIONS)}")
    p.add_argument("--hosts", default="1,8,32", help="fleet sizes for `list` (default 1,8,32)")
    p.add_argument("--delay-ms", type=float, default=25.0, help="one-way delay to each host (RTT = 2x)")
    return p.parse_args(argv)


def check_daemon() -> None:
    if shutil.which("docker") is None:
        raise SystemExit("bench: no docker client on PATH (make setup)")
    if docker("info", "--format", "{{.ServerVersion}}", timeout=30).returncode != 0:
        raise SystemExit("bench: dockerd not reachable (make setup, or bash scripts/start-dockerd.sh)")
    if docker("image", "inspect", local.IMAGE).returncode != 0:
        log(f"bench: {local.IMAGE} missing; building the test images")
        subprocess.run(["bash", str(REPO / "scripts" / "build-test-images.sh")], check=True)


def compile_taoremote() -> None:
    """Byte-compile taoremote as pip does when it installs a wheel (typer and click, installed by pip,
    have theirs). Without it an editable install under PYTHONDONTWRITEBYTECODE=1 (set on these machines)
    compiles every taoremote module from source on every run: ~15 ms that no installed taoremote pays."""
    import compileall

    compileall.compile_dir(REPO / "taoremote", quiet=1)


def prepare(args: argparse.Namespace, cleanup: Cleanup) -> Bench:
    tmp = Path(tempfile.mkdtemp(prefix="taoremote-bench-"))
    cleanup.add("temp dir", lambda: shutil.rmtree(tmp, ignore_errors=True))
    user = f"taoremote-bench-{secrets.token_hex(3)}"
    (tmp / "home").mkdir()
    (tmp / "data").mkdir()
    mounts = tmp / "mounts.json"
    mounts.write_text(
        json.dumps({"Mounts": [{"source": str(tmp / "data"), "destination": "/workspace/data"}]})
    )
    bin_dir = tmp / "bin"
    write_fake_nvidia_smi(bin_dir, DEFAULT_SMI.read_text())
    env = base_env(tmp / "home", bin_dir, mounts, USER=user, LOGNAME=user)
    b = Bench(tmp, user, env, cleanup, quick=args.quick, runs_override=args.runs)
    cleanup.add("containers", lambda: log(f"   removed {b.remove_own_containers()} container(s) of {user}"))
    return b


def run_sections(b: Bench, args: argparse.Namespace) -> None:
    wanted = set(args.only.split(","))
    sizes = sorted({int(n) for n in args.hosts.split(",")})
    ps_argv = ["docker", "ps"]
    if "local" in wanted:
        local.launch(b)
    if "startup" in wanted:
        startup.run(b)
    jobs = local.Jobs(b) if wanted & {"list", "stop", "fleet"} else None
    if jobs is not None and "list" in wanted:
        ps_argv = local.list_jobs(b, jobs)
    if wanted & {"remote", "fleet"}:
        log(f"\n== simulated hosts: {max(sizes) if 'fleet' in wanted else 1} sshd on loopback ==")
        sim = remote.start_hosts(b, max(sizes) if "fleet" in wanted else 1, args.delay_ms)
        b.facts["latency"] = f"benchmarks/latency_proxy.py, {args.delay_ms:g} ms each way"
        if "remote" in wanted:
            remote.launch(b, sim)
        if jobs is not None and "fleet" in wanted:
            jobs.start()
            fleet.run(b, sim, sizes, ps_argv)
    if jobs is not None and "stop" in wanted:
        local.stop_all(b, jobs)
    if "slurm" in wanted:
        slurm.run(b)
    if "sweep" in wanted:
        sweep.run(b)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    check_daemon()
    compile_taoremote()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    started = time.perf_counter()
    cleanup = Cleanup()
    b = None
    code = 0
    try:
        b = prepare(args, cleanup)
        log(f"taoremote bench as user {b.user}: {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
        log("every figure: median (min–max) wall time; taoremote and its floor timed alternately")
        run_sections(b, args)
    except KeyboardInterrupt:
        log("\nbench: interrupted; cleaning up")
        code = 130
    finally:
        log("\n== cleanup ==")
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the cleanup
        cleanup.run()
        if b is not None and b.own_containers():
            log(f"   !! containers of {b.user} left behind")
    if b is None or code:
        return code
    elapsed = time.perf_counter() - started
    log(f"\n== summary (whole bench {elapsed:.0f} s; hosts: {b.facts.get('latency', 'none')}) ==")
    print_rows(b.rows)
    met = [r.met for r in b.rows if r.met is not None]
    written = write_results(b.rows, b.facts, elapsed).relative_to(REPO)
    log(f"\ngoals met: {sum(met)}/{len(met)}; written {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
