"""`taoremote doctor`: can this host (or these hosts) run TAO? One verdict per line, with the fix.

Each host costs at most three round trips (the preflight probe, which also says whether docker answers;
the env of every task image at once; the listening ports), and hosts are checked in parallel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from taoremote import preflight
from taoremote.config import MountsConfig
from taoremote.cuda_table import ImageCuda, image_cuda_from_env, image_cuda_from_table
from taoremote.docker_errors import parse_docker_error
from taoremote.errors import PreflightError
from taoremote.hosts import Completed, Executor
from taoremote.nvidia_smi import HostGpuFacts
from taoremote.output import Format
from taoremote.probe import Probe, build_probe_argv, parse_image_env, parse_probe


@dataclass(frozen=True)
class Check:
    host: str
    check: str
    status: str  # ok | FAIL | warn | skip
    detail: str
    fix: str = ""
    required: bool = True

    @property
    def failed(self) -> bool:
        return self.required and self.status == "FAIL"


def build_images_env_argv(images: Sequence[str]) -> tuple[str, ...]:
    """The env of every image in one round trip: `IMAGE<TAB>json-env` per line, empty env when absent."""
    script = (
        'for i in "$@"; do e=$(docker image inspect --format "{{json .Config.Env}}" "$i" 2>/dev/null);'
        ' printf "%s\\t%s\\n" "$i" "$e"; done'
    )
    return ("sh", "-c", script, "sh", *images)


def parse_images_env(stdout: str) -> dict[str, dict[str, str] | None]:
    found: dict[str, dict[str, str] | None] = {}
    for line in stdout.splitlines():
        image, _, env = line.partition("\t")
        if image:
            found[image] = parse_image_env(env) if env.strip() else None
    return found


def build_listening_ports_argv() -> tuple[str, ...]:
    return ("sh", "-c", "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null")


def parse_listening_ports(proc_net_tcp: str) -> set[int]:
    """Ports in LISTEN state (st 0A) from /proc/net/tcp{,6}: no ss/netstat needed on the host."""
    ports = set()
    for line in proc_net_tcp.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A" and ":" in fields[1]:
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def check_host(ex: Executor, images: Sequence[str], config: MountsConfig) -> list[Check]:
    host = ex.host
    sources = [m.source for m in config.mounts]
    probe_run = ex.run(build_probe_argv(images[0] if images else "", sources, runtime=True), timeout=60)
    probe = parse_probe(probe_run.stdout, host=host, runtime=True)
    docker_ok = probe.runtimes_rc == 0  # the probe's `docker info`: no second call just to ask
    if docker_ok:
        runtimes = ", ".join(probe.runtimes) or "none listed"
        checks = [Check(host, "docker", "ok", f"Docker Engine answers (runtimes: {runtimes})")]
    else:
        error = parse_docker_error(Completed(host, (), probe.runtimes_rc, "", probe.runtimes_text))
        fix = error.fix or "start dockerd / install Docker Engine"
        checks = [Check(host, "docker", "FAIL", error.problem, fix)]
    facts: HostGpuFacts | None = None
    try:
        facts = preflight.host_facts(probe, host=host)
        gpus = f", {len(facts.gpus)} GPU(s)" if facts.gpus else ""
        cuda = facts.cuda_version or "unknown"
        checks.append(Check(host, "NVIDIA driver", "ok", f"driver {facts.driver_version}, CUDA {cuda}{gpus}"))
    except PreflightError as exc:  # the host is a column, and doctor is no launch to skip: no SKIP_HINT
        fix = exc.fix or "install or repair the NVIDIA driver"
        checks.append(Check(host, "NVIDIA driver", "FAIL", exc.problem, fix))
    checks.extend(_mount_checks(host, config, probe))
    if not docker_ok:  # the driver and mounts were still worth checking; the rest needs docker
        return [*checks, Check(host, "images and runtime", "skip", "needs docker", required=False)]
    checks.append(_runtime_check(host, probe))
    checks.extend(_image_checks(ex, images, facts, probe))
    checks.extend(_env_checks(host, config))
    checks.extend(_port_checks(ex, config))
    return checks


def _runtime_check(host: str, probe: Probe) -> Check:
    if probe.hook_path or "nvidia" in probe.runtimes:
        where = probe.hook_path or "nvidia runtime"
        return Check(host, "NVIDIA container runtime", "ok", f"--gpus is available ({where})")
    return Check(
        host,
        "NVIDIA container runtime",
        "FAIL",
        "docker run --gpus would fail: could not select device driver with capabilities [[gpu]]",
        "install the NVIDIA Container Toolkit, then `nvidia-ctk runtime configure --runtime=docker` "
        "and restart dockerd",
    )


def _mount_checks(host: str, config: MountsConfig, probe: Probe) -> list[Check]:
    checks = []
    for index, mount in enumerate(config.mounts):
        state = probe.paths.get(mount.source)
        name = f"mount {index}: {mount.destination}"
        if state is not None and state.exists:
            checks.append(Check(host, name, "ok", f"{state.resolved} exists"))
        else:
            checks.append(
                Check(host, name, "FAIL", f"source {mount.source} does not exist", "create it or fix Mounts")
            )
    return checks


def _image_checks(
    ex: Executor, images: Sequence[str], facts: HostGpuFacts | None, probe: Probe
) -> list[Check]:
    result = ex.run(build_images_env_argv(images), timeout=60)
    envs = parse_images_env(result.stdout)
    checks = []
    for image in images:
        env = envs.get(image)
        cuda = (
            image_cuda_from_env(image, env)
            if env is not None
            else image_cuda_from_table(image) or ImageCuda(image, None, {}, "unknown")
        )
        where = "pulled" if env is not None else "not pulled; CUDA from the bundled table"
        if facts is None:
            checks.append(
                Check(ex.host, image, "skip", f"{where}; no driver to compare with", required=False)
            )
            continue
        verdict = preflight.check_cuda_compat(
            ex.host, facts, cuda, host_disable_require=probe.host_disable_require
        )
        detail = f"{where}; CUDA {cuda.cuda_version or 'unknown'}"
        if verdict.ok:
            checks.append(Check(ex.host, image, "ok", "; ".join([detail, *verdict.notes])))
        else:
            checks.append(Check(ex.host, image, "FAIL", verdict.finding, verdict.fix or "see the message"))
    return checks


def _env_checks(host: str, config: MountsConfig) -> list[Check]:
    from taoremote.envs import wandb_needs_root  # the rule the launch warning uses too

    rule = wandb_needs_root(config)
    if rule is None:
        return []
    fix = "remove DockerOptions.user for runs that log to W&B"
    return [Check(host, "W&B with DockerOptions.user", "warn", rule, fix, required=False)]


def _port_checks(ex: Executor, config: MountsConfig) -> list[Check]:
    wanted = [int(p.host_port) for p in config.options.ports if p.host_port]
    if not wanted:
        return []
    result = ex.run(build_listening_ports_argv(), timeout=30)
    busy = parse_listening_ports(result.stdout)
    return [
        Check(
            ex.host,
            f"port {port}",
            "warn" if port in busy else "ok",
            "already in use on the host" if port in busy else "free",
            "stop what listens there or change DockerOptions.ports" if port in busy else "",
            required=False,
        )
        for port in wanted
    ]


def task_images(groups: Mapping[str, Mapping[str, Any]], override_registry: str | None) -> list[str]:
    from taoremote.tasks import ImageRef

    refs: list[str] = []
    for entries in groups.values():
        for ref in entries.values():
            if override_registry:
                ref = ImageRef(override_registry, ref.repository, ref.tag, ref.digest)
            if str(ref) not in refs:
                refs.append(str(ref))
    return refs


def verdict_rows(results: Sequence[Any], fmt: Format) -> tuple[list[dict[str, object]], int]:
    """Rows to render (hosts that could not be checked become a failed `connect` line) and how many
    required checks failed."""
    checks = [c for r in results for c in (r.value or [])]
    checks += [
        Check(r.host, "connect", "FAIL", r.error.problem, r.error.fix or "see the error")
        for r in results
        if r.error is not None
    ]
    return [_row(c, fmt) for c in checks], sum(1 for c in checks if c.failed)


def _row(check: Check, fmt: Format) -> dict[str, object]:
    row: dict[str, object] = asdict(check)
    if fmt == "table":
        row.pop("required")
    return row
