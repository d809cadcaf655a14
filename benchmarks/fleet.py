"""`list` over 1, 8 and 32 simulated hosts, 50 ms away, against one `ssh host docker ps`.

Every simulated host shares this machine's dockerd, so each lists the same jobs; on a 2-core machine
32 hosts also means 32 sshd sessions and 32 `docker ps` at once on the same two cores.
"""

from __future__ import annotations

import resource
import shlex

from benchmarks.harness import Bench, Cmd, Row, alternate, fmt_s, log, run_once
from benchmarks.remote import SimHosts


def run(b: Bench, sim: SimHosts, sizes: list[int], ps_argv: list[str]) -> None:
    sizes = [n for n in sizes if n <= len(sim.hosts)]
    log(
        f"\n== list over {', '.join(map(str, sizes))} host(s) at {sim.rtt_ms:g} ms RTT "
        "vs one `ssh h1 docker ps` =="
    )
    cmds = []
    for n in sizes:
        hosts = [a for h in sim.hosts[:n] for a in ("--host", h.name)]
        cmds.append(Cmd.of(f"list {n}", [*sim.taoremote(b), *hosts, "list"], env=b.env))
    floor = Cmd.of("ssh h1 docker ps", sim.ssh("h1", shlex.join(ps_argv)), env=b.env)
    s = alternate([*cmds, floor], b.runs(8))
    last = sizes[-1]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    elapsed, _ = run_once(cmds[-1])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    log(
        f"   one list over {last} hosts: {fmt_s(elapsed)} wall, of which the taoremote process used "
        f"{fmt_s(cpu)} of CPU (user+sys: SSH handshakes and crypto); the 2 cores also run "
        f"{last} sshd sessions, {last} `docker ps` and the latency proxy"
    )
    b.add(
        *(
            Row(
                f"list over {n} host(s) ({sim.rtt_ms:g} ms RTT)",
                s[c.label],
                s[floor.label],
                1.5 if n == last else None,
            )
            for n, c in zip(sizes, cmds, strict=True)
        )
    )
