"""`list` shows a training's progress, read from its status.json in the same command as `docker ps` (issue 9):
the test images' `train` writes real-format status.json lines, slowly (SWEEP_EPOCH_S), into a results dir the
launch records as the label taoremote.results; `list` is asked while they run, here and over a real sshd."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import SshHost
from tests.integration.taorun import (
    DEFAULT_SMI,
    base_env,
    docker,
    taoremote,
    wait_for,
    write_fake_nvidia_smi,
    write_mounts,
)

pytestmark = pytest.mark.usefixtures("test_images", "clean_jobs")

EPOCHS = 60
YAML_SPEC = f"train:\n  num_epochs: {EPOCHS}\n  optim:\n    lr: 0.001\ndataset:\n  batch_size: 8\n"
TF1_SPEC = (
    f"training_config {{\n  batch_size_per_gpu: 8\n  num_epochs: {EPOCHS}\n  learning_rate: 0.001\n}}\n"
)
PYT_TRAIN = ["dino", "train", "-e", "/workspace/ws/spec.yaml", "results_dir=/workspace/ws/pyt"]
TF1_TRAIN = ["yolo_v4", "train", "-e", "/workspace/ws/spec.txt", "-r", "/workspace/ws/tf1"]


def _env(tmp_path: Path, source: str, bin_dir: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    write_fake_nvidia_smi(bin_dir, DEFAULT_SMI.read_text())
    mounts = write_mounts(
        tmp_path / "mounts.json",
        {
            "Mounts": [{"source": source, "destination": "/workspace/ws"}],
            "Envs": [{"variable": "SWEEP_EPOCH_S", "value": "0.5"}],
        },
    )
    return base_env(home, bin_dir, mounts)


def _write_specs(ws: Path) -> None:
    (ws / "spec.yaml").write_text(YAML_SPEC)
    (ws / "spec.txt").write_text(TF1_SPEC)


def _launch(prefix: list[str], argv: list[str], env: dict[str, str]) -> str:
    result = taoremote([*prefix, "--detach", *argv], env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def _listed(prefix: list[str], env: dict[str, str], *jobs: str) -> dict[str, dict[str, object]]:
    result = taoremote([*prefix, "list", "--format", "json"], env)
    assert result.returncode == 0, result.stderr
    return {str(r["job"]): r for r in json.loads(result.stdout) if r["job"] in jobs}


def _progressed(prefix: list[str], env: dict[str, str], *jobs: str) -> dict[str, dict[str, object]]:
    """The rows once every job has done 2 epochs or more (they run one every 0.5 s)."""
    seen: dict[str, dict[str, object]] = {}

    def ready() -> bool:
        seen.update(_listed(prefix, env, *jobs))
        return all(isinstance(seen.get(j, {}).get("epoch"), int) and seen[j]["epoch"] >= 2 for j in jobs)  # type: ignore[operator]

    assert wait_for(ready, timeout=60, interval=0.5), seen
    return seen


def _label(job: str) -> str:
    out = docker("ps", "--filter", f"label=taoremote.job={job}", "--format", '{{.Label "taoremote.results"}}')
    return out.stdout.strip()


def _check_rows(rows: dict[str, dict[str, object]], pyt: str, tf1: str) -> None:
    for job, metric in ((pyt, "val_mAP50"), (tf1, "mean average precision")):
        row = rows[job]
        assert row["max_epoch"] == EPOCHS, row
        assert isinstance(row["eta"], int) and 0 < row["eta"] <= EPOCHS * 0.5 + 1, row
        shown = row["metric"]
        assert isinstance(shown, dict) and shown["name"] == metric, row
        # lr 1e-3, batch 8: the rig's score is 1, so the value after epoch e of N is e / N
        epoch = row["epoch"]
        assert isinstance(epoch, int)
        assert shown["value"] == pytest.approx(epoch / EPOCHS, abs=2 / EPOCHS), row


def _check_table(prefix: list[str], env: dict[str, str], pyt: str, tf1: str) -> None:
    table = taoremote([*prefix, "list"], env)
    assert table.returncode == 0, table.stderr
    lines = {ln.split()[1] if prefix else ln.split()[0]: ln for ln in table.stdout.splitlines()[2:]}
    header = table.stdout.splitlines()[0].split()
    at = header.index("progress")  # after exit_code, or after trial while some session runs a sweep
    assert header[at - 1] in ("exit_code", "trial") and header[at : at + 3] == ["progress", "eta", "metric"]
    assert re.search(rf"\s\d+/{EPOCHS}\s+\d+[sm]\s+val_mAP50=0\.\d+\s", lines[pyt]), lines[pyt]
    assert re.search(rf"\s\d+/{EPOCHS}\s+\d+[sm]\s+mAP=0\.\d+\s", lines[tf1]), lines[tf1]


def test_list_shows_progress_eta_and_metric_of_trainings_on_this_machine(tmp_path: Path) -> None:
    ws = tmp_path / "home" / "ws"
    ws.mkdir(parents=True)
    _write_specs(ws)
    env = _env(tmp_path, "~/ws", tmp_path / "bin")
    pyt, tf1 = _launch([], PYT_TRAIN, env), _launch([], TF1_TRAIN, env)
    assert (_label(pyt), _label(tf1)) == (str(ws / "pyt"), str(ws / "tf1"))  # the host path, from the mount
    _check_rows(_progressed([], env, pyt, tf1), pyt, tf1)
    _check_table([], env, pyt, tf1)
    stopped = taoremote(["stop", pyt, tf1], env)
    assert stopped.returncode == 0, stopped.stderr
    assert _listed([], env, pyt, tf1) == {}  # stopped: no longer live


@pytest.fixture
def remote_ws(sshd_host: SshHost) -> Iterator[str]:
    """A directory under the remote user's home, named with `~`: the label must hold where it expands."""
    name = f"taoremote-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(sshd_host.ssh_argv(f"mkdir -p ~/{name}"), check=True, timeout=30)
    yield name
    subprocess.run(sshd_host.ssh_argv(f"rm -rf ~/{name}"), check=False, timeout=30)


def test_list_over_ssh_shows_progress_read_on_the_remote_host(
    tmp_path: Path, sshd_host: SshHost, remote_ws: str
) -> None:
    remote_home = subprocess.run(
        sshd_host.ssh_argv("printf %s ~"), capture_output=True, text=True, check=True, timeout=30
    ).stdout
    ws = Path(remote_home) / remote_ws  # the sshd fixture logs in as us, on this machine
    _write_specs(ws)
    env = _env(tmp_path, f"~/{remote_ws}", sshd_host.bin_dir)
    prefix = ["--ssh-config", str(sshd_host.ssh_config_path), "--host", sshd_host.name]
    pyt, tf1 = _launch(prefix, PYT_TRAIN, env), _launch(prefix, TF1_TRAIN, env)
    assert (_label(pyt), _label(tf1)) == (str(ws / "pyt"), str(ws / "tf1"))
    rows = _progressed(prefix, env, pyt, tf1)
    assert {rows[j]["host"] for j in (pyt, tf1)} == {sshd_host.name}
    _check_rows(rows, pyt, tf1)
    _check_table(prefix, env, pyt, tf1)
