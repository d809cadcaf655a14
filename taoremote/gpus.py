"""The `--gpus` grammar and the choice of GPUs: the one place that knows what `all`, `none`, `N`,
`device=…` and `auto:N` mean. Pure: it receives the option text and the host's GPUs, runs nothing."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from taoremote.errors import PreflightError, UsageError

if TYPE_CHECKING:
    from taoremote.nvidia_smi import Gpu

GpuKind = Literal["all", "none", "count", "devices", "auto"]

_GRAMMAR = re.compile(r"^(all|none|[1-9][0-9]*|device=[0-9A-Za-z,:-]+|auto:[1-9][0-9]*)$")
CHOICES = "all, none, a count (2), device=0,2 or auto:N"


@dataclass(frozen=True, slots=True)
class GpuRequest:
    """What `--gpus` asked for. `str()` gives the option text back exactly as it was written."""

    kind: GpuKind
    count: int = 0  # `count` and `auto`: how many GPUs
    devices: tuple[str, ...] = ()  # `devices`: indexes, UUIDs or MIG ids, as written

    def __str__(self) -> str:
        if self.kind == "count":
            return str(self.count)
        if self.kind == "auto":
            return f"auto:{self.count}"
        if self.kind == "devices":
            return "device=" + ",".join(self.devices)
        return self.kind


def parse_gpus(text: str) -> GpuRequest:
    if not _GRAMMAR.match(text):
        raise UsageError(f"--gpus {text!r}: expected {CHOICES}")
    if text == "all":
        return GpuRequest("all")
    if text == "none":
        return GpuRequest("none")
    if text.isdigit():
        return GpuRequest("count", count=int(text))
    if text.startswith("auto:"):
        return GpuRequest("auto", count=int(text.removeprefix("auto:")))
    return GpuRequest("devices", devices=tuple(text.removeprefix("device=").split(",")))


def docker_gpus_args(request: GpuRequest) -> tuple[str, ...]:
    """The `docker run` flags for REQUEST (`auto:N` is resolved to devices before a run is built)."""
    if request.kind == "none":
        return ()
    if request.kind == "devices":
        # the docker CLI splits --gpus on commas unless the device list is quoted
        return ("--gpus", f'"{request}"')
    return ("--gpus", str(request))


def selected(gpus: Sequence[Gpu], request: GpuRequest) -> tuple[Gpu, ...]:
    """The GPUs REQUEST hands the container (all of them when that cannot be told)."""
    if request.kind == "devices":
        wanted = set(request.devices)
        chosen = tuple(g for g in gpus if str(g.index) in wanted or (g.uuid and g.uuid in wanted))
        return chosen or tuple(gpus)
    if request.kind == "count":
        return tuple(sorted(gpus, key=lambda g: g.index)[: request.count]) or tuple(gpus)
    return tuple(gpus)


def pick_least_loaded(gpus: Sequence[Gpu], n: int) -> tuple[int, ...]:
    """`--gpus auto:N`: the N least-loaded GPUs (memory used, then utilisation, then index), in index order.

    GPUs whose load is unknown (MIG-enabled ones print N/A) rank after every GPU whose load is known.
    """
    if n < 1:
        raise UsageError(f"--gpus auto:{n}: the number of GPUs must be at least 1")
    if len(gpus) < n:
        raise PreflightError(f"--gpus auto:{n} needs {n} GPUs, but the host has {len(gpus)}")

    def load(gpu: Gpu) -> tuple[bool, int, bool, int, int]:
        used, util = gpu.memory_used_mib, gpu.utilization_pct
        return (used is None, used or 0, util is None, util or 0, gpu.index)

    return tuple(sorted(g.index for g in sorted(gpus, key=load)[:n]))


def resolve_auto(request: GpuRequest, gpus: Sequence[Gpu]) -> GpuRequest:
    """`auto:N` becomes the device list of the N least-loaded of GPUS; any other request is kept."""
    if request.kind != "auto":
        return request
    chosen = pick_least_loaded(gpus, request.count)
    return GpuRequest("devices", devices=tuple(str(i) for i in chosen))
