"""The command line: the only module that imports typer. Each command loads, builds, executes, renders."""

# No `from __future__ import annotations` here: typer reads every command's annotations, and as strings
# it would have to eval each one on every start (~4 ms); written as objects they are built once, at import.

import contextlib
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from taoremote import __version__
from taoremote.errors import Interrupted, TaoRemoteError, UsageError

if TYPE_CHECKING:  # imported where a command runs: --help and --version need no dataclass built
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
Exit codes: the task's own; 1 no such job or a failed check; 2 usage; 68 SSH; 69 docker or driver;
78 config; 130/143 Ctrl-C or SIGTERM (job stopped); 129 terminal hung up and 255 SSH link lost (the
job goes on: reattach with `logs -f`); 141 output closed (job stopped)."""


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


app = typer.Typer(
    cls=TaskDispatchGroup,
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"taoremote {__version__}")
        raise typer.Exit()


FormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        metavar="table|json",
        help="table or json (default: the global --format)",
        show_default=False,
    ),
]


@app.callback()
def root(
    ctx: typer.Context,
    mounts: Annotated[
        str | None,
        typer.Option(
            "--mounts", metavar="FILE", help="mounts file (default $LAUNCHER_MOUNTS, ~/.tao_mounts.json)"
        ),
    ] = None,
    host: Annotated[
        list[str] | None,
        typer.Option(
            "--host",
            metavar="HOST",
            help="SSH host: ~/.ssh/config alias or [user@]host[:port]; "
            "repeat for list/stop/prune/doctor (default $TAOREMOTE_HOSTS)",
        ),
    ] = None,
    ssh_config: Annotated[
        str | None,
        typer.Option("--ssh-config", metavar="FILE", help="ssh config file to read instead of ~/.ssh/config"),
    ] = None,
    image: Annotated[
        str | None,
        typer.Option("--image", metavar="IMAGE", help="run the task in this image instead of the mapped one"),
    ] = None,
    gpus: Annotated[
        str,
        typer.Option(
            "--gpus",
            metavar="SPEC",
            help="all, none, a count (2), device=0,2, or auto:N (the N least-loaded)",
        ),
    ] = "all",
    detach: Annotated[
        bool, typer.Option("-d", "--detach", help="start the job, print its id and return")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print the exact command (secrets masked) and run nothing")
    ] = False,
    no_preflight: Annotated[
        bool, typer.Option("--no-preflight", help="skip the NVIDIA driver / CUDA check")
    ] = False,
    fmt: Annotated[
        str, typer.Option("--format", metavar="table|json", help="output of list/info/doctor")
    ] = "table",
    clean_results: Annotated[
        bool, typer.Option("--clean-results", help="train: empty a non-empty results directory first (asks)")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="answer yes to questions (--clean-results)")
    ] = False,
    inventory: Annotated[
        str | None,
        typer.Option(
            "--inventory",
            metavar="FILE",
            help="file naming a fleet, one host per line (# comments); default $TAOREMOTE_INVENTORY",
        ),
    ] = None,
    slurm: Annotated[
        str | None,
        typer.Option(
            "--slurm",
            metavar="LOGIN",
            help="hand jobs to the Slurm cluster of this login node (SSH host, or `local`); "
            "default $TAOREMOTE_SLURM",
        ),
    ] = None,
    sbatch: Annotated[
        list[str] | None,
        typer.Option("--sbatch", metavar="ARG", help="with --slurm: one sbatch argument (repeatable)"),
    ] = None,
    container_runtime: Annotated[
        str | None,
        typer.Option(
            "--container-runtime",
            metavar="pyxis|docker",
            help="with --slurm (default: pyxis when srun offers --container-image, else docker)",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="show the version and exit")
    ] = False,
) -> None:
    if fmt not in ("table", "json"):
        raise UsageError(f"--format {fmt!r}: expected table or json")
    from taoremote.fleet import resolve_hosts
    from taoremote.settings import Globals

    slurm = slurm or os.environ.get("TAOREMOTE_SLURM") or None
    _check_slurm_options(slurm, host, sbatch, container_runtime, gpus)
    hosts = () if slurm else resolve_hosts(host or (), inventory, os.environ)
    ctx.obj = Globals(
        mounts,
        hosts,
        ssh_config,
        image,
        gpus,
        detach,
        dry_run,
        not no_preflight,
        fmt,
        clean_results,
        yes,
        slurm,
        tuple(sbatch or ()),
        container_runtime,
    )


def _check_slurm_options(
    slurm: str | None, host: list[str] | None, sbatch: list[str] | None, runtime: str | None, gpus: str
) -> None:
    if not slurm:
        if sbatch or runtime:
            raise UsageError("--sbatch and --container-runtime go with --slurm LOGIN")
        return
    if host:
        raise UsageError("--slurm and --host exclude each other: Slurm picks the nodes")
    if runtime not in (None, "pyxis", "docker"):
        raise UsageError(f"--container-runtime {runtime!r}: expected pyxis or docker")
    if gpus.startswith(("device=", "auto:")):
        raise UsageError(f"--gpus {gpus}: on Slurm the scheduler picks the GPUs; ask for a count (--gpus N)")


def _globals(ctx: typer.Context) -> "Globals":
    from taoremote.settings import Globals

    obj = ctx.find_root().obj
    assert isinstance(obj, Globals)
    return obj


@app.command(
    "_task",
    hidden=True,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
)
def task_command(ctx: typer.Context) -> None:
    from taoremote import actions

    g = _globals(ctx)
    code = actions.run_task(ctx.meta["task_argv"], g)
    raise typer.Exit(code)


@app.command("list")
def list_command(
    ctx: typer.Context,
    all_: Annotated[
        bool, typer.Option("--all", "-a", help="include finished jobs and their exit codes")
    ] = False,
    fmt: FormatOpt = None,
) -> None:
    """List taoremote jobs on the target host(s): one `docker ps` per host, in parallel."""
    from taoremote import actions

    g = _globals(ctx)
    raise typer.Exit(actions.list_cmd(g, include_stopped=all_, fmt=fmt or g.fmt))


@app.command("stop")
def stop_command(
    ctx: typer.Context,
    ids: Annotated[
        list[str] | None, typer.Argument(help="more job ids (as after --container_id)", show_default=False)
    ] = None,
    container_id: Annotated[
        list[str] | None,
        typer.Option(
            "--container_id",
            "--container-id",
            metavar="ID",
            help="job id, container name or container id prefix",
        ),
    ] = None,
    all_: Annotated[
        bool,
        typer.Option(
            "--all", help="stop every live job of yours: created, running, paused (only taoremote's)"
        ),
    ] = False,
    all_users: Annotated[
        bool, typer.Option("--all-users", help="with --all: everyone's jobs, not only yours")
    ] = False,
) -> None:
    """Stop jobs: `stop --container_id ID [ID ...]` or `stop --all`.

    Unknown ids are reported; the others are still stopped."""
    from taoremote import actions

    wanted = [*(container_id or []), *(ids or [])]
    if not wanted and not all_:
        raise UsageError("give --container_id ID [ID ...] or --all")
    raise typer.Exit(actions.stop_cmd(_globals(ctx), wanted, stop_all=all_, all_users=all_users))


@app.command("logs")
def logs_command(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="job id, container name or container id prefix")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="keep following; exit with the job's exit code")
    ] = False,
) -> None:
    """Show a job's output; with -f, follow it to the end (Ctrl-C stops following, not the job)."""
    from taoremote import actions

    raise typer.Exit(actions.logs_cmd(_globals(ctx), job, follow=follow))


@app.command("prune")
def prune_command(
    ctx: typer.Context,
    all_users: Annotated[
        bool, typer.Option("--all-users", help="everyone's finished jobs, not only yours")
    ] = False,
) -> None:
    """Remove your finished taoremote jobs (their containers and exit codes) on the target host(s)."""
    from taoremote import actions

    raise typer.Exit(actions.prune_cmd(_globals(ctx), all_users=all_users))


@app.command("info")
def info_command(
    ctx: typer.Context,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="also list every task and its image")
    ] = False,
    fmt: FormatOpt = None,
) -> None:
    """Show the config files in effect, task groups and images."""
    from taoremote import actions

    g = _globals(ctx)
    raise typer.Exit(actions.info_cmd(g, verbose=verbose, fmt=fmt or g.fmt))


@app.command("doctor")
def doctor_command(
    ctx: typer.Context,
    fmt: FormatOpt = None,
    probe_node: Annotated[
        bool,
        typer.Option("--probe-node", help="with --slurm: the driver/CUDA verdict of a GPU node (short job)"),
    ] = False,
) -> None:
    """Can the host(s) run TAO? docker, NVIDIA runtime, driver, CUDA of each image, mounts, ports.

    With --slurm: Slurm, its partitions and GPUs, the container runtime, mounts."""
    from taoremote import actions

    g = _globals(ctx)
    raise typer.Exit(actions.doctor_cmd(g, fmt=fmt or g.fmt, probe_node=probe_node))


# ---------------------------------------------------------------------------------------------- sweep

sweep_app = typer.Typer(
    help="Run many variations of one training over every free GPU of the hosts (grid, random, tpe).",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(sweep_app, name="sweep")


@sweep_app.command("run")
def sweep_run_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="the sweep's name; run it again to resume")],
    task: Annotated[
        list[str] | None, typer.Argument(help="-- [group] TASK train ARGS...", show_default=False)
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            metavar="PATH=V1,V2|uniform(a,b)|loguniform(a,b)|int(a,b)|choice(a,...)",
            help="a spec path (protobuf) or override key (YAML) and its values; repeatable",
        ),
    ] = None,
    search: Annotated[str, typer.Option("--search", metavar="grid|random|tpe")] = "grid",
    trials: Annotated[int | None, typer.Option("--trials", metavar="N", help="random/tpe: trials")] = None,
    seed: Annotated[int, typer.Option("--seed", metavar="S")] = 0,
    metric: Annotated[str | None, typer.Option("--metric", metavar="NAME", help="default: per task")] = None,
    direction: Annotated[str | None, typer.Option("--direction", metavar="max|min")] = None,
    max_parallel: Annotated[int | None, typer.Option("--max-parallel", metavar="K")] = None,
    gpus_per_trial: Annotated[int, typer.Option("--gpus-per-trial", metavar="G")] = 1,
    prune: Annotated[str | None, typer.Option("--prune", metavar="median")] = None,
    prune_warmup: Annotated[int, typer.Option("--prune-warmup", metavar="E")] = 0,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print each trial's placement, argv and spec diff; run nothing")
    ] = False,
) -> None:
    """Run (or resume) sweep NAME: `sweep run NAME --param P=V1,V2 ... -- [group] TASK train ARGS...`.

    Queued trials start only while this runs; run `sweep run NAME` again to resume."""
    from taoremote import sweep, sweep_cmds

    g = _globals(ctx)
    options = None
    if param or task:  # bare `sweep run NAME` resumes the stored definition
        options = sweep.SweepOptions(
            tuple(param or ()), search, trials, seed, metric, direction, max_parallel, gpus_per_trial,
            prune, prune_warmup, tuple(task or ()),
        )  # fmt: skip
    terminal = sys.stdout.isatty()
    raise typer.Exit(sweep_cmds.run_cmd(g, name, options, dry_run=dry_run or g.dry_run, terminal=terminal))


@sweep_app.command("status")
def sweep_status_command(ctx: typer.Context, name: str, fmt: FormatOpt = None) -> None:
    """Each trial: host, GPUs, params, state, best metric and its epoch, exit code."""
    from taoremote import actions, sweep_cmds

    g = _globals(ctx)
    raise typer.Exit(sweep_cmds.status_cmd(name, actions._fmt(fmt or g.fmt)))


@sweep_app.command("best")
def sweep_best_command(ctx: typer.Context, name: str, fmt: FormatOpt = None) -> None:
    """The best trial: params, metric, results dir, newest checkpoint, evaluate/export commands."""
    from taoremote import actions, sweep_cmds

    g = _globals(ctx)
    raise typer.Exit(sweep_cmds.best_cmd(g, name, actions._fmt(fmt or g.fmt)))


@sweep_app.command("stop")
def sweep_stop_command(ctx: typer.Context, name: str) -> None:
    """Stop every trial of sweep NAME (yours) on its hosts; queued trials never start."""
    from taoremote import sweep_cmds

    raise typer.Exit(sweep_cmds.stop_cmd(_globals(ctx), name))


@sweep_app.command("list")
def sweep_list_command(ctx: typer.Context, fmt: FormatOpt = None) -> None:
    """Every sweep in the state file, with its trials' states."""
    from taoremote import actions, sweep_cmds

    g = _globals(ctx)
    raise typer.Exit(sweep_cmds.list_cmd(actions._fmt(fmt or g.fmt)))


def main() -> None:
    from taoremote.errors import Terminated
    from taoremote.signals import install_sigterm_handler

    install_sigterm_handler()
    sys.excepthook = _masked_traceback
    try:
        app(standalone_mode=True)
    except TaoRemoteError as exc:
        _fail(exc)
    except SystemExit as exc:
        if exc.code == 130 and _caused_by_ctrl_c(exc):  # typer turns Ctrl-C into a silent Exit(130)
            with contextlib.suppress(OSError):
                print("taoremote: interrupted", file=sys.stderr)
        raise
    except KeyboardInterrupt:
        print("taoremote: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except Terminated as exc:
        with contextlib.suppress(OSError):
            print(f"taoremote: {exc.problem}", file=sys.stderr)
        raise SystemExit(128 + exc.signum) from None


def _caused_by_ctrl_c(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(8):  # SystemExit <- click Exit <- KeyboardInterrupt
        seen = seen.__cause__ or seen.__context__ if seen is not None else None
        if isinstance(seen, KeyboardInterrupt):
            return True
    return False


def _masked_traceback(kind: type[BaseException], value: BaseException, tb: Any) -> None:
    """A bug still shows its traceback, but never a secret value its message may quote."""
    import traceback

    from taoremote.redact import mask

    with contextlib.suppress(OSError):
        sys.stderr.write(mask("".join(traceback.format_exception(kind, value, tb))))


def _fail(exc: TaoRemoteError) -> None:
    from taoremote.redact import mask

    prefix = "taoremote: " if isinstance(exc, Interrupted) else "taoremote: error: "
    # str(exc) is the one rendering of the error's fields: `host H: <problem>; <fix>`, one line
    with contextlib.suppress(OSError):  # the exit code must survive a closed stderr
        print(mask(f"{prefix}{exc}"), file=sys.stderr)
    raise SystemExit(exc.exit_code)
