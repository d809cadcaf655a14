"""`taoremote --slurm LOGIN doctor [--probe-node]`: can this cluster run TAO? Slurm reachable, its
partitions and their GPUs, the container runtime, the mount sources (on the login node: cluster
filesystems are shared), and with --probe-node the driver/CUDA verdict from a GPU node.

--probe-node runs doctor.check_host itself on a GPU node: NodeExecutor turns each of its commands into a
short `sbatch --wait` job, so the verdict is the one a host gets, from where the task will really run.
"""

from __future__ import annotations

import secrets
import shlex
from collections.abc import Sequence

from taoremote import doctor
from taoremote.backend import JobBackend
from taoremote.config import MountsConfig
from taoremote.doctor import Check
from taoremote.errors import TaoRemoteError
from taoremote.executor import Completed, Executor
from taoremote.probe import build_probe_argv, parse_probe
from taoremote.slurm import SlurmBackend
from taoremote.slurm_commands import JOBS_DIR

NODE_JOB_TIMEOUT_S = 600.0  # queue wait included: doctor waits for a GPU node as a job would
# `sh -c NODE_SCRIPT sh DIR COMMAND SBATCH_ARGS...`: COMMAND as a short batch job; its output, its exit code
NODE_SCRIPT = (
    'd=$HOME/$1; w=$2; shift 2; umask 077; mkdir -p "$d" || exit 125; '
    'sbatch --wait --quiet --job-name=taoremote-doctor -o "$d/out" "$@" --wrap="$w" >/dev/null; rc=$?; '
    'cat "$d/out" 2>/dev/null; rm -rf "$d"; exit $rc'
)


class NodeExecutor:
    """Runs each command as a one-GPU batch job on the cluster (stdout and stderr together, as a job's
    output file has them); nothing else of the Executor protocol is needed by doctor."""

    follow_detached = True

    def __init__(self, login: Executor, sbatch_args: Sequence[str]) -> None:
        self._login = login
        self._sbatch_args = tuple(sbatch_args)
        self.host = f"{login.host} (GPU node)"

    def run(
        self, argv: Sequence[str], *, timeout: float | None = None, stdin: str | None = None
    ) -> Completed:
        where = f"{JOBS_DIR}/doctor-{secrets.token_hex(6)}"
        wrapped = ("sh", "-c", NODE_SCRIPT, "sh", where, shlex.join(argv), "--gpus=1", *self._sbatch_args)
        done = self._login.run(wrapped, timeout=max(timeout or 0, NODE_JOB_TIMEOUT_S))
        return Completed(self.host, tuple(argv), done.returncode, done.stdout, done.stderr)

    def stream(self, argv: Sequence[str], *, tty: bool = False) -> int:
        raise NotImplementedError

    def stream_answered(self, argv: Sequence[str], *, marker: str) -> int | None:
        raise NotImplementedError

    def run_visible(self, argv: Sequence[str]) -> Completed:
        return self.run(argv)

    def hand_off_env(self, content: str) -> str:
        raise NotImplementedError

    def pending_env_file(self, path: str) -> str | None:
        return None

    def close(self) -> None:
        pass


def check_cluster(
    backend: JobBackend, images: Sequence[str], config: MountsConfig, *, probe_node: bool
) -> list[Check]:
    assert isinstance(backend, SlurmBackend)  # fleet.open_backend gives one for --slurm
    host = backend.host
    try:
        backend.login_info()
    except TaoRemoteError as exc:
        return [Check(host, "Slurm", "FAIL", exc.problem, exc.fix or "")]
    checks = [Check(host, "Slurm", "ok", "sbatch and squeue answer on the login node")]
    checks += _partitions(backend)
    checks.append(_runtime(backend))
    paths = backend.executor.run(
        build_probe_argv("", [m.source for m in config.mounts], gpu=False), timeout=60
    )
    checks += doctor._mount_checks(host, config, parse_probe(paths.stdout, host=host, gpu=False))
    if probe_node:
        node = NodeExecutor(backend.executor, backend.options.sbatch_args)
        checks += [c for c in doctor.check_host(node, images, config) if not c.check.startswith("mount")]
    else:
        detail = "the driver/CUDA verdict needs a GPU node: add --probe-node (submits a short job)"
        checks.append(Check(host, "NVIDIA driver", "skip", detail, required=False))
    return checks


def _partitions(backend: SlurmBackend) -> list[Check]:
    done = backend.executor.run(("sinfo", "-h", "-o", "%P|%a|%D|%G"), timeout=30)
    if done.returncode != 0:
        return [Check(backend.host, "partitions", "FAIL", f"sinfo failed: {done.stderr.strip()[:200]}")]
    checks = []
    for line in done.stdout.splitlines():
        name, avail, nodes, gres = [*line.split("|"), "", "", ""][:4]
        gpus = gres if "gpu" in gres else "no GPUs"
        status = "ok" if avail == "up" and "gpu" in gres else "warn"
        checks.append(
            Check(
                backend.host, f"partition {name}", status, f"{avail}, {nodes} node(s), {gpus}", required=False
            )
        )
    if not any(c.status == "ok" for c in checks):
        checks.append(Check(backend.host, "GPU partition", "FAIL", "no partition is up with GPU GRES"))
    return checks


def _runtime(backend: SlurmBackend) -> Check:
    runtime = backend.runtime()
    if runtime == "pyxis":
        return Check(backend.host, "container runtime", "ok", "pyxis/enroot (srun --container-image)")
    try:
        done = backend.executor.run(("docker", "version", "--format", "{{.Server.Version}}"), timeout=30)
    except TaoRemoteError:  # no docker client at all
        done = Completed(backend.host, (), 127, "", "")
    if done.returncode == 0:
        return Check(
            backend.host, "container runtime", "ok", f"docker {done.stdout.strip()} (no pyxis in srun)"
        )
    return Check(
        backend.host,
        "container runtime",
        "FAIL",
        "srun has no --container-image (pyxis) and docker does not answer on the login node",
        "install pyxis/enroot on the cluster, or Docker Engine on the nodes (--container-runtime docker)",
    )
