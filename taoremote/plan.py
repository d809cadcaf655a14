"""A TaskRequest, the mounts file and the host's answers → a checked LaunchPlan. PURE, in two steps around
the one host round trip:

    prepared = prepare(request, config, task_map, opts)     # image, mounts, env values, --gpus, path args
    probe = <run probe_argv(prepared) on the host>           # launch.run_probe, through the Executor
    plan = finish(prepared, probe, host=..., job_id=..., now=..., user=...)

A dry run is `finish` without a probe. The job id, the clock and the user are passed in, so every step
after the probe is a function of its arguments (tests/unit/test_plan.py).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from taoremote import paths
from taoremote.command import (
    BoundMount,
    RunSpec,
    build_run_argv,
    container_name,
    render_command,
    with_env_file,
)
from taoremote.config import Mount, MountsConfig
from taoremote.config_checks import destination_key
from taoremote.envs import env_values, env_warnings, launcher_env
from taoremote.errors import PreflightError, UsageError
from taoremote.gpus import GpuRequest, parse_gpus, resolve_auto, selected
from taoremote.request import LaunchOptions, TaskRequest
from taoremote.tasks import TaskMap, resolve_image

if TYPE_CHECKING:
    from taoremote.nvidia_smi import HostGpuFacts
    from taoremote.probe import PathState, Probe

# The launcher's interactive case runs bash; busybox-based and minimal images only have sh.
INTERACTIVE_SHELL = ("/bin/sh", "-c", "command -v bash >/dev/null 2>&1 && exec bash || exec sh")

# One argv element holds the whole label, and Linux refuses any single one over 128 KiB (E2BIG):
# docker itself takes 200 KB of arguments, so only what `list` shows is shortened.
COMMAND_LABEL_MAX = 4096


class Instant(Protocol):
    """A point in time in UTC (a `datetime` with tzinfo=timezone.utc): only its formatting is used."""

    def strftime(self, fmt: str, /) -> str: ...


@dataclass(frozen=True)
class Prepared:
    """Everything a launch knows before it asks the host."""

    request: TaskRequest
    config: MountsConfig
    opts: LaunchOptions
    image: str
    mounts: tuple[Mount, ...]  # the mounts file's, then --volume's
    env_values: Mapping[str, str]
    gpus: GpuRequest
    path_args: tuple[paths.PathArg, ...]
    warnings: tuple[str, ...]  # about the mounts file

    @property
    def check_driver(self) -> bool:
        return self.opts.preflight and self.gpus.kind != "none"

    @property
    def needs_gpu_facts(self) -> bool:
        return self.check_driver or self.gpus.kind == "auto"


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


# ---------------------------------------------------------------------------------------------- prepare


def prepare(request: TaskRequest, config: MountsConfig, task_map: TaskMap, opts: LaunchOptions) -> Prepared:
    """Every check that needs no host; the usage and config errors come out here, before any connection."""
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
    has_args = request.subtask not in (None, "run")
    path_args = tuple(paths.find_path_args(request.command[1:])) if has_args else ()
    warnings = tuple(f"{config.path}: {w}" for w in config.warnings) + env_warnings(config)
    return Prepared(request, config, opts, image, mounts, values, gpus, path_args, warnings)


def probe_argv(prepared: Prepared) -> tuple[str, ...]:
    """The one round trip: mount sources, the host paths of the path args, and (when needed) the GPUs."""
    from taoremote.probe import build_probe_argv  # the probe: not needed for a dry run

    mounts = prepared.mounts
    asked = [m.source for m in mounts] + paths.probe_paths(prepared.path_args, mounts)
    inspect = prepared.opts.inspect_image
    return build_probe_argv(prepared.image, asked, gpu=prepared.needs_gpu_facts, inspect_image=inspect)


def read_probe(prepared: Prepared, stdout: str, *, host: str) -> Probe:
    from taoremote.probe import parse_probe

    return parse_probe(
        stdout, host=host, gpu=prepared.needs_gpu_facts, inspect_image=prepared.opts.inspect_image
    )


def _check_duplicate_destinations(mounts: Sequence[Mount]) -> None:
    seen: set[str] = set()
    for mount in mounts:
        key = destination_key(mount.destination)
        if key in seen:
            raise UsageError(f"two mounts have the destination {mount.destination}")
        seen.add(key)


# ---------------------------------------------------------------------------------------------- finish


def finish(
    prepared: Prepared,
    probe: Probe | None,
    *,
    host: str,
    job_id: str,
    now: Instant,
    user: str,
    sources: Mapping[str, str] | None = None,
) -> LaunchPlan:
    """The plan from the host's answers. Without a probe (a dry run) mount sources are shown as SOURCES
    maps them (a local dry run resolves them on this machine), or as written."""
    answers = _answers(prepared, probe, host) if probe is not None else _unasked(prepared, sources or {})
    report = _check_path_args(prepared, answers.paths)
    _require_terminal_for_a_shell(prepared)
    labels = _labels(prepared, answers.gpus, answers.mounts, now=now, user=user)
    spec = _run_spec(prepared, answers.mounts, answers.gpus, job_id=job_id, labels=labels)
    secret_names = frozenset(e.name for e in prepared.config.envs if e.secret)
    warnings = (*prepared.warnings, *report.errors, *report.warnings)
    return LaunchPlan(
        spec,
        prepared.env_values,
        secret_names,
        host,
        answers.notes,
        answers.image_present,
        warnings,
        report.results,
    )


@dataclass(frozen=True)
class _Answers:
    """What the probe settled: bound mounts, the GPUs, the verdict's notes, path states, the image."""

    mounts: tuple[BoundMount, ...]
    gpus: GpuRequest
    notes: tuple[str, ...] = ()
    paths: Mapping[str, PathState] = field(default_factory=dict)
    image_present: bool = True


def _unasked(prepared: Prepared, sources: Mapping[str, str]) -> _Answers:
    mounts = tuple(
        BoundMount(sources.get(m.source, m.source), m.destination, m.read_only) for m in prepared.mounts
    )
    return _Answers(mounts, prepared.gpus)


def _answers(prepared: Prepared, probe: Probe, host: str) -> _Answers:
    mounts = _bind_mounts(host, prepared.mounts, probe)  # a missing source first, then the GPUs
    gpus, notes = _choose_and_check_gpus(prepared, probe, host)
    return _Answers(mounts, gpus, notes, probe.paths, probe.image_env is not None)


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


def _choose_and_check_gpus(prepared: Prepared, probe: Probe, host: str) -> tuple[GpuRequest, tuple[str, ...]]:
    """auto:N becomes the least loaded GPUs; then the driver verdict for the GPUs the container gets."""
    gpus = prepared.gpus
    if not prepared.needs_gpu_facts:
        return gpus, ()
    from taoremote import preflight  # the verdicts: not needed for a dry run

    facts = preflight.host_facts(probe, host=host)
    notes: list[str] = []
    if gpus.kind == "auto":
        gpus = resolve_auto(gpus, facts.gpus)
        notes.append(f"--gpus {prepared.opts.gpus}: chose GPU {', '.join(gpus.devices)} (least loaded)")
    if prepared.check_driver:
        notes.extend(_driver_verdict(prepared, probe, facts, gpus, host))
    return gpus, tuple(notes)


def _driver_verdict(
    prepared: Prepared, probe: Probe, facts: HostGpuFacts, gpus: GpuRequest, host: str
) -> tuple[str, ...]:
    from taoremote import preflight

    # only the GPUs the container gets: a GeForce display card must not veto the data-center
    # cards chosen with --gpus device=1,2
    given = replace(facts, gpus=selected(facts.gpus, gpus))
    image_cuda = preflight.resolve_image_cuda(prepared.image, probe)
    verdict = preflight.check_cuda_compat(
        host, given, image_cuda, host_disable_require=probe.host_disable_require
    )
    if not verdict.ok:
        raise verdict.error()
    return verdict.notes


def _check_path_args(prepared: Prepared, states: Mapping[str, PathState]) -> paths.PathReport:
    report = paths.check_path_args(
        prepared.path_args, prepared.mounts, states, subtask=prepared.request.subtask
    )
    if report.errors and prepared.opts.preflight:
        raise PreflightError("; ".join(report.errors) + " (--no-preflight launches anyway)")
    # --no-preflight: the user knows better (e.g. a spec under a root-only directory the SSH user
    # cannot look into): the errors become warnings, said but not blocking
    return report


def _require_terminal_for_a_shell(prepared: Prepared) -> None:
    task = prepared.request.task
    if not prepared.request.command and not prepared.opts.terminal:
        raise UsageError(
            f"`{task}` with no subtask opens an interactive shell, which needs a terminal "
            f"(stdin and stdout are not one here); give a subtask, or `{task} run CMD...`"
        )


def _labels(
    prepared: Prepared, gpus: GpuRequest, mounts: Sequence[BoundMount], *, now: Instant, user: str
) -> tuple[tuple[str, str], ...]:
    results = results_label(prepared, mounts)
    return (
        ("taoremote.task", prepared.request.task),
        ("taoremote.command", command_label(prepared.request.command)),
        ("taoremote.gpus", str(gpus)),
        ("taoremote.started", now.strftime("%Y-%m-%dT%H:%M:%SZ")),
        ("taoremote.user", user),
        *((("taoremote.results", results),) if results else ()),
    )


def results_label(prepared: Prepared, mounts: Sequence[BoundMount]) -> str | None:
    """Where the task's results dir (`-r DIR`, `results_dir=DIR`) lies on the host, through the bound
    mounts: `list` reads its status.json there. None when the args give none, it is under no mount, or
    the host path is not absolute or holds a newline or tab (`list` reads the label line by line)."""
    if prepared.request.subtask in (None, "run"):
        return None
    inside = paths.results_dir_of(prepared.request.command[1:])
    bound = [Mount(m.source, m.destination) for m in mounts]
    mapped = paths.host_path_of(inside, bound) if inside else None
    if mapped is None:
        return None
    host = mapped[1]
    return host if host.startswith("/") and "\n" not in host and "\t" not in host else None


def _run_spec(
    prepared: Prepared,
    mounts: tuple[BoundMount, ...],
    gpus: GpuRequest,
    *,
    job_id: str,
    labels: tuple[tuple[str, str], ...],
) -> RunSpec:
    request, options, terminal = prepared.request, prepared.config.options, prepared.opts.terminal
    return RunSpec(
        image=prepared.image,
        command=request.command or INTERACTIVE_SHELL,
        job_id=job_id,
        task=request.task,
        mounts=mounts,
        env_names=tuple(prepared.env_values),
        options=options,
        gpus=str(gpus),
        tty=terminal if options.tty is None else (options.tty and terminal),
        interactive=not request.command,
        detach=prepared.opts.detach,
        labels=labels,
        fixed_env=launcher_env(prepared.config),
    )


def command_label(command: Sequence[str]) -> str:
    if not command:
        return "(interactive shell)"
    text = shlex.join(command)
    return text if len(text) <= COMMAND_LABEL_MAX else text[: COMMAND_LABEL_MAX - 3] + "..."


def without_results_warning(plan: LaunchPlan) -> LaunchPlan:
    """The plan once --clean-results has emptied its results directory: that warning no longer holds."""
    stale = plan.results.warning if plan.results is not None else None
    kept = tuple(w for w in plan.warnings if w != stale)
    return replace(plan, warnings=kept, results=None)


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
