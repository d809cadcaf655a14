"""A sweep, independent of where its trials run (PURE): the definition a `sweep run` stores, the trials it
makes, and for each trial the task's argv and its spec copy. The docker driver (sweep_run.py) places these
on GPUs of SSH hosts; a Slurm backend can render the same trials as one job array.

    definition = make_definition(options, hosts)       # what the state stores (no env value, ever)
    plan = make_plan(definition, request)               # the task, its results dir, spec kind, metric
    trials = initial_trials(plan)                       # grid / random (TPE asks as slots free up)
    work = trial_work(plan, trial, spec_text)           # argv, trial dir, spec copy (protobuf) or overrides

Also here, pure: Optuna's MedianPruner rule and the ranking of finished trials.
"""

from __future__ import annotations

import posixpath
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taoremote import specs, trials
from taoremote.errors import UsageError
from taoremote.progress import Direction, Framework, default_metric, metric_direction

if TYPE_CHECKING:
    from taoremote.request import TaskRequest

CHECKPOINT_SUFFIXES = (".tlt", ".hdf5", ".pth", ".ckpt", ".pt")


@dataclass(frozen=True)
class SweepOptions:
    """`sweep run`'s own options, as given (None: not given, the default applies)."""

    params: tuple[str, ...]
    search: str = "grid"
    trials: int | None = None
    seed: int = 0
    metric: str | None = None
    direction: str | None = None
    max_parallel: int | None = None
    gpus_per_trial: int = 1
    prune: str | None = None
    prune_warmup: int = 0
    task: tuple[str, ...] = ()


def make_definition(options: SweepOptions, hosts: Sequence[str]) -> dict[str, Any]:
    """The keys sweep_state.DEFINITION_KEYS stores, checked: a usage error comes out before anything."""
    if options.search not in ("grid", "random", "tpe"):
        raise UsageError(f"--search {options.search!r}: expected grid, random or tpe")
    params = trials.parse_params(options.params, options.search)  # type: ignore[arg-type]
    if options.search == "grid" and options.trials is not None:
        raise UsageError("--trials goes with --search random or tpe; a grid runs every combination")
    if options.search != "grid" and options.trials is None:
        raise UsageError(f"--search {options.search} needs --trials N")
    if options.direction not in (None, "max", "min"):
        raise UsageError(f"--direction {options.direction!r}: expected max or min")
    if options.prune not in (None, "median"):
        raise UsageError(f"--prune {options.prune!r}: expected median")
    if options.prune_warmup < 0:
        raise UsageError("--prune-warmup must be 0 or more")
    if options.gpus_per_trial < 1:
        raise UsageError("--gpus-per-trial must be at least 1")
    if options.max_parallel is not None and options.max_parallel < 1:
        raise UsageError("--max-parallel must be at least 1")
    if not options.task:
        raise UsageError("give the task after `--`: sweep run NAME --param ... -- [group] TASK train ARGS...")
    trials.check_gpu_count(options.task, options.gpus_per_trial)
    return {
        "params": [[p.path, text.partition("=")[2]] for p, text in zip(params, options.params, strict=True)],
        "search": options.search,
        "trials": options.trials,
        "seed": options.seed,
        "metric": options.metric,
        "direction": options.direction,
        "max_parallel": options.max_parallel,
        "gpus_per_trial": options.gpus_per_trial,
        "prune": options.prune,
        "prune_warmup": options.prune_warmup if options.prune else None,
        "hosts": list(hosts),
        "task": list(options.task),
    }


@dataclass(frozen=True)
class SweepPlan:
    definition: Mapping[str, Any]
    request: TaskRequest
    params: tuple[trials.Param, ...]
    args: tuple[str, ...]  # the task's args after the subtask
    results_dir: str  # container path; trial i's is results_dir/trial-<i>
    spec_path: str | None  # container path of the experiment spec
    spec_kind: specs.SpecKind | None
    metric: str | None
    direction: Direction
    framework: Framework

    @property
    def search(self) -> str:
        return str(self.definition["search"])

    @property
    def size(self) -> int:
        """How many trials the sweep makes in all."""
        count = self.definition.get("trials")
        if count is not None:
            return int(count)
        size = 1
        for p in self.params:
            size *= len(p.values)
        return size


def make_plan(definition: Mapping[str, Any], request: TaskRequest, framework: Framework | None) -> SweepPlan:
    """FRAMEWORK: from the image's tag (progress.framework_of); None guesses it from the results flag."""
    if request.subtask in (None, "run") or len(request.command) < 2:
        raise UsageError("a sweep runs a task's subtask, e.g. `-- detectnet_v2 train -e SPEC -r DIR`")
    search = definition["search"]
    params = trials.parse_params([f"{p}={v}" for p, v in definition["params"]], search)
    args = tuple(request.command[2:])
    index, results = trials.results_dir_of(args)
    spec = trials.spec_of(args)
    spec_path = spec[1] if spec else None
    kind = specs.spec_kind(spec_path) if spec_path else None
    if framework is None:  # `-r DIR` is TF1's; `results_dir=DIR` Hydra's
        framework = "tf1" if args[index] == results else "pytorch"
    metric, direction = definition.get("metric"), definition.get("direction")
    if metric is None:
        found = default_metric(request.task)
        metric, direction = (found[0], direction or found[1]) if found else (None, direction)
    direction = direction or (metric_direction(metric) if metric else "max")
    return SweepPlan(
        definition, request, params, args, results, spec_path, kind, metric, direction, framework
    )


def initial_trials(plan: SweepPlan) -> tuple[trials.Trial, ...]:
    """Every trial of a grid or a random search; none for TPE (each is asked of Optuna when a slot frees)."""
    if plan.search == "grid":
        return trials.grid_trials(plan.params)
    if plan.search == "random":
        return trials.random_trials(plan.params, plan.size, int(plan.definition.get("seed") or 0))
    return ()


@dataclass(frozen=True)
class TrialWork:
    """What running one trial takes, wherever it runs."""

    index: int
    trial_dir: str  # container path
    command: tuple[str, ...]  # the container's command: (task, subtask, *args)
    spec_copy: tuple[str, str] | None = None  # (container path, text) to write before the trial starts
    spec_diff: str = ""

    @property
    def status_dir(self) -> str:
        return self.trial_dir


def check_spec(plan: SweepPlan, spec_text: str | None) -> None:
    """Unknown, ambiguous or non-scalar spec paths: a usage error before anything starts."""
    if plan.spec_kind == "protobuf":
        if spec_text is None:
            raise UsageError(f"cannot read the spec {plan.spec_path}")
        specs.check_paths(spec_text, (p.path for p in plan.params), source=plan.spec_path or "the spec")


def trial_work(plan: SweepPlan, trial: trials.Trial, spec_text: str | None) -> TrialWork:
    trial_dir = trials.trial_dir_of(plan.results_dir, trial.index)
    copy: tuple[str, str] | None = None
    overrides: tuple[str, ...]
    diff, overrides = "", ()
    if plan.spec_kind == "protobuf" and spec_text is None:  # only the argv is wanted (`sweep best`)
        copy = (trials.trial_spec_path(trial_dir), "")
    elif plan.spec_kind == "protobuf":
        assert spec_text is not None
        edited = specs.apply_params(spec_text, trial.params, source=plan.spec_path or "the spec")
        copy = (trials.trial_spec_path(trial_dir), edited)
        diff = specs.spec_diff(spec_text, edited)
    else:
        overrides = specs.yaml_overrides(trial.params)
    args = trials.trial_args(plan.args, trial_dir, copy[0] if copy else None, overrides)
    command = (*plan.request.command[:2], *args)
    return TrialWork(trial.index, trial_dir, command, copy, diff)


def follow_up_command(
    plan: SweepPlan, work: TrialWork, subtask: str, checkpoint: str | None
) -> tuple[str, ...]:
    """`evaluate`/`export` of a trial: its args (spec copy or overrides) with SUBTASK, its own results dir
    below the trial's, and the checkpoint (`-m` TF1 style, `<subtask>.checkpoint=` for Hydra tasks)."""
    args = list(work.command[2:])
    index, _ = trials.results_dir_of(args)
    args[index] = args[index].replace(work.trial_dir, posixpath.join(work.trial_dir, subtask), 1)
    if checkpoint:
        args += ["-m", checkpoint] if plan.framework == "tf1" else [f"{subtask}.checkpoint={checkpoint}"]
    group = (plan.request.group,) if plan.request.group else ()
    return (*group, plan.request.command[0], subtask, *args)


# ---------------------------------------------------------------------------------------------- pruning


def should_prune(
    history: Mapping[int, float],
    completed: Sequence[Mapping[int, float]],
    *,
    direction: Direction,
    warmup: int,
) -> tuple[int, float, float] | None:
    """Optuna's MedianPruner (PercentilePruner at 50, interval 1), applied at each epoch e >= WARMUP that
    the trial reported: its best value up to e is worse than the median of the COMPLETED trials' values
    at e (those that reported e). The first such (epoch, best, median); None: keep it running."""
    best: float | None = None
    for epoch in sorted(history):
        value = history[epoch]
        best = value if best is None else (max(best, value) if direction == "max" else min(best, value))
        if epoch < warmup:
            continue
        others = [h[epoch] for h in completed if epoch in h]
        if not others:
            continue
        median = statistics.median(others)
        if (best < median) if direction == "max" else (best > median):
            return epoch, best, median
    return None


# ---------------------------------------------------------------------------------------------- ranking


def rank_key(state: str, best: float | None, direction: Direction, index: int) -> tuple[int, float, int]:
    """Trials with a metric first, best first; then those without; failed and stopped trials last."""
    failed = state in ("failed", "stopped", "unknown")
    if best is None:
        return (2 if failed else 1, 0.0, index)
    return (2 if failed else 0, -best if direction == "max" else best, index)
