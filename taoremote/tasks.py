"""Task and task-group names -> image reference.

The bundled map is the TAO launcher's own config.json (nvidia-tao 6.26.3, format 3). A
~/.tao/config.json replaces it, exactly as in the launcher, in any of the launcher's formats:
1.0 (dockers.<image>.{docker_tag,tasks}), 2.0 (dockers.<image>.<tag>.{docker_registry,tasks})
and 3.0 (task_group.<group>.dockers.<image>.<tag>...). $OVERRIDE_REGISTRY and --image come last.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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


def user_config_path() -> str | None:
    """~/.tao/config.json when it exists: it replaces the bundled map, as in the launcher."""
    path = os.path.expanduser("~/.tao/config.json")
    return path if os.path.isfile(path) else None


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
    # a plain file read: importlib.resources would cost `taoremote --help` more than the map itself
    with open(os.path.join(os.path.dirname(__file__), "data", "tao_tasks.json"), encoding="utf-8") as fh:
        text = fh.read()
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
    """The map's groups; with a format 1.0/2.0 config that is `container_actions`, the name the 6.x
    launcher gives it (`tao container_actions detectnet_v2 train ...`)."""
    return name in task_map.groups


def group_help(task_map: TaskMap, group: str) -> str:
    """What `taoremote GROUP`, `GROUP -h` and `GROUP --help` print (the launcher prints its argparse
    help for the group and exits 0)."""
    return (
        f"usage: taoremote [OPTIONS] {group} TASK [SUBTASK] [ARGS...]\n\n"
        f"{_wrap(f'{group} tasks: ', sorted(task_map.groups.get(group, {})))}\n"
        "Arguments after the task reach it unchanged; `TASK -h` shows the task's own help."
    )


def group_help_request(argv: Sequence[str], task_map: TaskMap) -> str | None:
    """The group's help when ARGV is a group alone or a group followed by -h/--help, as in the
    launcher (`tao model`, `tao model -h`); None for anything else."""
    if argv and is_task_group(task_map, argv[0]) and (len(argv) == 1 or argv[1] in ("-h", "--help")):
        return group_help(task_map, argv[0])
    return None


def tasks_by_group(task_map: TaskMap) -> str:
    """Every task of the map, one wrapped paragraph per group, for `taoremote --help`."""
    return "\n".join(_wrap(f"{group} tasks: ", sorted(tasks)) for group, tasks in task_map.groups.items())


def _wrap(label: str, names: list[str], width: int = 96) -> str:
    import textwrap

    return textwrap.fill(", ".join(names), width, initial_indent=label, subsequent_indent="  ")


# ---------------------------------------------------------------------------------------------- host shell

# The launcher runs `bash -c 'docker exec -it ID TASK ARGS'` through /bin/sh on the launching machine:
# quotes inside an argument are removed and $NAME, ${...}, $(...) and `...` are expanded there.
_EXPANSION = re.compile(r"\$(?:\{[^}]*\}?|\(|[A-Za-z_][A-Za-z0-9_]*|[0-9#?*@$!-])|`")
_QUOTED = re.compile(r"""([^'"=\s]*=)?(["'])([^"']*)\2""")
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash"})


def launcher_shell_warnings(args: Sequence[str], *, run: bool = False) -> list[str]:
    """One warning per argument whose meaning came from the launcher's host shell re-parsing it.
    taoremote passes every argument literally; these say what the launcher would have done instead.
    The script of `run sh -c SCRIPT` is left alone: there the container's own shell expands it."""
    warnings = []
    for index, arg in enumerate(args):
        if run and index >= 2 and args[index - 1] == "-c" and args[0].rsplit("/", 1)[-1] in _SHELLS:
            continue
        reasons = []
        unquoted = _unquoted(arg)
        if unquoted is not None:
            reasons.append("has quotes that the TAO launcher's shell would remove")
        found = _EXPANSION.search(arg)
        if found is not None:
            what = found.group(0)
            if what in ("$(", "`"):
                reasons.append("holds a command substitution, which the TAO launcher's shell would run")
            else:
                reasons.append(f"refers to {what}, which the TAO launcher's shell would expand")
        if not reasons:
            continue
        if found is not None:
            reasons[-1] += " on this machine"
        fix = "write the value itself" if found is not None else f"write {unquoted}"
        warnings.append(f"argument {arg!r} {' and '.join(reasons)}; taoremote passes it as is - {fix}")
    return warnings


def _unquoted(arg: str) -> str | None:
    """The argument without the quotes the shell would remove, when the quotes plainly were shell
    quoting: the whole argument (`"0"`, from `%env GPU_INDEX="0"`) or the value of `key="value"`.
    None otherwise: quotes inside code (`print('a b')`) never worked through the launcher either."""
    found = _QUOTED.fullmatch(arg)
    return (found.group(1) or "") + found.group(3) if found else None
