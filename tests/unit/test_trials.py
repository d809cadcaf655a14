"""trials.py: the --param grammar, the trials a grid or a seeded random search makes, the Optuna search
space, and each trial's task arguments (its own results dir, spec copy and overrides)."""

from __future__ import annotations

import ast
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from taoremote.errors import UsageError
from taoremote.trials import (
    MAX_GRID,
    Param,
    Trial,
    check_gpu_count,
    format_float,
    grid_trials,
    parse_param,
    parse_params,
    random_trials,
    results_dir_of,
    spec_of,
    to_optuna_distributions,
    trial_args,
    trial_dir_of,
    trial_from_values,
    trial_spec_path,
)

LR = "training_config.learning_rate.soft_start_annealing_schedule.max_learning_rate"

# --------------------------------------------------------------------------------------------------- grammar


@pytest.mark.parametrize(
    ("text", "param"),
    [
        ("bs=8,16", Param("bs", "values", values=("8", "16"))),
        (" bs = 8 , 16 ", Param("bs", "values", values=("8", "16"))),
        ("arch=resnet", Param("arch", "values", values=("resnet",))),
        ('size="3,224,224","3,112,112"', Param("size", "values", values=('"3,224,224"', '"3,112,112"'))),
        (
            "train.optim.lr_steps=[11,20],[5]",
            Param("train.optim.lr_steps", "values", values=("[11,20]", "[5]")),
        ),
        (f"{LR}=uniform(1e-5, 1e-3)", Param(LR, "uniform", low=1e-5, high=1e-3)),
        ("lr=loguniform(1e-5,1e-2)", Param("lr", "loguniform", low=1e-5, high=1e-2)),
        ("bs=int(4,32)", Param("bs", "int", low=4, high=32)),
        ("bs=int(8,8)", Param("bs", "int", low=8, high=8)),
        ("opt=choice(sgd,adam)", Param("opt", "choice", values=("sgd", "adam"))),
        ("x=-1,-2", Param("x", "values", values=("-1", "-2"))),
    ],
)
def test_a_param_reads_as_documented(text: str, param: Param) -> None:
    assert parse_param(text) == param


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("bs", "expected PATH=V1,V2"),
        ("=8", "expected PATH=V1,V2"),
        ("b s=8", "expected PATH=V1,V2"),
        ("bs=", "an empty value"),
        ("bs=8,,16", "an empty value"),
        ("bs=8,", "an empty value"),
        ("bs=8,16,8", "8 listed twice"),
        ("lr=normal(0,1)", "unknown normal()"),
        ("lr=uniform(1)", "takes two bounds"),
        ("lr=uniform(1,2,3)", "takes two bounds"),
        ("lr=uniform(a,2)", "'a' is not a number"),
        ("lr=uniform(2,1)", "low bound must be below"),
        ("lr=uniform(1,1)", "low bound must be below"),
        ("lr=uniform(0,inf)", "not a finite number"),
        ("lr=loguniform(0,1)", "positive low bound"),
        ("bs=int(4,8.5)", "'8.5' is not an integer"),
        ("bs=int(9,8)", "low bound must be below"),
        ("opt=choice()", "an empty value"),
    ],
)
def test_a_bad_param_is_a_usage_error_naming_it(text: str, why: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_param(text)
    assert f"--param {text}" in str(caught.value) or f"--param {text!r}" in str(caught.value)
    assert why in str(caught.value)
    assert caught.value.exit_code == 2


def test_params_are_checked_together_for_the_search() -> None:
    with pytest.raises(UsageError, match="at least one --param"):
        parse_params([])
    with pytest.raises(UsageError, match="--param bs given twice"):
        parse_params(["bs=8", "lr=1", "bs=16"])
    with pytest.raises(UsageError, match=r"--param lr: uniform\(\) samples; use --search random or tpe"):
        parse_params(["bs=8,16", "lr=uniform(0,1)"], "grid")
    assert len(parse_params(["bs=8,16", "lr=uniform(0,1)"], "random")) == 2
    assert len(parse_params(["bs=8,16", "lr=uniform(0,1)"], "tpe")) == 2


# ------------------------------------------------------------------------------------------------------ grid


def test_the_grid_is_the_cartesian_product_the_last_param_fastest() -> None:
    trials = grid_trials(parse_params([f"{LR}=1e-4,1e-3", "batch_size_per_gpu=8,16,32"]))
    assert [t.index for t in trials] == list(range(6))
    assert [tuple(v for _, v in t.params) for t in trials] == [
        ("1e-4", "8"),
        ("1e-4", "16"),
        ("1e-4", "32"),
        ("1e-3", "8"),
        ("1e-3", "16"),
        ("1e-3", "32"),
    ]
    assert trials[4] == Trial(4, ((LR, "1e-3"), ("batch_size_per_gpu", "16")))
    assert trials[4].describe() == "max_learning_rate=1e-3 batch_size_per_gpu=16"


def test_a_grid_too_big_to_mean_is_refused_before_it_is_built() -> None:
    params = parse_params([f"p{i}=1,2,3,4,5,6,7,8,9,10" for i in range(5)])
    assert MAX_GRID < 10**5
    with pytest.raises(UsageError, match="100000 trials"):
        grid_trials(params)


# ---------------------------------------------------------------------------------------------------- random


RANDOM = ["lr=loguniform(1e-5,1e-2)", "bs=int(4,32)", "opt=choice(sgd,adam)", "m=uniform(0,1)", "fixed=7"]


def test_random_trials_are_a_function_of_the_seed_and_pinned_as_text() -> None:
    params = parse_params(RANDOM, "random")
    trials = random_trials(params, 3, seed=42)
    assert trials == random_trials(params, 3, seed=42)
    assert trials != random_trials(params, 3, seed=43)
    # pinned: the draw order (trial by trial, param by param) and the %.6g text must never drift,
    # or a resumed sweep would disagree with the trials it stored
    assert trials == (
        Trial(0, (("lr", "0.000828477"), ("bs", "4"), ("opt", "adam"), ("m", "0.244892"), ("fixed", "7"))),
        Trial(1, (("lr", "0.00161962"), ("bs", "25"), ("opt", "sgd"), ("m", "0.590493"), ("fixed", "7"))),
        Trial(2, (("lr", "1.22855e-05"), ("bs", "10"), ("opt", "sgd"), ("m", "0.505355"), ("fixed", "7"))),
    )


def test_random_values_stay_inside_their_bounds() -> None:
    params = parse_params(["lr=loguniform(1e-5,1e-2)", "bs=int(4,6)", "m=uniform(-1,1)", "o=a,b"], "random")
    seen: dict[str, set[str]] = {"bs": set(), "o": set()}
    for trial in random_trials(params, 300, seed=7):
        values = dict(trial.params)
        assert 1e-5 <= float(values["lr"]) <= 1e-2
        assert -1 <= float(values["m"]) <= 1
        seen["bs"].add(values["bs"])
        seen["o"].add(values["o"])
    assert seen == {"bs": {"4", "5", "6"}, "o": {"a", "b"}}  # int() includes both ends


def test_a_random_search_needs_a_trial() -> None:
    with pytest.raises(UsageError, match="--trials 0"):
        random_trials(parse_params(RANDOM, "random"), 0, seed=1)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (3.0, "3.0"),
        (1e-5, "1e-05"),
        (0.123456789, "0.123457"),
        (1e20, "1e+20"),
        (-2.5, "-2.5"),
        (123456789.0, "1.23457e+08"),
    ],
)
def test_floats_are_written_with_six_significant_digits_and_stay_floats(value: float, text: str) -> None:
    assert format_float(value) == text


# ------------------------------------------------------------------------------------------------------- tpe


def test_optuna_is_imported_only_inside_the_tpe_function() -> None:
    source = Path(sys.modules["taoremote.trials"].__file__ or "").read_text()
    tree = ast.parse(source)
    top = {a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    top |= {n.module or "" for n in tree.body if isinstance(n, ast.ImportFrom)}
    assert not any(name.startswith("optuna") for name in top)
    assert "import optuna" in source  # the deferred import this test is about is really there


def test_without_optuna_tpe_is_a_usage_error_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna...` now raises ImportError
    monkeypatch.setitem(sys.modules, "optuna.distributions", None)
    with pytest.raises(UsageError, match=r"--search tpe needs Optuna: pip install 'taoremote\[tune\]'"):
        to_optuna_distributions(parse_params(RANDOM, "tpe"))


def test_the_search_space_maps_onto_optunas_distributions(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def distribution(kind: str) -> Any:
        return lambda *args, **kwargs: made.append((kind, args, kwargs)) or (kind, args, kwargs)

    fake = types.ModuleType("optuna.distributions")
    for kind in ("CategoricalDistribution", "IntDistribution", "FloatDistribution"):
        setattr(fake, kind, distribution(kind))
    package = types.ModuleType("optuna")
    package.distributions = fake  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "optuna", package)
    monkeypatch.setitem(sys.modules, "optuna.distributions", fake)
    space = to_optuna_distributions(parse_params(RANDOM, "tpe"))
    assert space == {
        "lr": ("FloatDistribution", (1e-5, 1e-2), {"log": True}),
        "bs": ("IntDistribution", (4, 32), {}),
        "opt": ("CategoricalDistribution", (("sgd", "adam"),), {}),
        "m": ("FloatDistribution", (0.0, 1.0), {"log": False}),
        "fixed": ("CategoricalDistribution", (("7",),), {}),
    }


def test_a_samplers_values_become_a_trial_written_as_a_random_draw_is() -> None:
    params = parse_params(RANDOM, "tpe")
    trial = trial_from_values(
        5, params, {"lr": 0.000123456789, "bs": 16, "opt": "adam", "m": 1, "fixed": "7"}
    )
    assert trial == Trial(
        5, (("lr", "0.000123457"), ("bs", "16"), ("opt", "adam"), ("m", "1.0"), ("fixed", "7"))
    )


# ------------------------------------------------------------------------------------------------------ gpus


@pytest.mark.parametrize(
    ("args", "gpus"),
    [
        (["-e", "/s.txt", "-r", "/r", "--gpus", "1"], 1),
        (["-e", "/s.txt", "-r", "/r", "--gpus", "2"], 2),
        (["-e", "/s.txt", "-r", "/r", "--gpu_index", "0", "1"], 2),
        (["-e", "/s.yaml", "results_dir=/r", "train.num_gpus=2"], 2),
        (["-e", "/s.yaml", "results_dir=/r", "train.gpu_ids=[0,1]"], 2),
        (["-e", "/s.txt", "-r", "/r"], 4),  # no count asked: nothing to disagree with
    ],
)
def test_a_task_gpu_count_that_agrees_passes(args: list[str], gpus: int) -> None:
    check_gpu_count(args, gpus)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["-e", "/s.txt", "-r", "/r", "--gpus", "2"], "--gpus 2 asks for 2 GPU(s)"),
        (["-e", "/s.txt", "-r", "/r", "--gpus=2"], "--gpus=2 asks for 2 GPU(s)"),
        (["-e", "/s.txt", "-r", "/r", "--gpu_index", "0", "1", "-k", "x"], "--gpu_index 0 1 asks for 2"),
        (["-e", "/s.yaml", "results_dir=/r", "gpus=2"], "gpus=2 asks for 2 GPU(s)"),
        (["-e", "/s.yaml", "results_dir=/r", "train.num_gpus=2"], "train.num_gpus=2 asks for 2 GPU(s)"),
        (["-e", "/s.yaml", "results_dir=/r", "train.gpu_ids=[0,1,2]"], "train.gpu_ids=[0,1,2] asks for 3"),
    ],
)
def test_a_task_gpu_count_that_disagrees_is_a_usage_error_naming_both(args: list[str], named: str) -> None:
    with pytest.raises(UsageError) as caught:
        check_gpu_count(args, 1)
    assert named in str(caught.value) and "--gpus-per-trial is 1" in str(caught.value)


# ------------------------------------------------------------------------------------------------- task args


@pytest.mark.parametrize(
    ("args", "found"),
    [
        (["-e", "/s.txt", "-r", "/w/results", "-k", "key"], (3, "/w/results")),
        (["--results_dir", "/w/results", "-e", "/s.txt"], (1, "/w/results")),
        (["-e", "/s.txt", "--results_dir=/w/results"], (2, "/w/results")),
        (["-e", "/s.yaml", "results_dir=/w/results", "train.num_epochs=2"], (2, "/w/results")),
    ],
)
def test_the_results_dir_is_found_in_each_form(args: list[str], found: tuple[int, str]) -> None:
    assert results_dir_of(args) == found


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["-e", "/s.txt", "-k", "key"], "give -r DIR (TF1) or results_dir=DIR"),
        (["-e", "/s.txt", "-r"], "give -r DIR (TF1) or results_dir=DIR"),
        (["-r", "/a", "results_dir=/b"], "results directory 2 times"),
        (["results_dir=/a", "train.results_dir=/a/train"], "train.results_dir=… would be shared"),
    ],
)
def test_no_single_results_dir_is_a_usage_error(args: list[str], why: str) -> None:
    with pytest.raises(UsageError) as caught:
        results_dir_of(args)
    assert why in str(caught.value)


def test_the_spec_is_found_in_each_form() -> None:
    assert spec_of(["-e", "/s.txt", "-r", "/r"]) == (1, "/s.txt")
    assert spec_of(["--experiment_spec_file", "/s.txt"]) == (1, "/s.txt")
    assert spec_of(["-r", "/r", "experiment_spec=/s.yaml"]) == (2, "/s.yaml")
    assert spec_of(["-r", "/r"]) is None


def test_trial_dirs_sit_below_the_results_dir() -> None:
    assert trial_dir_of("/w/results", 3) == "/w/results/trial-3"
    assert trial_dir_of("/w/results/", 0) == "/w/results/trial-0"
    assert trial_spec_path("/w/results/trial-3") == "/w/results/trial-3/spec.txt"


def test_a_tf1_trial_gets_its_results_dir_and_its_spec_copy() -> None:
    args = ("-e", "/w/specs/train.txt", "-r", "/w/results", "-k", "key", "--gpus", "1")
    trial_dir = trial_dir_of("/w/results", 2)
    assert trial_args(args, trial_dir, trial_spec_path(trial_dir), ()) == (
        "-e",
        "/w/results/trial-2/spec.txt",
        "-r",
        "/w/results/trial-2",
        "-k",
        "key",
        "--gpus",
        "1",
    )
    assert args[1] == "/w/specs/train.txt"  # the caller's args are not touched
    assert trial_args(
        ("--experiment_spec_file=/s.txt", "--results_dir=/r"), "/r/trial-0", "/r/trial-0/spec.txt", ()
    ) == (
        "--experiment_spec_file=/r/trial-0/spec.txt",
        "--results_dir=/r/trial-0",
    )


def test_a_pytorch_trial_keeps_its_spec_and_gets_overrides() -> None:
    args = ["-e", "/w/specs/train.yaml", "results_dir=/w/results", "train.optim.lr=2e-4", "encryption_key=k"]
    assert trial_args(args, "/w/results/trial-1", None, ("train.optim.lr=1e-4", "dataset.batch_size=8")) == (
        "-e",
        "/w/specs/train.yaml",
        "results_dir=/w/results/trial-1",
        "train.optim.lr=1e-4",  # replaces the user's own value in place: Hydra refuses a key given twice
        "encryption_key=k",
        "dataset.batch_size=8",
    )


def test_trial_args_refuse_what_would_break_the_trial() -> None:
    with pytest.raises(UsageError, match="no -e SPEC"):
        trial_args(["-r", "/r"], "/r/trial-0", "/r/trial-0/spec.txt", ())
    with pytest.raises(UsageError, match="--param results_dir: each trial's results dir is set by the sweep"):
        trial_args(["-e", "/s.yaml", "results_dir=/r"], "/r/trial-0", None, ("results_dir=/elsewhere",))
    with pytest.raises(UsageError, match="give -r DIR"):
        trial_args(["-e", "/s.txt"], "/r/trial-0", "/r/trial-0/spec.txt", ())
