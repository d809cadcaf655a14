"""A sweep's state (issue 9): the stored definition and what resuming it means, the trials' launch protocol,
readers beside a writer, and the one-driver lock that a SIGKILL frees."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from taoremote.errors import UsageError
from taoremote.sweep_state import (
    DEFINITION_KEYS,
    SweepStore,
    check_name,
    definition_differences,
    job_id_for,
    state_dir,
)
from taoremote.trials import Trial

ROOT = Path(__file__).resolve().parents[2]
TASK = [
    "detectnet_v2",
    "train",
    "-e",
    "/workspace/specs/train.txt",
    "-r",
    "/workspace/results/lr",
    "-k",
    "key",
]
DEFINITION: dict[str, Any] = {
    "params": [("training_config.learning_rate", "0.1,0.01"), ("training_config.batch_size_per_gpu", "8,16")],
    "search": "grid",
    "trials": None,
    "seed": None,
    "metric": "mean average precision",
    "direction": "max",
    "max_parallel": 4,
    "gpus_per_trial": 1,
    "prune": None,
    "prune_warmup": None,
    "hosts": ["gpu1", "gpu2"],
    "task": TASK,
    "slurm": None,
    "sbatch": None,
}
TRIALS = [
    Trial(0, (("training_config.learning_rate", "0.1"), ("training_config.batch_size_per_gpu", "8"))),
    Trial(1, (("training_config.learning_rate", "0.1"), ("training_config.batch_size_per_gpu", "16"))),
]


@pytest.fixture
def store(tmp_path: Path) -> SweepStore:
    return SweepStore(str(tmp_path / "state" / "taoremote"))


def with_(**changes: Any) -> dict[str, Any]:
    return {**DEFINITION, **changes}


# ---------------------------------------------------------------------------------------------- where


def test_state_dir_follows_xdg_state_home() -> None:
    assert state_dir({"XDG_STATE_HOME": "/srv/state"}, "/home/me") == "/srv/state/taoremote"
    assert state_dir({}, "/home/me") == "/home/me/.local/state/taoremote"
    # the XDG spec: a relative path is invalid and ignored
    assert state_dir({"XDG_STATE_HOME": "state"}, "/home/me") == "/home/me/.local/state/taoremote"


def test_the_state_is_private(tmp_path: Path) -> None:
    directory = tmp_path / "state" / "taoremote"
    store = SweepStore(str(directory))
    store.define("lr", DEFINITION)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = [p for p in directory.iterdir() if p.name.startswith("sweeps.db")]
    assert {p.name for p in files} >= {"sweeps.db", "sweeps.db-wal"}
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)


def test_readers_never_make_the_state(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no sweep has been run yet"):
        SweepStore(str(tmp_path / "taoremote"), create=False)
    assert not (tmp_path / "taoremote").exists()


@pytest.mark.parametrize("name", ["", "-x", "a/b", "a b", "x" * 64, "..", "ü"])
def test_a_sweep_name_is_a_safe_file_name(name: str) -> None:
    with pytest.raises(UsageError, match="sweep name"):
        check_name(name)


# ---------------------------------------------------------------------------------------------- definition


def test_a_new_sweep_is_stored_and_a_bare_or_equal_rerun_resumes_it(store: SweepStore) -> None:
    made = store.define("lr", DEFINITION)
    assert re.fullmatch(r"[0-9a-f]{8}", made.sweep_id)
    assert made.definition["params"] == [list(p) for p in DEFINITION["params"]]  # as JSON keeps it
    assert store.define("lr", None) == made
    assert store.define("lr", dict(DEFINITION)) == made  # tuples and lists alike
    assert [s.name for s in store.sweeps()] == ["lr"]


def test_a_bare_run_of_an_unknown_sweep_is_a_usage_error(store: SweepStore) -> None:
    with pytest.raises(UsageError, match="no sweep named nope: give its --param"):
        store.define("nope", None)


@pytest.mark.parametrize(
    ("changes", "difference"),
    [
        (
            {"params": [("training_config.learning_rate", "0.1"), DEFINITION["params"][1]]},
            "--param training_config.learning_rate differs: stored 0.1,0.01, given 0.1",
        ),
        (
            {"params": DEFINITION["params"][:1]},
            "--param training_config.batch_size_per_gpu is stored but not given",
        ),
        (
            {"params": [*DEFINITION["params"], ("x.y", "1,2")]},
            "--param x.y is given but not stored",
        ),
        (
            {"params": DEFINITION["params"][::-1]},
            "--param order differs: stored training_config.learning_rate, training_config.batch_size_per_gpu",
        ),
        ({"seed": 7}, "--seed differs: stored none, given 7"),
        ({"max_parallel": 2}, "--max-parallel differs: stored 4, given 2"),
        ({"hosts": ["gpu1"]}, "--host differs: stored gpu1,gpu2, given gpu1"),
        (
            {"task": [*TASK[:-1], "other"]},
            "the task's arguments differ: stored `detectnet_v2 train -e /workspace/specs/train.txt -r "
            "/workspace/results/lr -k key`, given `detectnet_v2 train",
        ),
    ],
    ids=[
        "param-values",
        "param-dropped",
        "param-added",
        "param-order",
        "seed",
        "max-parallel",
        "hosts",
        "task",
    ],
)
def test_other_arguments_under_an_existing_name_are_a_usage_error_naming_the_difference(
    store: SweepStore, changes: dict[str, Any], difference: str
) -> None:
    store.define("lr", DEFINITION)
    with pytest.raises(UsageError) as caught:
        store.define("lr", with_(**changes))
    assert str(caught.value).startswith("sweep lr exists with other arguments: ")
    assert difference in str(caught.value)
    assert "resume it with `taoremote sweep run lr` alone" in str(caught.value)
    assert store.define("lr", None).definition["max_parallel"] == 4  # the stored one is untouched


def test_every_difference_is_named_at_once() -> None:
    found = definition_differences(DEFINITION, with_(seed=1, direction="min"))
    assert found == ["--seed differs: stored none, given 1", "--direction differs: stored max, given min"]


def test_the_definition_takes_its_keys_only(store: SweepStore) -> None:
    # where an env value could go in by mistake, it cannot
    with pytest.raises(ValueError, match="env"):
        store.define("lr", with_(env={"NGC_API_KEY": "s3cret"}))
    assert set(DEFINITION) == set(DEFINITION_KEYS)


# ---------------------------------------------------------------------------------------------- trials


def test_trials_are_queued_once_with_deterministic_job_ids(store: SweepStore) -> None:
    sweep = store.define("lr", DEFINITION)
    store.add_trials("lr", TRIALS)
    store.add_trials("lr", TRIALS)  # a resume queues them again: nothing doubles
    records = store.trials("lr")
    assert [(r.index, r.state, r.job_id) for r in records] == [
        (0, "queued", f"{sweep.sweep_id}-t0"),
        (1, "queued", f"{sweep.sweep_id}-t1"),
    ]
    assert records[1].params == TRIALS[1].params
    assert job_id_for(sweep.sweep_id, 1) == records[1].job_id


def test_a_trial_goes_queued_launching_running_finished_and_stays_finished(store: SweepStore) -> None:
    store.define("lr", DEFINITION)
    store.add_trials("lr", TRIALS)
    store.mark_launching("lr", 0, "gpu2", (1,), "taoremote-detectnet_v2-abc-t0")
    with pytest.raises(ValueError, match="launching -> launching"):  # never launched twice
        store.mark_launching("lr", 0, "gpu1", (0,), "taoremote-detectnet_v2-abc-t0")
    store.mark_running("lr", 0)
    started = store.trial("lr", 0).started
    store.mark_unknown("lr", 0)  # its host stopped answering
    store.mark_running("lr", 0)  # and came back
    store.record_metric("lr", 0, 0.71, 12)
    store.mark_finished("lr", 0, "failed", 137)
    record = store.trial("lr", 0)
    assert (record.state, record.host, record.gpus, record.exit_code) == ("failed", "gpu2", (1,), 137)
    assert (record.best_metric, record.best_epoch, record.started) == (0.71, 12, started)
    assert record.finished is not None and started is not None and record.finished >= started
    with pytest.raises(ValueError, match="failed -> succeeded"):
        store.mark_finished("lr", 0, "succeeded", 0)
    with pytest.raises(ValueError, match="queued -> running"):
        store.mark_running("lr", 1)


def test_stop_requests_and_events(store: SweepStore) -> None:
    store.define("lr", DEFINITION)
    assert not store.define("lr", None).stop_requested
    store.request_stop("lr")
    assert store.define("lr", None).stop_requested
    store.add_event("lr", "trial 0 started on gpu2 (GPU 1)", trial=0)
    store.add_event("lr", "stop requested")
    events = store.events("lr")
    assert [(e.trial, e.text) for e in events] == [
        (0, "trial 0 started on gpu2 (GPU 1)"),
        (None, "stop requested"),
    ]
    assert store.events("lr", after=events[0].id) == events[1:]


def run_python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_the_launching_record_is_on_disk_before_the_launch_even_after_sigkill(
    store: SweepStore, tmp_path: Path
) -> None:
    store.define("lr", DEFINITION)
    store.add_trials("lr", TRIALS)
    # a driver that records the launch, then dies by SIGKILL where it would run `docker run`
    driver = run_python(
        """
        import os, signal, sys
        from taoremote.sweep_state import SweepStore
        store = SweepStore(sys.argv[1])
        store.mark_launching("lr", 1, "gpu1", [0, 1], "taoremote-detectnet_v2-x-t1")
        os.kill(os.getpid(), signal.SIGKILL)
        """,
        store.directory,
    )
    assert driver.wait(timeout=30) == -signal.SIGKILL
    record = SweepStore(store.directory, create=False).trial("lr", 1)
    assert (record.state, record.host, record.gpus, record.container) == (
        "launching",
        "gpu1",
        (0, 1),
        "taoremote-detectnet_v2-x-t1",
    )


def test_a_reader_reads_while_a_writer_holds_a_transaction(store: SweepStore) -> None:
    store.define("lr", DEFINITION)
    store.add_trials("lr", TRIALS)
    writer = sqlite3.connect(os.path.join(store.directory, "sweeps.db"), isolation_level=None)
    assert writer.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE trials SET state = 'running' WHERE idx = 0")
    reader = SweepStore(store.directory, create=False)  # `sweep status`, meanwhile
    assert [r.state for r in reader.trials("lr")] == ["queued", "queued"]
    writer.execute("COMMIT")
    assert [r.state for r in reader.trials("lr")] == ["running", "queued"]
    writer.close()


# ---------------------------------------------------------------------------------------------- the lock


def test_a_second_driver_is_refused_naming_the_first(store: SweepStore) -> None:
    first = store.lock("lr")
    with pytest.raises(UsageError, match=rf"sweep lr already has a driver \(pid {os.getpid()} on .*, since "):
        store.lock("lr")
    first.release()
    store.lock("lr").release()
    assert store.lock("other") is not None  # one lock per sweep


def test_sigkill_of_the_driver_frees_the_lock_even_with_its_children_alive(store: SweepStore) -> None:
    holder = run_python(
        """
        import subprocess, sys, time
        from taoremote.sweep_state import SweepStore
        lock = SweepStore(sys.argv[1]).lock("lr")
        # an ssh or docker client that outlives the driver, started by code that keeps every descriptor open
        child = subprocess.Popen(["sleep", "60"], close_fds=False)
        print(child.pid, flush=True)
        time.sleep(60)
        """,
        store.directory,
    )
    assert holder.stdout is not None
    grandchild = int(holder.stdout.readline())
    try:
        with pytest.raises(UsageError, match=f"pid {holder.pid} on"):
            store.lock("lr")
        holder.send_signal(signal.SIGKILL)
        assert holder.wait(timeout=30) == -signal.SIGKILL
        os.kill(grandchild, 0)  # still alive
        store.lock("lr").release()  # and the lock is free
    finally:
        holder.kill()
        holder.wait(timeout=30)
        os.kill(grandchild, signal.SIGKILL)
        holder.stdout.close()


# ---------------------------------------------------------------------------------------------- start-up


def sqlite_imported(*args: str) -> bool:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    return re.search(r"\|\s*_?sqlite3\s*$", result.stderr, re.M) is not None


def test_help_does_not_import_sqlite() -> None:
    assert not sqlite_imported("-m", "taoremote", "--help")
    assert sqlite_imported("-c", "import taoremote.sweep_state")  # the check sees it when it is there
