"""Preflight: parsers over captured outputs (tests/data/nvidia-smi/README.md), the bundled table, verdicts."""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import replace
from importlib import resources
from pathlib import Path

import pytest

from taoremote.errors import PreflightError, UsageError
from taoremote.preflight import (
    PROBE_SCRIPT,
    QUERY_FIELDS,
    SKIP_HINT,
    Gpu,
    HostGpuFacts,
    ImageCuda,
    PathState,
    Verdict,
    brand_from_name,
    build_probe_argv,
    check_cuda_compat,
    cuda_for_driver,
    evaluate_requirements,
    host_facts,
    image_cuda_from_env,
    image_cuda_from_table,
    major_minor,
    min_driver_for_cuda,
    normalize_brand,
    parse_image_env,
    parse_nvidia_smi,
    parse_probe,
    parse_query_gpu,
    parse_runtimes,
    pick_gpus,
    resolve_image_cuda,
    split_image_ref,
    suggest_image_tag,
)
from tests.unit.cuda_images import cuda_image

DATA = Path(__file__).resolve().parent.parent / "data" / "nvidia-smi"
TAO = "nvcr.io/nvidia/tao/tao-toolkit"
RUNTIME_HINT = ", please update your driver to a newer version, or use an earlier cuda container"


def smi(name: str) -> str:
    return (DATA / name).read_text()


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


# --- docker output ------------------------------------------------------------------------------------------


def test_parse_image_env() -> None:
    text = '["PATH=/usr/local/bin:/usr/bin","CUDA_VERSION=12.8.0.038","NVIDIA_REQUIRE_CUDA=cuda>=9.0",'
    text += '"A=b=c","BARE"]\n'
    assert parse_image_env(text) == {
        "PATH": "/usr/local/bin:/usr/bin",
        "CUDA_VERSION": "12.8.0.038",
        "NVIDIA_REQUIRE_CUDA": "cuda>=9.0",
        "A": "b=c",
    }
    assert parse_image_env("null\n") == {}
    assert parse_image_env("[]") == {}


@pytest.mark.parametrize("text", ["Error response from daemon: No such image: x:1", '{"PATH": "/bin"}'])
def test_parse_image_env_rejects_non_lists(text: str) -> None:
    with pytest.raises(PreflightError):
        parse_image_env(text)


def test_parse_runtimes() -> None:
    text = '{"io.containerd.runc.v2":{"path":"runc"},"nvidia":{"path":"nvidia-container-runtime"},'
    text += '"runc":{"path":"runc"}}'
    assert parse_runtimes(text) == ("io.containerd.runc.v2", "nvidia", "runc")
    assert parse_runtimes("Cannot connect to the Docker daemon at unix:///var/run/docker.sock.") == ()


# --- the probe ----------------------------------------------------------------------------------------------


def test_probe_argv_passes_image_and_paths_as_separate_arguments() -> None:
    assert build_probe_argv("nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt", ["~/data", "/srv/a b"]) == (
        "sh",
        "-c",
        PROBE_SCRIPT,
        "sh",
        "nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt",
        "~/data",
        "/srv/a b",
    )


def test_probe_script_survives_a_login_shell() -> None:
    # one line, no history-expansion "!": csh and friends pass it through when SSH hands it to them
    assert "\n" not in PROBE_SCRIPT and "!" not in PROBE_SCRIPT
    argv = build_probe_argv("img", ["it's", "$HOME"])
    assert shlex.split(shlex.join(argv)) == list(argv)


def test_probe_refuses_a_path_with_a_newline() -> None:
    with pytest.raises(UsageError):
        build_probe_argv("img", ["/srv/a\nb"])


# Captured: PROBE_SCRIPT run by dash with `~/data ~/empty /srv/missing`, stub nvidia-smi/docker on PATH
# printing default-r535-single-t4.txt, query lines and an image env; no nvidia-container-runtime-hook.
PROBE_HEAD = "@@taoremote:probe v=1@@\n@@taoremote:begin nvidia-smi@@\n"
PROBE_TAIL = """@@taoremote:end nvidia-smi rc=0@@
@@taoremote:begin query@@
0, NVIDIA H100 80GB HBM3, GPU-aaaa, 100, 81559, 5, 9.0
1, NVIDIA H100 80GB HBM3, GPU-bbbb, 0, 81559, 0, 9.0
@@taoremote:end query rc=0 fields=index,name,uuid,memory.used,memory.total,utilization.gpu,compute_cap@@
@@taoremote:begin image@@
["PATH=/usr/bin","CUDA_VERSION=12.8.0.038","NVIDIA_REQUIRE_CUDA=cuda>=9.0","X=a=b"]
@@taoremote:end image rc=0@@
@@taoremote:begin runtimes@@
{"io.containerd.runc.v2":{"path":"runc"},"nvidia":{"path":"nvidia-container-runtime"},"runc":{"path":"runc"}}
@@taoremote:end runtimes rc=0@@
@@taoremote:begin hook@@

@@taoremote:end hook rc=127@@
@@taoremote:begin runtime-config@@
grep: /etc/nvidia-container-runtime/config.toml: No such file or directory
@@taoremote:end runtime-config rc=2@@
@@taoremote:path exists=1 dir=1 nonempty=1@@
~/data
/tmp/work/home/data
@@taoremote:path exists=1 dir=1 nonempty=0@@
~/empty
/tmp/work/home/empty
@@taoremote:path exists=0 dir=0 nonempty=0@@
/srv/missing
/srv/missing
@@taoremote:end-of-probe@@
"""
CAPTURED_PROBE = PROBE_HEAD + smi("default-r535-single-t4.txt") + PROBE_TAIL


def test_parse_probe_sections() -> None:
    probe = parse_probe(CAPTURED_PROBE)
    assert probe.smi_rc == 0 and probe.smi_text == smi("default-r535-single-t4.txt").rstrip("\n")
    assert probe.query_rc == 0 and probe.query_fields == QUERY_FIELDS
    assert probe.query_text.splitlines()[1] == "1, NVIDIA H100 80GB HBM3, GPU-bbbb, 0, 81559, 0, 9.0"
    assert probe.image_rc == 0
    assert probe.image_env == {
        "PATH": "/usr/bin",
        "CUDA_VERSION": "12.8.0.038",
        "NVIDIA_REQUIRE_CUDA": "cuda>=9.0",
        "X": "a=b",
    }
    assert probe.runtimes == ("io.containerd.runc.v2", "nvidia", "runc")
    assert probe.hook_path is None
    assert probe.host_disable_require is False
    assert probe.paths == {
        "~/data": PathState("~/data", "/tmp/work/home/data", True, True, True),
        "~/empty": PathState("~/empty", "/tmp/work/home/empty", True, True, False),
        "/srv/missing": PathState("/srv/missing", "/srv/missing", False, False, False),
    }


def test_host_facts_prefer_query_gpu_details() -> None:
    facts = host_facts(parse_probe(CAPTURED_PROBE))
    assert (facts.driver_version, facts.cuda_version) == ("535.86.10", "12.2")
    assert [(g.index, g.uuid, g.memory_used_mib, g.compute_cap) for g in facts.gpus] == [
        (0, "GPU-aaaa", 100, "9.0"),
        (1, "GPU-bbbb", 0, "9.0"),
    ]


def swap_section(text: str, name: str, content: str, end: str) -> str:
    start = text.index(f"@@taoremote:begin {name}@@\n") + len(f"@@taoremote:begin {name}@@\n")
    stop = text.index(f"@@taoremote:end {name} ")
    stop = text.index("\n", stop) + 1
    return text[:start] + content + end + "\n" + text[stop:]


def test_host_facts_fall_back_to_table_rows_when_the_query_failed() -> None:
    text = swap_section(
        CAPTURED_PROBE, "query", smi("failure-query-invalid-field.txt"), "@@taoremote:end query rc=2@@"
    )
    facts = host_facts(parse_probe(text))
    assert facts.gpus == (Gpu(0, "Tesla T4", None, 0, 15109, 0, None, "tesla"),)


def test_probe_without_nvidia_smi_or_docker() -> None:
    # dash's words when neither is installed
    text = swap_section(
        CAPTURED_PROBE, "nvidia-smi", "sh: 1: nvidia-smi: not found\n", "@@taoremote:end nvidia-smi rc=127@@"
    )
    text = swap_section(text, "image", "sh: 1: docker: not found\n", "@@taoremote:end image rc=127@@")
    probe = parse_probe(text)
    assert (probe.smi_rc, probe.image_rc, probe.image_env) == (127, 127, None)
    with pytest.raises(PreflightError, match=r"^host gpu1: nvidia-smi was not found"):
        host_facts(probe, host="gpu1")


def test_probe_reads_missing_image_hook_and_host_wide_disable_require() -> None:
    text = swap_section(
        CAPTURED_PROBE,
        "image",
        "Error response from daemon: No such image: x:1\n",
        "@@taoremote:end image rc=1@@",
    )
    text = swap_section(
        text, "hook", "/usr/bin/nvidia-container-runtime-hook\n", "@@taoremote:end hook rc=0@@"
    )
    text = swap_section(
        text, "runtime-config", "disable-require = true\n", "@@taoremote:end runtime-config rc=0@@"
    )
    probe = parse_probe(text)
    assert probe.image_env is None and probe.image_text.startswith("Error response from daemon")
    assert probe.hook_path == "/usr/bin/nvidia-container-runtime-hook"
    assert probe.host_disable_require is True
    text = swap_section(
        text, "runtime-config", "#disable-require = true\n", "@@taoremote:end runtime-config rc=0@@"
    )
    assert parse_probe(text).host_disable_require is False


@pytest.mark.parametrize(
    "cut",
    [
        CAPTURED_PROBE.replace("@@taoremote:end-of-probe@@\n", ""),  # the link dropped
        CAPTURED_PROBE[: CAPTURED_PROBE.index("@@taoremote:end nvidia-smi")],
        "",
        "bash: sh: command not found\n",
    ],
)
def test_incomplete_probe_output_is_refused(cut: str) -> None:
    with pytest.raises(PreflightError, match="incomplete"):
        parse_probe(cut, host="gpu1")


# --- the bundled table --------------------------------------------------------------------------------------


def bundled_tao_tags() -> set[str]:
    tasks = json.loads(resources.files("taoremote").joinpath("data/tao_tasks.json").read_text())
    return {
        tag for group in tasks["task_group"].values() for tags in group["dockers"].values() for tag in tags
    }


def table() -> dict[str, dict[str, object]]:
    data = json.loads(resources.files("taoremote").joinpath("data/image_cuda.json").read_text())
    images: dict[str, dict[str, object]] = data["images"]
    return images


def test_table_covers_every_tag_of_the_bundled_task_map() -> None:
    tags = bundled_tao_tags()
    assert {"5.0.0-tf1.15.5", "6.0.0-tf2", "5.5.0-pyt", "6.26.3-pyt", "6.26.3-deploy"} <= tags
    assert tags <= set(table())


@pytest.mark.parametrize("tag", sorted(table()))
def test_table_entries_are_sourced_and_marked(tag: str) -> None:
    entry = table()[tag]
    assert entry["source"] and entry["cuda_evidence"]
    assert entry["confidence"] in {"documented", "inferred", "unverified"}
    assert major_minor(str(entry["cuda_version"])) == entry["cuda_version"]
    assert entry["nvidia_require_cuda"] == "cuda>=9.0"
    assert entry["flavor"] in {"pyt", "tf1", "tf2", "deploy", "data-services", "cosmos-embed"}


@pytest.mark.parametrize(
    ("tag", "cuda", "confidence"),
    [
        ("5.0.0-tf1.15.5", "12.0", "documented"),  # ARG CUDA_VERSION_MAJOR=12, MINOR=0
        ("5.5.0-pyt", "12.4", "documented"),
        ("5.5.0-tf2", "12.4", "inferred"),
        ("6.0.0-tf2", "12.8", "inferred"),
        ("4.0.0-pyt", "11.8", "unverified"),
        ("6.26.3-pyt", "13.0", "unverified"),
        ("6.26.3-cosmos-embed", "13.0", "unverified"),
    ],
)
def test_table_values(tag: str, cuda: str, confidence: str) -> None:
    image = image_cuda_from_table(f"{TAO}:{tag}")
    assert image == ImageCuda(
        f"{TAO}:{tag}",
        cuda,
        {"CUDA_VERSION": cuda, "NVIDIA_REQUIRE_CUDA": "cuda>=9.0"},
        "bundled table",
        confidence,
    )


@pytest.mark.parametrize(
    ("ref", "found"),
    [
        (f"{TAO}:5.5.0-pyt", True),
        ("registry.example.com:5000/nvidia/tao/tao-toolkit:5.5.0-pyt", True),  # OVERRIDE_REGISTRY
        (f"{TAO}:5.5.0-pyt@sha256:{'0' * 64}", True),
        (f"{TAO}@sha256:{'0' * 64}", False),
        (TAO, False),
        (f"{TAO}:9.9.9-pyt", False),
        ("nvcr.io/nvidia/pytorch:5.5.0-pyt", False),
        ("registry.example.com:5000/tao-toolkit", False),
    ],
)
def test_table_lookup_by_tag(ref: str, found: bool) -> None:
    assert (image_cuda_from_table(ref) is not None) is found


@pytest.mark.parametrize(
    ("ref", "split"),
    [
        ("nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt", ("nvcr.io/nvidia/tao/tao-toolkit", "6.26.3-pyt")),
        ("localhost:5000/tao-toolkit", ("localhost:5000/tao-toolkit", None)),
        ("localhost:5000/tao-toolkit:x@sha256:ab", ("localhost:5000/tao-toolkit", "x")),
        ("busybox", ("busybox", None)),
    ],
)
def test_split_image_ref(ref: str, split: tuple[str, str | None]) -> None:
    assert split_image_ref(ref) == split


@pytest.mark.parametrize(
    ("cuda", "driver"),
    [
        ("10.0", "410.48"),
        ("11.0", "450.51.05"),
        ("11.8", "520.61.05"),
        ("12.0", "525.60.13"),
        ("12.2", "535.54.03"),
        ("12.4", "550.54.14"),
        ("12.6", "560.28.03"),
        ("12.7", "570.26"),  # no 12.7 toolkit exists (R565 reports 12.7): the next known one
        ("12.8", "570.26"),
        ("12.9", "575.51.03"),
        ("13.0", "580.65.06"),
        ("13.3", "610.43.02"),
        ("13.4", None),  # no Table 3 row: the driver is no longer bundled
    ],
)
def test_min_driver_for_cuda(cuda: str, driver: str | None) -> None:
    assert min_driver_for_cuda(cuda) == driver


@pytest.mark.parametrize(
    ("driver", "cuda"), [("470.57.02", "11.4"), ("565.57.01", "12.7"), ("616.56", "13.4"), ("346.46", None)]
)
def test_cuda_for_driver(driver: str, cuda: str | None) -> None:
    assert cuda_for_driver(driver) == cuda


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("12.8.0.038", "12.8"),
        ("12.4.1", "12.4"),
        ("v12", "12.0"),
        ("13", "13.0"),
        ("", None),
        ("abc", None),
        (None, None),
    ],
)
def test_major_minor(version: str | None, expected: str | None) -> None:
    assert major_minor(version) == expected


@pytest.mark.parametrize(
    ("tag", "host_cuda", "suggestion"),
    [
        ("6.26.3-pyt", "12.8", ("5.5.0-pyt", "12.4")),
        ("6.26.3-pyt", "12.4", ("5.5.0-pyt", "12.4")),
        ("6.26.3-pyt", "12.2", ("4.0.0-pyt", "11.8")),  # 5.2.0-pyt (12.2) is in no launcher config
        ("6.26.3-pyt", "11.4", None),
        ("6.0.0-tf2", "12.4", ("5.5.0-tf2", "12.4")),
        ("5.0.0-tf1.15.5", "11.8", ("4.0.1-tf1.15.5", "11.8")),
        ("6.26.3-deploy", "12.6", ("5.5.0-deploy", "12.4")),
        ("6.26.3-cosmos-embed", "12.8", None),
        ("9.9.9-pyt", "12.8", None),
    ],
)
def test_suggest_image_tag(tag: str, host_cuda: str, suggestion: tuple[str, str] | None) -> None:
    assert suggest_image_tag(f"{TAO}:{tag}", host_cuda) == suggestion


def test_resolve_image_cuda_prefers_the_image_on_the_host() -> None:
    probe = parse_probe(CAPTURED_PROBE)
    image = resolve_image_cuda(f"{TAO}:6.26.3-pyt", probe)
    assert (image.source, image.cuda_version) == ("image", "12.8.0.038")
    absent = replace(probe, image_env=None)
    assert resolve_image_cuda(f"{TAO}:6.26.3-pyt", absent).source == "bundled table"
    assert resolve_image_cuda("example.com/other:1", absent) == ImageCuda(
        "example.com/other:1", None, {}, "unknown"
    )


# --- verdicts -----------------------------------------------------------------------------------------------

T4 = Gpu(0, "Tesla T4", "GPU-1", 0, 15109, 0, "7.5", "tesla")
RTX4090 = Gpu(0, "NVIDIA GeForce RTX 4090", "GPU-2", 300, 24564, 3, "8.9", "geforce")
H100 = Gpu(0, "NVIDIA H100 80GB HBM3", "GPU-3", 0, 81559, 0, "9.0", "nvidia")
TAO_ENV = {  # as an NGC-based TAO image sets it: only cuda>=9.0, and a 4-part CUDA_VERSION
    "CUDA_VERSION": "12.8.0.038",
    "NVIDIA_REQUIRE_CUDA": "cuda>=9.0",
    "NVIDIA_PRODUCT_NAME": "TAO Toolkit",
}


def test_ngc_based_images_pass_the_runtime_check_on_any_driver() -> None:
    verdict = evaluate_requirements(TAO_ENV, HostGpuFacts("470.57.02", "11.4", (T4,)))
    assert verdict.ok


def test_runtime_refusal_carries_the_exact_runtime_error() -> None:
    verdict = evaluate_requirements(cuda_image("12.6.3"), HostGpuFacts("535.104.05", "12.2", (RTX4090,)))
    assert not verdict.ok
    assert verdict.message.startswith(
        "NVIDIA_REQUIRE_CUDA is not met on GPU 0 (NVIDIA GeForce RTX 4090, brand geforce"
    )
    assert verdict.notes == (
        "the container runtime would fail with: nvidia-container-cli: requirement error: "
        "unsatisfied condition: cuda>=12.6" + RUNTIME_HINT,
    )


def test_every_selected_gpu_is_checked() -> None:
    second = replace(RTX4090, index=1)
    facts = HostGpuFacts("535.104.05", "12.2", (T4, second))
    verdict = evaluate_requirements(cuda_image("12.6.3"), facts)
    assert not verdict.ok and "on GPU 1 " in verdict.message
    assert evaluate_requirements(cuda_image("12.6.3"), replace(facts, gpus=(T4,))).ok


def test_without_gpu_details_brand_clauses_hold() -> None:
    verdict = evaluate_requirements(cuda_image("12.6.3"), HostGpuFacts("535.104.05", "12.2"))
    assert verdict.ok
    assert any("no GPU details" in n for n in verdict.notes)


@pytest.mark.parametrize(
    "env",
    [
        {"NVIDIA_REQUIRE_CUDA": "cuda>=99.0", "NVIDIA_DISABLE_REQUIRE": "true"},
        {"NVIDIA_REQUIRE_CUDA": "cuda>=99.0", "NVIDIA_DISABLE_REQUIRE": "1"},
    ],
)
def test_disable_require_turns_the_runtime_check_off(env: dict[str, str]) -> None:
    verdict = evaluate_requirements(env, HostGpuFacts("535.104.05", "12.2", (T4,)))
    assert verdict.ok and any("NVIDIA_DISABLE_REQUIRE" in n for n in verdict.notes)


def test_host_wide_disable_require() -> None:
    facts = HostGpuFacts("535.104.05", "12.2", (T4,))
    assert not evaluate_requirements({"NVIDIA_REQUIRE_CUDA": "cuda>=99.0"}, facts).ok
    assert evaluate_requirements({"NVIDIA_REQUIRE_CUDA": "cuda>=99.0"}, facts, host_disable_require=True).ok


def test_legacy_cuda_version_only_images() -> None:
    facts = HostGpuFacts("410.48", "10.0", (T4,))
    assert evaluate_requirements({"CUDA_VERSION": "10.0.130"}, facts).ok
    verdict = evaluate_requirements({"CUDA_VERSION": "10.1.243"}, facts)
    assert not verdict.ok and verdict.message.endswith("unsatisfied condition: cuda>=10.1" + RUNTIME_HINT)
    verdict = evaluate_requirements({"CUDA_VERSION": "12.2.2.009"}, HostGpuFacts("570.86.15", "12.8", (T4,)))
    assert not verdict.ok and "cannot parse that version" in verdict.message


def test_invalid_expression_is_refused() -> None:
    verdict = evaluate_requirements(
        {"NVIDIA_REQUIRE_FOO": "cuda>=99 gpu=big"}, HostGpuFacts("570.86.15", "12.8")
    )
    assert not verdict.ok and "'invalid expression'" in verdict.message


def test_unknown_property_after_a_satisfied_term_is_skipped() -> None:
    assert evaluate_requirements(
        {"NVIDIA_REQUIRE_FOO": "cuda>=12.0 gpu=big"}, HostGpuFacts("570.86.15", "12.8")
    ).ok


def test_the_briefs_example_refusal() -> None:
    # 6.26.3-pyt not pulled yet, so its CUDA comes from the bundled table
    image = image_cuda_from_table(f"{TAO}:6.26.3-pyt")
    assert image is not None
    verdict = check_cuda_compat("gpu1", HostGpuFacts("535.183.01", "12.2", (RTX4090,)), image)
    assert verdict == Verdict(
        False,
        "host gpu1: NVIDIA driver 535.183.01 supports CUDA 12.2, but image"
        " nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt needs CUDA 13.0 (bundled table, unverified) - upgrade the"
        " driver to >= 580.65.06 or use image tag 4.0.0-pyt (CUDA 11.8); --no-preflight skips this check",
        (),
    )


def test_tao_image_on_the_host_newer_than_the_driver_is_refused_before_it_fails_inside() -> None:
    image = image_cuda_from_env(f"{TAO}:6.26.3-pyt", TAO_ENV)
    verdict = check_cuda_compat("gpu1", HostGpuFacts("550.54.15", "12.4", (H100,)), image)
    assert verdict.message == (
        "host gpu1: NVIDIA driver 550.54.15 supports CUDA 12.4, but image"
        " nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt needs CUDA 12.8 - upgrade the driver to >= 570.26"
        " or use image tag 5.5.0-pyt (CUDA 12.4); --no-preflight skips this check"
    )
    assert not verdict.ok
    assert check_cuda_compat("gpu1", HostGpuFacts("570.86.15", "12.8", (H100,)), image).ok
    assert check_cuda_compat("gpu1", HostGpuFacts("580.126.09", "13.0", (H100,)), image).ok


def test_cuda_image_refused_by_the_runtime_names_the_minimum_driver() -> None:
    image = image_cuda_from_env("nvidia/cuda:12.6.3-base-ubuntu24.04", cuda_image("12.6.3"))
    verdict = check_cuda_compat("gpu1", HostGpuFacts("535.104.05", "12.2", (RTX4090,)), image)
    assert verdict.message == (
        "host gpu1: NVIDIA driver 535.104.05 supports CUDA 12.2, but image"
        " nvidia/cuda:12.6.3-base-ubuntu24.04 needs CUDA 12.6 - upgrade the driver to >= 560.28.03;"
        " --no-preflight skips this check"
    )
    assert verdict.notes[0].startswith("NVIDIA_REQUIRE_CUDA is not met on GPU 0")
    assert verdict.notes[1].endswith("unsatisfied condition: cuda>=12.6" + RUNTIME_HINT)


def test_forward_compatibility_on_a_data_center_gpu_passes_with_a_note() -> None:
    image = image_cuda_from_env("nvidia/cuda:12.4.1-base-ubuntu22.04", cuda_image("12.4.1"))
    for gpu in (T4, H100):
        verdict = check_cuda_compat("gpu1", HostGpuFacts("535.104.05", "12.2", (gpu,)), image)
        assert verdict.ok, verdict
        assert "forward compatibility" in verdict.message
        assert any("brand=" in n and "driver>=535,driver<536" in n for n in verdict.notes)


def test_forward_compatibility_on_a_geforce_is_refused_although_the_runtime_accepts_it() -> None:
    image = image_cuda_from_env("nvidia/cuda:12.4.1-base-ubuntu22.04", cuda_image("12.4.1"))
    facts = HostGpuFacts("535.104.05", "12.2", (RTX4090,))
    assert evaluate_requirements(image.env, facts).ok  # B1 lists geforce
    verdict = check_cuda_compat("gpu1", facts, image)
    assert not verdict.ok
    assert "brand=geforce,driver>=535,driver<536" in verdict.message
    assert "GPU 0 (NVIDIA GeForce RTX 4090)" in verdict.message
    assert "upgrade the driver to >= 550.54.14" in verdict.message


def test_host_cuda_is_inferred_from_the_driver_branch_when_not_printed() -> None:
    image = image_cuda_from_env("nvidia/cuda:11.0.3-base", {"CUDA_VERSION": "11.0.3"})
    verdict = check_cuda_compat("old", HostGpuFacts("418.67", None, (T4,)), image)
    assert not verdict.ok
    assert verdict.message.startswith("host old: NVIDIA driver 418.67 supports CUDA 10.1, but image")
    assert "upgrade the driver to >= 450.51.05" in verdict.message
    # the inferred value also feeds the runtime check, which then fails as the runtime would
    assert "nvidia-smi prints no CUDA version; driver branch 418.67 reports 10.1" in verdict.notes
    assert not any("assumed met" in n for n in verdict.notes)
    assert any(n.endswith("unsatisfied condition: cuda>=11.0" + RUNTIME_HINT) for n in verdict.notes)


def test_arch_requirement_names_the_gpu() -> None:
    env = {"CUDA_VERSION": "12.4.1", "NVIDIA_REQUIRE_CUDA": "cuda>=12.4", "NVIDIA_REQUIRE_ARCH": "arch>=9.0"}
    verdict = check_cuda_compat(
        "gpu1", HostGpuFacts("570.86.15", "12.8", (RTX4090,)), image_cuda_from_env("x:1", env)
    )
    assert not verdict.ok
    assert "(CUDA 12.4) cannot start: NVIDIA_REQUIRE_ARCH is not met on GPU 0" in verdict.message
    assert "compute capability 8.9): unsatisfied condition: arch>=9.0" in verdict.message


def test_disable_require_does_not_hide_a_cuda_mismatch() -> None:
    env = dict(cuda_image("12.6.3"), NVIDIA_DISABLE_REQUIRE="true")
    verdict = check_cuda_compat(
        "gpu1", HostGpuFacts("535.104.05", "12.2", (RTX4090,)), image_cuda_from_env("x:1", env)
    )
    assert not verdict.ok and "needs CUDA 12.6" in verdict.message


@pytest.mark.parametrize(
    ("image", "fragment"),
    [
        (ImageCuda("example.com/other:1", None, {}, "unknown"), "not in the bundled table"),
        (image_cuda_from_env("busybox:1.36", {"PATH": "/bin"}), "declares no CUDA version"),
    ],
)
def test_images_without_cuda_information_pass(image: ImageCuda, fragment: str) -> None:
    verdict = check_cuda_compat("gpu1", HostGpuFacts("570.86.15", "12.8", (H100,)), image)
    assert verdict.ok and fragment in verdict.message


REFUSALS = [
    (HostGpuFacts("535.183.01", "12.2", (RTX4090,)), image_cuda_from_table(f"{TAO}:6.26.3-pyt"), "13.0"),
    (HostGpuFacts("550.54.15", "12.4", (H100,)), image_cuda_from_env(f"{TAO}:6.26.3-pyt", TAO_ENV), "12.8"),
    (
        HostGpuFacts("535.104.05", "12.2", (RTX4090,)),
        image_cuda_from_env("nvidia/cuda:12.4.1", cuda_image("12.4.1")),
        "12.4",
    ),
    (
        HostGpuFacts("545.23.08", "12.3", (T4,)),
        image_cuda_from_env("nvidia/cuda:12.6.3", cuda_image("12.6.3")),
        "12.6",
    ),
    (
        HostGpuFacts("575.57.08", "12.9", (RTX4090,)),
        image_cuda_from_env("nvidia/cuda:13.0.0", cuda_image("13.0.0")),
        "13.0",
    ),
    (
        HostGpuFacts("470.57.02", "11.4", (T4,)),
        image_cuda_from_env("x:1", {"CUDA_VERSION": "11.8.0"}),
        "11.8",
    ),
]


@pytest.mark.parametrize(("facts", "image", "image_cuda"), REFUSALS)
def test_every_refusal_names_host_driver_both_cudas_image_and_the_fix(
    facts: HostGpuFacts, image: ImageCuda | None, image_cuda: str
) -> None:
    assert image is not None
    verdict = check_cuda_compat("gpu7", facts, image)
    assert not verdict.ok
    message = verdict.message
    assert "\n" not in message
    for part in (
        "host gpu7",
        facts.driver_version,
        f"CUDA {facts.cuda_version}",
        image.image,
        f"CUDA {image_cuda}",
    ):
        assert part in message
    assert "upgrade the driver to >= " in message
    assert message.endswith("; " + SKIP_HINT)


# --- --gpus auto:N ------------------------------------------------------------------------------------------


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
    assert pick_gpus(gpus, n) == chosen


def test_pick_gpus_on_mig_host_takes_the_lowest_indexes() -> None:
    assert pick_gpus(parse_nvidia_smi(smi("default-r535-8xh100-mig.txt")).gpus, 3) == (0, 1, 2)


def test_pick_gpus_needs_enough_gpus() -> None:
    with pytest.raises(PreflightError, match="needs 2 GPUs, but the host has 1"):
        pick_gpus([T4], 2)
    with pytest.raises(UsageError):
        pick_gpus([T4], 0)


@pytest.mark.parametrize(
    ("version", "sha"),
    [("12.4.1", "a544f86a3c07ed51"), ("12.6.3", "8df7d1451b989b90"), ("13.0.0", "4423a6770b94f2d4")],
)
def test_cuda_image_env_is_the_verbatim_string(version: str, sha: str) -> None:
    value = cuda_image(version)["NVIDIA_REQUIRE_CUDA"]
    assert hashlib.sha256(value.encode()).hexdigest()[:16] == sha  # the hashes of test_requirements.py
