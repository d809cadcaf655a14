"""Preflight: host facts from the probe, the image's CUDA, and the verdicts."""

from __future__ import annotations

from dataclasses import replace

import pytest

from taoremote.cuda_table import ImageCuda, image_cuda_from_env, image_cuda_from_table
from taoremote.errors import SKIP_HINT
from taoremote.nvidia_smi import Gpu, HostGpuFacts
from taoremote.preflight import (
    Verdict,
    check_cuda_compat,
    evaluate_requirements,
    host_facts,
    resolve_image_cuda,
)
from taoremote.probe import parse_probe
from tests.unit.captures import CAPTURED_PROBE, smi, swap_section
from tests.unit.cuda_images import cuda_image

TAO = "nvcr.io/nvidia/tao/tao-toolkit"
RUNTIME_HINT = ", please update your driver to a newer version, or use an earlier cuda container"

# --- host facts and the image's CUDA -----------------------------------------------------------------------


def test_host_facts_prefer_query_gpu_details() -> None:
    facts = host_facts(parse_probe(CAPTURED_PROBE))
    assert (facts.driver_version, facts.cuda_version) == ("535.86.10", "12.2")
    assert [(g.index, g.uuid, g.memory_used_mib, g.compute_cap) for g in facts.gpus] == [
        (0, "GPU-aaaa", 100, "9.0"),
        (1, "GPU-bbbb", 0, "9.0"),
    ]


def test_host_facts_fall_back_to_table_rows_when_the_query_failed() -> None:
    text = swap_section(
        CAPTURED_PROBE, "query", smi("failure-query-invalid-field.txt"), "@@taoremote:end query rc=2@@"
    )
    facts = host_facts(parse_probe(text))
    assert facts.gpus == (Gpu(0, "Tesla T4", None, 0, 15109, 0, None, "tesla"),)


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
    assert not verdict.ok and verdict.finding.endswith("unsatisfied condition: cuda>=10.1" + RUNTIME_HINT)
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
        "NVIDIA driver 535.183.01 supports CUDA 12.2, but image"
        " nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt needs CUDA 13.0 (bundled table, unverified)",
        (),
        fix="upgrade the driver to >= 580.65.06 or use image tag 4.0.0-pyt (CUDA 11.8)",
        host="gpu1",
    )
    assert verdict.message == (
        "host gpu1: NVIDIA driver 535.183.01 supports CUDA 12.2, but image"
        " nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt needs CUDA 13.0 (bundled table, unverified); upgrade the"
        " driver to >= 580.65.06 or use image tag 4.0.0-pyt (CUDA 11.8); --no-preflight skips this check"
    )
    error = verdict.error()
    assert (error.host, error.fix, error.skippable) == ("gpu1", verdict.fix, True)


def test_tao_image_on_the_host_newer_than_the_driver_is_refused_before_it_fails_inside() -> None:
    image = image_cuda_from_env(f"{TAO}:6.26.3-pyt", TAO_ENV)
    verdict = check_cuda_compat("gpu1", HostGpuFacts("550.54.15", "12.4", (H100,)), image)
    assert verdict.message == (
        "host gpu1: NVIDIA driver 550.54.15 supports CUDA 12.4, but image"
        " nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt needs CUDA 12.8; upgrade the driver to >= 570.26"
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
        " nvidia/cuda:12.6.3-base-ubuntu24.04 needs CUDA 12.6; upgrade the driver to >= 560.28.03;"
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
