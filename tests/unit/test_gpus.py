"""gpus.py: the `--gpus` grammar, its docker flags, which GPUs a request hands the container, auto:N."""

from __future__ import annotations

import pytest

from taoremote.errors import PreflightError, UsageError
from taoremote.gpus import (
    GpuRequest,
    docker_gpus_args,
    parse_gpus,
    pick_least_loaded,
    resolve_auto,
    selected,
)
from taoremote.nvidia_smi import Gpu, parse_nvidia_smi
from tests.unit.captures import smi

T4 = Gpu(0, "Tesla T4", "GPU-1", 0, 15109, 0, "7.5", "tesla")

# --- the grammar ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["all", "none", "1", "2", "16", "device=0", "device=0,2", "device=GPU-8f6e1a2b-3c4d", "auto:1", "auto:4"],
)
def test_valid_gpus_values_are_returned_unchanged(value: str) -> None:
    assert str(parse_gpus(value)) == value


@pytest.mark.parametrize(
    "value", ["", "0", "02", "-1", "ALL", "all ", "auto", "auto:0", "auto:x", "device=", "device=0 2", "gpu0"]
)
def test_invalid_gpus_value_is_a_usage_error_naming_the_choices(value: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_gpus(value)
    assert str(info.value) == f"--gpus {value!r}: expected all, none, a count (2), device=0,2 or auto:N"
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("value", "request_"),
    [
        ("all", GpuRequest("all")),
        ("none", GpuRequest("none")),
        ("2", GpuRequest("count", count=2)),
        ("auto:3", GpuRequest("auto", count=3)),
        ("device=0,2", GpuRequest("devices", devices=("0", "2"))),
        ("device=GPU-8f6e1a2b-3c4d", GpuRequest("devices", devices=("GPU-8f6e1a2b-3c4d",))),
        ("device=MIG-1:0", GpuRequest("devices", devices=("MIG-1:0",))),
    ],
)
def test_parse_gives_kind_count_and_devices(value: str, request_: GpuRequest) -> None:
    assert parse_gpus(value) == request_


def test_a_request_is_frozen() -> None:
    with pytest.raises(AttributeError):
        parse_gpus("2").count = 3  # type: ignore[misc]


# --- docker flags -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "args"),
    [
        ("all", ("--gpus", "all")),
        ("2", ("--gpus", "2")),
        # the docker CLI splits --gpus on commas unless the device list itself is quoted
        ("device=0,2", ("--gpus", '"device=0,2"')),
        ("device=1", ("--gpus", '"device=1"')),
        ("none", ()),
    ],
)
def test_docker_gpus_args(value: str, args: tuple[str, ...]) -> None:
    assert docker_gpus_args(parse_gpus(value)) == args


# --- which GPUs the container gets ------------------------------------------------------------------------


def test_selected_gpus_follow_the_gpus_option() -> None:
    def gpu(index: int, name: str) -> Gpu:
        return Gpu(index, name, f"GPU-{index}", 0, 1000, 0, "8.0", None)

    gpus = (gpu(0, "NVIDIA GeForce RTX 4090"), gpu(1, "Tesla T4"), gpu(2, "Tesla T4"))
    assert [g.index for g in selected(gpus, parse_gpus("device=1,2"))] == [1, 2]
    assert [g.index for g in selected(gpus, parse_gpus("device=GPU-2"))] == [2]
    assert [g.index for g in selected(gpus, parse_gpus("2"))] == [0, 1]
    assert [g.index for g in selected(gpus, parse_gpus("all"))] == [0, 1, 2]
    assert [g.index for g in selected(gpus, parse_gpus("device=9"))] == [0, 1, 2]  # unknown: judge them all


# --- --gpus auto:N ----------------------------------------------------------------------------------------


def load(index: int, used: int | None, util: int | None) -> Gpu:
    return Gpu(index, "NVIDIA A100-SXM4-80GB", None, used, 81920, util, "8.0", "nvidia")


@pytest.mark.parametrize(
    ("gpus", "n", "chosen"),
    [
        ([load(0, 5000, 90), load(1, 10, 0), load(2, 0, 50), load(3, 0, 10)], 2, (2, 3)),  # memory, then util
        ([load(0, 5000, 90), load(1, 10, 0), load(2, 0, 50), load(3, 0, 10)], 1, (3,)),
        ([load(0, 0, 0), load(1, 0, 0), load(2, 0, 0)], 2, (0, 1)),  # ties go to the lower index
        ([load(0, None, None), load(1, 70000, 99)], 1, (1,)),  # unknown load ranks last
        ([load(3, 1, 1), load(1, 2, 2), load(2, 3, 3)], 3, (1, 2, 3)),  # returned in index order
    ],
)
def test_pick_gpus_least_loaded(gpus: list[Gpu], n: int, chosen: tuple[int, ...]) -> None:
    assert pick_least_loaded(gpus, n) == chosen


def test_pick_gpus_on_mig_host_takes_the_lowest_indexes() -> None:
    assert pick_least_loaded(parse_nvidia_smi(smi("default-r535-8xh100-mig.txt")).gpus, 3) == (0, 1, 2)


def test_pick_gpus_needs_enough_gpus() -> None:
    with pytest.raises(PreflightError, match="needs 2 GPUs, but the host has 1"):
        pick_least_loaded([T4], 2)
    with pytest.raises(UsageError):
        pick_least_loaded([T4], 0)


def test_auto_resolves_to_the_quoted_device_list_of_the_least_loaded() -> None:
    gpus = [load(0, 5000, 90), load(1, 10, 0), load(2, 0, 50), load(3, 0, 10)]
    resolved = resolve_auto(parse_gpus("auto:2"), gpus)
    assert resolved == GpuRequest("devices", devices=("2", "3"))
    assert docker_gpus_args(resolved) == ("--gpus", '"device=2,3"')


@pytest.mark.parametrize("value", ["all", "none", "2", "device=1"])
def test_only_auto_is_resolved(value: str) -> None:
    request = parse_gpus(value)
    assert resolve_auto(request, [load(0, 0, 0), load(1, 0, 0)]) is request
