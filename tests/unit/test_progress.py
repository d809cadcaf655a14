"""progress.py reads status.json as TAO's writers produce it (fixtures: tests/data/status/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from taoremote.progress import (
    Metric,
    Progress,
    default_metric,
    framework_of,
    metric_direction,
    parse_status,
    status_path,
)

STATUS = Path(__file__).resolve().parents[1] / "data" / "status"
TF1_MAP = "mean average precision"


def _read(name: str) -> str:
    return (STATUS / name).read_text(encoding="utf-8")


def test_tf1_keras_epochs_are_already_counts_of_epochs_done() -> None:
    progress = parse_status(_read("yolo_v4.json"), framework="tf1", metric=TF1_MAP)
    assert (progress.epoch, progress.max_epoch) == (3, 3)
    assert progress.eta == 0.0
    assert progress.metric == Metric(TF1_MAP, 0.38102)
    # epoch 1's "nan" (no validation that epoch) is not a value
    assert progress.history == ((2, 0.41235), (3, 0.38102))
    assert progress.best("max") == (2, 0.41235)
    assert progress.status == "SUCCESS"
    assert progress.message == "YOLO_V4 training finished successfully."


def test_a_line_cut_mid_write_is_ignored_and_eta_comes_from_time_per_epoch() -> None:
    text = _read("classification_tf1_running.json")
    progress = parse_status(text, framework="tf1", metric="validation_accuracy")
    assert (progress.epoch, progress.max_epoch) == (3, 80)
    assert progress.eta == pytest.approx(51.0 * 77)
    assert progress.metric == Metric("validation_accuracy", 0.4437)
    assert progress.best("max") == (2, 0.48125)
    assert progress.status == "RUNNING"


def test_detectnet_v2_epoch_lines_come_at_the_start_of_an_epoch() -> None:
    text = _read("detectnet_v2.json")
    lines = text.splitlines(keepends=True)
    first_epoch = parse_status("".join(lines[:4]), framework="tf1", metric=TF1_MAP)
    # "epoch": 0 written at the first step: nothing done yet, and its 0:00:00 eta means "unknown"
    assert (first_epoch.epoch, first_epoch.max_epoch, first_epoch.eta) == (0, 3, None)
    mid = parse_status("".join(lines[:7]), framework="tf1", metric=TF1_MAP)
    assert (mid.epoch, mid.eta) == (2, 159.0)
    # the evaluation after epoch 2 ran before the epoch-2 line, which repeats it (sticky kpi)
    assert mid.history == ((2, 50.6166),)


def test_detectnet_v2_success_means_every_epoch_done_and_the_last_evaluation_counts() -> None:
    progress = parse_status(_read("detectnet_v2.json"), framework="tf1", metric=TF1_MAP)
    assert (progress.epoch, progress.max_epoch, progress.eta) == (3, 3, 0.0)
    # "Model saved." replaces kpi with size/param_count: the latest mAP is still the last evaluation's
    assert progress.metric == Metric(TF1_MAP, 61.2072)
    assert progress.history == ((2, 50.6166), (3, 61.2072))
    assert progress.best("max") == (3, 61.2072)
    assert progress.status == "SUCCESS"
    lost = parse_status(_read("detectnet_v2.json"), framework="tf1", metric="validation cost")
    assert lost.best("min") == (3, 0.00051144)


def test_a_sticky_kpi_repeated_on_a_line_without_epoch_is_not_a_new_measurement() -> None:
    # detectnet_v2 train.py on KeyboardInterrupt: RUNNING "Training was interrupted" carrying the sticky kpi
    lines = _read("detectnet_v2.json").splitlines(keepends=True)[:7]
    interrupted = (
        '{"Error": "", "date": "6/3/2026", "time": "8:21:0", "status": "RUNNING", "verbosity": "INFO",'
        ' "message": "Training was interrupted", "graphical": {"loss": 0.00301, "learning_rate": "0.0005"},'
        ' "kpi": {"validation cost": 0.00071502, "mean average precision": 50.6166}}\n'
    )
    progress = parse_status("".join([*lines, interrupted]), framework="tf1", metric=TF1_MAP)
    assert progress.epoch == 2
    assert progress.history == ((2, 50.6166),)  # epoch 3 was never measured


def test_pytorch_epochs_are_zero_based_and_normalised_to_done_of_total() -> None:
    text = _read("dino.json")
    lines = text.splitlines(keepends=True)
    after_first = parse_status("".join(lines[:5]), framework="pytorch", metric="val_mAP50")
    assert (after_first.epoch, after_first.max_epoch) == (1, 3)
    assert after_first.eta == pytest.approx(312.345678 * 2)
    assert after_first.metric == Metric("val_mAP50", 0.38841)
    progress = parse_status(text, framework="pytorch", metric="val_mAP50")
    assert (progress.epoch, progress.max_epoch, progress.eta) == (3, 3, 0.0)
    assert progress.history == ((1, 0.38841), (2, 0.52907), (3, 0.51264))
    assert progress.best("max") == (2, 0.52907)
    # PyTorch writes no SUCCESS: the file says RUNNING; the job's state comes from its exit code
    assert progress.status == "RUNNING"
    assert progress.message == "Train finished successfully."


def test_pytorch_evaluation_before_its_epoch_line_belongs_to_the_epoch_in_progress() -> None:
    lines = _read("dino.json").splitlines(keepends=True)
    # the second evaluation is written, its epoch line not yet
    progress = parse_status("".join(lines[:6]), framework="pytorch", metric="val_loss")
    assert progress.epoch == 1
    assert progress.metric == Metric("val_loss", 9.5102)
    assert progress.history == ((1, 11.873), (2, 9.5102))


def test_a_metric_replaced_by_another_kpi_keeps_its_latest_value() -> None:
    # "Train metrics generated." replaces kpi with train_loss: the latest val_mAP50 stays
    lines = _read("dino.json").splitlines(keepends=True)
    progress = parse_status("".join(lines[:8]), framework="pytorch", metric="val_mAP50")
    assert progress.metric == Metric("val_mAP50", 0.52907)


def test_only_the_last_run_of_an_appended_file_counts() -> None:
    progress = parse_status(_read("dino_appended.json"), framework="pytorch", metric="val_mAP50")
    assert (progress.epoch, progress.max_epoch) == (1, 12)
    assert progress.metric == Metric("val_mAP50", 0.2105)
    assert progress.history == ((1, 0.2105),)
    assert progress.status == "RUNNING"


def test_a_new_run_that_wrote_no_started_line_is_seen_by_epochs_going_back() -> None:
    lines = _read("yolo_v4.json").splitlines(keepends=True)
    epoch_lines = [line for line in lines if '"epoch"' in line]
    text = "".join(epoch_lines + epoch_lines[:1])
    progress = parse_status(text, framework="tf1", metric=TF1_MAP)
    assert (progress.epoch, progress.max_epoch) == (1, 3)
    assert progress.metric is None and progress.history == ()


def test_a_started_line_without_epochs_yet_shows_nothing_of_the_run_before() -> None:
    text = _read("yolo_v4.json") + _read("yolo_v4.json").splitlines(keepends=True)[0]
    assert parse_status(text, framework="tf1", metric=TF1_MAP) == Progress(
        status="STARTED", message="Starting Yolo_V4 Training job"
    )


def test_non_numeric_values_and_foreign_lines_are_not_values() -> None:
    progress = parse_status(_read("non_numeric.json"), framework="tf1", metric=TF1_MAP)
    assert (progress.epoch, progress.max_epoch) == (3, 4)
    assert progress.eta is None  # "Not logged" time_per_epoch and eta
    assert progress.metric == Metric(TF1_MAP, 0.25)
    assert progress.history == ((2, 0.25),)
    for name in ("learning_rate", "loss"):  # "Not logged", '"[1, 2]"' then numbers
        values = parse_status(_read("non_numeric.json"), framework="tf1", metric=name).history
        assert all(isinstance(v, float) for _, v in values)
    assert parse_status(_read("non_numeric.json"), framework="tf1", metric="learning_rate").metric is None


@pytest.mark.parametrize(
    "line",
    [
        '{"epoch": true, "max_epoch": "3", "kpi": {"m": true}}',
        '{"epoch": "2", "max_epoch": null, "kpi": {"m": "inf"}}',
        '{"epoch": 1.5, "kpi": {"m": {"nested": 1}}}',
        '{"kpi": ["m"], "graphical": "m"}',
        "null",
        '"text"',
        "",
    ],
)
def test_odd_lines_give_no_progress(line: str) -> None:
    assert parse_status(line, framework="pytorch", metric="m") == Progress()


def test_empty_file_and_no_metric_asked() -> None:
    assert parse_status("", framework="tf1", metric=TF1_MAP) == Progress()
    progress = parse_status(_read("yolo_v4.json"), framework="tf1")
    assert progress.metric is None and progress.history == () and progress.epoch == 3


def test_timedelta_strings_with_days_and_top_level_metrics() -> None:
    line = (
        '{"epoch": 1, "max_epoch": 100, "time_per_epoch": "1 day, 0:00:00", "eta": "99 days, 0:00:00",'
        ' "loss": 0.5, "status": "RUNNING"}'
    )
    progress = parse_status(line, framework="tf2", metric="loss")
    assert progress.eta == 99 * 86400.0
    assert progress.metric == Metric("loss", 0.5)  # TF2 efficientdet writes loss at the top level


def test_writer_eta_is_used_when_there_is_no_time_per_epoch() -> None:
    line = '{"epoch": 4, "max_epoch": 10, "eta": "0:01:30", "status": "RUNNING"}'
    assert parse_status(line, framework="pytorch").eta == 90.0


def test_default_metric_per_task() -> None:
    assert default_metric("detectnet_v2") == (TF1_MAP, "max")
    assert default_metric("yolo_v4") == (TF1_MAP, "max")
    assert default_metric("dino") == ("val_mAP50", "max")
    assert default_metric("classification_pyt") == ("val_acc_1", "max")
    assert default_metric("classification_tf1") == ("validation_accuracy", "max")
    assert default_metric("unet") == ("loss", "min")
    assert default_metric("converter") is None
    assert metric_direction("val_loss") == "min" and metric_direction("validation cost") == "min"


@pytest.mark.parametrize(
    ("image", "framework"),
    [
        ("nvcr.io/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5", "tf1"),
        ("nvcr.io/nvidia/tao/tao-toolkit:6.0.0-tf2", "tf2"),
        ("nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt", "pytorch"),
        ("taoremote.test/nvidia/tao/tao-toolkit:5.5.0-pyt", "pytorch"),
        ("localhost:5000/tao:6.26.3-deploy", None),
        ("localhost:5000/tao-pyt", None),  # a registry port is not a tag
        ("mytf1image", None),
    ],
)
def test_framework_from_the_image_tag(image: str, framework: str | None) -> None:
    assert framework_of(image) == framework


def test_status_path_per_framework() -> None:
    assert status_path("/workspace/out", "tf1") == "/workspace/out/status.json"
    assert status_path("/workspace/out/", "pytorch") == "/workspace/out/train/status.json"
    assert status_path("/workspace/out", "tf2") == "/workspace/out/train/status.json"
