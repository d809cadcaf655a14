"""`list` shows each job's progress from its status.json, read in the same command as `docker ps` (issue 9):
the argv builder, the shell script run by a real `sh` against a stand-in `docker`, its parser, the rows
`list` prints, the results label a launch records, and one executor run per host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from taoremote import actions, fleet, hosts, jobs, list_rows
from taoremote.command import build_list_argv, build_ps_argv
from taoremote.containers import LIST_SCRIPT, LIST_TEMPLATE, PS_TEMPLATE, STATUS_TAIL_BYTES, Job, parse_list
from taoremote.progress import Metric, default_metric, eta_text, job_progress, metric_text
from taoremote.settings import Globals
from tests.unit.fakes import FakeExecutor, opener, run

DATA = Path(__file__).resolve().parents[1] / "data" / "status"
PYT = "nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt"
TF1 = "nvcr.io/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5"
CID = "c" * 64
MARK = "5eed"  # the random marker of one call


def _row(cid: str = CID, *, results: str = "", image: str = PYT, task: str = "dino", **labels: str) -> dict:
    return {
        "id": cid,
        "name": f"taoremote-{task}-{cid[:8]}",
        "image": image,
        "state": labels.pop("state", "running"),
        "status": labels.pop("status", "Up 3 minutes"),
        "created": "2025-03-04 05:06:07 +0000 UTC",
        "job": cid[:8],
        "task": task,
        "command": f"{task} train",
        "gpus": "all",
        "started": "2025-03-04T05:06:07Z",
        "user": "tester",
        "results": results,
        "sweep": labels.pop("sweep", ""),
        "trial": labels.pop("trial", ""),
    }


def _line(row: dict) -> str:
    """One line as `docker ps --format LIST_TEMPLATE` prints it."""
    return f"{json.dumps(row)}\t{row['id']}\t{row['results']}"


# ---------------------------------------------------------------------------------------------- builder


def test_list_argv_is_one_sh_command_around_the_docker_ps_with_the_list_template() -> None:
    # /bin/sh by path: `list` must still say "docker: command not found" when PATH has no sh in it
    assert build_list_argv(include_stopped=True, marker=MARK) == (
        "/bin/sh", "-c", LIST_SCRIPT, "sh", MARK,
        "docker", "ps", "--all", "--no-trunc", "--filter", "label=taoremote.job", "--format", LIST_TEMPLATE,
    )  # fmt: skip
    assert build_list_argv(include_stopped=False, marker=MARK)[5:] == build_ps_argv(
        include_stopped=False, template=LIST_TEMPLATE
    )
    for bad in ("", "5EED", "a b", "$(x)"):
        with pytest.raises(ValueError):
            build_list_argv(include_stopped=False, marker=bad)
    # the JSON every other command reads, then the fields the script reads: the full id and the raw label
    assert LIST_TEMPLATE == PS_TEMPLATE + '\t{{.ID}}\t{{.Label "taoremote.results"}}'
    assert '"results":{{json (.Label "taoremote.results")}}' in PS_TEMPLATE
    assert '"sweep":{{json (.Label "taoremote.sweep")}}' in PS_TEMPLATE


# ---------------------------------------------------------------------------------------------- script


@pytest.fixture
def fake_docker(tmp_path: Path) -> Path:
    """A `docker` that prints the file $FAKE_PS (what `docker ps` would) and exits $FAKE_RC."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(
        '#!/bin/sh\nprintf "%s\\n" "$*" > "$FAKE_ARGS"\ncat "$FAKE_PS"\n'
        'if [ "${FAKE_RC:-0}" != 0 ]; then echo "Cannot connect to the Docker daemon" >&2; fi\n'
        "exit ${FAKE_RC:-0}\n"
    )
    docker.chmod(0o755)
    return bin_dir


def _run_script(
    bin_dir: Path, lines: list[str], *, rc: int = 0, include_stopped: bool = True
) -> subprocess.CompletedProcess[str]:
    ps = bin_dir.parent / "ps.out"
    ps.write_text("".join(f"{ln}\n" for ln in lines))
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "FAKE_PS": str(ps),
        "FAKE_ARGS": str(bin_dir.parent / "args"),
        "FAKE_RC": str(rc),
    }
    argv = build_list_argv(include_stopped=include_stopped, marker=MARK)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, cwd=bin_dir.parent)


def test_the_script_passes_docker_its_argv_and_reads_both_status_files(
    fake_docker: Path, tmp_path: Path
) -> None:
    results = tmp_path / "res"
    (results / "train").mkdir(parents=True)
    (results / "status.json").write_text('{"epoch": 1, "max_epoch": 3}\n')
    (results / "train" / "status.json").write_text((DATA / "dino.json").read_text())
    done = _run_script(fake_docker, [_line(_row(results=str(results))), _line(_row("d" * 64))])
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "args").read_text() == " ".join(
        build_list_argv(include_stopped=True, marker=MARK)[6:]
    ) + "\n"
    (job, other) = parse_list("gpu1", done.stdout, MARK)
    assert other.status_files == ()
    assert dict(job.status_files) == {
        "status.json": '{"epoch": 1, "max_epoch": 3}',  # the text, less its trailing newlines
        "train/status.json": (DATA / "dino.json").read_text().rstrip("\n"),
    }
    assert (job.host, job.results, job.container_id) == ("gpu1", str(results), CID)


def test_a_label_is_data_never_shell_code(fake_docker: Path, tmp_path: Path) -> None:
    odd = tmp_path / "it's a $(touch pwned) `touch pwned2` ; dir"
    odd.mkdir()
    (odd / "status.json").write_text('{"epoch": 2, "max_epoch": 4}\n')
    done = _run_script(fake_docker, [_line(_row(results=str(odd), image=TF1, task="yolo_v4"))])
    assert done.returncode == 0, done.stderr
    assert not list(tmp_path.glob("pwned*"))
    (job,) = parse_list("local", done.stdout, MARK)
    assert job.status_files == (("status.json", '{"epoch": 2, "max_epoch": 4}'),)


def test_the_tail_is_bounded_and_a_file_cut_mid_line_cannot_join_the_next_header(
    fake_docker: Path, tmp_path: Path
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
    lines = [
        json.dumps({"epoch": e, "max_epoch": 500, "kpi": {"mean average precision": e / 500}})
        for e in range(500)
    ]
    (a / "status.json").write_text("\n".join(lines) + '\n{"epoch": 500, "max_ep')  # a writer mid-line
    (b / "status.json").write_text('{"epoch": 7, "max_epoch": 9}\n')
    rows = [
        _line(_row("a" * 64, results=str(a), image=TF1)),
        _line(_row("b" * 64, results=str(b), image=TF1)),
    ]
    done = _run_script(fake_docker, rows)
    first, second = parse_list("local", done.stdout, MARK)
    text = dict(first.status_files)["status.json"]
    assert len(text) == STATUS_TAIL_BYTES and text.endswith('{"epoch": 500, "max_ep')
    assert second.status_files == (("status.json", '{"epoch": 7, "max_epoch": 9}'),)
    progress = job_progress(TF1, "yolo_v4", dict(first.status_files))
    assert progress is not None and (progress.epoch, progress.max_epoch) == (499, 500)


def test_a_file_cannot_forge_a_header_without_the_marker(fake_docker: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
    forged = f'{{"epoch": 1}}\n#status {MARK[::-1]} {"b" * 64} status.json\n{{"epoch": 99}}\n#status\n'
    (a / "status.json").write_text(forged)
    rows = [_line(_row("a" * 64, results=str(a))), _line(_row("b" * 64, results=str(b)))]
    first, second = parse_list("local", _run_script(fake_docker, rows).stdout, MARK)
    assert first.status_files == (("status.json", forged.rstrip("\n")),)
    assert second.status_files == ()


def test_no_section_without_a_readable_regular_file_or_for_a_relative_label(
    fake_docker: Path, tmp_path: Path
) -> None:
    (tmp_path / "fifo").mkdir()
    os.mkfifo(tmp_path / "fifo" / "status.json")  # reading it would hang the list
    (tmp_path / "rel").mkdir()
    (tmp_path / "rel" / "status.json").write_text("{}\n")
    rows = [
        _line(_row("1" * 64, results=str(tmp_path / "fifo"))),
        _line(_row("2" * 64, results="rel")),
        _line(_row("3" * 64, results=str(tmp_path / "absent"))),
    ]
    done = _run_script(fake_docker, rows)
    assert done.returncode == 0, done.stderr
    assert "#status" not in done.stdout
    assert [j.status_files for j in parse_list("local", done.stdout, MARK)] == [(), (), ()]


def test_a_failing_docker_fails_the_script_with_its_code_and_message(fake_docker: Path) -> None:
    done = _run_script(fake_docker, [], rc=3)
    assert (done.returncode, done.stdout) == (3, "")
    assert "Cannot connect to the Docker daemon" in done.stderr


def test_no_jobs_is_an_empty_listing(fake_docker: Path) -> None:
    done = _run_script(fake_docker, [], include_stopped=False)
    assert done.returncode == 0
    assert parse_list("local", done.stdout, MARK) == []


# ---------------------------------------------------------------------------------------------- parser


def test_parse_list_gives_each_job_only_its_own_sections() -> None:
    out = "\n".join(
        [
            _line(_row("a" * 64, results="/r/a")),
            _line(_row("b" * 64, results="/r/b")),
            f"#status {MARK} {'b' * 64} train/status.json",
            '{"epoch": 0, "max_epoch": 1}',
            "",
            f"#status {MARK} {'9' * 64} status.json",  # no such job: ignored
            "{}",
        ]
    )
    a, b = parse_list("h", out, MARK)
    assert a.status_files == ()
    assert b.status_files == (("train/status.json", '{"epoch": 0, "max_epoch": 1}'),)


def test_a_label_holding_a_newline_gets_no_progress_and_its_rest_is_no_row() -> None:
    row = _row(results="/r/a\n{not json")
    out = f"{json.dumps(row)}\t{CID}\t/r/a\n{{not json\n#status {MARK} {CID} status.json\n{{}}\n"
    (job,) = parse_list("h", out, MARK)
    assert (job.results, job.status_files) == ("/r/a\n{not json", ())


def test_sweep_labels_reach_the_job() -> None:
    (job,) = parse_list("h", _line(_row(sweep="lr", trial="3")), MARK)
    assert (job.sweep, job.trial) == ("lr", "3")


# ---------------------------------------------------------------------------------------------- reading


def test_the_image_framework_picks_the_file_and_the_epoch_base() -> None:
    dino = (DATA / "dino.json").read_text()
    files = {"status.json": '{"epoch": 1, "max_epoch": 50}', "train/status.json": dino}
    pyt = job_progress(PYT, "dino", files)
    tf1 = job_progress(TF1, "dino", files)
    assert pyt is not None and tf1 is not None
    assert (tf1.epoch, tf1.max_epoch) == (1, 50)
    assert pyt.metric is not None and pyt.metric.name == "val_mAP50"
    # an image whose tag names no framework: train/status.json as PyTorch's, else status.json as TF1's
    assert job_progress("my/own:latest", "dino", files) == pyt
    assert job_progress("my/own:latest", "dino", {"status.json": files["status.json"]}) == tf1
    assert job_progress(PYT, "dino", {"status.json": files["status.json"]}) is None


def test_eta_and_metric_cells_are_narrow() -> None:
    assert [eta_text(s) for s in (0, 0.2, 59, 60, 61, 719.5, 3600, 3661, 86400 + 3 * 3600)] == [
        "0s", "1s", "59s", "1m", "2m", "12m", "1h00m", "1h02m", "1d03h",
    ]  # fmt: skip
    assert metric_text(Metric("mean average precision", 0.41234)) == "mAP=0.4123"
    assert metric_text(Metric("val_loss", 1.5e-5)) == "val_loss=1.5e-05"


# ---------------------------------------------------------------------------------------------- rows


def _job(**fields: object) -> Job:
    (job,) = parse_list("gpu1", _line(_row(results="/r")), MARK)
    return Job(**{**job.__dict__, **fields})


def test_json_rows_carry_progress_fields_null_when_unknown() -> None:
    shown = list_rows.ListColumns(host=True, progress=True)
    unknown = list_rows.job_row(_job(results=""), shown, "json")
    assert {k: unknown[k] for k in ("epoch", "max_epoch", "eta", "metric")} == dict.fromkeys(
        ("epoch", "max_epoch", "eta", "metric")
    )
    assert "sweep" not in unknown
    files = (("train/status.json", (DATA / "dino.json").read_text()),)
    row = list_rows.job_row(_job(status_files=files, sweep="lr", trial="2"), shown, "json")
    progress = job_progress(PYT, "dino", dict(files))
    assert progress is not None and progress.metric is not None
    assert (row["epoch"], row["max_epoch"]) == (progress.epoch, progress.max_epoch)
    assert row["metric"] == {"name": "val_mAP50", "value": progress.metric.value}
    assert (row["sweep"], row["trial"]) == ("lr", 2)
    assert json.loads(json.dumps(row)) == row


def test_eta_is_whole_seconds_while_live_and_null_once_ended() -> None:
    files = (("train/status.json", '{"epoch": 1, "max_epoch": 9, "time_per_epoch": "0:00:30.4"}'),)
    shown = list_rows.ListColumns(host=False, progress=True)
    live = list_rows.job_row(_job(status_files=files), shown, "json")
    ended = list_rows.job_row(_job(status_files=files, state="exited"), shown, "json")
    assert (live["epoch"], live["max_epoch"], live["eta"]) == (2, 10, 243)
    assert (ended["epoch"], ended["eta"]) == (2, None)
    table = list_rows.job_row(_job(status_files=files), shown, "table")
    assert (table["progress"], table["eta"], table["metric"]) == ("2/10", "5m", "")


def test_table_rows_show_progress_eta_metric_and_trial_before_the_wide_columns() -> None:
    files = (("status.json", '{"epoch": 3, "max_epoch": 10, "time_per_epoch": "0:04:00", "kpi": '
              '{"mean average precision": 0.412}}'),)  # fmt: skip
    job = _job(image=TF1, task="yolo_v4", status_files=files, sweep="lr", trial="3")
    row = list_rows.job_row(job, list_rows.ListColumns(host=True, progress=True, trial=True))
    assert list(row) == [
        "host", "job", "container_id", "task", "status", "exit_code", "trial", "progress", "eta", "metric",
        "gpus", "user", "command",
    ]  # fmt: skip
    assert (row["trial"], row["progress"], row["eta"], row["metric"]) == ("lr#3", "3/10", "28m", "mAP=0.412")
    plain = list_rows.job_row(_job(results=""), list_rows.ListColumns(host=False))
    assert list(plain) == ["job", "container_id", "task", "status", "exit_code", "gpus", "user", "command"]


# ---------------------------------------------------------------------------------------------- round trips


def test_list_over_three_hosts_is_one_executor_run_per_host(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    line = json.dumps({"epoch": 4, "max_epoch": 9, "kpi": {"val_mAP50": 0.5}})
    monkeypatch.setattr(jobs, "list_marker", lambda: MARK)
    fakes = []
    for i, host in enumerate(("gpu1", "gpu2", "gpu3")):
        cid = str(i) * 64
        out = _line(_row(cid, results=f"/r/{i}")) + "\n" + f"#status {MARK} {cid} train/status.json\n{line}\n"
        argv = build_list_argv(include_stopped=False, marker=MARK)
        fakes.append(FakeExecutor(run(argv, stdout=out), host=host))
    monkeypatch.setattr(hosts, "open_executor", opener(*fakes))
    g = Globals(None, ("gpu1", "gpu2", "gpu3"), None, None, "all", False, False, True, "json")
    assert actions.list_cmd(g, include_stopped=False, fmt="json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["host"], r["epoch"], r["max_epoch"], r["metric"]) for r in rows] == [
        (h, 5, 10, {"name": "val_mAP50", "value": 0.5}) for h in ("gpu1", "gpu2", "gpu3")
    ]
    for fake in fakes:
        fake.verify()  # exactly the one scripted run: any other call would have failed the test
        assert len(fake.calls) == 1
    assert fleet  # the fan-out is fleet's: opened through hosts.open_executor, as patched


# ---------------------------------------------------------------------------------------------- imports


def test_help_and_a_list_row_without_status_files_import_no_progress_sqlite_or_optuna(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from taoremote import actions, list_rows  # what `list` loads\n"
        "from taoremote.containers import parse_list\n"
        f"(job,) = parse_list('h', {_line(_row(results='/r'))!r}, 'ab')\n"
        "print(list_rows.job_row(job, list_rows.ListColumns(host=False, progress=True)))\n"
        "print(sorted(m for m in sys.modules if m in ('taoremote.progress', 'sqlite3', 'optuna', 'numpy')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines()[-1] == "[]"
    helped = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "taoremote", "--help"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": str(tmp_path)},
    )  # fmt: skip
    assert helped.returncode == 0, helped.stderr[-2000:]
    loaded = {line.rsplit("|", 1)[-1].strip() for line in helped.stderr.splitlines()}
    assert "taoremote.cli" in loaded
    assert loaded & {"taoremote.progress", "sqlite3", "_sqlite3", "optuna", "numpy"} == set()


# ---------------------------------------------------------------------------------------------- the label


def _results_label(argv: list[str]) -> str | None:
    from tests.unit.test_plan import _probed

    return dict(_probed(argv).spec.labels).get("taoremote.results")


@pytest.mark.parametrize(
    ("args", "label"),
    [
        (["-r", "/workspace/results/exp1"], "/home/u/results/exp1"),
        (["--results_dir", "/workspace/results/a/../b/"], "/home/u/results/b"),
        (["results_dir=/workspace/results/exp1"], "/home/u/results/exp1"),
        (["--results_dir=/workspace/results"], "/home/u/results"),  # the mount's destination itself
        (["-r", "/elsewhere/exp1"], None),  # under no mount: it lives in the container only
        (["-r", "relative"], None),
        (["train.results_dir=/workspace/results/x"], None),  # TAO writes train/ only below results_dir
        (["-r", "/workspace/results/a", "results_dir=/workspace/results/b"], None),  # which one?
        ([], None),
    ],
)
def test_a_launch_labels_the_host_path_of_the_results_dir_when_it_knows_it(
    args: list[str], label: str | None
) -> None:
    assert _results_label(["model", "dino", "train", "-e", "/workspace/data/spec.yaml", *args]) == label


def test_a_run_command_or_a_shell_gets_no_results_label() -> None:
    assert _results_label(["model", "dino", "run", "ls", "-r", "/workspace/results/x"]) is None


def _shown(p: object) -> tuple[object, ...]:
    return tuple(getattr(p, f) for f in ("epoch", "max_epoch", "eta", "metric", "status"))


@pytest.mark.parametrize("fixture", sorted(p.name for p in DATA.glob("*.json")))
def test_list_reads_the_same_progress_from_the_last_lines_as_from_the_whole_tail(fixture: str) -> None:
    from taoremote.progress import parse_status

    text = (DATA / fixture).read_text()
    long_run = "\n".join(text.splitlines() * 20)  # appended runs, far past the last lines `list` parses
    for image, at, fw in ((PYT, "train/status.json", "pytorch"), (TF1, "status.json", "tf1")):
        for task in ("dino", "yolo_v4", "classification_tf1", "detectnet_v2"):
            for body in (text, long_run):
                full = parse_status(body, framework=fw, metric=(default_metric(task) or (None,))[0])  # type: ignore[arg-type]
                assert _shown(job_progress(image, task, {at: body})) == _shown(full), (image, task)
