"""A sweep on Slurm, its pure parts: the one login-node command per tick read back, the trial dirs and spec
copies written byte-exact by one command (run under a real sh), the options a Slurm sweep keeps, which
Slurm jobs are the sweep's, and a state file from before the Slurm keys still resuming."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from taoremote.errors import UsageError
from taoremote.settings import Globals
from taoremote.sweep_slurm import definition_with_slurm, slurm_globals
from taoremote.sweep_slurm_driver import job_ids
from taoremote.sweep_slurm_poll import (
    SUBMITTING,
    build_poll_argv,
    build_prepare_trials_argv,
    parse_poll,
    prepare_trials_stdin,
)
from taoremote.sweep_state import DEFINITION_KEYS, SweepStore, TrialRecord


def _globals(**changes: Any) -> Globals:
    base = Globals(None, (), None, None, "all", False, False, True, "table")
    return Globals(**{**base.__dict__, **changes})


def _run(argv: tuple[str, ...], home: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), input=stdin, capture_output=True, text=True, env=_env(home, "/usr/bin:/bin")
    )


def _env(home: Path, path: str) -> dict[str, str]:
    return {"HOME": str(home), "PATH": path}


def test_the_trial_dirs_and_spec_copies_are_written_byte_exact_by_one_command(tmp_path: Path) -> None:
    odd = "a: 1\n  'quoted' \"x\" $HOME `cmd` \\n\n\ttab\nno newline at the end"
    argv = build_prepare_trials_argv(
        [("~/out/trial-0", "~/out/trial-0/spec.txt"), ("~/out/trial-1", None), ("~/out/trial-2", "~/s/2.txt")]
    )
    stdin = prepare_trials_stdin([odd, "b: 2\n"])

    done = _run(argv, tmp_path, stdin)

    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "trial-0" / "spec.txt").read_bytes() == odd.encode()
    assert (tmp_path / "out" / "trial-1").is_dir() and not any((tmp_path / "out" / "trial-1").iterdir())
    assert (tmp_path / "s" / "2.txt").read_text() == "b: 2\n"
    assert odd not in " ".join(argv)  # spec texts travel on stdin, never in an argv


def test_spec_copies_cut_short_fail_the_command(tmp_path: Path) -> None:
    argv = build_prepare_trials_argv([("~/t0", "~/t0/spec.txt"), ("~/t1", "~/t1/spec.txt")])
    done = _run(argv, tmp_path, prepare_trials_stdin(["only one"]))
    assert done.returncode != 0 and "cut short" in done.stderr


def test_one_poll_reads_slurms_listing_and_each_trials_new_status_lines(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    squeue = bin_dir / "squeue"
    squeue.write_text("#!/bin/sh\necho '12_1|RUNNING|None|taoremote job=abc user=me'\n")
    squeue.chmod(0o755)
    jobs = tmp_path / ".cache" / "taoremote" / "slurm" / "abc"
    jobs.mkdir(parents=True)
    (jobs / "meta").write_text(json.dumps({"task": "detectnet_v2", "tasks": 2, "user": "me"}) + "\n")
    (jobs / "slurm_id").write_text("12\n")
    (jobs / "exit_code.0").write_text("3\n")
    (tmp_path / "s0.json").write_text('{"epoch": 1}\n{"epoch": 2}\n')
    argv = build_poll_argv([(0, len('{"epoch": 1}\n'), "~/s0.json"), (1, 0, "~/missing.json")])

    done = subprocess.run(
        list(argv), capture_output=True, text=True, env=_env(tmp_path, f"{bin_dir}:/usr/bin:/bin")
    )
    listing, grown = parse_poll(done.stdout)

    assert done.returncode == 0, done.stderr
    assert [r.slurm_id for r in listing.queue] == ["12_1"] and listing.squeue_rc == 0
    (d,) = listing.dirs
    assert (d.job_id, d.slurm_id, dict(d.exit_codes)) == ("abc", "12", {"exit_code.0": 3})
    assert grown == {0: '{"epoch": 2}\n', 1: ""}


def test_a_slurm_sweep_keeps_its_login_node_and_sbatch_args_for_a_bare_resume() -> None:
    g = _globals(slurm="login1", sbatch_args=("--partition=gpu",))
    definition = definition_with_slurm({"hosts": []}, g)
    assert definition == {"hosts": [], "slurm": "login1", "sbatch": ["--partition=gpu"]}

    resumed = slurm_globals(_globals(), definition)  # `taoremote sweep run NAME`, no --slurm

    assert (resumed.slurm, resumed.sbatch_args) == ("login1", ("--partition=gpu",))
    assert slurm_globals(_globals(), {"slurm": None}).slurm is None  # a host sweep stays on its hosts


def test_another_slurm_than_the_sweep_was_run_on_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--slurm login1"):
        slurm_globals(_globals(slurm="login2"), {"slurm": "login1"})
    with pytest.raises(UsageError, match="run on hosts"):
        slurm_globals(_globals(slurm="login2"), {"slurm": None})


def test_the_sweeps_slurm_jobs_are_its_array_each_tpe_trial_and_a_submit_in_flight() -> None:
    def r(i: int, container: str | None) -> TrialRecord:
        return TrialRecord(i, (), "running", f"sw1-t{i}", container=container)

    assert job_ids([r(0, "41_0"), r(1, "41_1")], "sw1") == ["sw1"]
    assert job_ids([r(0, "50"), r(1, f"{SUBMITTING}sw1-t1"), r(2, None)], "sw1") == ["sw1-t0", "sw1-t1"]


def test_a_sweep_stored_before_the_slurm_keys_existed_still_resumes(tmp_path: Path) -> None:
    store = SweepStore(str(tmp_path / "state"))
    old = {k: None for k in DEFINITION_KEYS if k not in ("slurm", "sbatch")}
    old.update(params=[["a", "1,2"]], search="grid", hosts=[], task=["x", "train"], gpus_per_trial=1)
    store._db.execute(  # as an older taoremote stored it
        "INSERT INTO sweeps (name, sweep_id, definition, created) VALUES ('old', 'abcd1234', ?, 0)",
        (json.dumps(old),),
    )
    store._db.commit()

    assert store.define("old", {**old, "slurm": None, "sbatch": None}).sweep_id == "abcd1234"
    with pytest.raises(UsageError, match="--slurm differs: stored none, given login1"):
        store.define("old", {**old, "slurm": "login1"})
