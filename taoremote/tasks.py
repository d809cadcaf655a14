"""Task and task-group names -> image reference.

The bundled map is the TAO launcher's own config.json (nvidia-tao 6.26.3, format 3). A
~/.tao/config.json replaces it, exactly as in the launcher, in any of the launcher's formats:
1.0 (dockers.<image>.{docker_tag,tasks}), 2.0 (dockers.<image>.<tag>.{docker_registry,tasks})
and 3.0 (task_group.<group>.dockers.<image>.<tag>...). $OVERRIDE_REGISTRY and --image come last.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from taoremote.errors import ConfigError, UsageError

TASK_GROUPS = ("model", "dataset", "deploy")
# Formats 1.0 and 2.0 have no groups; the launcher files their tasks under this name.
_FLAT_GROUP = "container_actions"


@dataclass(frozen=True)
class ImageRef:
    registry: str | None
    repository: str
    tag: str
    digest: str | None = None

    def __str__(self) -> str:
        base = f"{self.registry}/{self.repository}" if self.registry else self.repository
        return f"{base}:{self.tag}"


@dataclass(frozen=True)
class TaskMap:
    source: str  # where the map came from, for `info`
    groups: Mapping[str, Mapping[str, ImageRef]]

    def known_tasks(self) -> list[str]:
        return sorted({task for tasks in self.groups.values() for task in tasks})


def load_task_map(user_config: str | None) -> TaskMap:
    """The user's ~/.tao/config.json when it exists (path given by the caller), else the bundled map."""
    if user_config is not None:
        try:
            with open(user_config, encoding="utf-8") as fh:
                doc = json.load(fh)
        except OSError as exc:
            raise ConfigError(f"{user_config}: cannot read: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{user_config}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from None
        return TaskMap(user_config, parse_task_config(doc, user_config))
    text = resources.files("taoremote").joinpath("data/tao_tasks.json").read_text()
    return TaskMap("bundled (nvidia-tao 6.26.3)", parse_task_config(json.loads(text), "bundled map"))


def parse_task_config(doc: Any, where: str) -> dict[str, dict[str, ImageRef]]:
    if not isinstance(doc, dict) or "format_version" not in doc:
        raise ConfigError(f"{where}: $.format_version: required (1.0, 2.0 or 3.0)")
    version = str(doc["format_version"])
    try:
        if version in ("1", "1.0"):
            return {_FLAT_GROUP: _parse_v1(doc["dockers"])}
        if version in ("2", "2.0"):
            return {_FLAT_GROUP: _parse_dockers(doc["dockers"], "$.dockers")}
        if version in ("3", "3.0"):
            return {
                group: _parse_dockers(data["dockers"], f"$.task_group.{group}.dockers")
                for group, data in doc["task_group"].items()
            }
    except (KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"{where}: not a valid format {version} launcher config (missing or bad {exc})"
        ) from None
    raise ConfigError(f"{where}: $.format_version: {doc['format_version']!r} is not 1.0, 2.0 or 3.0")


def _parse_v1(dockers: dict[str, Any]) -> dict[str, ImageRef]:
    out = {}
    for image, data in dockers.items():
        ref = ImageRef(data.get("docker_registry"), image, data["docker_tag"], data.get("docker_digest"))
        out.update({task: ref for task in data["tasks"]})
    return out


def _parse_dockers(dockers: dict[str, Any], path: str) -> dict[str, ImageRef]:
    out = {}
    for image, tags in dockers.items():
        if not isinstance(tags, dict):
            raise ConfigError(f"{path}.{image}: expected an object of tags")
        for tag, data in tags.items():
            ref = ImageRef(data.get("docker_registry"), image, tag, data.get("docker_digest"))
            out.update({task: ref for task in data["tasks"]})
    return out


def resolve_image(
    task_map: TaskMap,
    group: str | None,
    task: str,
    *,
    override_registry: str | None = None,
    image_override: str | None = None,
) -> str:
    """The image reference a task runs in. Without a group (the 4.x grammar) `model` wins."""
    if image_override:
        return image_override
    groups = [group] if group else [*TASK_GROUPS, _FLAT_GROUP]
    for name in groups:
        ref = task_map.groups.get(name, {}).get(task)
        if ref is not None:
            if override_registry:
                ref = ImageRef(override_registry, ref.repository, ref.tag, ref.digest)
            return str(ref)
    scope = f"task group '{group}'" if group else task_map.source
    known = sorted(task_map.groups.get(group, {})) if group else task_map.known_tasks()
    raise UsageError(f"unknown task '{task}' in {scope}; known tasks: {', '.join(known)}")


def is_task_group(task_map: TaskMap, name: str) -> bool:
    return name in task_map.groups and name != _FLAT_GROUP
