"""What a sweep shows (PURE: rows and text, printed by the caller): the live table or one line per change,
`sweep status`, the ranking, `sweep best`, `sweep list`."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from taoremote.output import Format, render
from taoremote.sweep import rank_key

if TYPE_CHECKING:
    from taoremote.progress import Direction
    from taoremote.sweep_state import Sweep, TrialRecord

CLEAR = "\033[H\033[J"  # cursor home, clear to the end: the live table redraws in place


@dataclass(frozen=True)
class Live:
    """What the driver knows of a trial beyond its record: epochs done/total and the latest metric."""

    epoch: int | None = None
    max_epoch: int | None = None
    metric: float | None = None


def params_text(params: Sequence[Sequence[str]]) -> str:
    return " ".join(f"{path.rsplit('.', 1)[-1]}={value}" for path, value in params)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def trial_row(record: TrialRecord, live: Live | None = None, *, json: bool = False) -> dict[str, object]:
    live = live or Live()
    progress = f"{live.epoch}/{live.max_epoch}" if live.epoch is not None and live.max_epoch else ""
    if json:
        return {
            "trial": record.index,
            "host": record.host,
            "gpus": list(record.gpus),
            "params": dict(record.params),
            "state": record.state,
            "exit_code": record.exit_code,
            "epoch": live.epoch,
            "max_epoch": live.max_epoch,
            "metric": live.metric,
            "best_metric": record.best_metric,
            "best_epoch": record.best_epoch,
            "job": record.job_id,
        }
    best = "" if record.best_metric is None else f"{record.best_metric:.6g} @{record.best_epoch}"
    return {
        "trial": record.index,
        "host": record.host or "",
        "gpus": ",".join(map(str, record.gpus)),
        "params": params_text(record.params),
        "state": record.state,
        "progress": progress,
        "metric": _number(live.metric),
        "best": best,
        "exit": "" if record.exit_code is None else record.exit_code,
    }


def table(records: Sequence[TrialRecord], lives: Mapping[int, Live], fmt: Format = "table") -> str:
    rows = [trial_row(r, lives.get(r.index), json=fmt == "json") for r in records]
    if not lives and fmt == "table":  # `sweep status`: no driver's live view, only what the state holds
        rows = [{k: v for k, v in row.items() if k not in ("progress", "metric")} for row in rows]
    return render(rows, fmt, empty="No trials.")


def change_line(before: TrialRecord | None, after: TrialRecord, live: Live, seen: Live | None) -> str | None:
    """One line when a trial's state, host or progress changed; None when nothing did."""
    head = f"trial {after.index} [{params_text(after.params)}]"
    if before is None or before.state != after.state:
        where = f" on {after.host} GPU {','.join(map(str, after.gpus))}" if after.host else ""
        if after.state in ("running", "launching", "unknown"):
            return f"{head} {after.state}{where}"
        if after.state == "queued":
            return f"{head} queued"
        code = "" if after.exit_code is None else f" (exit {after.exit_code})"
        best = (
            "" if after.best_metric is None else f", best {after.best_metric:.6g} at epoch {after.best_epoch}"
        )
        return f"{head} {after.state}{code}{best}"
    if live.epoch is not None and (seen is None or seen.epoch != live.epoch):
        metric = "" if live.metric is None else f" metric {live.metric:.6g}"
        return f"{head} epoch {live.epoch}/{live.max_epoch or '?'}{metric}"
    return None


def changes(
    records: Sequence[TrialRecord],
    lives: Mapping[int, Live],
    shown: Mapping[int, TrialRecord],
    shown_lives: Mapping[int, Live],
    *,
    terminal: bool,
) -> str:
    """What to print after a tick: the whole table redrawn (a terminal) or a line per change; '' if none."""
    if terminal:
        same = all(
            shown.get(r.index) == r and shown_lives.get(r.index) == lives.get(r.index) for r in records
        )
        return "" if same else CLEAR + table(records, lives)
    lines = []
    for r in records:
        line = change_line(shown.get(r.index), r, lives.get(r.index, Live()), shown_lives.get(r.index))
        if line:
            lines.append(line)
    return "\n".join(lines)


def ranking(records: Sequence[TrialRecord], direction: Direction) -> list[TrialRecord]:
    return sorted(records, key=lambda r: rank_key(r.state, r.best_metric, direction, r.index))


def ranking_rows(
    records: Sequence[TrialRecord], direction: Direction, metric: str | None
) -> list[dict[str, object]]:
    rows = []
    for place, r in enumerate(ranking(records, direction), start=1):
        rows.append(
            {
                "rank": place,
                "trial": r.index,
                "params": params_text(r.params),
                "state": r.state,
                "exit": "" if r.exit_code is None else r.exit_code,
                metric or "metric": _number(r.best_metric),
                "epoch": "" if r.best_epoch is None else r.best_epoch,
            }
        )
    return rows


@dataclass(frozen=True)
class Best:
    record: TrialRecord
    results_dir: str  # container path
    host_results_dir: str | None
    checkpoint: str | None  # container path
    evaluate: tuple[str, ...]
    export: tuple[str, ...]


def best_text(best: Best | None, metric: str | None) -> str:
    if best is None:
        return "No trial has reported the metric yet." if metric else "No --metric: trials are not ranked."
    r = best.record
    lines = [
        f"best: trial {r.index} [{params_text(r.params)}] {metric} {_number(r.best_metric)}"
        f" at epoch {r.best_epoch}",
        f"results dir: {best.results_dir}"
        + (f" ({best.host_results_dir} on {r.host})" if best.host_results_dir else ""),
        f"newest checkpoint: {best.checkpoint or '(none found)'}",
        f"evaluate: {shlex.join(best.evaluate)}",
        f"export: {shlex.join(best.export)}",
    ]
    return "\n".join(lines)


def best_json(best: Best | None, metric: str | None) -> dict[str, object]:
    if best is None:
        return {"trial": None, "metric": metric}
    r = best.record
    return {
        "trial": r.index,
        "params": dict(r.params),
        "metric": {"name": metric, "value": r.best_metric, "epoch": r.best_epoch},
        "results_dir": best.results_dir,
        "host": r.host,
        "host_results_dir": best.host_results_dir,
        "checkpoint": best.checkpoint,
        "evaluate": list(best.evaluate),
        "export": list(best.export),
    }


def list_rows(
    sweeps: Sequence[Sweep], trials: Mapping[str, Sequence[TrialRecord]]
) -> list[dict[str, object]]:
    rows = []
    for s in sweeps:
        records = trials.get(s.name, ())
        counts: dict[str, int] = {}
        for r in records:
            counts[r.state] = counts.get(r.state, 0) + 1
        rows.append(
            {
                "sweep": s.name,
                "search": s.definition.get("search", ""),
                "trials": len(records),
                "states": " ".join(f"{k}={v}" for k, v in sorted(counts.items())),
                "task": " ".join(s.definition.get("task", [])[:2]),
                "stop_requested": "yes" if s.stop_requested else "",
            }
        )
    return rows
