"""Placement (issue 9): which GPUs of the fleet are free, and which waiting trial goes where. The `@@c` lines
are `docker inspect` output of real containers (docker 20.10.24, created with the flags named beside them)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from taoremote.errors import PreflightError
from taoremote.nvidia_smi import parse_query_gpu
from taoremote.placement import (
    _INSPECT_FORMAT,
    GPU_FIELDS,
    GPU_STATE_SCRIPT,
    HostGpuState,
    Machine,
    Placement,
    assign,
    build_gpu_state_argv,
    check_fits,
    container_gpus,
    machines,
    parse_gpu_state,
    process_gpus,
)

UUID = "GPU-4d1a7c55-1b1e-4f5e-9a1a-00000000000{}"
QUERY = "".join(f"{i}, {UUID.format(i)}, {i * 1000}, 81559, {i * 10}\n" for i in range(4))
GPUS = parse_query_gpu(QUERY, GPU_FIELDS)
ENGINE_A = "T2PT:LIOF:PEJU:ANSY:DUCD:5U2Q:BRYI:4OXW:5HW3:3PVY:L7MM:CWIP"
ENGINE_B = "5b0e9a4c-3f21-4c1e-9d7b-0c6f2a9e8d11"  # docker 23+ prints a UUID

ALL = (  # --gpus all
    "@@c 1721c1d1e3d4abf241ca05474a8528880d79d10413733d5666316ee094df5ba2 runc "
    '[{"Capabilities":[["gpu"]],"Count":-1,"DeviceIDs":null,"Driver":"","Options":{}}] '
)
COUNT_2 = (  # --gpus 2
    "@@c fcc2dd18e8384b1b61ae1ff1223616a1371024ebaf6aae94d80e4bfc9fdf6d0e runc "
    '[{"Capabilities":[["gpu"]],"Count":2,"DeviceIDs":null,"Driver":"","Options":{}}] '
)
DEVICES_1_3 = (  # --gpus '"device=1,3"'
    "@@c 0450a8b3cbfad9f18164882eae3f7449cad35de6acc5f9894026e12aded793fc runc "
    '[{"Capabilities":[["gpu"]],"Count":0,"DeviceIDs":["1","3"],"Driver":"","Options":{}}] '
)
DEVICE_UUID_1 = (  # --gpus device=GPU-…01
    "@@c c0cf486d6f615229a5ce38771cfddc147ab7d3ff65a1fa35530860d0bf290d3c runc "
    '[{"Capabilities":[["gpu"]],"Count":0,"DeviceIDs":["GPU-4d1a7c55-1b1e-4f5e-9a1a-000000000001"],'
    '"Driver":"","Options":{}}] '
)
ENV_0 = (  # -e NVIDIA_VISIBLE_DEVICES=0 -e SECRET=… (the SECRET is not printed); runtime as shown
    "@@c d21aa1cb343bef77bb0daffea990daef5b5193fed1d119d7f14158e3fb79204d {runtime} null "
    "NVIDIA_VISIBLE_DEVICES=0"
)
CDI_1 = (  # --device nvidia.com/gpu=1
    "@@c 83353add6a5f322c1ed1f323d67aadd7dc270f8ae638c1c131c0c117936a8ac3 runc "
    '[{"Capabilities":null,"Count":0,"DeviceIDs":["nvidia.com/gpu=1"],"Driver":"cdi","Options":null}] '
)
NO_GPU = "@@c 9f0c2d7e1a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5 runc null "
GONE = "Error: No such object: 3c4d5e6f7081"  # a container that ended between `docker ps` and the inspect


def held(*lines: str) -> list[int]:
    return sorted({index for index, _ in container_gpus("\n".join(lines), GPUS)})


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (ALL, [0, 1, 2, 3]),
        (COUNT_2, [0, 1]),  # moby's countToDevices: the first N indexes
        (DEVICES_1_3, [1, 3]),
        (DEVICE_UUID_1, [1]),
        (CDI_1, [1]),
        (NO_GPU, []),
        (ENV_0.format(runtime="runc"), []),  # without the nvidia runtime the variable does nothing
        (ENV_0.format(runtime="nvidia"), [0]),
        (GONE, []),
    ],
    ids=["all", "count-2", "device-1-3", "device-uuid", "cdi", "no-gpu", "env-runc", "env-nvidia", "gone"],
)
def test_each_kind_of_device_request_holds_its_gpus(line: str, expected: list[int]) -> None:
    assert held(line) == expected


@pytest.mark.parametrize(
    "device_ids",
    ['["MIG-7f3a9c2e-1b4d-5e6f-8a9b-0c1d2e3f4a5b"]', '["GPU-ffffffff-0000-0000-0000-000000000000"]', "{"],
)
def test_a_request_that_names_no_known_gpu_holds_every_gpu(device_ids: str) -> None:
    line = f'@@c abc runc [{{"Count":0,"DeviceIDs":{device_ids},"Driver":""}}] '
    assert held(line) == [0, 1, 2, 3]


def test_a_mig_device_holds_its_parent_gpu() -> None:
    assert held('@@c abc runc [{"Count":0,"DeviceIDs":["2:0","2:1"],"Driver":""}] ') == [2]


def test_a_count_beyond_the_host_holds_every_gpu_it_has() -> None:
    assert held('@@c abc runc [{"Count":8,"DeviceIDs":null,"Driver":""}] ') == [0, 1, 2, 3]


def test_an_inspect_failure_that_is_not_a_vanished_container_is_an_error() -> None:
    with pytest.raises(PreflightError, match=r"host gpu1: docker inspect failed: .*daemon"):
        container_gpus(
            "Cannot connect to the Docker daemon at unix:///var/run/docker.sock.", GPUS, host="gpu1"
        )


@pytest.mark.parametrize("text", ["", "No running processes found", "\n"])
def test_no_compute_process(text: str) -> None:
    assert process_gpus(text, GPUS) == []


def test_compute_processes_make_their_gpus_busy() -> None:
    text = f"{UUID.format(2)}, 4242\n{UUID.format(2)}, 4243\n{UUID.format(0)}, 77\n"
    assert process_gpus(text, GPUS) == [
        (2, "compute process 4242"),
        (2, "compute process 4243"),
        (0, "compute process 77"),
    ]


# ---------------------------------------------------------------------------------------------- one host


def section(name: str, text: str, rc: int = 0) -> str:
    return f"@@taoremote:begin {name}@@\n{text}\n@@taoremote:end {name} rc={rc}@@\n"


def output(
    engine: str = ENGINE_A,
    gpus: str = QUERY,
    apps: str = "",
    containers: str = "",
    *,
    rcs: tuple[int, ...] = (0, 0, 0, 0),
) -> str:
    return (
        "@@taoremote:gpu-state v=1@@\n"
        + section("engine", engine, rcs[0])
        + section("gpus", gpus, rcs[1])
        + section("apps", apps, rcs[2])
        + section("containers", containers, rcs[3])
        + "@@taoremote:end-of-gpu-state@@\n"
    )


def test_parse_gpu_state_joins_containers_and_processes() -> None:
    apps = f"{UUID.format(2)}, 4242"
    state = parse_gpu_state(output(apps=apps, containers="\n".join([DEVICES_1_3, GONE, NO_GPU])), host="gpu1")
    assert state.engine_id == ENGINE_A
    assert [g.index for g in state.gpus] == [0, 1, 2, 3]
    assert dict(state.busy) == {
        1: "container 0450a8b3cbfa",
        3: "container 0450a8b3cbfa",
        2: "compute process 4242",
    }


@pytest.mark.parametrize(
    ("stdout", "message"),
    [
        (output(engine="Cannot connect to the Docker daemon", rcs=(1, 0, 0, 0)), "docker info failed"),
        (output(gpus="sh: 1: nvidia-smi: not found", rcs=(0, 127, 0, 0)), "nvidia-smi --query-gpu failed"),
        (output(apps="Failed to initialize NVML", rcs=(0, 0, 9, 0)), "--query-compute-apps failed"),
        (output(containers="permission denied", rcs=(0, 0, 0, 3)), "docker ps failed: permission denied"),
        (output()[:120], "output is incomplete"),
    ],
)
def test_a_host_whose_gpus_cannot_be_told_free_is_an_error(stdout: str, message: str) -> None:
    with pytest.raises(PreflightError, match=f"^host gpu1: .*{message}"):
        parse_gpu_state(stdout, host="gpu1")


def test_the_script_runs_under_sh_and_its_output_parses(tmp_path: Path) -> None:
    # stand-ins for docker and nvidia-smi; the argv is what the executor runs, locally or over SSH
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(
        "#!/bin/sh\n"
        f'case "$1" in info) echo {ENGINE_B};; ps) printf "%s\\n" aaa bbb;;\n'
        f'inspect) printf "%s" "$3" > {tmp_path}/format; shift 3; echo "@@c $1 runc null "; '
        'echo "Error: No such object: $2" >&2; exit 1;; esac\n'
    )
    (bin_dir / "nvidia-smi").write_text(
        "#!/bin/sh\n"
        f'case "$1" in --query-gpu=*) printf "%s" "{QUERY}";;\n'
        f'--query-compute-apps=*) echo "{UUID.format(3)}, 99";; esac\n'
    )
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"}
    result = subprocess.run(
        build_gpu_state_argv(), capture_output=True, text=True, env=env, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "format").read_text() == _INSPECT_FORMAT  # the template arrived as one word
    state = parse_gpu_state(result.stdout, host="gpu2")
    assert state.engine_id == ENGINE_B
    assert dict(state.busy) == {3: "compute process 99"}


def test_the_script_is_one_line_without_history_expansion() -> None:
    assert build_gpu_state_argv() == ("sh", "-c", GPU_STATE_SCRIPT)
    assert "\n" not in GPU_STATE_SCRIPT and "!" not in GPU_STATE_SCRIPT


# ---------------------------------------------------------------------------------------------- the fleet


def state(host: str, engine: str, busy: dict[int, str] | None = None, count: int = 4) -> HostGpuState:
    return HostGpuState(host, engine, GPUS[:count], busy or {})


def test_two_names_of_one_engine_are_one_machine() -> None:
    fleet = machines(
        [
            state("gpu1", ENGINE_A, {0: "container a"}),
            state("gpu2", ENGINE_B),
            state("gpu1-alias", ENGINE_A, {3: "x"}),
        ]
    )
    assert [(m.host, m.names, m.free) for m in fleet] == [
        ("gpu1", ("gpu1", "gpu1-alias"), (1, 2)),
        ("gpu2", ("gpu2",), (0, 1, 2, 3)),
    ]


def test_assign_fills_machines_in_host_order_with_the_lowest_free_gpus() -> None:
    fleet = machines([state("gpu1", ENGINE_A, {1: "busy"}), state("gpu2", ENGINE_B, count=2)])
    assert assign([4, 5, 6, 7, 8, 9], fleet, 1, []) == (
        Placement(4, "gpu1", (0,)),
        Placement(5, "gpu1", (2,)),
        Placement(6, "gpu1", (3,)),
        Placement(7, "gpu2", (0,)),
        Placement(8, "gpu2", (1,)),
    )
    assert assign([0, 1, 2], fleet, 2, []) == (Placement(0, "gpu1", (0, 2)), Placement(1, "gpu2", (0, 1)))


def test_assign_never_shares_a_gpu_with_a_running_trial_even_one_the_snapshot_missed() -> None:
    fleet = machines([state("gpu1", ENGINE_A), state("gpu1-alias", ENGINE_A)])
    running = [Placement(0, "gpu1", (0,)), Placement(1, "gpu1-alias", (2,))]
    placed = assign([2, 3, 4], fleet, 1, running)
    assert placed == (Placement(2, "gpu1", (1,)), Placement(3, "gpu1", (3,)))
    used = [g for p in (*running, *placed) for g in p.gpus]
    assert len(used) == len(set(used))


def test_assign_is_deterministic_and_places_nothing_without_free_gpus() -> None:
    fleet = machines([state("gpu1", ENGINE_A, {i: "x" for i in range(4)})])
    assert assign([0, 1], fleet, 1, []) == ()
    fleet = machines([state("gpu1", ENGINE_A), state("gpu2", ENGINE_B)])
    assert assign(range(10), fleet, 3, []) == assign(list(range(10)), fleet, 3, [])
    assert [p.trial for p in assign([7, 3, 5], fleet, 3, [])] == [7, 3]  # waiting order is kept


def test_gpus_option_is_what_run_spec_gets() -> None:
    assert Placement(0, "gpu1", (1, 3)).gpus_option == "device=1,3"


def test_check_fits_refuses_a_trial_bigger_than_every_machine() -> None:
    fleet = (Machine("gpu1", ("gpu1",), (0, 1), {}),)
    check_fits(fleet, 2)
    with pytest.raises(PreflightError, match="--gpus-per-trial 3: the largest machine has 2 GPU"):
        check_fits(fleet, 3)
    with pytest.raises(PreflightError, match="no host answered"):
        check_fits((), 1)
