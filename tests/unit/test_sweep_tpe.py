"""`--search tpe` with the real Optuna (the dev extra installs it): the study rebuilt from a sweep's state,
ask/tell; Optuna's absence refused before the sweep is stored (a real `taoremote` process, Optuna hidden by
a sitecustomize shim); and `sweep status`'s live progress, kept in the state by the driver."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from taoremote import sweep, sweep_view
from taoremote.request import TaskRequest
from taoremote.sweep_state import SweepStore, TrialRecord
from taoremote.sweep_tpe import TpeSearch

ROOT = Path(__file__).resolve().parents[2]
TASK = ("detectnet_v2", "train", "-e", "/ws/spec.txt", "-r", "/ws/out", "-k", "key")
LR, BS = "training_config.learning_rate", "training_config.batch_size_per_gpu"


def _plan(trials: int = 6) -> sweep.SweepPlan:
    params = (f"{LR}=loguniform(1e-4,1e-1)", f"{BS}=int(4,16)")
    options = sweep.SweepOptions(params, search="tpe", trials=trials, seed=3, task=TASK)
    definition = sweep.make_definition(options, [])
    return sweep.make_plan(definition, TaskRequest(None, TASK[0], TASK, TASK[1]), None)


def _record(index: int, state: str, lr: str, bs: str, best: float | None = None) -> TrialRecord:
    return TrialRecord(index, ((LR, lr), (BS, bs)), state, f"x-t{index}", best_metric=best)


def test_the_study_is_rebuilt_from_the_state_and_asks_within_the_space() -> None:
    records = [
        _record(0, "succeeded", "0.001", "8", 0.9),
        _record(1, "pruned", "0.05", "12", 0.2),
        _record(2, "failed", "0.0002", "4"),
        _record(3, "running", "0.01", "6"),  # still running: TPE ignores it until it is told
    ]
    tpe = TpeSearch(_plan(), records)
    told = [(t.state, t.value, t.params) for t in tpe.study.trials]
    assert told == [
        (optuna.trial.TrialState.COMPLETE, 0.9, {LR: 0.001, BS: 8}),
        (optuna.trial.TrialState.PRUNED, None, {LR: 0.05, BS: 12}),
        (optuna.trial.TrialState.FAIL, None, {LR: 0.0002, BS: 4}),
    ]
    asked = tpe.ask(4)
    assert asked.index == 4 and [p for p, _ in asked.params] == [LR, BS]
    values = dict(asked.params)
    assert 1e-4 <= float(values[LR]) <= 1e-1 and 4 <= int(values[BS]) <= 16
    tpe.tell(_record(4, "succeeded", values[LR], values[BS], 0.5))  # tells the asked trial itself
    assert tpe.study.trials[-1].state == optuna.trial.TrialState.COMPLETE
    assert tpe.study.trials[-1].value == 0.5 and len(tpe.study.trials) == 4
    tpe.tell(_record(3, "succeeded", "0.01", "6", 0.7))  # asked by a driver that died: added as a trial
    assert len(tpe.study.trials) == 5 and tpe.study.best_value == 0.9


def test_without_optuna_a_tpe_sweep_is_refused_in_one_line_before_it_is_stored(tmp_path: Path) -> None:
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "import sys\nsys.modules['optuna'] = None  # import optuna fails\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAOREMOTE_", "LAUNCHER_"))}
    env.update(PYTHONPATH=str(shim), HOME=str(tmp_path), XDG_STATE_HOME=str(tmp_path / "state"))
    argv = ["sweep", "run", "tpe1", "--search", "tpe", "--trials", "2", "--param", f"{BS}=int(4,16)", "--"]
    done = subprocess.run(
        [sys.executable, "-m", "taoremote", *argv, *TASK],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "taoremote: error: --search tpe needs Optuna: pip install 'taoremote[tune]'"
    ]
    listed = subprocess.run(
        [sys.executable, "-m", "taoremote", "sweep", "list"],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert "tpe1" not in listed.stdout  # nothing stored: the same command runs once Optuna is installed


def test_sweep_status_shows_the_progress_the_driver_recorded(tmp_path: Path) -> None:
    store = SweepStore(str(tmp_path))
    store.define("s", sweep.make_definition(sweep.SweepOptions((f"{BS}=8,16",), task=TASK), []))
    store.add_trials("s", sweep.initial_trials(_grid_plan()))
    store.record_progress("s", 0, 2, 3, 0.25)
    store.record_progress("s", 0, 3, 3, 0.5)  # the latest wins
    assert store.progress("s") == {0: (3, 3, 0.5)}
    lives = {i: sweep_view.Live(*p) for i, p in store.progress("s").items()}
    head, _, first, second = sweep_view.table(store.trials("s"), lives).splitlines()
    assert "progress" in head and "metric" in head
    assert "3/3" in first and "0.5" in first and "/" not in second.split("queued")[1]
    store.close()


def _grid_plan() -> sweep.SweepPlan:
    definition = sweep.make_definition(sweep.SweepOptions((f"{BS}=8,16",), task=TASK), [])
    return sweep.make_plan(definition, TaskRequest(None, TASK[0], TASK, TASK[1]), None)


@pytest.fixture(autouse=True)
def _quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
