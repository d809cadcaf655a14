"""From `taoremote [options] <task> <subtask> args...` to a checked RunSpec, then to a job.

parse_task_argv is pure. plan_launch reads config files and asks the target host (through its
Executor, in one round trip) where mount sources are and whether its driver can run the image.
"""

from __future__ import annotations

import getpass
import os
import secrets
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from taoremote import paths
from taoremote.command import (
    BoundMount,
    RunSpec,
    build_run_argv,
    container_name,
    render_command,
    with_env_file,
)
from taoremote.config import Mount, MountsConfig, destination_key, missing_from_env, uncarriable_in
from taoremote.errors import ConfigError, PreflightError, UsageError
from taoremote.gpus import parse_gpus, resolve_auto, selected
from taoremote.hosts import Executor
from taoremote.tasks import TaskMap, is_task_group, launcher_shell_warnings, resolve_image

if TYPE_CHECKING:
    from taoremote.probe import PathState, Probe

# The launcher's interactive case runs bash; busybox-based and minimal images only have sh.
INTERACTIVE_SHELL = ("/bin/sh", "-c", "command -v bash >/dev/null 2>&1 && exec bash || exec sh")


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


@dataclass(frozen=True)
class LaunchPlan:
    spec: RunSpec
    env_values: Mapping[str, str]
    secret_names: frozenset[str]
    host: str
    notes: tuple[str, ...] = field(default=())
    image_present: bool = True  # False: pull it before `docker run` (after the preflight said yes)
    warnings: tuple[str, ...] = ()
    results: paths.ResultsDir | None = None  # a non-empty results dir of a `train` (--clean-results)


def parse_task_argv(argv: Sequence[str], task_map: TaskMap) -> TaskRequest:
    """`[group] task [subtask args... | run cmd... ]`, args kept one element each, untouched."""
    if not argv:
        raise UsageError("no task given; see `taoremote --help` and `taoremote info`")
    group = argv[0] if is_task_group(task_map, argv[0]) else None
    rest = list(argv[1:] if group else argv)
    if not rest:
        tasks = ", ".join(sorted(task_map.groups.get(group or "", {})))
        raise UsageError(f"task group '{group}' needs a task; its tasks: {tasks}")
    task, args = rest[0], rest[1:]
    warnings: list[str] = []
    if group is not None:
        args, mounts = _take_volume_args(args)
    else:
        mounts = ()
        if "--volume" in args:
            warnings.append(
                f"--volume reaches {task} as one of its arguments: the TAO launcher takes --volume "
                f"SRC:DST as a mount only after a task group (`model {task} ...`)"
            )
    if not args:
        return TaskRequest(group, task, (), None, mounts, tuple(warnings))
    if args[0] == "run":
        if len(args) == 1:
            raise UsageError(f"`{task} run` needs a command to run in the task's image")
        warnings += launcher_shell_warnings(args[1:], run=True)
        return TaskRequest(group, task, tuple(args[1:]), "run", mounts, tuple(warnings))
    warnings += launcher_shell_warnings(args)
    return TaskRequest(group, task, (task, *args), args[0], mounts, tuple(warnings))


def _take_volume_args(args: list[str]) -> tuple[list[str], tuple[Mount, ...]]:
    """The 6.x launcher turns `--volume SRC:DST[:ro]` anywhere in the args into a mount. It has the
    group grammar only: with the 4.x grammar (no group) --volume reaches the task, as it did there."""
    kept: list[str] = []
    mounts: list[Mount] = []
    i = 0
    while i < len(args):
        if args[i] == "--volume":
            value = args[i + 1] if i + 1 < len(args) else ""
            parts = value.split(":")
            valid_mode = parts[2:] in ([], ["ro"], ["rw"])
            if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/") or not valid_mode:
                raise UsageError(f"--volume {value or '(nothing)'}: expected SRC:/container/path[:ro]")
            mounts.append(Mount(parts[0], parts[1], read_only=parts[2:] == ["ro"]))
            i += 2
            continue
        kept.append(args[i])
        i += 1
    return kept, tuple(mounts)


def env_values(config: MountsConfig) -> dict[str, str]:
    missing = missing_from_env(config)
    if missing:
        raise ConfigError(
            f"{config.path}: environment variables not set on this machine: {', '.join(missing)}"
        )
    values = {e.name: e.value for e in config.envs if e.value is not None}
    # JSON values were checked with the file; these came from the launching machine's environment
    bad = [
        f"{e.name} (from ${e.from_env}: {' and '.join(uncarriable_in(e.value))})"
        for e in config.envs
        if e.from_env and e.value is not None and uncarriable_in(e.value)
    ]
    if bad:
        raise ConfigError(f"{config.path}: env values a docker env-file cannot carry: {', '.join(bad)}")
    return values


def plan_launch(
    request: TaskRequest,
    config: MountsConfig,
    task_map: TaskMap,
    opts: LaunchOptions,
    ex: Executor | None,
) -> LaunchPlan:
    """ex is None for a dry run: nothing is asked of the host, sources are shown as written."""
    image = resolve_image(
        task_map,
        request.group,
        request.task,
        override_registry=opts.override_registry,
        image_override=opts.image,
    )
    mounts = (*config.mounts, *request.extra_mounts)
    _check_duplicate_destinations(mounts)
    values = env_values(config)
    gpus = parse_gpus(opts.gpus)
    notes: list[str] = []
    host = ex.host if ex is not None else (opts.host or "local")
    path_args = paths.find_path_args(request.command[1:]) if request.subtask not in (None, "run") else []
    warnings = [f"{config.path}: {w}" for w in config.warnings] + _env_warnings(config)
    states: Mapping[str, PathState] = {}

    image_present = True
    if ex is None:
        bound = tuple(
            BoundMount(_local_source(m.source) if opts.host is None else m.source, m.destination, m.read_only)
            for m in mounts
        )
    else:
        from taoremote import preflight  # the probe and its verdicts: not needed for a dry run

        check_driver = opts.preflight and gpus.kind != "none"
        needs_gpu_facts = check_driver or gpus.kind == "auto"
        probed = [m.source for m in mounts] + paths.probe_paths(path_args, mounts)
        probe = _probe(ex, image, probed, gpu=needs_gpu_facts)
        bound = _bind_mounts(host, mounts, probe)
        states = probe.paths
        image_present = probe.image_env is not None
        facts = preflight.host_facts(probe, host=host) if needs_gpu_facts else None
        if gpus.kind == "auto" and facts is not None:
            gpus = resolve_auto(gpus, facts.gpus)
            notes.append(f"--gpus {opts.gpus}: chose GPU {', '.join(gpus.devices)} (least loaded)")
        if check_driver and facts is not None:
            # only the GPUs the container gets: a GeForce display card must not veto the data-center
            # cards chosen with --gpus device=1,2
            given = replace(facts, gpus=selected(facts.gpus, gpus))
            verdict = preflight.check_cuda_compat(
                host,
                given,
                preflight.resolve_image_cuda(image, probe),
                host_disable_require=probe.host_disable_require,
            )
            if not verdict.ok:
                raise PreflightError(verdict.message)
            notes.extend(verdict.notes)

    report = paths.check_path_args(path_args, mounts, states, subtask=request.subtask)
    if report.errors and opts.preflight:
        raise PreflightError("; ".join(report.errors) + " (--no-preflight launches anyway)")
    # --no-preflight: the user knows better (e.g. a spec under a root-only directory the SSH user
    # cannot look into): say it, don't block it
    warnings.extend([*report.errors, *report.warnings])

    job_id = secrets.token_hex(4)
    interactive = not request.command
    if interactive and not opts.terminal:
        raise UsageError(
            f"`{request.task}` with no subtask opens an interactive shell, which needs a terminal "
            f"(stdin and stdout are not one here); give a subtask, or `{request.task} run CMD...`"
        )
    spec = RunSpec(
        image=image,
        command=request.command or INTERACTIVE_SHELL,
        job_id=job_id,
        task=request.task,
        mounts=bound,
        env_names=tuple(values),
        options=config.options,
        gpus=str(gpus),
        tty=opts.terminal if config.options.tty is None else (config.options.tty and opts.terminal),
        interactive=interactive,
        detach=opts.detach,
        labels=(
            ("taoremote.task", request.task),
            ("taoremote.command", command_label(request.command)),
            ("taoremote.gpus", str(gpus)),
            ("taoremote.started", datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")),
            ("taoremote.user", local_user()),
        ),
        fixed_env=launcher_env(config),
    )
    secret_names = frozenset(e.name for e in config.envs if e.secret)
    return LaunchPlan(
        spec,
        values,
        secret_names,
        host,
        tuple(notes),
        image_present,
        tuple(warnings),
        report.results,
    )


def launcher_env(config: MountsConfig) -> tuple[tuple[str, str], ...]:
    """What the launcher adds to every container (TAO's containers read it); the file's own value wins."""
    if any(e.name == "TAO_CLIENT_TYPE" and e.value is not None for e in config.envs):
        return ()
    return (("TAO_CLIENT_TYPE", "launcher"),)


# One argv element holds the whole label, and Linux refuses any single one over 128 KiB (E2BIG):
# docker itself takes 200 KB of arguments, so only what `list` shows is shortened.
COMMAND_LABEL_MAX = 4096


def command_label(command: Sequence[str]) -> str:
    if not command:
        return "(interactive shell)"
    text = shlex.join(command)
    return text if len(text) <= COMMAND_LABEL_MAX else text[: COMMAND_LABEL_MAX - 3] + "..."


def without_results_warning(plan: LaunchPlan) -> LaunchPlan:
    kept = tuple(w for w in plan.warnings if not w.startswith("results directory "))
    return replace(plan, warnings=kept, results=None)


def wandb_needs_root(config: MountsConfig) -> str | None:
    """The one W&B rule, for the launch warning and for `doctor`: TAO's W&B logging needs the
    container to run as root, so DockerOptions.user with any WANDB_* variable is worth a warning -
    unless W&B is switched off (WANDB_MODE=disabled, WANDB_DISABLED=true)."""
    values = {e.name: (e.value or "") for e in config.envs}
    if not config.options.user or not any(name.startswith("WANDB_") for name in values):
        return None
    if values.get("WANDB_MODE", "").lower() == "disabled" or values.get("WANDB_DISABLED", "").lower() in (
        "true",
        "1",
        "yes",
    ):
        return None
    return (
        f"DockerOptions.user is {config.options.user} and W&B is configured: TAO's W&B logging needs the "
        'container to run as root (remove "user" for runs that log to W&B)'
    )


def _env_warnings(config: MountsConfig) -> list[str]:
    rule = wandb_needs_root(config)
    return [rule] if rule else []


def describe_plan(plan: LaunchPlan) -> str:
    """The dry run: the exact command, secrets masked, and where it would run."""
    shown = {k: ("****" if k in plan.secret_names else v) for k, v in plan.env_values.items()}
    lines = [f"# host: {plan.host}", f"# job: {container_name(plan.spec.task, plan.spec.job_id)}"]
    if plan.env_values:
        where = "uploaded over SFTP" if plan.host != "local" else "in a private temp dir"
        lines.append(
            f"# env values reach the container through a 0600 --env-file {where}, deleted once it exists:"
        )
        lines.extend(f"#   {k}={v}" for k, v in shown.items())
        lines.append(render_command(build_run_argv(with_env_file(plan.spec, "<env-file>"))))
    else:
        lines.append(render_command(build_run_argv(plan.spec)))
    lines.extend(f"# note: {n}" for n in plan.notes)
    lines.extend(f"# warning: {w}" for w in plan.warnings)
    return "\n".join(lines)


def _probe(ex: Executor, image: str, sources: Sequence[str], *, gpu: bool) -> Probe:
    from taoremote.probe import build_probe_argv, parse_probe

    result = ex.run(build_probe_argv(image, list(sources), gpu=gpu), timeout=60)
    if result.returncode != 0:
        raise PreflightError(f"host {ex.host}: the preflight probe failed: {result.stderr.strip()[:300]}")
    return parse_probe(result.stdout, host=ex.host, gpu=gpu)


def _bind_mounts(host: str, mounts: Sequence[Mount], probe: Probe) -> tuple[BoundMount, ...]:
    bound, missing = [], []
    for index, mount in enumerate(mounts):
        state = probe.paths.get(mount.source)
        if state is None or not state.exists:
            missing.append(f"Mounts[{index}] {mount.source} -> {mount.destination}")
            continue
        bound.append(BoundMount(state.resolved, mount.destination, mount.read_only))
    if missing:
        where = "this machine" if host == "local" else f"host {host}"
        raise PreflightError(f"mount source missing on {where}: {'; '.join(missing)}")
    return tuple(bound)


def _check_duplicate_destinations(mounts: Sequence[Mount]) -> None:
    seen: set[str] = set()
    for mount in mounts:
        key = destination_key(mount.destination)
        if key in seen:
            raise UsageError(f"two mounts have the destination {mount.destination}")
        seen.add(key)


def _local_source(source: str) -> str:
    return os.path.abspath(os.path.expanduser(source))


def local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
