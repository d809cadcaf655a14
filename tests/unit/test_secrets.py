"""Secrets and launcher compatibility of what taoremote prints and emits (issue 7 items 9, 12, 15, 17, 22):
one masking point for every message, the launcher's TAO_CLIENT_TYPE, paths that `-v` would split."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from taoremote import redact
from taoremote.command import BoundMount, RunSpec, build_create_argv, build_run_argv
from taoremote.config import parse_mounts_config
from taoremote.errors import DockerError

SECRET = "s3cr3t-Value-qv8Tz"
IMAGE = "nvcr.io/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5"


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    redact.forget_all()
    yield
    redact.forget_all()


def _spec(**changes: object) -> RunSpec:
    base = RunSpec(image=IMAGE, command=("detectnet_v2", "train"), job_id="0a1b2c3d", task="detectnet_v2")
    return RunSpec(**{**base.__dict__, **changes})  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- masking


def test_a_registered_value_is_masked_as_written_and_as_json_or_repr_escape_it() -> None:
    tricky = 'ab"c\\d\tEND'
    redact.register([SECRET, tricky, None])
    assert redact.mask(f"invalid environment variable: ={SECRET}") == "invalid environment variable: =****"
    assert redact.mask(json.dumps({"command": f"x {tricky}"})) == '{"command": "x ****"}'
    assert redact.mask(repr(tricky)) == "'****'"


def test_short_values_are_not_masked_so_messages_stay_readable() -> None:
    redact.register(["1", "abc"])
    assert redact.mask("exit code 1 abc") == "exit code 1 abc"


def test_a_value_inside_another_is_masked_whole() -> None:
    redact.register(["abcd", "xxabcdxx"])
    assert redact.mask("xxabcdxx abcd") == "**** ****"


def test_cli_error_printer_masks_a_docker_error_quoting_a_value(capsys: pytest.CaptureFixture[str]) -> None:
    from taoremote.cli import _fail

    redact.register([SECRET])
    with pytest.raises(SystemExit) as info:
        _fail(DockerError(f"docker failed on this machine: poorly formatted environment: ={SECRET}"))
    assert info.value.code == 69
    err = capsys.readouterr().err
    assert SECRET not in err
    assert err == "taoremote: error: docker failed on this machine: poorly formatted environment: =****\n"


def test_actions_err_and_out_mask(capsys: pytest.CaptureFixture[str]) -> None:
    from taoremote import actions

    redact.register([SECRET])
    actions.err(f"warning: {SECRET}")
    actions.out(f"note {SECRET}")
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("note ****\n", "taoremote: warning: ****\n")


def test_loading_the_mounts_file_registers_its_secret_values_and_hides_from_env_sources(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pathlib import Path

    from taoremote import actions
    from taoremote.settings import Globals

    path = Path(str(tmp_path)) / "m.json"
    path.write_text(
        json.dumps(
            {
                "Envs": [
                    {"variable": "API_KEY", "value": SECRET},
                    {"variable": "PLAIN", "value": "visible-value"},
                    {"variable": "WANDB_API_KEY", "from_env": "MY_WANDB"},
                    {"variable": "SHOWN", "from_env": "NOT_SECRET", "secret": False},
                ]
            }
        )
    )
    monkeypatch.setenv("MY_WANDB", "wandb-key-123456")
    monkeypatch.setenv("NOT_SECRET", "plain-from-env")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    g = Globals(str(path), (), None, None, "all", False, True, True, "table")
    config = actions.load_mounts(g)
    assert [e.value for e in config.envs] == [SECRET, "visible-value", "wandb-key-123456", "plain-from-env"]
    # every child process inherits os.environ: the secret's source variable is gone from it
    assert "MY_WANDB" not in os.environ
    assert os.environ["NOT_SECRET"] == "plain-from-env"
    assert redact.mask(f"{SECRET} wandb-key-123456 visible-value") == "**** **** visible-value"
    # a second load in the same process still sees the value
    assert actions.load_mounts(g).envs[2].value == "wandb-key-123456"


# ---------------------------------------------------------------------------------------------- item 17


def test_tao_client_type_follows_the_env_file_so_the_plan_decides_who_wins() -> None:
    spec = _spec(env_file="/tmp/e/env", fixed_env=(("TAO_CLIENT_TYPE", "launcher"),))
    assert build_run_argv(spec) == (
        "docker", "run", "--rm", "--init",
        "--name", "taoremote-detectnet_v2-0a1b2c3d",
        "--label", "taoremote.job=0a1b2c3d",
        "--gpus", "all",
        "--env-file", "/tmp/e/env",
        "-e", "TAO_CLIENT_TYPE=launcher",
        IMAGE, "detectnet_v2", "train",
    )  # fmt: skip


def test_the_plan_sets_tao_client_type_unless_the_mounts_file_does() -> None:
    from taoremote.envs import launcher_env

    def envs(doc: object) -> object:
        return launcher_env(parse_mounts_config(json.dumps(doc), "m.json", {}))

    assert envs({"Envs": []}) == (("TAO_CLIENT_TYPE", "launcher"),)
    assert envs({"Envs": [{"variable": "TAO_CLIENT_TYPE", "value": "notebook"}]}) == ()
    assert envs({"Envs": [{"variable": "TAO_CLIENT_TYPE", "value": None}]}) == (
        ("TAO_CLIENT_TYPE", "launcher"),
    )


# ---------------------------------------------------------------------------------------------- item 22


def test_plain_paths_keep_the_launchers_v_form() -> None:
    argv = build_run_argv(_spec(mounts=(BoundMount("/d", "/w"), BoundMount("/e", "/x", read_only=True))))
    assert argv[10:14] == ("-v", "/d:/w", "-v", "/e:/x:ro")


def test_paths_v_would_split_use_mount_with_csv_quoting() -> None:
    mounts = (
        BoundMount("/data/run:1", "/workspace/a"),
        BoundMount("/d", "/workspace/x:ro"),
        BoundMount("/data/a,b", '/w/"q"', read_only=True),
    )
    argv = build_create_argv(_spec(mounts=mounts))
    start = argv.index("--mount")
    assert argv[start : start + 6] == (
        "--mount", "type=bind,source=/data/run:1,target=/workspace/a",
        "--mount", "type=bind,source=/d,target=/workspace/x:ro",
        "--mount", 'type=bind,"source=/data/a,b","target=/w/""q""",readonly',
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------- item 15


def test_the_command_label_stays_far_below_the_kernels_128_kib_per_argument() -> None:
    from taoremote.plan import COMMAND_LABEL_MAX, command_label

    args = ["x" * 100] * 2000  # 200 KB
    label = command_label(("detectnet_v2", "train", *args))
    assert len(label) == COMMAND_LABEL_MAX
    assert label.endswith("...")
    assert command_label(("a", "b c")) == "a 'b c'"
    assert command_label(()) == "(interactive shell)"
