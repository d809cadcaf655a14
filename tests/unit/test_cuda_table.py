"""The bundled tables: image tag -> CUDA, CUDA -> lowest driver, driver branch -> CUDA; tag suggestions."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from taoremote.cuda_table import (
    ImageCuda,
    cuda_for_driver,
    image_cuda_from_table,
    major_minor,
    min_driver_for_cuda,
    split_image_ref,
    suggest_image_tag,
)

TAO = "nvcr.io/nvidia/tao/tao-toolkit"

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
