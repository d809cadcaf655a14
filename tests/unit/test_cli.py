"""The typer app through CliRunner, for everything that starts no process: help, version, usage errors,
dry runs (no --host needed to connect, no --gpus auto:N) and `info`."""

from __future__ import annotations

import json
import re
import shlex
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taoremote.cli import app, main
from taoremote.errors import ConfigError, UsageError

ROOT = Path(__file__).resolve().parents[2]
# the version as packaged, read from pyproject.toml rather than from the code under test
VERSION = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)  # type: ignore[union-attr]
MOUNTS_JSON = """{
  "Mounts": [{"source": "~/tao/data", "destination": "/workspace/data", "read_only": true},
             {"source": "/srv/results", "destination": "/workspace/results"}],
  "Envs": [{"variable": "NGC_API_KEY", "value": "nvapi-s3cr3t"},
           {"variable": "CUDA_DEVICE_ORDER", "value": "PCI_BUS_ID"},
           {"variable": "WANDB_API_KEY", "from_env": "MY_WANDB"}]
}"""

runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HOME (no ~/.tao_mounts.json, no ~/.tao/config.json) and no taoremote variables."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("LOGNAME", "tester")
    for name in ("TAOREMOTE_HOSTS", "LAUNCHER_MOUNTS", "OVERRIDE_REGISTRY", "MY_WANDB"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def mounts(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = home / "mounts.json"
    path.write_text(MOUNTS_JSON)
    monkeypatch.setenv("MY_WANDB", "wandb-s3cr3t")
    return path


@pytest.fixture
def restore_signals() -> Iterator[None]:
    """main() installs SIGTERM/SIGHUP handlers; put pytest's back afterwards."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def _main(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(sys, "argv", ["taoremote", *argv])
    with pytest.raises(SystemExit) as info:
        main()
    code = info.value.code
    assert isinstance(code, int)
    return code


# ---------------------------------------------------------------------------------------------- help, version


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_the_commands_but_not_the_hidden_task_dispatcher(flag: str) -> None:
    result = runner.invoke(app, [flag], prog_name="taoremote")
    assert result.exit_code == 0
    commands = result.output.split("Commands:", 1)[1]
    assert [line.split()[0] for line in commands.strip().splitlines()] == [
        "list",
        "stop",
        "logs",
        "prune",
        "info",
        "doctor",
        "sweep",
    ]
    assert "_task" not in result.output


def test_help_explains_the_task_grammar_and_the_exit_codes() -> None:
    output = runner.invoke(app, ["--help"], prog_name="taoremote").output
    assert "taoremote [OPTIONS] [model|dataset|deploy] TASK SUBTASK [ARGS...]" in output
    assert "taoremote [OPTIONS] TASK run COMMAND..." in output
    assert "interactive shell (needs a terminal)" in output
    # the whole line follows errors.EXIT_CODES (tests/unit/test_exit_codes.py); here: it is there, in order
    assert "Exit codes: the task's own; 1 no such job or a failed check; 2 usage; 68 SSH; 69 docker" in output


def test_no_arguments_shows_the_help_and_exits_2() -> None:
    result = runner.invoke(app, [], prog_name="taoremote")
    assert result.exit_code == 2
    assert "Commands:" in result.output


def test_version_prints_the_packaged_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert (result.exit_code, result.output) == (0, f"taoremote {VERSION}\n")


def test_version_wins_over_a_command() -> None:
    assert runner.invoke(app, ["--version", "stop"]).output == f"taoremote {VERSION}\n"


# ---------------------------------------------------------------------------------------------- usage errors


def test_stop_with_neither_ids_nor_all_is_a_usage_error(home: Path) -> None:
    result = runner.invoke(app, ["stop"])
    assert isinstance(result.exception, UsageError)
    assert result.exception.exit_code == 2
    assert str(result.exception) == "give --container_id ID [ID ...] or --all"


def test_stop_with_neither_ids_nor_all_exits_2_with_one_line_on_stderr(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], restore_signals: None
) -> None:
    assert _main(["stop"], monkeypatch) == 2
    captured = capsys.readouterr()
    assert captured.err == "taoremote: error: give --container_id ID [ID ...] or --all\n"
    assert captured.out == ""


def test_unknown_format_is_a_usage_error_before_any_command_runs(home: Path) -> None:
    result = runner.invoke(app, ["--format", "xml", "list"])
    assert isinstance(result.exception, UsageError)
    assert str(result.exception) == "--format 'xml': expected table or json"


def test_unknown_format_exits_2(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], restore_signals: None
) -> None:
    assert _main(["--format", "xml", "list"], monkeypatch) == 2
    assert capsys.readouterr().err == "taoremote: error: --format 'xml': expected table or json\n"


def test_unknown_format_on_info_is_a_usage_error(home: Path) -> None:
    result = runner.invoke(app, ["info", "--format", "xml"])
    assert isinstance(result.exception, UsageError)


def test_logs_without_a_job_is_clicks_usage_error_exit_2(home: Path) -> None:
    result = runner.invoke(app, ["logs"])
    assert result.exit_code == 2
    assert "Missing argument" in result.output


def test_task_group_alone_prints_its_tasks_and_exits_0_as_the_launcher_does(home: Path) -> None:
    result = runner.invoke(app, ["--dry-run", "dataset"])
    assert result.exit_code == 0, result.output
    assert "dataset tasks: analytics, annotations, augmentation, auto_label, skin_tone" in result.output


def test_bad_gpus_value_is_a_usage_error(home: Path) -> None:
    result = runner.invoke(app, ["--dry-run", "--gpus", "0", "dino", "train"])
    assert isinstance(result.exception, UsageError)


def test_mounts_file_named_but_missing_is_a_config_error_exit_78(home: Path) -> None:
    missing = home / "nope.json"
    result = runner.invoke(app, ["--mounts", str(missing), "info"])
    assert isinstance(result.exception, ConfigError)
    assert result.exception.exit_code == 78
    assert str(result.exception) == f"{missing}: mounts file named by --mounts does not exist"


def test_invalid_mounts_file_is_a_config_error_naming_the_path(home: Path) -> None:
    bad = home / "bad.json"
    bad.write_text('{"Mounts": [{"source": "/srv/data", "destination": "workspace"}]}')
    result = runner.invoke(app, ["--mounts", str(bad), "--dry-run", "dino", "train"])
    assert isinstance(result.exception, ConfigError)
    assert "$.Mounts[0].destination" in str(result.exception)


# ---------------------------------------------------------------------------------------------- dry run


def _dry_run_lines(output: str) -> tuple[str, str, list[str]]:
    """(job id, start time, the command line split like a shell would)."""
    lines = output.splitlines()
    job = re.fullmatch(r"# job: taoremote-[\w.-]+-([0-9a-f]{8})", lines[1])
    started = re.search(r"taoremote\.started=(\S+)", lines[-1])
    assert job is not None and started is not None, output
    return job.group(1), started.group(1), shlex.split(lines[-1])


def test_a_tasks_own_help_after_the_task_name_reaches_the_task(home: Path, mounts: Path) -> None:
    result = runner.invoke(app, ["--mounts", str(mounts), "--dry-run", "detectnet_v2", "train", "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "# host: local"
    job, started, argv = _dry_run_lines(result.output)
    assert argv == [
        "docker", "run", "--rm", "--init",
        "--name", f"taoremote-detectnet_v2-{job}",
        "--label", f"taoremote.job={job}",
        "--label", "taoremote.task=detectnet_v2",
        "--label", "taoremote.command=detectnet_v2 train --help",
        "--label", "taoremote.gpus=all",
        "--label", f"taoremote.started={started}",
        "--label", "taoremote.user=tester",
        "--gpus", "all",
        "-v", f"{home}/tao/data:/workspace/data:ro",
        "-v", "/srv/results:/workspace/results",
        "--env-file", "<env-file>",
        "-e", "TAO_CLIENT_TYPE=launcher",
        "nvcr.io/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5",
        "detectnet_v2", "train", "--help",
    ]  # fmt: skip


def test_a_tasks_short_help_in_the_group_grammar_reaches_the_task(home: Path) -> None:
    result = runner.invoke(app, ["--dry-run", "model", "dino", "train", "-h"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1].endswith(" nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt dino train -h")


def test_options_after_the_task_name_belong_to_the_task_not_to_taoremote(home: Path) -> None:
    result = runner.invoke(app, ["--dry-run", "dino", "train", "--gpus", "0", "--format", "xml"])
    assert result.exit_code == 0, result.output
    _, _, argv = _dry_run_lines(result.output)
    assert argv[argv.index("--gpus") + 1] == "all"
    assert argv[-6:] == ["dino", "train", "--gpus", "0", "--format", "xml"]


def test_dry_run_never_shows_a_secret_value(home: Path, mounts: Path) -> None:
    result = runner.invoke(app, ["--mounts", str(mounts), "--dry-run", "dino", "train"])
    assert result.exit_code == 0, result.output
    assert "nvapi-s3cr3t" not in result.output
    assert "wandb-s3cr3t" not in result.output


def test_remote_dry_run_shows_the_host_and_an_uploaded_env_file(home: Path, mounts: Path) -> None:
    result = runner.invoke(app, ["--mounts", str(mounts), "--host", "gpu1", "--dry-run", "dino", "train"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "# host: gpu1"
    assert lines[2:6] == [
        "# env values reach the container through a 0600 --env-file uploaded over SFTP, "
        "deleted once it exists:",
        "#   NGC_API_KEY=****",
        "#   CUDA_DEVICE_ORDER=PCI_BUS_ID",
        "#   WANDB_API_KEY=****",
    ]
    assert lines[6].startswith("docker run --rm --init ") and " --env-file '<env-file>' " in lines[6]
    assert " -v '~/tao/data:/workspace/data:ro' " in lines[6]


def test_override_registry_changes_the_dry_run_image(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVERRIDE_REGISTRY", "registry.example.com:5000")
    result = runner.invoke(app, ["--dry-run", "dino", "train"])
    assert " registry.example.com:5000/nvidia/tao/tao-toolkit:6.26.3-pyt dino train" in result.output


def test_dry_run_of_a_run_command_keeps_its_arguments_one_element_each(home: Path) -> None:
    result = runner.invoke(app, ["--dry-run", "dino", "run", "python", "-c", "print('a b')"])
    assert result.exit_code == 0, result.output
    _, _, argv = _dry_run_lines(result.output)
    assert argv[-4:] == ["nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt", "python", "-c", "print('a b')"]


def test_dry_run_without_a_terminal_never_asks_docker_for_a_tty(home: Path) -> None:
    _, _, argv = _dry_run_lines(runner.invoke(app, ["--dry-run", "dino", "train"]).output)
    assert "-t" not in argv[: argv.index("nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt")]


# ---------------------------------------------------------------------------------------------- info


def test_info_json_shows_config_in_effect_with_env_names_but_no_values(
    home: Path, mounts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OVERRIDE_REGISTRY", "registry.example.com:5000")
    result = runner.invoke(app, ["--mounts", str(mounts), "info", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "version": VERSION,
        "mounts_file": str(mounts),
        "task_map": "bundled (nvidia-tao 6.26.3)",
        "override_registry": "registry.example.com:5000",
        "hosts": ["local"],
        "task_groups": ["dataset", "deploy", "model"],
        "mounts": ["~/tao/data -> /workspace/data (ro)", "/srv/results -> /workspace/results"],
        "envs": ["NGC_API_KEY (secret)", "CUDA_DEVICE_ORDER", "WANDB_API_KEY (secret) from $MY_WANDB"],
    }
    assert "s3cr3t" not in result.output
    assert "PCI_BUS_ID" not in result.output


def test_info_finds_the_mounts_file_in_home_and_hosts_in_the_environment(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (home / ".tao_mounts.json").write_text('{"Mounts": [{"source": "/d", "destination": "/w/d"}]}')
    monkeypatch.setenv("TAOREMOTE_HOSTS", "gpu1, gpu2")
    data = json.loads(runner.invoke(app, ["--format", "json", "info"]).output)
    assert (data["mounts_file"], data["hosts"], data["mounts"], data["envs"]) == (
        f"{home}/.tao_mounts.json",
        ["gpu1", "gpu2"],
        ["/d -> /w/d"],
        [],
    )
    assert data["override_registry"] == ""


def test_info_without_any_mounts_file_says_so(home: Path) -> None:
    data = json.loads(runner.invoke(app, ["info", "--format", "json"]).output)
    assert data["mounts_file"] == "(none: no mounts, no envs)"


def test_info_table_is_one_aligned_line_per_setting(home: Path, mounts: Path) -> None:
    result = runner.invoke(app, ["--mounts", str(mounts), "info"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"version            {VERSION}",
        f"mounts_file        {mounts}",
        "task_map           bundled (nvidia-tao 6.26.3)",
        "override_registry  -",
        "hosts              local",
        "task_groups        dataset, deploy, model",
        "mounts             ~/tao/data -> /workspace/data (ro), /srv/results -> /workspace/results",
        "envs               NGC_API_KEY (secret), CUDA_DEVICE_ORDER, WANDB_API_KEY (secret) from $MY_WANDB",
    ]
