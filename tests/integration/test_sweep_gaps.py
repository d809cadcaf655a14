"""`taoremote sweep` against the real dockerd and sshd, the parts the first tests left open (issue 9): a TPE
search run end to end and resumed after SIGKILL, a clearly bad trial pruned by the median rule, a host that
drops out mid-sweep and comes back, Ctrl-C with a remote host, `sweep status` with live progress, and what a
grid sweep imports. The test image's `train` scores best at learning rate 1e-3 and batch size 8."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import SshdFactory
from tests.integration.taorun import (
    REPO,
    start_taoremote,
    taoremote,
    wait_for,
    write_gpu_nvidia_smi,
)
from tests.integration.test_sweep import BS, LR, TASK, _containers, _env, _name, _status

pytestmark = pytest.mark.usefixtures("test_images", "clean_jobs")


def _rows(name: str, env: dict[str, str]) -> list[dict[str, object]]:
    """`sweep status --format json`, or [] before the sweep is stored."""
    result = taoremote(["sweep", "status", name, "--format", "json"], env)
    return json.loads(result.stdout) if result.returncode == 0 else []


def _score(lr: float, bs: int) -> float:
    """The test image's metric at the last epoch (scripts/tao-rig-train.sh)."""
    r = max(lr / 1e-3, 1e-3 / lr)
    return 1 / (1 + 2 * (r - 1) / (r + 1) + abs(bs - 8) / 8)


# ---------------------------------------------------------------------------------------------- TPE


def _trial_params(ws: Path, index: int) -> tuple[float, int]:
    """What trial INDEX really ran with: read back from its spec copy."""
    text = (ws / "out" / f"trial-{index}" / "spec.txt").read_text()
    lr = re.search(r"max_learning_rate: (\S+)", text)
    bs = re.search(r"batch_size_per_gpu: (\S+)", text)
    assert lr and bs
    return float(lr.group(1)), int(bs.group(1))


TPE = [
    "--search",
    "tpe",
    "--seed",
    "7",
    "--param",
    f"{LR}=loguniform(1e-4,1e-1)",
    "--param",
    f"{BS}=int(4,16)",
]


def test_a_tpe_search_launches_each_trial_as_optuna_suggests_and_ranks_them(tmp_path: Path) -> None:
    env, ws = _env(tmp_path, gpus=2, epoch_s="0.3", epochs=2)
    name = _name()
    result = taoremote(["sweep", "run", name, *TPE, "--trials", "5", *TASK], env)
    assert result.returncode == 0, result.stderr
    rows = _status(name, env)
    assert [(r["trial"], r["state"]) for r in rows] == [(i, "succeeded") for i in range(5)]
    assert len(_containers(name)) == 5
    for r in rows:  # each trial ran with the values the state holds for it (what Optuna suggested)
        params = r["params"]
        assert isinstance(params, dict)
        lr, bs = _trial_params(ws, int(r["trial"]))  # type: ignore[call-overload]
        assert lr == pytest.approx(float(params[LR]), rel=1e-9) and bs == int(params[BS])
        assert 1e-4 <= lr <= 1e-1 and 4 <= bs <= 16
        assert r["best_metric"] == pytest.approx(_score(lr, bs), abs=1e-4)  # told its real result
    assert len({(str(r["params"])) for r in rows}) == 5  # five different suggestions
    best = max(rows, key=lambda r: float(r["best_metric"]))  # type: ignore[arg-type]
    assert f"best: trial {best['trial']} " in result.stdout  # the ranking's head
    ranked = [
        int(line.split()[1]) for line in result.stdout.splitlines() if re.match(r"\s*\d+\s+\d+\s", line)
    ]
    expected = sorted(rows, key=lambda r: -float(r["best_metric"]))  # type: ignore[arg-type]
    assert ranked == [r["trial"] for r in expected]


def test_a_tpe_search_resumed_after_sigkill_keeps_its_trials_and_launches_none_twice(tmp_path: Path) -> None:
    env, _ = _env(tmp_path, gpus=2, epoch_s="1", epochs=3)
    name = _name()
    driver = start_taoremote(["sweep", "run", name, *TPE, "--trials", "4", *TASK], env)
    try:
        assert wait_for(lambda: len(_containers(name)) >= 2, timeout=60)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.communicate()
    before = {r["trial"]: r["params"] for r in _rows(name, env)}
    assert len(before) >= 2
    result = taoremote(["sweep", "run", name], env)  # bare: the study is rebuilt from the state
    assert result.returncode == 0, result.stderr
    rows = _status(name, env)
    assert [(r["trial"], r["state"]) for r in rows] == [(i, "succeeded") for i in range(4)]
    assert all(rows[i]["params"] == p for i, p in before.items())  # asked once, never again
    labels = sorted(c["Config"]["Labels"]["taoremote.trial"] for c in _containers(name))  # type: ignore[index]
    assert labels == ["0", "1", "2", "3"]  # one container per trial: none relaunched


def test_the_import_of_optuna_is_paid_by_tpe_sweeps_only(tmp_path: Path) -> None:
    """`python -X importtime`: --help, list and a grid sweep import no Optuna (nor numpy)."""
    env, _ = _env(tmp_path, epoch_s="0", epochs=1)

    def imported(*args: str) -> set[str]:
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "taoremote", *args],
            env=env,
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \| *(\S+)$", done.stderr, re.M))

    heavy = {"optuna", "numpy", "sqlalchemy"}
    for args in (["--help"], ["list"], ["sweep", "run", _name(), "--param", f"{BS}=8", *TASK]):
        found = imported(*args)
        assert "taoremote.cli" in found or "taoremote" in found
        assert not found & heavy, (args, found & heavy)
    task = [a.replace("/workspace/ws/out", "/workspace/ws/out-tpe") for a in TASK]  # trial-0 is taken
    assert "optuna" in imported("sweep", "run", _name(), *TPE, "--trials", "1", *task)  # the check sees it


# ---------------------------------------------------------------------------------------------- pruning


def test_median_pruning_stops_a_clearly_bad_trial_and_the_sweep_still_succeeds(tmp_path: Path) -> None:
    """One GPU: one trial at a time. Two good ones finish first (the second better than the first, so the
    median of one completed trial lets it run); the third, lr 1e-1, is far below their median at epoch 2
    (the warm-up) and is stopped there, before its 4 epochs."""
    env, ws = _env(tmp_path, gpus=1, epoch_s="1", epochs=4)
    name = _name()
    argv = ["sweep", "run", name, "--param", f"{LR}=2e-3,1e-3,1e-1", "--prune", "median"]
    result = taoremote([*argv, "--prune-warmup", "2", *TASK], env)
    assert result.returncode == 0, result.stderr  # pruned counts as fine
    rows = _status(name, env)
    assert [r["state"] for r in rows] == ["succeeded", "succeeded", "pruned"]
    assert rows[2]["exit_code"] == 143  # the stop's SIGTERM: what its container really exited with
    assert rows[2]["best_epoch"] in (2, 3)  # compared from the warm-up epoch on, stopped before the end
    bad = next(c for c in _containers(name) if c["Config"]["Labels"]["taoremote.trial"] == "2")  # type: ignore[index]
    assert bad["State"]["Status"] == "exited" and bad["State"]["ExitCode"] == 143  # type: ignore[index]
    lines = (ws / "out" / "trial-2" / "status.json").read_text().splitlines()
    assert not any('"SUCCESS"' in line or '"epoch": 4,' in line for line in lines)  # never got there
    assert "trial 2 [max_learning_rate=1e-1] pruned (exit 143)" in result.stdout


# ---------------------------------------------------------------------------------------------- hosts


def test_a_host_that_drops_out_has_its_trials_unknown_its_queue_goes_elsewhere_and_is_adopted_back(
    tmp_path: Path, sshd_factory: SshdFactory
) -> None:
    """`--host dropper --host local` reach this machine's one dockerd (2 GPUs): one machine, booked under
    `dropper`. Trial 0 (8 epochs) and trial 1 (40) start there; then dropper's sshd stops. Both become
    unknown; when trial 0's container ends, its GPU is seen free through `local` and the queued trial 2
    (6 epochs) starts there. When dropper's sshd is back (same port), trial 1 is adopted as running and
    trial 0 is found finished."""
    env, _ = _env(tmp_path, gpus=2, epoch_s="1", epochs=4)
    host = sshd_factory.start("sweep-dropper")
    write_gpu_nvidia_smi(host.bin_dir, 2)
    name = _name()
    epochs = "training_config.num_epochs"
    hosts = ["--ssh-config", str(host.ssh_config_path), "--host", host.name, "--host", "local"]
    # epochs of 1 s, long enough that a loaded machine still sees trials 0 and 1 run side by side and
    # trial 1 outlive its host's absence
    driver = start_taoremote([*hosts, "sweep", "run", name, "--param", f"{epochs}=8,40,6", *TASK], env)
    try:

        def states() -> list[tuple[object, object]]:
            return [(r["host"], r["state"]) for r in _rows(name, env)]

        assert wait_for(lambda: states()[:2] == [(host.name, "running")] * 2, timeout=60), states()
        sshd_factory.stop(host.name)
        assert wait_for(lambda: states()[:2] == [(host.name, "unknown")] * 2, timeout=30), states()
        assert wait_for(lambda: states()[2:] == [("local", "running")], timeout=60), states()
        assert states()[:2] == [(host.name, "unknown")] * 2  # still unknown while its host is away
        sshd_factory.start(host.name, port=host.port)
        assert wait_for(lambda: states()[1] == (host.name, "running"), timeout=30), states()
        assert states()[0] == (host.name, "succeeded")  # finished while away, found so on return
        _, err = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate()
    assert driver.returncode == 0, err
    assert [(r["host"], r["state"]) for r in _status(name, env)] == [
        (host.name, "succeeded"),
        (host.name, "succeeded"),
        ("local", "succeeded"),
    ]
    assert len(_containers(name)) == 3  # nothing launched twice


def test_ctrl_c_with_a_remote_host_stops_every_trial_there_and_exits_130(
    tmp_path: Path, sshd_factory: SshdFactory
) -> None:
    env, _ = _env(tmp_path, gpus=2, epochs=30)
    host = sshd_factory.start("sweep-remote")
    write_gpu_nvidia_smi(host.bin_dir, 2)
    name = _name()
    hosts = ["--ssh-config", str(host.ssh_config_path), "--host", host.name]
    driver = start_taoremote([*hosts, "sweep", "run", name, "--param", f"{BS}=8,16,24", *TASK], env)
    try:
        assert wait_for(
            lambda: [r["state"] for r in _rows(name, env)] == ["running", "running", "queued"], timeout=60
        )
    finally:
        driver.send_signal(signal.SIGINT)
        _, err = driver.communicate(timeout=90)
    assert driver.returncode == 130, err
    containers = _containers(name)
    assert len(containers) == 2
    assert all(c["State"]["Status"] == "exited" for c in containers)  # type: ignore[index]
    # the queued one never started: it stays queued, so that a rerun resumes the sweep
    assert [r["state"] for r in _status(name, env)] == ["stopped", "stopped", "queued"]


def test_sweep_status_shows_the_running_trials_epochs_and_metric(tmp_path: Path) -> None:
    env, _ = _env(tmp_path, gpus=2, epoch_s="1", epochs=30)
    name = _name()
    driver = start_taoremote(["sweep", "run", name, "--param", f"{BS}=8,16", *TASK], env)
    try:

        def progressed() -> bool:
            rows = _rows(name, env)
            return len(rows) == 2 and all(r["state"] == "running" and (r["epoch"] or 0) >= 2 for r in rows)

        assert wait_for(progressed, timeout=60)
        rows = _status(name, env)
        assert all(r["max_epoch"] == 30 and isinstance(r["metric"], float) for r in rows)
        per_epoch = [float(r["metric"]) / int(r["epoch"]) for r in rows]  # type: ignore[arg-type]
        assert per_epoch[0] > per_epoch[1]  # batch 8 scores better
        table = taoremote(["sweep", "status", name], env)
        assert table.returncode == 0, table.stderr
        head, *lines = table.stdout.splitlines()
        assert "progress" in head and "metric" in head
        assert all(re.search(r"\b\d+/30\b", line) for line in lines if re.match(r"\s*\d+\s", line))
    finally:
        driver.send_signal(signal.SIGINT)
        driver.communicate(timeout=90)
