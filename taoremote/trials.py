"""A sweep's trials (pure): the `--param` grammar, the trials it makes, and each trial's task arguments.

    --param PATH=V1,V2,...          values (grid: every combination; random/tpe: a choice)
    --param PATH=uniform(a,b)       a float between a and b          (random, tpe)
    --param PATH=loguniform(a,b)    a float, uniform in log(a)..log(b), 0 < a
    --param PATH=int(a,b)           an integer from a to b, both included
    --param PATH=choice(a,b,...)    one of the values

Commas inside quotes or brackets do not split values. Trials are numbered from 0.
- Grid order: the cartesian product in `--param` order, the last `--param` changing fastest (as nested
  loops written in that order); trial i is the i-th combination.
- Random order: one `random.Random(seed)`; trial 0 draws every param in `--param` order, then trial 1, ...
  Drawn floats are written with `%.6g` (plus `.0` when that reads as an integer, so a float stays a
  float in YAML), so the same seed gives the same text on every machine.
"""

from __future__ import annotations

import itertools
import math
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from random import Random  # a generator seeded by the caller: a pure function of the seed
from typing import Any, Literal, cast

from taoremote.errors import UsageError
from taoremote.paths import RESULTS_FLAGS, SPEC_FLAGS

Search = Literal["grid", "random", "tpe"]
ParamKind = Literal["values", "uniform", "loguniform", "int", "choice"]
MAX_GRID = 10_000  # a typo like 8 params x 10 values would otherwise be 10^8 trials
TUNE_EXTRA = "pip install 'taoremote[tune]'"

_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\((.*)\)\Z", re.S)
_INT = re.compile(r"[-+]?[0-9]+\Z")
_GPU_COUNT_KEYS = ("gpus", "num_gpus")  # TAO PyTorch `gpus=2`, `train.num_gpus=2`
_GPU_LIST_KEYS = ("gpu_ids",)  # `train.gpu_ids=[0,1]`


@dataclass(frozen=True)
class Param:
    """One `--param`. `values` for values and choice; `low`/`high` for uniform, loguniform and int."""

    path: str
    kind: ParamKind
    values: tuple[str, ...] = ()
    low: float = 0.0
    high: float = 0.0


@dataclass(frozen=True)
class Trial:
    index: int
    params: tuple[tuple[str, str], ...]  # (path, value as text), in --param order

    def describe(self) -> str:
        """`lr=1e-3 batch_size_per_gpu=8`: each path's last name, for tables."""
        return " ".join(f"{path.rsplit('.', 1)[-1]}={value}" for path, value in self.params)


def _split(text: str) -> list[str]:
    """Split on commas that are outside quotes, brackets and parentheses."""
    items, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    return [*items, text[start:]]


def _number(param: str, text: str, integer: bool = False) -> float:
    text = text.strip()
    try:
        if integer and not _INT.match(text):
            raise ValueError
        value = float(text)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise UsageError(f"--param {param}: {text!r} is not {kind}") from None
    if not math.isfinite(value):
        raise UsageError(f"--param {param}: {text!r} is not a finite number")
    return value


def parse_param(text: str) -> Param:
    path, sep, spec = text.partition("=")
    path = path.strip()
    if not sep or not path or re.search(r"\s", path):
        raise UsageError(f"--param {text!r}: expected PATH=V1,V2,... or PATH=uniform(a,b) and the like")
    call = _CALL.match(spec.strip())
    kind, body = (call.group(1), call.group(2)) if call else ("values", spec)
    items = _split(body)
    if any(not item.strip() for item in items):
        raise UsageError(f"--param {text}: an empty value")
    if kind in ("values", "choice"):
        values = tuple(item.strip() for item in items)
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise UsageError(f"--param {text}: {', '.join(twice)} listed twice")
        return Param(path, cast(ParamKind, kind), values=values)
    if kind not in ("uniform", "loguniform", "int"):
        raise UsageError(f"--param {text}: unknown {kind}(); expected uniform, loguniform, int or choice")
    if len(items) != 2:
        raise UsageError(f"--param {text}: {kind}() takes two bounds, low and high")
    low, high = (_number(text, item, integer=kind == "int") for item in items)
    if not low < high and not (kind == "int" and low == high):
        raise UsageError(f"--param {text}: the low bound must be below the high bound")
    if kind == "loguniform" and low <= 0:
        raise UsageError(f"--param {text}: loguniform() needs a positive low bound")
    return Param(path, cast(ParamKind, kind), low=low, high=high)


def parse_params(texts: Sequence[str], search: Search = "grid") -> tuple[Param, ...]:
    """Every `--param`, checked for the search: a grid takes only listed values."""
    if not texts:
        raise UsageError("give at least one --param PATH=V1,V2,...")
    params = tuple(parse_param(text) for text in texts)
    paths = [p.path for p in params]
    for path in sorted({p for p in paths if paths.count(p) > 1}):
        raise UsageError(f"--param {path} given twice; list all its values in one --param")
    for param in params:
        if search == "grid" and param.kind != "values":
            raise UsageError(f"--param {param.path}: {param.kind}() samples; use --search random or tpe")
    return params


def grid_trials(params: Sequence[Param]) -> tuple[Trial, ...]:
    size = math.prod(len(p.values) for p in params)
    if size > MAX_GRID:
        raise UsageError(f"the grid has {size} trials, more than {MAX_GRID}; use --search random --trials N")
    combos = itertools.product(*(p.values for p in params))
    return tuple(
        Trial(i, tuple(zip((p.path for p in params), combo, strict=True))) for i, combo in enumerate(combos)
    )


def format_float(value: float) -> str:
    text = f"{value:.6g}"
    return text if re.search(r"[.eEna]", text) else f"{text}.0"


def _draw(param: Param, rng: Random) -> str:
    if param.kind == "uniform":
        return format_float(rng.uniform(param.low, param.high))
    if param.kind == "loguniform":
        return format_float(math.exp(rng.uniform(math.log(param.low), math.log(param.high))))
    if param.kind == "int":
        return str(rng.randint(int(param.low), int(param.high)))
    return rng.choice(param.values)


def random_trials(params: Sequence[Param], trials: int, seed: int) -> tuple[Trial, ...]:
    """TRIALS trials drawn from one generator seeded with SEED: the same seed, the same trials."""
    if trials < 1:
        raise UsageError(f"--trials {trials}: give at least 1")
    rng = Random(seed)
    return tuple(Trial(i, tuple((p.path, _draw(p, rng)) for p in params)) for i in range(trials))


def to_optuna_distributions(params: Sequence[Param]) -> dict[str, Any]:
    """The search space as Optuna distributions, for `study.ask(...)` in the TPE driver. Optuna is an
    optional extra, imported here only: `--help`, grids and random searches never pay for it."""
    try:
        import optuna.distributions as dist
    except ImportError:
        raise UsageError(f"--search tpe needs Optuna: {TUNE_EXTRA}") from None
    space: dict[str, Any] = {}
    for p in params:
        if p.kind in ("values", "choice"):
            space[p.path] = dist.CategoricalDistribution(p.values)
        elif p.kind == "int":
            space[p.path] = dist.IntDistribution(int(p.low), int(p.high))
        else:
            space[p.path] = dist.FloatDistribution(p.low, p.high, log=p.kind == "loguniform")
    return space


def trial_from_values(index: int, params: Sequence[Param], values: Mapping[str, object]) -> Trial:
    """A trial from values a sampler chose (Optuna's `trial.params`), written as a random draw is."""
    texts = []
    for p in params:
        value = values[p.path]
        if p.kind in ("uniform", "loguniform") and isinstance(value, (int, float)):
            texts.append((p.path, format_float(float(value))))
        else:
            texts.append((p.path, str(value)))
    return Trial(index, tuple(texts))


# ---------------------------------------------------------------------------------------------- task args


def _key(arg: str) -> str:
    return arg.partition("=")[0].lstrip("+~")


def check_gpu_count(args: Sequence[str], gpus_per_trial: int) -> None:
    """A task argument that asks for another number of GPUs than each trial gets is a usage error."""
    for i, arg in enumerate(args):
        asked, text = None, arg
        numbers = list(itertools.takewhile(lambda a: _INT.match(a) is not None, args[i + 1 :]))
        if arg == "--gpus" and numbers:  # TF1: `--gpus 2`
            asked, text = int(numbers[0]), f"{arg} {numbers[0]}"
        elif arg == "--gpu_index" and numbers:  # TF1: `--gpu_index 0 1`
            asked, text = len(numbers), f"{arg} {' '.join(numbers)}"
        elif "=" in arg:
            leaf, value = _key(arg).rsplit(".", 1)[-1], arg.partition("=")[2]
            if leaf in (*_GPU_COUNT_KEYS, "--gpus") and _INT.match(value):
                asked = int(value)
            elif leaf in _GPU_LIST_KEYS and value.startswith("["):
                asked = len([v for v in value.strip("[]").split(",") if v.strip()])
        if asked is not None and asked != gpus_per_trial:
            raise UsageError(
                f"the task's {text} asks for {asked} GPU(s) but --gpus-per-trial is {gpus_per_trial}; "
                "make them agree"
            )


def _flag_value(args: Sequence[str], flags: frozenset[str], what: str) -> list[tuple[int, str, str]]:
    """(index, value, prefix) of each `FLAG VALUE` or `FLAG=VALUE`; prefix is what stays before it."""
    found = []
    for i, arg in enumerate(args):
        key, sep, value = arg.partition("=")
        if sep and key.lstrip("+") in flags:
            found.append((i, value, arg[: len(arg) - len(value)]))
        elif arg in flags and arg.startswith("-") and i + 1 < len(args):
            found.append((i + 1, args[i + 1], ""))
    if len(found) > 1:
        raise UsageError(f"the task's arguments give the {what} {len(found)} times; give it once")
    return found


def results_dir_of(args: Sequence[str]) -> tuple[int, str]:
    """Where the results dir is in the task's args: (index of the arg holding it, the dir)."""
    for arg in args:
        if "=" in arg and _key(arg).endswith(".results_dir"):
            raise UsageError(
                f"the task's {arg.partition('=')[0]}=… would be shared by every trial; "
                "leave it out, each trial's goes below its own results_dir"
            )
    found = _flag_value(args, RESULTS_FLAGS, "results directory")
    if not found:
        raise UsageError("a sweep needs the task's results directory: give -r DIR (TF1) or results_dir=DIR")
    return found[0][0], found[0][1]


def spec_of(args: Sequence[str]) -> tuple[int, str] | None:
    """Where the experiment spec is in the task's args (index of the arg holding it, the path)."""
    found = _flag_value(args, SPEC_FLAGS, "experiment spec")
    return (found[0][0], found[0][1]) if found else None


def trial_dir_of(results_dir: str, index: int) -> str:
    return posixpath.join(results_dir.rstrip("/") or "/", f"trial-{index}")


def trial_spec_path(trial_dir: str) -> str:
    """Where a protobuf spec's per-trial copy goes: in the trial's own results dir."""
    return posixpath.join(trial_dir, "spec.txt")


def trial_args(
    args: Sequence[str], trial_dir: str, spec_path: str | None, overrides: Sequence[str]
) -> tuple[str, ...]:
    """The task's args for one trial: its results dir, its spec copy (protobuf specs; None keeps the
    spec) and its `path=value` overrides (YAML specs), each replacing an override of the same key."""
    out = list(args)
    index, _ = results_dir_of(args)
    prefix = next(p for i, _, p in _flag_value(args, RESULTS_FLAGS, "results directory") if i == index)
    out[index] = prefix + trial_dir
    if spec_path is not None:
        spec = _flag_value(args, SPEC_FLAGS, "experiment spec")
        if not spec:
            raise UsageError("the task's arguments have no -e SPEC to point at the trial's spec copy")
        at, _, spec_prefix = spec[0]
        out[at] = spec_prefix + spec_path
    for override in overrides:
        if _key(override) in RESULTS_FLAGS or _key(override).endswith(".results_dir"):
            raise UsageError(f"--param {_key(override)}: each trial's results dir is set by the sweep")
        same = [i for i, arg in enumerate(out) if "=" in arg and _key(arg) == _key(override)]
        if same:
            out[same[0]] = override
        else:
            out.append(override)
    return tuple(out)
