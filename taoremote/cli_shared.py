"""What the typer modules (cli.py, cli_sweep.py) share: the help text, the group class that sends any
non-builtin word to the task command, the --format option and the Globals the root callback built."""

# No `from __future__ import annotations`: typer reads annotations as objects (see cli.py).

from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from taoremote.errors import TaoRemoteError

if TYPE_CHECKING:
    from taoremote.settings import Globals

HELP = """Launch NVIDIA TAO Toolkit tasks in GPU containers, on this machine or on SSH hosts.

\b
  taoremote [OPTIONS] [model|dataset|deploy] TASK SUBTASK [ARGS...]
  taoremote [OPTIONS] TASK run COMMAND...        any command in the task's image
  taoremote [OPTIONS] TASK                       interactive shell (needs a terminal)
\b
Examples:
  taoremote detectnet_v2 train -e /workspace/specs/train.txt -r /workspace/results -k KEY
  taoremote --host gpu1 -d model dino train -e /workspace/specs/train.yaml
  taoremote --host gpu1 logs -f JOB        reattach to a job's output
\b
Arguments after the task pass through unchanged, one element each: no shell re-splits them.
Config: --mounts, $LAUNCHER_MOUNTS or ~/.tao_mounts.json (the TAO launcher's format);
task images: ~/.tao/config.json or the bundled TAO map, $OVERRIDE_REGISTRY, --image.
Exit codes: the task's own; 1 no such job or a failed check; 2 usage; 68 SSH; 69 docker, driver or
Slurm (sbatch refused, no Slurm); 78 config; 130/143 Ctrl-C or SIGTERM (job stopped); 129 terminal hung
up and 255 SSH link lost (the job goes on: reattach with `logs -f`); 141 output closed (job stopped)."""


class TaskDispatchGroup(TyperGroup):
    """Anything that is not a built-in command is a task: it and everything after it go to the task
    command untouched, so click never re-parses the task's own options (including its --help)."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.commands:
            ctx.meta["task_argv"] = list(args)
            return "_task", self.commands["_task"], []
        return super().resolve_command(ctx, args)

    def list_commands(self, ctx: Any) -> list[str]:
        return [name for name in super().list_commands(ctx) if name != "_task"]

    def format_help_text(self, ctx: Any, formatter: Any) -> None:
        # the tasks, by group, as the TAO launcher's users check an install with `tao --help`; the
        # task map is one small JSON file, so this costs no noticeable start-up time
        super().format_help_text(ctx, formatter)
        formatter.write_paragraph()
        formatter.write(_task_listing() + "\n")


def _task_listing() -> str:
    from taoremote import tasks

    try:
        task_map = tasks.load_task_map(tasks.user_config_path())
        note = ""
    except TaoRemoteError as exc:
        task_map, note = tasks.load_task_map(None), f"  ({exc}; showing the bundled map)\n"
    return note + "\n".join("  " + line for line in tasks.tasks_by_group(task_map).splitlines())


FormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        metavar="table|json",
        help="table or json (default: the global --format)",
        show_default=False,
    ),
]


def globals_of(ctx: typer.Context) -> "Globals":
    from taoremote.settings import Globals

    obj = ctx.find_root().obj
    assert isinstance(obj, Globals)
    return obj
