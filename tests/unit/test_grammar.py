"""The launcher's command grammar, help and warnings (issue 7 items 16, 18, 21, 22, 24, 25).

The launcher's behaviour quoted here is nvidia-tao 6.26.3 (`entrypoint/tao_launcher.py` main() and
`local_instance.py` launch_command; reference/peers-and-tao-launcher.md §1.2, §1.10)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taoremote.cli import app, main
from taoremote.config import parse_mounts_config
from taoremote.errors import UsageError
from taoremote.request import parse_task_argv
from taoremote.tasks import (
    TaskMap,
    group_help,
    launcher_shell_warnings,
    load_task_map,
    parse_task_config,
    resolve_image,
)

runner = CliRunner()
BUNDLED = load_task_map(None)
TAO = "nvidia/tao/tao-toolkit"
V1_CONFIG = {
    "format_version": 1.0,
    "dockers": {
        TAO: {
            "docker_registry": "nvcr.io",
            "docker_tag": "4.0.0-tf1.15.5",
            "tasks": ["detectnet_v2", "yolo_v4"],
        }
    },
}
V2_CONFIG = {
    "format_version": 2.0,
    "dockers": {TAO: {"4.0.0-pyt": {"docker_registry": "nvcr.io", "tasks": ["dino", "segformer"]}}},
}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("LOGNAME", "tester")
    for name in ("TAOREMOTE_HOSTS", "LAUNCHER_MOUNTS", "OVERRIDE_REGISTRY"):
        monkeypatch.delenv(name, raising=False)
    return home


def _docker_line(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("docker "))


def _main(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(sys, "argv", ["taoremote", *argv])
    with pytest.raises(SystemExit) as info:
        main()
    assert isinstance(info.value.code, int)
    return info.value.code


# ---------------------------------------------------------------------------- 16: group help


@pytest.mark.parametrize(
    "argv", [["model", "-h"], ["model", "--help"], ["model"], ["deploy", "-h"], ["dataset", "--help", "x"]]
)
def test_a_task_group_with_help_or_nothing_prints_its_tasks_and_exits_0(home: Path, argv: list[str]) -> None:
    # the launcher: `tao model` appends --help, `tao model -h` falls through to argparse's group help
    result = runner.invoke(app, argv, prog_name="taoremote")
    assert result.exit_code == 0, result.output
    group = argv[0]
    assert f"taoremote [OPTIONS] {group} TASK" in result.output
    for task in BUNDLED.groups[group]:
        assert task in result.output


def test_group_help_names_every_task_of_the_group_once() -> None:
    text = group_help(BUNDLED, "dataset")
    assert "analytics, annotations, augmentation, auto_label, skin_tone" in text


def test_an_unknown_task_in_a_group_is_still_a_usage_error(home: Path) -> None:
    result = runner.invoke(app, ["--dry-run", "model", "dino_v9", "train"])
    assert isinstance(result.exception, UsageError)


def test_a_tasks_own_help_still_reaches_the_task(home: Path) -> None:
    result = runner.invoke(app, ["--dry-run", "model", "dino", "-h"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1].endswith("6.26.3-pyt dino -h")


# ---------------------------------------------------------------------------- 18: container_actions


@pytest.mark.parametrize("config", [V1_CONFIG, V2_CONFIG])
def test_old_format_configs_take_the_container_actions_group(config: dict[str, object]) -> None:
    task_map = TaskMap("old", parse_task_config(config, "old"))
    task = next(iter(task_map.groups["container_actions"]))
    request = parse_task_argv(["container_actions", task, "train", "-e", "/w/s"], task_map)
    assert (request.group, request.task, request.command) == (
        "container_actions",
        task,
        (task, "train", "-e", "/w/s"),
    )
    assert resolve_image(task_map, request.group, request.task).startswith(
        "nvcr.io/nvidia/tao/tao-toolkit:4.0.0"
    )


def test_old_format_configs_keep_the_flat_grammar_too() -> None:
    task_map = TaskMap("old", parse_task_config(V1_CONFIG, "old"))
    assert parse_task_argv(["yolo_v4", "train"], task_map).group is None


def test_container_actions_is_no_group_of_the_current_map() -> None:
    request = parse_task_argv(["container_actions", "detectnet_v2", "train"], BUNDLED)
    assert (request.group, request.task) == (None, "container_actions")


def test_container_actions_dry_run_with_an_old_format_user_config(home: Path) -> None:
    (home / ".tao").mkdir()
    (home / ".tao" / "config.json").write_text(json.dumps(V1_CONFIG))
    result = runner.invoke(app, ["--dry-run", "container_actions", "detectnet_v2", "train", "-e", "/w/s"])
    assert result.exit_code == 0, result.output
    assert _docker_line(result.output).endswith(
        "nvcr.io/nvidia/tao/tao-toolkit:4.0.0-tf1.15.5 detectnet_v2 train -e /w/s"
    )
    helped = runner.invoke(app, ["container_actions", "-h"])
    assert helped.exit_code == 0 and "detectnet_v2, yolo_v4" in helped.output


# ---------------------------------------------------------------------------------------------- 22: --volume


def test_volume_in_the_flat_grammar_reaches_the_task() -> None:
    # only the 6.x launcher takes --volume, and only in its group grammar; the flat grammar is 4.x's,
    # whose launcher passed --volume on to the task
    request = parse_task_argv(["detectnet_v2", "train", "--volume", "0.5", "-e", "/w/s"], BUNDLED)
    assert request.command == ("detectnet_v2", "train", "--volume", "0.5", "-e", "/w/s")
    assert request.extra_mounts == ()
    assert request.warnings == (
        "--volume reaches detectnet_v2 as one of its arguments: the TAO launcher takes --volume SRC:DST "
        "as a mount only after a task group (`model detectnet_v2 ...`)",
    )


@pytest.mark.parametrize("group", ["model", "container_actions"])
def test_volume_in_the_group_grammar_is_a_mount_as_in_the_launcher(group: str) -> None:
    task_map = BUNDLED if group == "model" else TaskMap("old", parse_task_config(V1_CONFIG, "old"))
    request = parse_task_argv([group, "detectnet_v2", "train", "--volume", "/d:/w/d", "-e", "/w/s"], task_map)
    assert request.command == ("detectnet_v2", "train", "-e", "/w/s")
    assert [(m.source, m.destination) for m in request.extra_mounts] == [("/d", "/w/d")]


# ---------------------------------------------------------------------------- 21: host shell


def test_quotes_the_launchers_shell_would_remove_get_one_warning() -> None:
    assert launcher_shell_warnings(["train", "--gpu_index", '"0"']) == [
        "argument '\"0\"' has quotes that the TAO launcher's shell would remove; "
        "taoremote passes it as is - write 0"
    ]


def test_a_quoted_option_value_gets_one_warning_with_the_value_unquoted() -> None:
    assert launcher_shell_warnings(["--gpu_index='1'"]) == [
        "argument \"--gpu_index='1'\" has quotes that the TAO launcher's shell would remove; "
        "taoremote passes it as is - write --gpu_index=1"
    ]


@pytest.mark.parametrize(
    ("arg", "name"),
    [("/data/$FORMATTED_DATA_DIR", "$FORMATTED_DATA_DIR"), ("${IN_HEIGHT}", "${IN_HEIGHT}"), ("$1", "$1")],
)
def test_variables_the_launchers_shell_would_expand_get_one_warning(arg: str, name: str) -> None:
    assert launcher_shell_warnings(["train", "-d", arg]) == [
        f"argument '{arg}' refers to {name}, which the TAO launcher's shell would expand on this machine; "
        "taoremote passes it as is - write the value itself"
    ]


def test_an_argument_with_quotes_and_a_variable_gets_one_warning_naming_both() -> None:
    (warning,) = launcher_shell_warnings(['"$GPU_INDEX"'])
    assert "has quotes that the TAO launcher's shell would remove" in warning
    assert "refers to $GPU_INDEX" in warning and warning.endswith("write the value itself")


def test_command_substitution_is_named() -> None:
    (warning,) = launcher_shell_warnings(["--run", "$(hostname)"])
    assert "a command substitution, which the TAO launcher's shell would run on this machine" in warning


@pytest.mark.parametrize(
    "arg",
    [
        "spec file.txt",  # the launcher would split it: taoremote keeps it whole, nothing to warn about
        "it's",  # the launcher fails with a syntax error: it never worked there
        "price$",
        "a=b,c",
        "model.lr=[0.1,0.2]",
        "",
        "/workspace/results",
        "print('a b')",  # quotes inside code: the launcher broke it, there is nothing to write instead
        '{"lr": 0.1}',
    ],
)
def test_arguments_that_the_launcher_never_relied_on_its_shell_for_get_no_warning(arg: str) -> None:
    assert launcher_shell_warnings(["train", arg]) == []


def test_the_script_of_a_shell_run_in_the_container_is_not_warned_about() -> None:
    assert launcher_shell_warnings(["sh", "-c", 'echo "$HOME"'], run=True) == []
    assert len(launcher_shell_warnings(["python", "x.py", "$HOME"], run=True)) == 1


def test_the_cli_warns_on_stderr_once_per_argument_and_passes_it_literally(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--dry-run", "model", "dino", "train", "--gpu_index", '"0"', "-d", "/data/$DIR", "-x", "plain"]
    assert _main(argv, monkeypatch) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("taoremote: warning: argument")]
    assert len(warnings) == 2
    assert _docker_line(captured.out).endswith("""dino train --gpu_index '"0"' -d '/data/$DIR' -x plain""")


# ---------------------------------------------------------------------------------------------- 24: --help


def test_help_lists_every_task_by_group(home: Path) -> None:
    output = runner.invoke(app, ["--help"], prog_name="taoremote").output
    before_commands = output.split("Commands:", 1)[0]
    for group in ("model", "dataset", "deploy"):
        assert f"{group} tasks:" in before_commands
        for task in BUNDLED.groups[group]:
            assert task in before_commands


def test_help_lists_the_tasks_of_the_users_own_config(home: Path) -> None:
    (home / ".tao").mkdir()
    (home / ".tao" / "config.json").write_text(json.dumps(V2_CONFIG))
    output = runner.invoke(app, ["--help"], prog_name="taoremote").output
    assert "container_actions tasks:" in output and "dino, segformer" in output


def test_help_survives_a_broken_user_config(home: Path) -> None:
    (home / ".tao").mkdir()
    (home / ".tao" / "config.json").write_text("{not json")
    result = runner.invoke(app, ["--help"], prog_name="taoremote")
    assert result.exit_code == 0 and "Commands:" in result.output


# ---------------------------------------------------------------------------------------------- 25: W&B rule


@pytest.mark.parametrize(
    ("envs", "warned"),
    [
        ([{"variable": "WANDB_ENTITY", "value": "team"}], True),
        ([{"variable": "WANDB_API_KEY", "value": "k"}], True),
        (
            [{"variable": "WANDB_API_KEY", "value": "k"}, {"variable": "WANDB_MODE", "value": "disabled"}],
            False,
        ),
        ([{"variable": "NOT_WANDB_X", "value": "1"}], False),
    ],
)
def test_launch_and_doctor_share_one_wandb_rule(envs: list[dict[str, str]], warned: bool) -> None:
    from taoremote.doctor import _env_checks
    from taoremote.envs import wandb_needs_root

    doc = {"Mounts": [], "Envs": envs, "DockerOptions": {"user": "1000:1000"}}
    config = parse_mounts_config(json.dumps(doc), "m.json", {})
    rule = wandb_needs_root(config)
    assert (rule is not None) == warned
    checks = _env_checks("local", config)
    assert [c.detail for c in checks] == ([rule] if rule else [])
