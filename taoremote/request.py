"""What the user asked for: `[group] task [subtask args... | run cmd...]` read into a TaskRequest, and the
options before the task that shape a launch (LaunchOptions). PURE: plan.py turns both into a LaunchPlan."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from taoremote.config import Mount
from taoremote.errors import UsageError
from taoremote.tasks import TaskMap, is_task_group, launcher_shell_warnings


@dataclass(frozen=True)
class TaskRequest:
    group: str | None
    task: str
    command: tuple[str, ...]  # empty: interactive shell
    subtask: str | None
    extra_mounts: tuple[Mount, ...] = ()
    warnings: tuple[str, ...] = ()  # how the TAO launcher would have read this command line differently


@dataclass(frozen=True)
class LaunchOptions:
    host: str | None = None
    image: str | None = None
    gpus: str = "all"
    detach: bool = False
    dry_run: bool = False
    preflight: bool = True
    terminal: bool = False  # stdin and stdout are a terminal
    override_registry: str | None = None
    inspect_image: bool = True  # False on Slurm: the login node is probed, a GPU node pulls the image


def parse_task_argv(argv: Sequence[str], task_map: TaskMap) -> TaskRequest:
    """`[group] task [subtask args... | run cmd... ]`, args kept one element each, untouched."""
    group, task, args = _split_task(argv, task_map)
    args, mounts, warnings = _volume_options(group, task, args)
    if not args:
        return TaskRequest(group, task, (), None, mounts, tuple(warnings))
    if args[0] == "run":
        if len(args) == 1:
            raise UsageError(f"`{task} run` needs a command to run in the task's image")
        warnings += launcher_shell_warnings(args[1:], run=True)
        return TaskRequest(group, task, tuple(args[1:]), "run", mounts, tuple(warnings))
    warnings += launcher_shell_warnings(args)
    return TaskRequest(group, task, (task, *args), args[0], mounts, tuple(warnings))


def _split_task(argv: Sequence[str], task_map: TaskMap) -> tuple[str | None, str, list[str]]:
    """(group or None, task, the args after the task)."""
    if not argv:
        raise UsageError("no task given; see `taoremote --help` and `taoremote info`")
    group = argv[0] if is_task_group(task_map, argv[0]) else None
    rest = list(argv[1:] if group else argv)
    if not rest:
        tasks = ", ".join(sorted(task_map.groups.get(group or "", {})))
        raise UsageError(f"task group '{group}' needs a task; its tasks: {tasks}")
    return group, rest[0], rest[1:]


def _volume_options(
    group: str | None, task: str, args: list[str]
) -> tuple[list[str], tuple[Mount, ...], list[str]]:
    """(args without the --volume options, their mounts, warnings)."""
    if group is not None:
        kept, mounts = _take_volume_args(args)
        return kept, mounts, []
    if "--volume" not in args:
        return args, (), []
    warning = (
        f"--volume reaches {task} as one of its arguments: the TAO launcher takes --volume "
        f"SRC:DST as a mount only after a task group (`model {task} ...`)"
    )
    return args, (), [warning]


def _take_volume_args(args: list[str]) -> tuple[list[str], tuple[Mount, ...]]:
    """The 6.x launcher turns `--volume SRC:DST[:ro]` anywhere in the args into a mount. It has the
    group grammar only: with the 4.x grammar (no group) --volume reaches the task, as it did there."""
    kept: list[str] = []
    mounts: list[Mount] = []
    i = 0
    while i < len(args):
        if args[i] == "--volume":
            value = args[i + 1] if i + 1 < len(args) else ""
            mounts.append(_volume_mount(value))
            i += 2
            continue
        kept.append(args[i])
        i += 1
    return kept, tuple(mounts)


def _volume_mount(value: str) -> Mount:
    parts = value.split(":")
    valid_mode = parts[2:] in ([], ["ro"], ["rw"])
    if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/") or not valid_mode:
        raise UsageError(f"--volume {value or '(nothing)'}: expected SRC:/container/path[:ro]")
    return Mount(parts[0], parts[1], read_only=parts[2:] == ["ro"])
