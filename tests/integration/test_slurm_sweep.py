"""`taoremote --slurm local sweep run` against the real one-node test cluster (2 fake GPUs) with the docker
runtime and the real dockerd (issues 9-10): grid trials go to Slurm as one job array whose `%K` caps how many
run at once (proved from dockerd's own start/die events of the trials' containers, not by timing), every
task's exit code comes back, the ranking and `sweep status` show each trial; a failing trial makes the
sweep exit 1; Ctrl-C cancels the array and exits 130; a hang-up leaves it to Slurm and a rerun adopts it."""

from __future__ import annotations

import json
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import SshHost
from tests.integration.taorun import (
    session_job_ids,
    start_taoremote,
    taoremote,
    wait_for,
)
from tests.integration.test_sweep import BS, LR, TASK
from tests.integration.test_sweep import _env as sweep_env  # one spec and task line for both sweep files

pytestmark = pytest.mark.usefixtures("test_images", "clean_jobs", "slurm_cluster")


def _env(tmp_path: Path, *, epochs: int = 2, epoch_s: str = "1") -> tuple[dict[str, str], Path]:
    return sweep_env(tmp_path, gpus=None, epochs=epochs, epoch_s=epoch_s)  # Slurm allots the GPUs


def _name() -> str:
    return f"ssw-{uuid.uuid4().hex[:8]}"


def _status(name: str, env: dict[str, str]) -> list[dict[str, object]]:
    result = taoremote(["sweep", "status", name, "--format", "json"], env)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert isinstance(rows, list)
    return rows


def _slurm_ids(rows: list[dict[str, object]]) -> list[str]:
    hosts = [str(r["host"]) for r in rows]
    assert all(h.startswith("slurm:") for h in hosts), hosts
    return [h.removeprefix("slurm:") for h in hosts]


def _squeue_live(base: str) -> list[str]:
    out = subprocess.run(
        ["squeue", "-h", "-r", "-j", base, "-t", "PD,R,CG,CF,S", "-o", "%i"], capture_output=True, text=True
    ).stdout
    return out.split()


class _Events:
    """dockerd's own start/die events of one sweep's containers, streamed while it runs (the Slurm batch
    script removes each container when it ends, so there is nothing to `docker inspect` afterwards)."""

    def __init__(self, name: str) -> None:
        fmt = "{{.TimeNano}} {{.Action}} {{.Actor.Attributes.name}}"
        only = ["--filter", f"label=taoremote.sweep={name}", "--filter", "type=container"]
        only += ["--filter", "event=start", "--filter", "event=die"]
        argv = ["docker", "events", *only, "--format", fmt]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)

    def stop(self) -> list[tuple[int, str, str]]:
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        rows = [line.split(" ", 2) for line in out.splitlines() if line.strip()]
        return sorted((int(t), action, name) for t, action, name in rows)


def _most_at_once(events: list[tuple[int, str, str]]) -> int:
    running: set[str] = set()
    most = 0
    for _, action, name in events:  # in dockerd's order; a die before a start at one instant counts first
        if action == "start":
            running.add(name)
        else:
            running.discard(name)
        most = max(most, len(running))
    return most


def test_a_4_trial_grid_with_max_parallel_2_runs_as_one_array_at_most_2_at_once(tmp_path: Path) -> None:
    env, ws = _env(tmp_path)
    name = _name()
    events = _Events(name)
    try:
        result = taoremote(
            ["--slurm", "local", "sweep", "run", name, "--param", f"{LR}=1e-3,1e-2", "--param", f"{BS}=8,16",
             "--max-parallel", "2", *TASK],
            env, timeout=300,
        )  # fmt: skip
    finally:
        seen = events.stop()
    assert result.returncode == 0, result.stderr

    rows = _status(name, env)
    ids = _slurm_ids(rows)
    base = ids[0].split("_")[0]
    assert ids == [f"{base}_{i}" for i in range(4)]  # one array, task i is trial i
    assert f"submitted as Slurm job array {base} (4 tasks, at most 2 at once)" in result.stderr
    script = subprocess.run(["scontrol", "write", "batch_script", base, "-"], capture_output=True, text=True)
    assert "#SBATCH --array=0-3%2" in script.stdout and "#SBATCH --gpus=1" in script.stdout, script.stderr
    assert [(r["state"], r["exit_code"]) for r in rows] == [("succeeded", 0)] * 4

    starts = [n for _, action, n in seen if action == "start"]
    assert sorted(starts) == sorted(f"taoremote-detectnet_v2-{ids_}" for ids_ in _array_jobs(rows, env))
    assert _most_at_once(seen) <= 2, seen  # Slurm's %2: never three trials' containers at once

    assert sorted(p.name for p in (ws / "out").iterdir()) == [f"trial-{i}" for i in range(4)]
    original = (ws / "spec.txt").read_text().splitlines()
    changed = (ws / "out" / "trial-3" / "spec.txt").read_text().splitlines()
    assert [(a, b) for a, b in zip(original, changed, strict=True) if a != b] == [
        ("  batch_size_per_gpu: 8", "  batch_size_per_gpu: 16"),
        ("      max_learning_rate: 1e-3", "      max_learning_rate: 1e-2"),
    ]
    assert "best: trial 0" in result.stdout  # lr 1e-3, batch 8 scores best
    assert "--slurm local detectnet_v2 evaluate" in result.stdout
    best = json.loads(taoremote(["sweep", "best", name, "--format", "json"], env).stdout)
    assert best["trial"] == 0 and best["metric"]["value"] == 1.0 and best["metric"]["epoch"] == 2
    assert best["checkpoint"] == "/workspace/ws/out/trial-0/weights/model_epoch_002.tlt"
    table = taoremote(["sweep", "status", name], env)
    assert all(f"slurm:{i}" in table.stdout for i in ids), table.stdout


def _array_jobs(rows: list[dict[str, object]], env: dict[str, str]) -> list[str]:
    """The taoremote job ids of the array's tasks (`<array job id>-<task>`), from the Slurm listing."""
    listed = taoremote(["--slurm", "local", "list", "--all", "--format", "json"], env)
    assert listed.returncode == 0, listed.stderr
    ids = {str(r["host"]).removeprefix("slurm:") for r in rows}
    return [str(j["job"]) for j in json.loads(listed.stdout) if j["container_id"] in ids]


def test_a_failing_trial_makes_the_sweep_exit_1_with_each_trials_exit_code(tmp_path: Path) -> None:
    env, _ = _env(tmp_path, epochs=1)
    name = _name()

    result = taoremote(
        ["--slurm", "local", "sweep", "run", name, "--param", "rig_exit_code=0,3", *TASK], env, timeout=300
    )

    assert result.returncode == 1, result.stderr
    rows = _status(name, env)
    assert [(r["state"], r["exit_code"]) for r in rows] == [("succeeded", 0), ("failed", 3)]
    ranking = result.stdout.splitlines()
    assert any("failed" in line for line in ranking)


def test_ctrl_c_cancels_the_array_and_exits_130(tmp_path: Path) -> None:
    env, _ = _env(tmp_path, epochs=60)
    name = _name()
    proc = start_taoremote(
        ["--slurm", "local", "sweep", "run", name, "--param", f"{BS}=8,16,32", "--max-parallel", "1", *TASK],
        env,
    )
    assert wait_for(lambda: session_job_ids(include_stopped=False) != "", timeout=120)

    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)

    assert proc.returncode == 130, err
    rows = _status(name, env)
    assert [r["state"] for r in rows] == ["stopped"] * 3
    assert _squeue_live(_slurm_ids(rows)[0].split("_")[0]) == []  # the pending tasks went too
    assert wait_for(lambda: session_job_ids() == "", timeout=30)


def test_a_hang_up_leaves_the_array_to_slurm_and_a_rerun_adopts_it(tmp_path: Path) -> None:
    env, ws = _env(tmp_path, epochs=3)
    name = _name()
    argv = ["--slurm", "local", "sweep", "run", name, "--param", f"{BS}=8,16", *TASK]
    proc = start_taoremote(argv, env)
    assert wait_for(lambda: session_job_ids(include_stopped=False) != "", timeout=120)

    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=60)

    assert proc.returncode == 129, err
    assert f"Resume with: taoremote --slurm local sweep run {name}" in err
    base = _slurm_ids(_status(name, env))[0].split("_")[0]
    assert _squeue_live(base) != []  # still Slurm's

    resumed = taoremote(["sweep", "run", name], env, timeout=300)  # bare: the stored definition, on Slurm

    assert resumed.returncode == 0, resumed.stderr
    rows = _status(name, env)
    assert _slurm_ids(rows) == [f"{base}_0", f"{base}_1"]  # adopted, never submitted twice
    assert "submitted as Slurm job array" not in resumed.stderr
    assert [r["state"] for r in rows] == ["succeeded"] * 2
    assert sorted(p.name for p in (ws / "out").iterdir()) == ["trial-0", "trial-1"]


def test_through_the_test_sshd_a_failing_trial_still_makes_the_sweep_exit_1(
    tmp_path: Path, sshd_host: SshHost
) -> None:
    env, ws = _env(tmp_path, epochs=1)
    name = _name()
    login = ["--ssh-config", str(sshd_host.ssh_config_path), "--slurm", sshd_host.name]

    result = taoremote(
        [*login, "sweep", "run", name, "--param", "rig_exit_code=0,3", *TASK], env, timeout=300
    )

    assert result.returncode == 1, result.stderr
    rows = _status(name, env)
    assert [(r["state"], r["exit_code"]) for r in rows] == [("succeeded", 0), ("failed", 3)]
    assert sorted(p.name for p in (ws / "out").iterdir()) == ["trial-0", "trial-1"]


def test_tpe_submits_one_slurm_job_per_suggestion(tmp_path: Path) -> None:
    env, _ = _env(tmp_path, epochs=1)
    name = _name()
    argv = ["--slurm", "local", "sweep", "run", name, "--search", "tpe", "--trials", "3"]
    argv += ["--param", f"{BS}=int(8,32)", "--max-parallel", "1", *TASK]

    result = taoremote(argv, env, timeout=300)

    assert result.returncode == 0, result.stderr
    rows = _status(name, env)
    ids = _slurm_ids(rows)
    assert len(set(ids)) == 3 and not any("_" in i for i in ids), ids  # three jobs, no array
    assert [r["state"] for r in rows] == ["succeeded"] * 3
    assert result.stderr.count("submitted as Slurm job") == 3
