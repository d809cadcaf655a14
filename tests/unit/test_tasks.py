"""Task names -> images: the bundled TAO map, launcher config formats 1.0/2.0/3.0, overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taoremote.errors import ConfigError, UsageError
from taoremote.tasks import ImageRef, load_task_map, parse_task_config, resolve_image

BUNDLED = load_task_map(None)


def test_bundled_map_has_the_launcher_groups_and_images() -> None:
    assert resolve_image(BUNDLED, "model", "detectnet_v2") == "nvcr.io/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5"
    assert resolve_image(BUNDLED, "model", "dino") == "nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt"
    assert (
        resolve_image(BUNDLED, "dataset", "augmentation")
        == "nvcr.io/nvidia/tao/tao-toolkit:6.26.3-data-services"
    )
    assert resolve_image(BUNDLED, "deploy", "detectnet_v2") == "nvcr.io/nvidia/tao/tao-toolkit:6.26.3-deploy"


def test_flat_grammar_prefers_the_model_group() -> None:
    assert resolve_image(BUNDLED, None, "detectnet_v2") == "nvcr.io/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5"
    assert resolve_image(BUNDLED, None, "trtexec") == "nvcr.io/nvidia/tao/tao-toolkit:6.26.3-deploy"


def test_override_registry_and_image_option() -> None:
    assert resolve_image(BUNDLED, None, "dino", override_registry="reg.local:5000") == (
        "reg.local:5000/nvidia/tao/tao-toolkit:6.26.3-pyt"
    )
    assert resolve_image(BUNDLED, None, "dino", override_registry="x", image_override="mine:1") == "mine:1"


def test_unknown_task_is_a_usage_error_listing_known_tasks() -> None:
    with pytest.raises(UsageError) as info:
        resolve_image(BUNDLED, None, "detectnet_v3")
    assert info.value.exit_code == 2
    assert "unknown task 'detectnet_v3'" in str(info.value)
    assert "detectnet_v2" in str(info.value) and "yolo_v4" in str(info.value)


def test_unknown_task_within_a_group_lists_that_group() -> None:
    with pytest.raises(UsageError, match="in task group 'dataset'; known tasks: analytics, annotations"):
        resolve_image(BUNDLED, "dataset", "dino")


def test_format_1_0() -> None:
    doc = {
        "format_version": 1.0,
        "dockers": {"nvidia/tlt": {"docker_tag": "v3.0-py3", "docker_registry": "nvcr.io", "tasks": ["ssd"]}},
    }
    groups = parse_task_config(doc, "c")
    assert groups["container_actions"]["ssd"] == ImageRef("nvcr.io", "nvidia/tlt", "v3.0-py3")


def test_format_2_0_with_digest() -> None:
    doc = {
        "format_version": 2.0,
        "dockers": {
            "nvidia/tao/tao-toolkit": {
                "4.0.0-pyt": {"docker_registry": "nvcr.io", "docker_digest": "sha256:ab", "tasks": ["dino"]}
            }
        },
    }
    ref = parse_task_config(doc, "c")["container_actions"]["dino"]
    assert ref == ImageRef("nvcr.io", "nvidia/tao/tao-toolkit", "4.0.0-pyt", "sha256:ab")


def test_user_config_replaces_the_bundled_map(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    doc = {
        "format_version": "3.0",
        "task_group": {"model": {"dockers": {"me/tao": {"1": {"docker_registry": "r", "tasks": ["dino"]}}}}},
    }
    path.write_text(json.dumps(doc))
    task_map = load_task_map(str(path))
    assert resolve_image(task_map, None, "dino") == "r/me/tao:1"
    with pytest.raises(UsageError):
        resolve_image(task_map, None, "detectnet_v2")


def test_bad_user_config_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"format_version": 9}')
    with pytest.raises(ConfigError, match=r"is not 1\.0, 2\.0 or 3\.0"):
        load_task_map(str(path))
    path.write_text("{oops")
    with pytest.raises(ConfigError, match="invalid JSON at line 1 column 2"):
        load_task_map(str(path))
    path.write_text('{"format_version": 3, "task_group": {"model": {}}}')
    with pytest.raises(ConfigError, match="not a valid format 3 launcher config"):
        load_task_map(str(path))
