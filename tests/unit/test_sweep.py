"""The sweep's pure parts (issue 9): the definition's checks, each trial's argv and spec copy, Optuna's
MedianPruner rule, the poll command's output read back, the ranking, and the TPE path's missing extra."""

from __future__ import annotations

import sys

import pytest

from taoremote import sweep, sweep_view
from taoremote.errors import DockerError, UsageError
from taoremote.request import TaskRequest
from taoremote.sweep_poll import parse_poll
from taoremote.sweep_state import TrialRecord
from taoremote.trials import Trial

TF1 = ("detectnet_v2", "train", "-e", "/ws/spec.txt", "-r", "/ws/out", "-k", "key")
YAML = ("dino", "train", "-e", "/ws/spec.yaml", "results_dir=/ws/out")
SPEC = "training_config {\n  batch_size_per_gpu: 8 # bs\n  learning_rate: 1e-3\n}\n"


def _plan(task: tuple[str, ...], *params: str, **options: object) -> sweep.SweepPlan:
    definition = sweep.make_definition(sweep.SweepOptions(params, task=task, **options), [])  # type: ignore[arg-type]
    request = TaskRequest(None, task[0], task, task[1])
    return sweep.make_plan(definition, request, None)


def test_a_protobuf_trial_gets_its_own_dir_and_a_spec_copy_differing_only_in_the_swept_line() -> None:
    plan = _plan(TF1, "training_config.batch_size_per_gpu=8,16")
    assert (plan.framework, plan.metric, plan.direction) == ("tf1", "mean average precision", "max")
    work = sweep.trial_work(plan, Trial(1, (("training_config.batch_size_per_gpu", "16"),)), SPEC)
    assert work.command == (
        "detectnet_v2", "train", "-e", "/ws/out/trial-1/spec.txt", "-r", "/ws/out/trial-1", "-k", "key",
    )  # fmt: skip
    assert work.spec_copy == ("/ws/out/trial-1/spec.txt", SPEC.replace(": 8 #", ": 16 #"))
    assert "-  batch_size_per_gpu: 8 # bs\n+  batch_size_per_gpu: 16 # bs" in work.spec_diff


def test_a_yaml_trial_gets_overrides_and_its_own_results_dir() -> None:
    plan = _plan(YAML, "train.optim.lr=0.1,0.01")
    work = sweep.trial_work(plan, Trial(0, (("train.optim.lr", "0.1"),)), None)
    assert work.command == (
        "dino",
        "train",
        "-e",
        "/ws/spec.yaml",
        "results_dir=/ws/out/trial-0",
        "train.optim.lr=0.1",
    )
    assert work.spec_copy is None
    assert (plan.framework, plan.metric) == ("pytorch", "val_mAP50")


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"trials": 3}, "--trials goes with --search random"),
        ({"search": "random"}, "needs --trials N"),
        ({"prune": "hyperband"}, "expected median"),
        ({"gpus_per_trial": 2}, "--gpus-per-trial is 2"),
    ],
)
def test_bad_options_are_usage_errors(options: dict[str, object], words: str) -> None:
    task = (*TF1, "--gpus", "1")
    with pytest.raises(UsageError, match=words):
        sweep.make_definition(sweep.SweepOptions(("a.b=1,2",), task=task, **options), [])  # type: ignore[arg-type]


def test_the_definition_holds_no_env_value_and_names_the_hosts() -> None:
    definition = sweep.make_definition(sweep.SweepOptions(("a.b=1,2",), task=TF1), ["gpu1", "gpu2"])
    assert definition["hosts"] == ["gpu1", "gpu2"] and definition["params"] == [["a.b", "1,2"]]


def test_median_pruning_compares_the_best_so_far_with_the_completed_trials_at_the_same_epoch() -> None:
    completed = [{1: 0.5, 2: 0.6, 3: 0.7}, {1: 0.3, 2: 0.4, 3: 0.5}, {1: 0.1, 2: 0.2}]
    # median at 1 is 0.3, at 2 is 0.4, at 3 is 0.6 (two reported)
    assert sweep.should_prune({1: 0.35, 2: 0.45}, completed, direction="max", warmup=0) is None
    assert sweep.should_prune({1: 0.35, 2: 0.45, 3: 0.55}, completed, direction="max", warmup=0) == (
        3,
        0.55,
        0.6,
    )
    assert sweep.should_prune({1: 0.2}, completed, direction="max", warmup=0) == (1, 0.2, 0.3)
    assert sweep.should_prune({1: 0.2}, completed, direction="max", warmup=2) is None  # warm-up
    assert sweep.should_prune({1: 0.2}, [], direction="max", warmup=0) is None  # nothing completed yet
    assert (
        sweep.should_prune({1: 0.2}, completed, direction="min", warmup=0) is None
    )  # a loss: lower is better


POLL = """\
@@sweep:ps@@
taoremote-detectnet_v2-ab12cd34-t0|running|Up 3 seconds
taoremote-detectnet_v2-ab12cd34-t1|exited|Exited (3) 1 second ago
@@sweep:ps-rc 0@@
@@sweep:status 0@@
{"epoch": 1, "max_epoch": 3}
{"epoch": 2, "max_ep
@@sweep:status-end 0@@
@@sweep:status 1@@

@@sweep:status-end 1@@
"""


def test_the_poll_reads_containers_exit_codes_and_what_each_status_file_grew_by() -> None:
    poll = parse_poll(POLL, host="gpu1", gpu_state=False)
    t0, t1 = poll.containers.values()
    assert (t0.state, t0.exit_code, t1.state, t1.exit_code) == ("running", None, "exited", 3)
    assert poll.grown == {0: '{"epoch": 1, "max_epoch": 3}\n{"epoch": 2, "max_ep', 1: ""}


def test_a_poll_whose_docker_failed_is_the_hosts_failure() -> None:
    text = "@@sweep:ps@@\nCannot connect to the Docker daemon\n@@sweep:ps-rc 1@@\n"
    with pytest.raises(DockerError, match="Cannot connect"):
        parse_poll(text, host="gpu1", gpu_state=False)


def _record(index: int, state: str, best: float | None) -> TrialRecord:
    return TrialRecord(index, (("lr", str(index)),), state, f"x-t{index}", best_metric=best, best_epoch=1)


def test_the_ranking_puts_the_best_first_and_failed_trials_last() -> None:
    records = [
        _record(0, "failed", 0.9),
        _record(1, "succeeded", 0.5),
        _record(2, "pruned", 0.7),
        _record(3, "succeeded", None),
    ]
    assert [r.index for r in sweep_view.ranking(records, "max")] == [2, 1, 3, 0]
    assert [r.index for r in sweep_view.ranking(records, "min")] == [1, 2, 3, 0]


def test_one_line_per_change_when_not_a_terminal() -> None:
    queued, running = _record(0, "queued", None), _record(0, "running", None)
    running = TrialRecord(0, running.params, "running", "x-t0", "gpu1", (2,))
    assert (
        sweep_view.change_line(queued, running, sweep_view.Live(), None)
        == "trial 0 [lr=0] running on gpu1 GPU 2"
    )
    live = sweep_view.Live(1, 3, 0.25)
    assert sweep_view.change_line(running, running, live, None) == "trial 0 [lr=0] epoch 1/3 metric 0.25"
    assert sweep_view.change_line(running, running, live, live) is None


def test_tpe_without_optuna_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from taoremote.sweep_tpe import TpeSearch

    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    plan = _plan(TF1, "training_config.batch_size_per_gpu=int(4,16)", search="tpe", trials=4)
    with pytest.raises(UsageError, match=r"taoremote\[tune\]"):
        TpeSearch(plan, [])
