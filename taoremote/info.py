"""`taoremote info`: the version, the config files in effect, the target hosts, task groups and images, the
mounts and the env names (never their values).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from taoremote.actions import check_format, load_mounts, out, user_task_config
from taoremote.output import render, render_mapping

if TYPE_CHECKING:
    from taoremote.settings import Globals


def info_cmd(g: Globals, *, verbose: bool, fmt: str) -> int:
    from taoremote import config, tasks

    check_format(fmt)
    task_map = tasks.load_task_map(user_task_config())
    mounts_path = config.find_mounts_file(g.mounts, os.environ, os.path.expanduser("~"))
    mounts = load_mounts(g)
    data: dict[str, object] = {
        "version": _version(),
        "mounts_file": mounts_path or "(none: no mounts, no envs)",
        "task_map": task_map.source,
        "override_registry": os.environ.get("OVERRIDE_REGISTRY") or "",
        "hosts": list(g.hosts) or ["local"],
        "task_groups": sorted(k for k in task_map.groups if tasks.is_task_group(task_map, k)),
        "mounts": [f"{m.source} -> {m.destination}{' (ro)' if m.read_only else ''}" for m in mounts.mounts],
        "envs": [
            f"{e.name}{' (secret)' if e.secret else ''}{' from $' + e.from_env if e.from_env else ''}"
            for e in mounts.envs
        ],
    }
    if verbose:
        data["tasks"] = {
            f"{group} {task}": str(ref)
            for group, entries in task_map.groups.items()
            for task, ref in sorted(entries.items())
        }
    if fmt == "json":
        out(render_mapping(data, "json"))
        return 0
    tasks_view = data.pop("tasks", None)
    out(render_mapping(data, "table"))
    if isinstance(tasks_view, dict):
        rows = [{"task": k, "image": v} for k, v in tasks_view.items()]
        out("")
        out(render(rows, "table"))
    return 0


def _version() -> str:
    from taoremote import __version__

    return __version__
