"""The test images' `train` writes status.json in TAO's real format: run through taoremote against the real
dockerd with a results mount, and progress.parse_status (the reader `list` and sweeps use) reads it back."""

from __future__ import annotations

from pathlib import Path

import pytest

from taoremote.progress import Metric, default_metric, framework_of, parse_status, status_path
from taoremote.tasks import load_task_map, resolve_image
from tests.integration.taorun import DEFAULT_SMI, base_env, taoremote, write_fake_nvidia_smi, write_mounts

pytestmark = pytest.mark.usefixtures("test_images", "clean_jobs")

TF1_SPEC = """\
random_seed: 42
training_config {
  batch_size_per_gpu: 8
  num_epochs: 3
  learning_rate {
    soft_start_annealing_schedule {
      min_learning_rate: 5e-6
      max_learning_rate: 1e-3
    }
  }
}
rig_exit_code: %d
"""
YAML_SPEC = """\
train:
  num_epochs: 2
  optim:
    lr: 0.01
dataset:
  batch_size: 4
"""


def _env(tmp_path: Path, **envs: str) -> tuple[dict[str, str], Path]:
    home = tmp_path / "home"
    ws = home / "ws"
    ws.mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    write_fake_nvidia_smi(bin_dir, DEFAULT_SMI.read_text())
    mounts = write_mounts(
        tmp_path / "mounts.json",
        {
            "Mounts": [{"source": "~/ws", "destination": "/workspace/ws"}],
            "Envs": [{"variable": k, "value": v} for k, v in {"SWEEP_EPOCH_S": "0.1", **envs}.items()],
        },
    )
    return base_env(home, bin_dir, mounts), ws


def _status(task: str, results: Path) -> str:
    framework = framework_of(resolve_image(load_task_map(None), "model", task))
    assert framework is not None
    return Path(status_path(str(results), framework)).read_text(encoding="utf-8")


def test_tf1_train_writes_keras_status_lines_and_checkpoints(tmp_path: Path) -> None:
    env, ws = _env(tmp_path)
    (ws / "spec.txt").write_text(TF1_SPEC % 0)
    result = taoremote(["yolo_v4", "train", "-e", "/workspace/ws/spec.txt", "-r", "/workspace/ws/out"], env)
    assert result.returncode == 0, result.stderr
    metric = default_metric("yolo_v4")
    assert metric is not None
    progress = parse_status(_status("yolo_v4", ws / "out"), framework="tf1", metric=metric[0])
    assert (progress.epoch, progress.max_epoch, progress.eta) == (3, 3, 0.0)
    # learning rate 1e-3 and batch 8 score 1: the value after epoch e of 3 is e/3
    assert progress.metric == Metric("mean average precision", 1.0)
    assert progress.history == ((1, 0.33333), (2, 0.66667), (3, 1.0))
    assert progress.status == "SUCCESS"
    weights = sorted(p.name for p in (ws / "out" / "weights").iterdir())
    assert weights == ["model_epoch_001.tlt", "model_epoch_002.tlt", "model_epoch_003.tlt"]


def test_pytorch_train_takes_yaml_overrides_and_writes_lightning_lines_under_train(tmp_path: Path) -> None:
    env, ws = _env(tmp_path)
    (ws / "spec.yaml").write_text(YAML_SPEC)
    argv = ["dino", "train", "-e", "/workspace/ws/spec.yaml", "results_dir=/workspace/ws/out"]
    result = taoremote([*argv, "train.optim.lr=0.001", "dataset.batch_size=8", "train.num_epochs=4"], env)
    assert result.returncode == 0, result.stderr
    progress = parse_status(_status("dino", ws / "out"), framework="pytorch", metric="val_mAP50")
    assert (progress.epoch, progress.max_epoch) == (4, 4)
    assert progress.history == ((1, 0.25), (2, 0.5), (3, 0.75), (4, 1.0))
    assert progress.best("max") == (4, 1.0)
    assert progress.status == "RUNNING"  # PyTorch writes no SUCCESS line, as in TAO
    ckpts = sorted(p.name for p in (ws / "out" / "train").glob("*.pth"))
    assert ckpts == [f"model_epoch_{e:03d}.pth" for e in (1, 2, 3, 4)]


def test_the_metric_ranks_the_swept_values_and_the_exit_code_is_set_per_trial(tmp_path: Path) -> None:
    env, ws = _env(tmp_path, SWEEP_EPOCH_S="0")
    (ws / "spec.yaml").write_text(YAML_SPEC)
    finals = {}
    for lr in ("0.0001", "0.001", "0.01"):
        out = f"/workspace/ws/lr-{lr}"
        argv = ["dino", "train", "-e", "/workspace/ws/spec.yaml", f"results_dir={out}", f"lr={lr}"]
        result = taoremote(argv, env)
        assert result.returncode == 0, result.stderr
        progress = parse_status(_status("dino", ws / f"lr-{lr}"), framework="pytorch", metric="val_loss")
        assert progress.metric is not None
        finals[lr] = progress.metric.value
    assert min(finals, key=finals.__getitem__) == "0.001"  # the lowest val_loss wins

    (ws / "spec.txt").write_text(TF1_SPEC % 3)
    tf1_argv = ["train", "-e", "/workspace/ws/spec.txt", "-r", "/workspace/ws/f"]
    failed = taoremote(["detectnet_v2", *tf1_argv], env)
    assert failed.returncode == 3
    assert parse_status(_status("detectnet_v2", ws / "f"), framework="tf1").status == "FAILURE"
    env_exit, ws2 = _env(tmp_path / "b", SWEEP_EXIT_CODE="4", SWEEP_EPOCH_S="0")
    (ws2 / "spec.txt").write_text(TF1_SPEC.replace("rig_exit_code: %d\n", ""))
    by_env = taoremote(["yolo_v4", *tf1_argv], env_exit)
    assert by_env.returncode == 4


def test_without_a_readable_spec_train_stays_the_argv_stub(tmp_path: Path) -> None:
    env, ws = _env(tmp_path)
    argv = ["--no-preflight", "yolo_v4", "train", "-e", "/workspace/ws/absent.txt", "-r", "/workspace/ws/out"]
    result = taoremote(argv, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:2] == ["TASK<yolo_v4>", "ARG<train>"]
    assert not (ws / "out").exists()
