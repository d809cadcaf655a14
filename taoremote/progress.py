"""Training progress read from TAO's `status.json`: epochs done out of the total, ETA, the task's main
metric and its history. Pure: it receives the file's text, runs nothing.

Facts (reference/sweeps-and-slurm.md §A.2, and the writers themselves, cited in tests/data/status/README.md):
- One JSON object per line, appended (`append=True`): a reused results dir holds several runs.
- TF1 Keras (`epoch = epoch + 1`, `max_epoch = num_epochs`) and TF1 detectnet_v2 (`epoch = step //
  steps_per_epoch`, written at the *start* of that epoch, `max_epoch = num_epochs`) both mean "epochs done" by
  `epoch`; TF2 logs `epoch + 1` too. PyTorch logs the 0-based epoch just finished and `max_epoch =
  max_epochs - 1`: done = epoch + 1.
- `kpi`, `graphical` and `categorical` are sticky: once set they repeat on every later line, so a value on a
  line without `epoch` counts only when it differs from the line before (a fresh measurement).
- Values are numbers or strings (`"0.633"`, `"nan"`, `"Not logged"`, `'"[1, 2]"'`); only finite numbers count.
"""

from __future__ import annotations

import json
import math
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Framework = Literal["tf1", "tf2", "pytorch"]
Direction = Literal["max", "min"]


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    value: float


@dataclass(frozen=True, slots=True)
class Progress:
    """The last run in a status.json. `epoch`/`max_epoch` are epochs done / total, whatever the framework."""

    epoch: int | None = None
    max_epoch: int | None = None
    eta: float | None = None  # seconds, as of the last line written
    metric: Metric | None = None  # the latest value of the metric asked for
    history: tuple[tuple[int, float], ...] = ()  # (epochs done, value), ascending
    status: str | None = None  # STARTED, RUNNING, SUCCESS, FAILURE, SKIPPED: never the job's final state
    message: str | None = None

    def best(self, direction: Direction) -> tuple[int, float] | None:
        """The best value over the run and the first epoch that reached it."""
        if not self.history:
            return None
        pick = max if direction == "max" else min
        value = pick(v for _, v in self.history)
        return next((e, v) for e, v in self.history if v == value)


# Main metric per task, the key the task's own writer uses (tests/data/status/README.md cites each).
_TF1_MAP = "mean average precision"  # Keras KEY_MAP["mAP"] and detectnet_v2 evaluation kpi
_DEFAULT_METRICS: Mapping[str, str] = {
    **dict.fromkeys(
        ("detectnet_v2", "yolo_v3", "yolo_v4", "yolo_v4_tiny", "ssd", "dssd", "retinanet", "faster_rcnn"),
        _TF1_MAP,
    ),
    "classification_tf1": "validation_accuracy",
    "unet": "loss",
    "classification_tf2": "val_accuracy",
    "efficientdet_tf2": "AP50",
    **dict.fromkeys(("dino", "deformable_detr", "rtdetr", "grounding_dino"), "val_mAP50"),
    "classification_pyt": "val_acc_1",
    "segformer": "val_miou",
}


def metric_direction(name: str) -> Direction:
    """TAO AutoML's rule: losses and costs are minimised, everything else maximised."""
    lowered = name.lower()
    return "min" if "loss" in lowered or "cost" in lowered else "max"


def default_metric(task: str) -> tuple[str, Direction] | None:
    name = _DEFAULT_METRICS.get(task)
    return None if name is None else (name, metric_direction(name))


_TAG_FRAMEWORKS: tuple[tuple[str, Framework], ...] = (("tf1", "tf1"), ("tf2", "tf2"), ("pyt", "pytorch"))


def framework_of(image: str) -> Framework | None:
    """The training framework of a TAO image, from its tag (`5.0.0-tf1.15.5`, `6.0.0-tf2`, `6.26.3-pyt`)."""
    tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
    for token, framework in _TAG_FRAMEWORKS:
        if re.search(rf"(^|[-_.]){token}", tag):
            return framework
    return None


def status_path(results_dir: str, framework: Framework) -> str:
    """Where training writes status.json: `<results>` for TF1, `<results>/train` for TF2 and PyTorch (their
    `update_results_dir` appends the task name unless `train.results_dir` is set)."""
    if framework == "tf1":
        return posixpath.join(results_dir, "status.json")
    return posixpath.join(results_dir, "train", "status.json")


def parse_status(text: str, *, framework: Framework, metric: str | None = None) -> Progress:
    """Progress of the last run in TEXT (a status.json's content, possibly cut mid-line by a writer)."""
    run = _Run()
    for line in text.splitlines():
        record = _load(line)
        if record is None:
            continue
        if record.get("status") == "STARTED" or run.goes_back(record, framework):
            run = _Run()  # only the last run in the file counts
        run.add(record, framework, metric)
    return run.progress(metric)


class _Run:
    """What one run's lines add up to so far."""

    def __init__(self) -> None:
        self.done: int | None = None
        self.total: int | None = None
        self.time_per_epoch: float | None = None
        self.eta: float | None = None
        self.latest: float | None = None
        self.previous: float | None = None  # the metric on the line before: sticky repeats are not news
        self.history: dict[int, float] = {}
        self.status: str | None = None
        self.message: str | None = None

    def goes_back(self, record: Mapping[str, Any], framework: Framework) -> bool:
        """Epochs going backwards: a new run that wrote no STARTED line."""
        epoch = _int(record.get("epoch"))
        return epoch is not None and self.done is not None and epoch + _offset(framework) < self.done

    def add(self, record: Mapping[str, Any], framework: Framework, metric: str | None) -> None:
        offset = _offset(framework)
        epoch = _int(record.get("epoch"))
        if epoch is not None:
            self.done = epoch + offset
            self.time_per_epoch = _seconds(record.get("time_per_epoch"))
            self.eta = _seconds(record.get("eta"))
        total = _int(record.get("max_epoch"))
        if total is not None:
            self.total = total + offset
        status = record.get("status")
        self.status = status if isinstance(status, str) else self.status
        message = record.get("message")
        self.message = message if isinstance(message, str) else None
        if status == "SUCCESS" and self.total is not None:
            self.done = self.total  # detectnet_v2 writes no line after its last epoch
        value = _metric_value(record, metric) if metric else None
        if value is not None:
            self.latest = value
            if epoch is not None:
                self.history[self.done or 0] = value
            elif value != self.previous:
                at = (self.done or 0) + 1  # measured after the last epoch line, before the next
                self.history[at if self.total is None else min(at, self.total)] = value
        self.previous = value

    def progress(self, metric: str | None) -> Progress:
        return Progress(
            epoch=self.done,
            max_epoch=self.total,
            eta=self._eta(),
            metric=None if metric is None or self.latest is None else Metric(metric, self.latest),
            history=tuple(sorted(self.history.items())),
            status=self.status,
            message=self.message,
        )

    def _eta(self) -> float | None:
        if self.done is not None and self.total is not None:
            if self.done >= self.total:
                return 0.0
            if self.time_per_epoch:  # detectnet_v2's first line says 0:00:00 for both
                return self.time_per_epoch * (self.total - self.done)
        return self.eta or None


def _offset(framework: Framework) -> int:
    return 1 if framework == "pytorch" else 0  # PyTorch logs the 0-based epoch just finished


def _load(line: str) -> dict[str, Any] | None:
    """One line's object; None for a blank, cut-off or foreign line."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _metric_value(record: Mapping[str, Any], name: str) -> float | None:
    # kpi first (the writers' headline numbers), then graphical, then top-level (TF2 efficientdet's "loss")
    for section in (record.get("kpi"), record.get("graphical"), record):
        if isinstance(section, Mapping) and name in section:
            return _number(section[name])
    return None


def _number(value: Any) -> float | None:
    """A finite float from a number or a numeric string (as TAO AutoML's force_float); None otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


_TIMEDELTA = re.compile(r"^(?:(-?\d+) days?, )?(\d+):(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")


def _seconds(value: Any) -> float | None:
    """Seconds from Python's str(timedelta) ("0:05:12.345678", "1 day, 2:03:04") or a plain number."""
    if isinstance(value, str):
        match = _TIMEDELTA.match(value.strip())
        if match is None:
            return None
        days, hours, minutes, secs = match.groups()
        return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(secs)
    number = _number(value)
    return number if number is not None and number >= 0 else None


# ---------------------------------------------------------------------------------------------- list


def job_progress(image: str, task: str, status_files: Mapping[str, str]) -> Progress | None:
    """A job's progress from the status.json tails `list` read under its results dir (path below it →
    text), the task's main metric (default_metric) included. The image's framework says which file
    training writes; for an image whose tag names none, `train/status.json` is read as PyTorch's, else
    `status.json` as TF1's. None when the file training writes was not there."""
    framework = framework_of(image)
    candidates: tuple[tuple[str, Framework], ...]
    if framework is None:
        candidates = (("train/status.json", "pytorch"), ("status.json", "tf1"))
    else:
        at = "status.json" if framework == "tf1" else "train/status.json"
        candidates = ((at, framework),)
    metric = default_metric(task)
    name = metric[0] if metric else None
    for at, fw in candidates:
        if at in status_files:
            return _latest(status_files[at], fw, name)
    return None


_RECENT_LINES = 24  # a few epochs of any writer: each epoch line holds epoch, max_epoch and the sticky kpi


def _latest(text: str, framework: Framework, metric: str | None) -> Progress:
    """parse_status's epoch, total, ETA, latest metric and status, from the last lines alone when they hold
    an epoch line and the metric (`list` parses one tail per job: the whole tail costs it milliseconds)."""
    lines = text.splitlines()
    if len(lines) > _RECENT_LINES:
        recent = parse_status("\n".join(lines[-_RECENT_LINES:]), framework=framework, metric=metric)
        if recent.epoch is not None and (metric is None or recent.metric is not None):
            return recent
    return parse_status(text, framework=framework, metric=metric)


_SHORT_METRIC_NAMES = {_TF1_MAP: "mAP"}  # the table stays narrow


def metric_text(metric: Metric) -> str:
    """`mAP=0.4123`: the metric as a narrow table cell (4 significant digits)."""
    return f"{_SHORT_METRIC_NAMES.get(metric.name, metric.name)}={metric.value:.4g}"


def eta_text(seconds: float) -> str:
    """`45s`, `12m`, `1h05m`, `2d03h`: an ETA as a narrow table cell (rounded up: never 0 before the end)."""
    left = math.ceil(seconds)
    if left < 60:
        return f"{left}s"
    minutes = math.ceil(left / 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"
