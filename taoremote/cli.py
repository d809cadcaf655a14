"""The command line (with cli_sweep.py and cli_shared.py, the only modules that import typer): the root
options and the job commands. Each command loads, builds, executes, renders."""

# No `from __future__ import annotations` here: typer reads every command's annotations, and as strings
# it would have to eval each one on every start (~4 ms); written as objects they are built once, at import.

import contextlib
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from taoremote import __version__
from taoremote.cli_shared import HELP, FormatOpt, TaskDispatchGroup, globals_of
from taoremote.cli_sweep import sweep_app
from taoremote.errors import Interrupted, TaoRemoteError, UsageError

if TYPE_CHECKING:  # imported where a command runs: --help and --version need no dataclass built
    pass

app = typer.Typer(
    cls=TaskDispatchGroup,
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(sweep_app, name="sweep")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"taoremote {__version__}")
        raise typer.Exit()


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
    from taoremote.slurm_script import check_sbatch_args  # pure and light: start-up stays near typer's

    check_sbatch_args(sbatch or ())


@app.command(
    "_task",
    hidden=True,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
)
def task_command(ctx: typer.Context) -> None:
    from taoremote import run

    g = globals_of(ctx)
    code = run.run_task(ctx.meta["task_argv"], g)
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

    g = globals_of(ctx)
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
    raise typer.Exit(actions.stop_cmd(globals_of(ctx), wanted, stop_all=all_, all_users=all_users))


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

    raise typer.Exit(actions.logs_cmd(globals_of(ctx), job, follow=follow))


@app.command("prune")
def prune_command(
    ctx: typer.Context,
    all_users: Annotated[
        bool, typer.Option("--all-users", help="everyone's finished jobs, not only yours")
    ] = False,
) -> None:
    """Remove your finished taoremote jobs (their containers and exit codes) on the target host(s)."""
    from taoremote import actions

    raise typer.Exit(actions.prune_cmd(globals_of(ctx), all_users=all_users))


@app.command("info")
def info_command(
    ctx: typer.Context,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="also list every task and its image")
    ] = False,
    fmt: FormatOpt = None,
) -> None:
    """Show the config files in effect, task groups and images."""
    from taoremote import info

    g = globals_of(ctx)
    raise typer.Exit(info.info_cmd(g, verbose=verbose, fmt=fmt or g.fmt))


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

    g = globals_of(ctx)
    raise typer.Exit(actions.doctor_cmd(g, fmt=fmt or g.fmt, probe_node=probe_node))


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
    except Exception:
        # a bug: its traceback, masked here - typer put its own sys.excepthook over ours when app() ran
        _masked_traceback(*sys.exc_info())
        raise SystemExit(1) from None


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
