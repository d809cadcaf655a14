"""nvidia-smi of every era: versions, GPU rows, --query-gpu and the failures, over captured outputs
(tests/data/nvidia-smi/README.md)."""

from __future__ import annotations

import pytest

from taoremote.errors import SKIP_HINT, PreflightError
from taoremote.nvidia_smi import (
    QUERY_FIELDS,
    Gpu,
    brand_from_name,
    normalize_brand,
    parse_nvidia_smi,
    parse_query_gpu,
)
from tests.unit.captures import smi

# --- nvidia-smi: versions from every header era and output form ---------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "rc", "driver", "cuda"),
    [
        ("header-r346-no-cuda.txt", 0, "346.46", None),
        ("header-r470.txt", 0, "470.256.02", "11.4"),
        ("header-r535.txt", 0, "535.104.12", "12.2"),
        ("header-r550.txt", 0, "550.40.07", "12.4"),
        ("header-r580.txt", 0, "580.126.09", "13.0"),
        ("header-r610-kmd.txt", 0, "610.43.02", "13.3"),
        ("header-r616-kmd-windows.txt", 0, "616.56", "13.4"),
        # the NVIDIA-SMI field is not the driver: a snap's nvidia-smi 470 on a 580 driver, a 450 one on 418
        ("header-snap-smi-470-driver-580.txt", 0, "580.95.05", "13.0"),
        ("header-smi-450-driver-418.txt", 0, "418.67", "10.1"),
        ("default-r535-single-t4.txt", 0, "535.86.10", "12.2"),
        ("default-r535-8xh100-mig.txt", 0, "535.104.12", "12.2"),
        ("default-r610-kmd-t4-derived.txt", 0, "610.43.02", "13.3"),
        ("default-r535-t4-inforom-warning-derived.txt", 14, "535.86.10", "12.2"),  # output despite exit 14
        ("q-r510-head.txt", 0, "510.68.02", "11.6"),
        ("q-x-r535-rtx4090-head.xml", 0, "535.86.05", "12.2"),
        ("version-r580.txt", 0, "580.95.05", "13.0"),
        ("version-r616-kmd-excerpt.txt", 0, "616.56", "13.4"),
        ("version-wsl-565-derived.txt", 0, "566.36", "12.7"),  # WSL prints the Windows driver number
    ],
)
def test_driver_and_cuda_versions(fixture: str, rc: int, driver: str, cuda: str | None) -> None:
    facts = parse_nvidia_smi(smi(fixture), rc)
    assert (facts.driver_version, facts.cuda_version) == (driver, cuda)


def test_single_gpu_table_row() -> None:
    facts = parse_nvidia_smi(smi("default-r535-single-t4.txt"))
    assert facts.gpus == (Gpu(0, "Tesla T4", None, 0, 15109, 0, None, "tesla"),)


def test_r610_table_rows_parse_like_older_ones() -> None:
    assert parse_nvidia_smi(smi("default-r610-kmd-t4-derived.txt")).gpus == (
        Gpu(0, "Tesla T4", None, 0, 15109, 0, None, "tesla"),
    )


def test_mig_table_has_eight_gpus_with_unknown_usage() -> None:
    gpus = parse_nvidia_smi(smi("default-r535-8xh100-mig.txt")).gpus
    assert [g.index for g in gpus] == list(range(8))
    assert {(g.name, g.memory_used_mib, g.memory_total_mib, g.utilization_pct, g.brand) for g in gpus} == {
        ("NVIDIA H100 80GB HBM3", None, None, None, "nvidia")
    }


def test_header_lines_alone_give_no_gpus() -> None:
    assert parse_nvidia_smi(smi("header-r535.txt")).gpus == ()
    assert parse_nvidia_smi(smi("q-r510-head.txt")).gpus == ()


def test_xml_gpu_takes_brand_from_product_brand() -> None:
    facts = parse_nvidia_smi(smi("q-x-r535-rtx4090-head.xml"))
    assert facts.gpus == (Gpu(0, "NVIDIA GeForce RTX 4090", None, None, None, None, None, "geforce"),)


# --- nvidia-smi failures: one line each, naming the fix -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rc", "expected"),
    [
        (smi("failure-not-found-bash.txt"), 127, "nvidia-smi was not found"),
        (smi("failure-not-found-zsh.txt"), 127, "nvidia-smi was not found"),
        (smi("failure-not-found-python.txt"), 1, "nvidia-smi was not found"),
        ("sh: 1: nvidia-smi: not found\n", 127, "nvidia-smi was not found"),  # dash, as the probe runs it
        ("", 127, "install the NVIDIA driver"),
        # exit codes of the next three were not captured; the text alone decides
        (smi("failure-driver-not-loaded.txt"), 9, "the NVIDIA driver is not loaded"),
        (smi("failure-driver-not-loaded.txt"), 0, "reinstall the driver for the running kernel and reboot"),
        ("", 9, "the NVIDIA driver is not loaded"),  # 9 = "NVIDIA driver is not loaded"
        (smi("failure-mismatch.txt"), 18, "reboot the host"),
        (smi("failure-mismatch-r570.txt"), 18, "driver/library version mismatch"),
        (smi("failure-no-libnvidia-ml.txt"), 12, "reinstall the NVIDIA driver"),
        ("No devices were found\n", 6, "sees no GPU"),
        ("Unable to determine the device handle for GPU0000:0B:00.0: Unknown Error\n", 255, "exit 255"),
        ("something else entirely\n", 0, "no driver version in nvidia-smi output"),
    ],
)
def test_failures_raise_one_line_naming_host_and_fix(text: str, rc: int, expected: str) -> None:
    with pytest.raises(PreflightError) as info:
        parse_nvidia_smi(text, rc, host="gpu1")
    message = str(info.value)
    assert expected in message
    assert message.startswith("host gpu1: ")
    assert message.endswith("; " + SKIP_HINT)
    assert "\n" not in message
    assert info.value.exit_code == 69
    assert (info.value.host, info.value.skippable) == ("gpu1", True)
    assert SKIP_HINT not in info.value.problem and SKIP_HINT not in (info.value.fix or "")


# --- --query-gpu --------------------------------------------------------------------------------------------


def test_query_gpu_with_taoremotes_fields() -> None:
    text = (
        "0, NVIDIA H100 80GB HBM3, GPU-0aa1, 1024, 81559, 37, 9.0\n"
        "1, Tesla T4, GPU-0aa2, [N/A], 15360, [Not Supported], [N/A]\n"
        "2, NVIDIA GeForce RTX 4090, [Insufficient Permissions], N/A, 24564, 0, 8.9\n"
    )
    assert parse_query_gpu(text) == (
        Gpu(0, "NVIDIA H100 80GB HBM3", "GPU-0aa1", 1024, 81559, 37, "9.0", "nvidia"),
        Gpu(1, "Tesla T4", "GPU-0aa2", None, 15360, None, None, "tesla"),
        Gpu(2, "NVIDIA GeForce RTX 4090", None, None, 24564, 0, "8.9", "geforce"),
    )


def test_query_gpu_without_compute_cap_as_the_probe_retries_on_r470() -> None:
    text = "0, Tesla T4, GPU-0aa2, 0, 15109, 0\n"
    expected = (Gpu(0, "Tesla T4", "GPU-0aa2", 0, 15109, 0, None, "tesla"),)
    assert parse_query_gpu(text, fields=QUERY_FIELDS[:-1]) == expected
    assert parse_query_gpu(text) == expected  # callers that forget the field list still get it right


def test_query_gpu_with_header_and_other_fields() -> None:
    fields = ("compute_cap", "compute_mode", "driver_version", "name", "index")
    assert parse_query_gpu(smi("query-gpu-r570-with-header.csv"), fields) == (
        Gpu(0, "NVIDIA TITAN V", None, None, None, None, "7.0", "titan"),
        Gpu(1, "NVIDIA RTX 5880 Ada Generation", None, None, None, None, "8.9", "nvidiartx"),
    )


def test_query_gpu_unified_memory_total_is_na() -> None:
    fields = ("index", "name", "pci.bus_id", "driver_version", "compute_cap", "memory.total")
    (gb10,) = parse_query_gpu(smi("query-gpu-gb10-derived-fields.csv"), fields)
    assert (gb10.name, gb10.compute_cap, gb10.memory_total_mib, gb10.brand) == (
        "NVIDIA GB10",
        "12.1",
        None,
        "nvidia",
    )


def test_query_gpu_units_and_a_comma_in_a_name() -> None:
    text = "3, Some GPU, rev B, GPU-9, 10 MiB, 20 MiB, 5 %, 7.5\n"
    (gpu,) = parse_query_gpu(text)
    assert (gpu.index, gpu.name, gpu.memory_used_mib, gpu.memory_total_mib, gpu.utilization_pct) == (
        3,
        "Some GPU, rev B",
        10,
        20,
        5,
    )


@pytest.mark.parametrize(
    "text", [smi("failure-query-invalid-field.txt"), "0, 1, 2\n", "x, A100, GPU-1, 1, 2, 3, 8.0\n"]
)
def test_query_gpu_rejects_what_it_cannot_read(text: str) -> None:
    with pytest.raises(PreflightError):
        parse_query_gpu(text)


@pytest.mark.parametrize(
    ("name", "brand"),
    [
        ("Tesla T4", "tesla"),
        ("Tesla V100-SXM2-16GB", "tesla"),
        ("NVIDIA H100 80GB HBM3", "nvidia"),
        ("NVIDIA A100-SXM4-80GB", "nvidia"),
        ("NVIDIA L4", "nvidia"),
        ("NVIDIA GB10", "nvidia"),
        ("NVIDIA GeForce RTX 4090", "geforce"),
        ("GeForce RTX 2080", "geforce"),
        ("NVIDIA TITAN V", "titan"),
        ("TITAN RTX", "titan"),
        ("Quadro RTX 8000", "quadrortx"),
        ("Quadro P3000", "quadro"),
        ("NVIDIA RTX A6000", "nvidiartx"),
        ("NVIDIA RTX 5880 Ada Generation", "nvidiartx"),
        ("GRID K520", "grid"),
        ("NVS 510", "nvs"),
        ("Graphics Device", "unknown"),
    ],
)
def test_brand_from_name(name: str, brand: str) -> None:
    assert brand_from_name(name) == brand


@pytest.mark.parametrize(
    ("product_brand", "token"),
    [("GeForce", "geforce"), ("NVIDIA", "nvidia"), ("Quadro RTX", "quadrortx"), ("NVIDIA RTX", "nvidiartx"),
     ("Tesla", "tesla"), ("NVIDIA Cloud Gaming", "cloudgaming"), ("Something New", "unknown")],
)  # fmt: skip
def test_normalize_brand(product_brand: str, token: str) -> None:
    assert normalize_brand(product_brand) == token
