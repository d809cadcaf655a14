"""`taoremote sweep` against the real dockerd (issue 9): trials side by side on their own GPUs, queued beyond
the free ones, resumed after SIGKILL without a second container, stopped by Ctrl-C, refused before anything
starts. The stand-in nvidia-smi reports 4 GPUs on this machine (taorun.write_gpu_nvidia_smi); the test
image's `train` writes real status.json lines, best at learning rate 1e-3 and batch size 8."""

from __future__ import annotations

import json
import signal
import uuid
from datetime import datetime
from pathlib import Path

import pytest

from tests.integration.conftest import SshHost
from tests.integration.taorun import (
    SESSION_USER,
    base_env,
    docker,
    start_taoremote,
    taoremote,
    wait_for,
    write_gpu_nvidia_smi,
    write_mounts,
)

pytestmark = pytest.mark.usefixtures("test_images", "clean_jobs")

SPEC = """\
random_seed: 42
training_config {
  batch_size_per_gpu: 8
  num_epochs: %d
  learning_rate {
    soft_start_annealing_schedule {
      min_learning_rate: 5e-6
      max_learning_rate: 1e-3
    }
  }
}
rig_exit_code: 0
"""
LR = "training_config.learning_rate.soft_start_annealing_schedule.max_learning_rate"
BS = "training_config.batch_size_per_gpu"
TASK = ["--", "detectnet_v2", "train", "-e", "/workspace/ws/spec.txt", "-r", "/workspace/ws/out", "-k", "key"]


def _env(
    tmp_path: Path, *, gpus: int | None = 4, epoch_s: str = "1", epochs: int = 3
) -> tuple[dict[str, str], Path]:
    """gpus: a stand-in nvidia-smi with that many GPUs first on PATH (None: none, e.g. for Slurm)."""
    home = tmp_path / "home"
    ws = home / "ws"
    ws.mkdir(parents=True)
    (ws / "spec.txt").write_text(SPEC % epochs)
    bin_dir = tmp_path / "bin" if gpus is not None else None
    if bin_dir is not None and gpus is not None:
        write_gpu_nvidia_smi(bin_dir, gpus)
    mounts = write_mounts(
        tmp_path / "mounts.json",
        {
            "Mounts": [{"source": str(ws), "destination": "/workspace/ws"}],
            "Envs": [{"variable": "SWEEP_EPOCH_S", "value": epoch_s}],
        },
    )
    return base_env(home, bin_dir, mounts, XDG_STATE_HOME=str(tmp_path / "state")), ws


def _name() -> str:
    return f"sw-{uuid.uuid4().hex[:8]}"


def _containers(name: str) -> list[dict[str, object]]:
    ids = docker(
        "ps",
        "-aq",
        "--filter",
        f"label=taoremote.sweep={name}",
        "--filter",
        f"label=taoremote.user={SESSION_USER}",
    ).stdout.split()
    return json.loads(docker("inspect", *ids).stdout) if ids else []


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text[:26].rstrip("Z") if "." in text else text.rstrip("Z"))


def _span(c: dict[str, object]) -> tuple[datetime, datetime]:
    state = c["State"]
    assert isinstance(state, dict)
    return _time(state["StartedAt"]), _time(state["FinishedAt"])


def _gpus(c: dict[str, object]) -> list[str]:
    host_config = c["HostConfig"]
    assert isinstance(host_config, dict)
    return [i for r in host_config["DeviceRequests"] or [] for i in r["DeviceIDs"] or []]


def _status(name: str, env: dict[str, str]) -> list[dict[str, object]]:
    result = taoremote(["sweep", "status", name, "--format", "json"], env)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert isinstance(rows, list)
    return rows


def test_a_2x2_grid_runs_its_trials_side_by_side_each_on_its_own_gpu(tmp_path: Path) -> None:
    env, ws = _env(tmp_path)
    name = _name()
    result = taoremote(
        ["sweep", "run", name, "--param", f"{LR}=1e-3,1e-2", "--param", f"{BS}=8,16", *TASK], env
    )
    assert result.returncode == 0, result.stderr
    containers = _containers(name)
    assert len(containers) == 4
    assert sorted(g for c in containers for g in _gpus(c)) == ["0", "1", "2", "3"]  # one each, none shared
    spans = [_span(c) for c in containers]
    assert max(start for start, _ in spans) < min(end for _, end in spans)  # all four ran at once
    assert sorted(p.name for p in (ws / "out").iterdir()) == [f"trial-{i}" for i in range(4)]
    original = (ws / "spec.txt").read_text().splitlines()
    changed = (ws / "out" / "trial-3" / "spec.txt").read_text().splitlines()
    assert [(a, b) for a, b in zip(original, changed, strict=True) if a != b] == [
        ("  batch_size_per_gpu: 8", "  batch_size_per_gpu: 16"),
        ("      max_learning_rate: 1e-3", "      max_learning_rate: 1e-2"),
    ]
    assert [r["state"] for r in _status(name, env)] == ["succeeded"] * 4
    assert "best: trial 0" in result.stdout  # lr 1e-3, batch 8 scores best
    assert "weights/model_epoch_003.tlt" in result.stdout
    best = json.loads(taoremote(["sweep", "best", name, "--format", "json"], env).stdout)
    assert best["trial"] == 0 and best["metric"]["value"] == 1.0 and best["metric"]["epoch"] == 3
    assert best["checkpoint"] == "/workspace/ws/out/trial-0/weights/model_epoch_003.tlt"


def test_a_6_trial_grid_on_4_gpus_queues_2_until_gpus_free_up(tmp_path: Path) -> None:
    env, _ = _env(tmp_path, epochs=2)
    name = _name()
    argv = ["sweep", "run", name, "--param", f"{LR}=1e-3,1e-2,1e-4", "--param", f"{BS}=8,16", *TASK]
    result = taoremote(argv, env)
    assert result.returncode == 0, result.stderr
    spans = sorted(_span(c) for c in _containers(name))
    assert len(spans) == 6
    first_end = min(end for _, end in spans[:4])
    assert all(start >= first_end for start, _ in spans[4:])  # the last two waited for a free GPU
    for start, _ in spans:  # never more than 4 at once
        assert sum(1 for s, e in spans if s <= start < e) <= 4


def test_resume_after_sigkill_of_the_driver_gives_exactly_the_grid(tmp_path: Path) -> None:
    env, _ = _env(tmp_path, gpus=2, epochs=2)
    name = _name()
    argv = ["sweep", "run", name, "--param", f"{LR}=1e-3,1e-2", "--param", f"{BS}=8,16", *TASK]
    driver = start_taoremote(argv, env)
    try:
        assert wait_for(lambda: len(_containers(name)) >= 1, timeout=60)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.communicate()
    result = taoremote(["sweep", "run", name], env)  # bare: the stored definition
    assert result.returncode == 0, result.stderr
    containers = _containers(name)
    trials = sorted(c["Config"]["Labels"]["taoremote.trial"] for c in containers)  # type: ignore[index]
    assert trials == ["0", "1", "2", "3"]
    assert [r["state"] for r in _status(name, env)] == ["succeeded"] * 4


def test_ctrl_c_stops_every_trial_and_exits_130(tmp_path: Path) -> None:
    env, _ = _env(tmp_path, epochs=30)
    name = _name()
    driver = start_taoremote(["sweep", "run", name, "--param", f"{BS}=8,16", *TASK], env)
    try:
        assert wait_for(lambda: len(_status_rows(name, env, "running")) == 2, timeout=60)
    finally:
        driver.send_signal(signal.SIGINT)
        _, err = driver.communicate(timeout=60)
    assert driver.returncode == 130, err
    assert all(c["State"]["Status"] == "exited" for c in _containers(name))  # type: ignore[index]
    assert [r["state"] for r in _status(name, env)] == ["stopped", "stopped"]


def _status_rows(name: str, env: dict[str, str], state: str) -> list[dict[str, object]]:
    result = taoremote(["sweep", "status", name, "--format", "json"], env)
    return (
        [r for r in json.loads(result.stdout or "[]") if r["state"] == state]
        if result.returncode == 0
        else []
    )


def test_a_failing_trial_makes_the_sweep_exit_1_with_its_code_in_status(tmp_path: Path) -> None:
    env, _ = _env(tmp_path, epoch_s="0")
    name = _name()
    result = taoremote(["sweep", "run", name, "--param", "rig_exit_code=0,3", *TASK], env)
    assert result.returncode == 1, result.stderr
    rows = _status(name, env)
    assert [(r["state"], r["exit_code"]) for r in rows] == [("succeeded", 0), ("failed", 3)]


def test_other_arguments_under_an_existing_name_are_a_usage_error_naming_the_difference(
    tmp_path: Path,
) -> None:
    env, _ = _env(tmp_path, epoch_s="0", epochs=1)
    name = _name()
    assert taoremote(["sweep", "run", name, "--param", f"{BS}=8", *TASK], env).returncode == 0
    again = taoremote(["sweep", "run", name, "--param", f"{BS}=16", *TASK], env)
    assert again.returncode == 2
    assert f"--param {BS} differs: stored 8, given 16" in again.stderr
    assert len(_containers(name)) == 1


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        ("training_config.no_such_field=1,2", "no_such_field"),
        (f"{BS}=8 }}", "8 }"),
    ],
)
def test_bad_spec_values_are_refused_before_anything_starts(
    tmp_path: Path, param: str, expected: str
) -> None:
    env, ws = _env(tmp_path, epoch_s="0")
    name = _name()
    result = taoremote(["sweep", "run", name, "--param", param, *TASK], env)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert _containers(name) == [] and not (ws / "out").exists()


def test_a_non_empty_trial_dir_it_did_not_create_is_refused(tmp_path: Path) -> None:
    env, ws = _env(tmp_path, epoch_s="0")
    (ws / "out" / "trial-1").mkdir(parents=True)
    (ws / "out" / "trial-1" / "old.tlt").write_text("x")
    name = _name()
    result = taoremote(["sweep", "run", name, "--param", f"{BS}=8,16", *TASK], env)
    assert result.returncode == 2, result.stderr
    assert "trial-1" in result.stderr and _containers(name) == []
    fixed_args = ["sweep", "run", name, "--param", f"{BS}=8,16", *TASK]
    (ws / "out" / "trial-1" / "old.tlt").unlink()
    assert taoremote(fixed_args, env).returncode == 0  # refused before the name was taken


def test_two_host_names_of_one_engine_are_one_machine_never_double_booked(
    tmp_path: Path, fleet: list[SshHost]
) -> None:
    """node1 and node2 are sshd's on this machine, both reaching its one dockerd: one machine, 2 GPUs."""
    env, ws = _env(tmp_path, epochs=2)
    for host in fleet[:2]:
        write_gpu_nvidia_smi(host.bin_dir, 2)
    name = _name()
    hosts = ["--ssh-config", str(fleet[0].ssh_config_path), "--host", "node1", "--host", "node2"]
    result = taoremote([*hosts, "sweep", "run", name, "--param", f"{BS}=8,16,24", *TASK], env)
    assert result.returncode == 0, result.stderr
    rows = _status(name, env)
    assert [(r["host"], r["state"]) for r in rows] == [("node1", "succeeded")] * 3
    spans = sorted(_span(c) for c in _containers(name))
    assert spans[2][0] >= min(spans[0][1], spans[1][1])  # the third waited: only two GPUs in all
    assert (ws / "out" / "trial-2" / "spec.txt").read_text().count("batch_size_per_gpu: 24") == 1


def test_a_hang_up_leaves_the_trials_running_and_sweep_stop_stops_them(tmp_path: Path) -> None:
    env, _ = _env(tmp_path, epochs=30)
    name = _name()
    driver = start_taoremote(["sweep", "run", name, "--param", f"{BS}=8,16", *TASK], env)
    try:
        assert wait_for(lambda: len(_status_rows(name, env, "running")) == 2, timeout=60)
    finally:
        driver.send_signal(signal.SIGHUP)
        _, err = driver.communicate(timeout=60)
    assert driver.returncode == 129, err
    assert f"Resume with: taoremote sweep run {name}" in err
    assert [c["State"]["Status"] for c in _containers(name)] == ["running", "running"]  # type: ignore[index]
    stopped = taoremote(["sweep", "stop", name], env)
    assert stopped.returncode == 0, stopped.stderr
    assert all(c["State"]["Status"] == "exited" for c in _containers(name))  # type: ignore[index]
    assert [r["state"] for r in _status(name, env)] == ["stopped", "stopped"]
    again = taoremote(["sweep", "run", name], env)  # stopped trials are never rerun
    assert again.returncode == 1 and len(_containers(name)) == 2
