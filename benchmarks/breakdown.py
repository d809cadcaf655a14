"""Where the time goes: `python -X importtime`, `strace -f` process timelines and `strace -f -c -w`."""

from __future__ import annotations

import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.harness import log, table


def importtime(argv: Sequence[str], env: dict[str, str], runs: int = 3, top: int = 10) -> dict[str, Any]:
    """Import cost of a taoremote command (min over `runs` runs per module): total, top cumulative
    modules, self time per top-level package."""
    cmd = [sys.executable, "-X", "importtime", "-m", "taoremote", *argv]
    best: dict[str, tuple[int, int, int]] = {}  # module -> (self µs, cumulative µs, depth)
    for _ in range(runs):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        for line in proc.stderr.splitlines():
            m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
            if m:
                own, cum, depth, name = int(m[1]), int(m[2]), len(m[3]) // 2, m[4]
                old = best.get(name, (own, cum, depth))
                best[name] = (min(old[0], own), min(old[1], cum), depth)
    if not best:
        log("   (python -X importtime printed nothing)")
        return {}
    total = sum(v[0] for v in best.values())
    packages: dict[str, int] = {}
    for name, (own, _, _) in best.items():
        packages[name.split(".")[0]] = packages.get(name.split(".")[0], 0) + own
    biggest = sorted(best.items(), key=lambda kv: -kv[1][1])[:top]
    by_package = sorted(packages.items(), key=lambda kv: -kv[1])[:10]
    log(f"\n   python -X importtime -m taoremote {shlex.join(argv)}: {total / 1000:.0f} ms of imports")
    rows = [[f"{c / 1000:.1f} ms", f"{s / 1000:.1f} ms", "  " * d + n] for n, (s, c, d) in biggest]
    log("   " + table(["cumulative", "self", "module"], rows).replace("\n", "\n   "))
    log("   self time by package: " + ", ".join(f"{k} {v / 1000:.0f} ms" for k, v in by_package))
    return {
        "total_ms": round(total / 1000, 1),
        "top_cumulative_ms": {n: round(c / 1000, 1) for n, (_, c, _) in biggest},
        "by_package_ms": {k: round(v / 1000, 1) for k, v in by_package},
    }


def _strace(options: Sequence[str], argv: Sequence[str], env: dict[str, str], out: Path) -> bool:
    if shutil.which("strace") is None:
        log("   (strace not installed: scripts/install-deps.sh installs it)")
        return False
    subprocess.run(
        ["strace", *options, "-o", str(out), *argv],
        env=env,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    return out.exists()


_EXEC_OPTIONS = ("-f", "-q", "-ttt", "-s", "65536", "-e", "trace=execve")
_EXEC = re.compile(r'^(\d+)\s+([\d.]+) execve\("([^"]+)", \[(.*?)\].* = 0$')
_EXIT = re.compile(r"^(\d+)\s+([\d.]+) \+\+\+ (?:exited with|killed by) ")


def processes(argv: Sequence[str], env: dict[str, str], tmp: Path, title: str) -> list[list[str]]:
    """Every program the command runs (strace -f -e execve): when it started, how long it ran.
    Returns the argvs of the `docker` calls."""
    out = tmp / "strace-exec.txt"
    if not _strace(_EXEC_OPTIONS, argv, env, out):
        return []
    return _timeline(out, f"the programs `{title}` runs")


def remote_processes(sshd_pid: int, run: Callable[[], object], tmp: Path, title: str) -> list[list[str]]:
    """The programs a simulated host runs while `run()` runs: strace -f attached to its sshd."""
    if shutil.which("strace") is None:
        return []
    out = tmp / "strace-remote.txt"
    argv = ["strace", *_EXEC_OPTIONS, "-o", str(out), "-p", str(sshd_pid)]
    tracer = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.5)  # attached (strace prints nothing with -q; half a second is ample)
        client_start = time.time()
        run()
    finally:
        tracer.send_signal(signal.SIGINT)  # detaches from sshd, which goes on
        try:
            tracer.wait(timeout=10)
        except subprocess.TimeoutExpired:
            tracer.kill()
            tracer.wait()
    if not out.exists():
        return []
    return _timeline(
        out, f"what the host runs for `{title}` (from the client's start; sshd: the connection)", client_start
    )


def _unescape(arg: str) -> str:
    """strace prints strings C-escaped (\\" \\n \\ooo): back to what the program got."""
    return arg.encode("latin-1").decode("unicode_escape").encode("latin-1").decode("utf-8", "replace")


def _timeline(out: Path, title: str, origin: float | None = None) -> list[list[str]]:
    """Print each exec'd program's start (from `origin`, else the first exec) and wall time."""
    started: dict[str, tuple[float, list[str]]] = {}
    spans: list[tuple[float, float, list[str]]] = []
    for line in out.read_text(errors="replace").splitlines():
        if m := _EXEC.match(line):
            started[m[1]] = (float(m[2]), [_unescape(a) for a in re.findall(r'"((?:[^"\\]|\\.)*)"', m[4])])
        elif (m := _EXIT.match(line)) and m[1] in started:
            t0, args = started.pop(m[1])
            spans.append((t0, float(m[2]), args))
    out.unlink()
    if not spans:
        return []
    origin = min(s[0] for s in spans) if origin is None else origin
    log(f"\n   strace -f -e trace=execve, {title}: start, wall time, argv")
    for t0, t1, args in sorted(spans):
        shown = shlex.join(args[:4]) + (" …" if len(args) > 4 else "")
        log(f"     +{t0 - origin:6.3f} s  {(t1 - t0) * 1000:6.0f} ms  {shown}")
    return [args for _, _, args in sorted(spans) if Path(args[0]).name == "docker"]


def syscalls(argv: Sequence[str], env: dict[str, str], tmp: Path, title: str, top: int = 8) -> None:
    """strace -f -c -w: the syscalls the command and its children spent wall time in."""
    out = tmp / "strace-c.txt"
    if not _strace(["-f", "-c", "-w"], argv, env, out):
        return
    lines = out.read_text(errors="replace").splitlines()
    out.unlink()
    rows = [ln.split() for ln in lines if re.match(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+\d+", ln)]
    rows = [r for r in rows if r[-1] != "total"]
    rows.sort(key=lambda r: -float(r[1]))
    log(f"\n   strace -f -c -w `{title}`: wall time inside syscalls, all processes and threads summed")
    cells = [[f"{float(r[1]):.3f} s", r[3], r[-1]] for r in rows[:top]]
    log("   " + table(["seconds", "calls", "syscall"], cells).replace("\n", "\n   "))
