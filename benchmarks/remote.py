"""Simulated remote hosts 50 ms away, and the remote launch against `ssh host docker run --rm`.

Hosts are the tests' real sshd on loopback ports (tests/integration/conftest.py SshdFactory), each
behind benchmarks/latency_proxy.py (this kernel has no netem). Logins get HOME=<an empty dir>, so no
~/.bashrc runs (root's here runs `pyenv init`, ~0.1 s per command), on both sides of every ratio.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import breakdown
from benchmarks.harness import Bench, Cmd, Row, alternate, fmt_s, kill_tree, log
from benchmarks.local import TASK_ARGS, TASK_OUTPUT, dry_run_argv
from tests.integration.conftest import SshdFactory, SshHost
from tests.integration.taorun import DEFAULT_SMI, write_fake_nvidia_smi

PROXY = Path(__file__).with_name("latency_proxy.py")


@dataclasses.dataclass(frozen=True)
class SimHosts:
    hosts: list[SshHost]  # the sshd behind each alias (its direct port, its pid, its log)
    ssh_config: Path  # aliases h1..hN through the latency proxy
    rtt_ms: float

    def ssh(self, alias: str, command: str) -> list[str]:
        return ["ssh", "-F", str(self.ssh_config), alias, command]

    def taoremote(self, b: Bench) -> list[str]:
        return [*b.taoremote, "--ssh-config", str(self.ssh_config)]


def start_hosts(b: Bench, count: int, delay_ms: float) -> SimHosts:
    """`count` sshd hosts h1..hN, each behind the latency proxy (delay_ms each way)."""
    t0 = time.perf_counter()
    root = b.tmp / "sshd"
    home = b.tmp / "remote-home"
    root.mkdir()
    home.mkdir()
    factory = SshdFactory(root, login_env={"HOME": str(home)})
    b.cleanup.add("sshd hosts", factory.close)
    hosts = [factory.start(f"h{i}") for i in range(1, count + 1)]
    smi = DEFAULT_SMI.read_text()
    for h in hosts:
        write_fake_nvidia_smi(h.bin_dir, smi)
    targets = [f"127.0.0.1:{h.port}" for h in hosts]
    proxy = subprocess.Popen(
        [sys.executable, str(PROXY), "--delay-ms", f"{delay_ms:g}", *targets],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    b.cleanup.add("latency proxy", lambda: kill_tree(proxy))
    assert proxy.stdout is not None
    line = proxy.stdout.readline()
    if not line:
        raise RuntimeError("latency_proxy.py exited before listening")
    ports = json.loads(line)
    config, known = b.tmp / "ssh_config", b.tmp / "known_hosts"
    blocks, keys = [], []
    for h, target in zip(hosts, targets, strict=True):
        port = ports[target]
        keys.append(f"[127.0.0.1]:{port} {h.host_key_line.split(' ', 1)[1]}\n")
        blocks.append(
            f"Host {h.name}\n    HostName 127.0.0.1\n    Port {port}\n    User {h.user}\n"
            f"    IdentityFile {h.identity_file}\n    IdentitiesOnly yes\n"
            f"    UserKnownHostsFile {known}\n    GlobalKnownHostsFile /dev/null\n"
            "    StrictHostKeyChecking yes\n    BatchMode yes\n    ConnectTimeout 20\n"
        )
    known.write_text("".join(keys))
    config.write_text("\n".join(blocks))
    sim = SimHosts(hosts, config, 2 * delay_ms)
    t1 = time.perf_counter()
    r = subprocess.run(
        sim.ssh("h1", "true"), env=b.env, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    if r.returncode != 0:
        raise RuntimeError(f"ssh h1 through the latency proxy failed: {r.stderr.strip()}")
    log(
        f"   {count} sshd hosts up in {t1 - t0:.1f} s behind the latency proxy ({2 * delay_ms:g} ms RTT); "
        f"`ssh h1 true` takes {fmt_s(time.perf_counter() - t1)}"
    )
    return sim


def launch(b: Bench, sim: SimHosts) -> None:
    log(f"\n== remote launch at {sim.rtt_ms:g} ms RTT vs `ssh h1 docker run --rm` ==")
    tr_argv = [*sim.taoremote(b), "--host", "h1", *TASK_ARGS]
    floor_cmd = shlex.join(dry_run_argv(b))  # the same docker run, local --dry-run's line
    tr = Cmd.of("taoremote --host h1", tr_argv, env=b.env, expect_out=TASK_OUTPUT)
    floor = Cmd.of("ssh h1 docker run --rm", sim.ssh("h1", floor_cmd), env=b.env, expect_out=TASK_OUTPUT)
    s = alternate([tr, floor], b.runs(10))
    h1 = sim.hosts[0]
    logins = _logins(
        h1,
        lambda: breakdown.remote_processes(
            h1.pid, lambda: subprocess.run(tr_argv, env=b.env, capture_output=True), b.tmp, "remote launch"
        ),
    )
    rtts = (s[tr.label].median - s[floor.label].median) / (sim.rtt_ms / 1000)
    note = f"{logins} SSH login(s) per launch; {rtts:.1f} RTT more than the floor"
    b.add(Row(f"remote launch ({sim.rtt_ms:g} ms RTT)", s[tr.label], s[floor.label], 1.3, note=note))


def _logins(host: SshHost, run: Callable[[], object]) -> int:
    """How many SSH logins `run()` makes on `host` (sshd's "Accepted publickey" log lines)."""
    before = host.log_path.read_text(errors="replace").count("Accepted publickey")
    run()
    time.sleep(0.2)
    return host.log_path.read_text(errors="replace").count("Accepted publickey") - before
