"""PURE: a job as `list` shows it - the row of the table or of the JSON, with the progress, ETA, metric and
trial columns a job has (progress.py reads its status.json).
"""

from __future__ import annotations

from dataclasses import dataclass

from taoremote.containers import LIVE_STATES, Job
from taoremote.output import Format


@dataclass(frozen=True)
class ListColumns:
    host: bool
    progress: bool = False
    trial: bool = False


def job_row(job: Job, shown: ListColumns, fmt: Format = "table") -> dict[str, object]:
    """One job as `list` shows it. JSON: `epoch`/`max_epoch` (epochs done / total), `eta` (whole seconds
    left, as of the last status line; null once the job has ended), `metric` ({name, value}), null when
    unknown; `sweep`/`trial` for a sweep's trials. The table: PROGRESS `3/10`, ETA `12m`, METRIC
    `mAP=0.412`, TRIAL `NAME#3`."""
    row: dict[str, object] = {"host": job.host} if shown.host else {}
    row.update(
        {
            "job": job.job_id,
            "container_id": job.container_id[:12],
            "task": job.task,
            "status": job.status,
            "exit_code": job.exit_code if job.exit_code is not None else "",
        }
    )
    if shown.trial and fmt == "table":
        row["trial"] = f"{job.sweep}#{job.trial}" if job.sweep else ""
    elif job.sweep:
        row.update({"sweep": job.sweep, "trial": int(job.trial) if job.trial.isdigit() else job.trial})
    if shown.progress:
        row.update(_progress_cells(job, fmt))
    row.update({"gpus": job.gpus, "user": job.user, "command": job.command})
    return row


def _progress_cells(job: Job, fmt: Format) -> dict[str, object]:
    done = total = eta = metric = None
    if job.status_files:  # only then is there anything to parse: progress.py is not imported otherwise
        from taoremote import progress

        found = progress.job_progress(job.image, job.task, dict(job.status_files))
        if found is not None:
            done, total, metric = found.epoch, found.max_epoch, found.metric
            live = job.state in LIVE_STATES  # an ended job's last ETA is no ETA
            eta = round(found.eta) if live and found.eta is not None else None
    if fmt == "json":
        shown_metric = None if metric is None else {"name": metric.name, "value": metric.value}
        return {"epoch": done, "max_epoch": total, "eta": eta, "metric": shown_metric}
    cells: dict[str, object] = {"progress": "", "eta": "", "metric": ""}
    if done is not None or total is not None:
        cells["progress"] = f"{'?' if done is None else done}/{'?' if total is None else total}"
    if eta is not None:
        from taoremote.progress import eta_text

        cells["eta"] = eta_text(eta)
    if metric is not None:
        from taoremote.progress import metric_text

        cells["metric"] = metric_text(metric)
    return cells
