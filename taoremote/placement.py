"""Where a sweep's trials run: which GPUs of the fleet are free, and which waiting trial goes on which. PURE.

One remote command per host (`build_gpu_state_argv`) prints, between markers, the Docker engine's ID, the
GPUs, the compute processes and the GPU requests of every running container (anyone's); `parse_gpu_state`
reads it. A GPU is busy when
- a running (or paused) container's device request covers it. Docker's `--gpus` (moby daemon/nvidia_linux.go):
  Count -1 (`--gpus all`) is every GPU; Count N without ids (`--gpus 2`) is indexes 0..N-1 (`countToDevices`:
  the first N, whatever else runs there); DeviceIDs (`device=1,3`) are indexes, `GPU-` UUIDs or MIG ids `1:0`
  (GPU 1). CDI requests (`--device nvidia.com/gpu=1`, driver "cdi") are read the same way. A container of
  the nvidia runtime without a device request gets its `NVIDIA_VISIBLE_DEVICES` (CUDA images: `all`). An id
  that names no GPU of the host (a MIG UUID) counts as every GPU: when in doubt, busy.
- `nvidia-smi --query-compute-apps` shows a process on it (someone's training outside Docker).
Host names whose engines have one ID reach one machine: it is booked once, under its first name in host order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from taoremote.errors import PreflightError
from taoremote.nvidia_smi import Gpu, parse_query_gpu

GPU_FIELDS = ("index", "uuid", "memory.used", "memory.total", "utilization.gpu")
_NVIDIA_ENV = "NVIDIA_VISIBLE_DEVICES"
# One line per running container: `@@c ID RUNTIME DEVICE-REQUESTS-JSON NVIDIA_VISIBLE_DEVICES=…`. The env
# template prints that one variable only: no other env value of anyone's container leaves the host.
_INSPECT_FORMAT = (
    "@@c {{.Id}} {{.HostConfig.Runtime}} {{json .HostConfig.DeviceRequests}} "
    '{{range .Config.Env}}{{if eq (index (split . "=") 0) "' + _NVIDIA_ENV + '"}}{{.}}{{end}}{{end}}'
)


def _capture(name: str, command: str) -> str:
    """COMMAND's output (stderr too) between begin/end markers; the end marker carries its exit status."""
    return (
        f"printf '%s\\n' '@@taoremote:begin {name}@@'; out=$({command} 2>&1); rc=$?;"
        f' printf \'%s\\n\' "$out" "@@taoremote:end {name} rc=$rc@@";'
    )


# One POSIX sh line, `;`-joined and without `!`, as probe.py's: any login shell passes it on intact.
GPU_STATE_SCRIPT = " ".join(
    (
        "printf '%s\\n' '@@taoremote:gpu-state v=1@@';",
        _capture("engine", "docker info --format '{{.ID}}'"),
        "smi=nvidia-smi; if command -v nvidia-smi >/dev/null 2>&1; then :;",
        "elif [ -x /usr/lib/wsl/lib/nvidia-smi ]; then smi=/usr/lib/wsl/lib/nvidia-smi; fi;",
        _capture("gpus", f'"$smi" --query-gpu={",".join(GPU_FIELDS)} --format=csv,noheader,nounits'),
        _capture("apps", '"$smi" --query-compute-apps=gpu_uuid,pid --format=csv,noheader'),
        # `docker inspect` with no id is an error, and a container gone since `ps` is one too: `ps` decides
        _capture(
            "containers",
            '{ ids=$(docker ps -q --no-trunc) || exit 3; if [ -n "$ids" ]; then'
            f" docker inspect --format '{_INSPECT_FORMAT}' $ids; fi; exit 0; }}",
        ),
        "printf '%s\\n' '@@taoremote:end-of-gpu-state@@'",
    )
)
_MARKER = re.compile(r"@@taoremote:(begin|end) ([a-z-]+)(?: rc=(\d+))?@@")


def build_gpu_state_argv() -> tuple[str, ...]:
    return ("sh", "-c", GPU_STATE_SCRIPT)


@dataclass(frozen=True, slots=True)
class HostGpuState:
    """One host name's answer: its engine, its GPUs, and why each busy GPU is busy (index -> reason)."""

    host: str
    engine_id: str
    gpus: tuple[Gpu, ...]
    busy: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Machine:
    """Host names that reach one Docker engine; `host` (the first) is the one trials are launched on."""

    host: str
    names: tuple[str, ...]
    gpus: tuple[int, ...]
    busy: Mapping[int, str]

    @property
    def free(self) -> tuple[int, ...]:
        return tuple(i for i in self.gpus if i not in self.busy)


@dataclass(frozen=True, slots=True, order=True)
class Placement:
    trial: int
    host: str
    gpus: tuple[int, ...]

    @property
    def gpus_option(self) -> str:
        """What `--gpus` gets (RunSpec.gpus): `device=0,2`."""
        return "device=" + ",".join(str(i) for i in self.gpus)


def _sections(stdout: str, host: str) -> dict[str, tuple[str, int]]:
    sections: dict[str, tuple[str, int]] = {}
    lines = stdout.splitlines()
    start: tuple[str, int] | None = None
    for i, line in enumerate(lines):
        marker = _MARKER.fullmatch(line)
        if marker and marker.group(1) == "begin":
            start = (marker.group(2), i + 1)
        elif marker and start and marker.group(2) == start[0] and marker.group(3) is not None:
            sections[start[0]] = ("\n".join(lines[start[1] : i]).strip("\n"), int(marker.group(3)))
            start = None
    if "@@taoremote:end-of-gpu-state@@" not in lines or len(sections) < 4:
        raise PreflightError("the GPU state command's output is incomplete", host=host)
    return sections


def parse_gpu_state(stdout: str, *, host: str) -> HostGpuState:
    """What `build_gpu_state_argv` printed on HOST. Docker or nvidia-smi not answering is a PreflightError:
    a host whose GPUs cannot be told free gets no trial."""
    sections = _sections(stdout, host)
    engine, engine_rc = sections["engine"]
    if engine_rc or not re.fullmatch(r"[\w:.-]+", engine):
        raise PreflightError(f"docker info failed: {_first_line(engine)}", host=host)
    gpus_text, gpus_rc = sections["gpus"]
    if gpus_rc:
        raise PreflightError(f"nvidia-smi --query-gpu failed: {_first_line(gpus_text)}", host=host)
    gpus = parse_query_gpu(gpus_text, GPU_FIELDS)
    apps_text, apps_rc = sections["apps"]
    if apps_rc:
        raise PreflightError(f"nvidia-smi --query-compute-apps failed: {_first_line(apps_text)}", host=host)
    containers_text, containers_rc = sections["containers"]
    if containers_rc:
        raise PreflightError(f"docker ps failed: {_first_line(containers_text)}", host=host)
    busy: dict[int, str] = {}
    held = container_gpus(containers_text, gpus, host=host)
    for index, reason in (*held, *process_gpus(apps_text, gpus)):
        busy.setdefault(index, reason)
    return HostGpuState(host, engine, gpus, busy)


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no output")


def process_gpus(csv_text: str, gpus: Sequence[Gpu]) -> list[tuple[int, str]]:
    """`--query-compute-apps=gpu_uuid,pid --format=csv,noheader`: (GPU index, reason) per process. No
    process prints nothing, or "No running processes found" on some drivers."""
    by_uuid = {g.uuid: g.index for g in gpus if g.uuid}
    found = []
    for line in csv_text.splitlines():
        uuid, _, pid = (part.strip() for part in line.partition(","))
        if uuid in by_uuid:
            found.append((by_uuid[uuid], f"compute process {pid or '?'}"))
    return found


def container_gpus(text: str, gpus: Sequence[Gpu], *, host: str | None = None) -> list[tuple[int, str]]:
    """(GPU index, reason) for each GPU a running container holds, from the `@@c` lines of the inspect."""
    found = []
    for line in text.splitlines():
        if not line.startswith("@@c "):
            if line.strip() and "No such " not in line:  # a container that ended after `docker ps` is fine
                raise PreflightError(f"docker inspect failed: {line.strip()}", host=host)
            continue
        _, ident, runtime, rest = line.split(" ", 3)
        requests_json, _, env = rest.partition(f" {_NVIDIA_ENV}=")
        try:
            requests = json.loads(requests_json.strip() or "null") or []
        except json.JSONDecodeError:
            requests = [{"Count": -1}]  # unreadable: when in doubt, busy
        ids: list[str] = []
        for request in requests:
            ids += _request_ids(request, len(gpus))
        if not requests and runtime == "nvidia" and env.strip() not in ("", "void", "none"):
            ids += env.strip().split(",")
        for index in sorted(_indexes(ids, gpus)):
            found.append((index, f"container {ident[:12]}"))
    return found


def _request_ids(request: object, gpu_count: int) -> list[str]:
    if not isinstance(request, dict):
        return ["all"]
    listed = request.get("DeviceIDs")
    device_ids = [str(i) for i in listed] if isinstance(listed, list) else []
    if request.get("Driver") == "cdi":
        prefix = "nvidia.com/gpu="
        return [i.removeprefix(prefix) for i in device_ids if i.startswith(prefix)]
    if device_ids:
        return device_ids
    count = request.get("Count")
    if not isinstance(count, int) or count < 0:
        return ["all"]
    return [str(i) for i in range(min(count, gpu_count))]


def _indexes(ids: Iterable[str], gpus: Sequence[Gpu]) -> set[int]:
    every = {g.index for g in gpus}
    by_uuid = {g.uuid: g.index for g in gpus if g.uuid}
    found: set[int] = set()
    for raw in ids:
        ident = raw.strip()
        head = ident.split(":", 1)[0]  # MIG `1:0` is on GPU 1
        if ident in by_uuid:
            found.add(by_uuid[ident])
        elif head.isdigit() and int(head) in every:
            found.add(int(head))
        elif ident:
            return every  # `all`, or an id of no GPU we can name
    return found


def machines(states: Sequence[HostGpuState]) -> tuple[Machine, ...]:
    """One Machine per Docker engine, in the order the hosts were given; a GPU busy on any name is busy."""
    grouped: dict[str, list[HostGpuState]] = {}
    for state in states:
        grouped.setdefault(state.engine_id, []).append(state)
    result = []
    for group in grouped.values():
        busy: dict[int, str] = {}
        for state in group:
            for index, reason in state.busy.items():
                busy.setdefault(index, reason)
        first = group[0]
        gpus = tuple(sorted(g.index for g in first.gpus))
        result.append(Machine(first.host, tuple(s.host for s in group), gpus, busy))
    return tuple(result)


def check_fits(fleet: Sequence[Machine], gpus_per_trial: int) -> None:
    """A trial needs GPUS_PER_TRIAL GPUs on one machine: refuse a sweep that no machine could ever run."""
    largest = max((len(m.gpus) for m in fleet), default=0)
    if gpus_per_trial > largest:
        raise PreflightError(
            f"--gpus-per-trial {gpus_per_trial}: the largest machine has {largest} GPU(s)"
            + ("" if fleet else " (no host answered)")
        )


def assign(
    waiting: Sequence[int], fleet: Sequence[Machine], gpus_per_trial: int, running: Sequence[Placement]
) -> tuple[Placement, ...]:
    """Placements for WAITING trials (in that order) on the free GPUs of FLEET, none on a GPU of a RUNNING
    trial (whatever the snapshot says: it may predate their launch). Packing, deterministic: machines are
    filled in host order, each trial taking the lowest free indexes; trials that do not fit keep waiting.
    `--max-parallel` is the caller's: it passes only the trials that may start now."""
    if gpus_per_trial < 1:
        raise ValueError("gpus_per_trial must be at least 1")
    taken: dict[str, set[int]] = {}
    for placed in running:
        machine = next((m for m in fleet if placed.host in m.names), None)
        if machine is not None:
            taken.setdefault(machine.host, set()).update(placed.gpus)
    free = {m.host: [i for i in m.free if i not in taken.get(m.host, set())] for m in fleet}
    placements = []
    queue = list(waiting)
    for machine in fleet:
        while queue and len(free[machine.host]) >= gpus_per_trial:
            chosen = tuple(free[machine.host][:gpus_per_trial])
            del free[machine.host][:gpus_per_trial]
            placements.append(Placement(queue.pop(0), machine.host, chosen))
    return tuple(placements)
