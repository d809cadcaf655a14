"""`taoremote sweep run|status|best|stop|list`: the typer sub-app. Each command hands its options to
sweep_cmds.py, which does the work (DESIGN.md §5)."""

# No `from __future__ import annotations`: typer reads annotations as objects (see cli.py).

import sys
from typing import Annotated

import typer

from taoremote.cli_shared import FormatOpt, globals_of

sweep_app = typer.Typer(
    help="Run many variations of one training over every free GPU of the hosts (grid, random, tpe).",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


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

    g = globals_of(ctx)
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

    g = globals_of(ctx)
    raise typer.Exit(sweep_cmds.status_cmd(name, actions.check_format(fmt or g.fmt)))


@sweep_app.command("best")
def sweep_best_command(ctx: typer.Context, name: str, fmt: FormatOpt = None) -> None:
    """The best trial: params, metric, results dir, newest checkpoint, evaluate/export commands."""
    from taoremote import actions, sweep_cmds

    g = globals_of(ctx)
    raise typer.Exit(sweep_cmds.best_cmd(g, name, actions.check_format(fmt or g.fmt)))


@sweep_app.command("stop")
def sweep_stop_command(ctx: typer.Context, name: str) -> None:
    """Stop every trial of sweep NAME (yours) on its hosts; queued trials never start."""
    from taoremote import sweep_cmds

    raise typer.Exit(sweep_cmds.stop_cmd(globals_of(ctx), name))


@sweep_app.command("list")
def sweep_list_command(ctx: typer.Context, fmt: FormatOpt = None) -> None:
    """Every sweep in the state file, with its trials' states."""
    from taoremote import actions, sweep_cmds

    g = globals_of(ctx)
    raise typer.Exit(sweep_cmds.list_cmd(actions.check_format(fmt or g.fmt)))
