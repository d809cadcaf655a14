"""Mounts files the TAO launcher accepts work here too, meaning what the launcher meant (issue 7 items
9, 15, 19, 20, 22); what docker's env-file cannot carry is refused by variable, never by value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taoremote.config import (
    DockerOptions,
    EnvVar,
    Mount,
    find_mounts_file,
    load_mounts_config,
    parse_mounts_config,
)
from taoremote.errors import ConfigError, UsageError

SECRET = "s3cr3t-Value-qv8Tz"


def _parse(doc: object) -> object:
    return parse_mounts_config(json.dumps(doc), "m.json", {})


def _problem(doc: object) -> str:
    with pytest.raises(ConfigError) as info:
        _parse(doc)
    assert info.value.exit_code == 78
    return str(info.value)


# ---------------------------------------------------------------------------------------------- item 19


def test_a_null_value_is_passed_as_nothing_with_a_warning() -> None:
    # what a notebook's os.getenv("WANDB_API_KEY") writes when the variable is unset
    config = _parse({"Mounts": [], "Envs": [{"variable": "WANDB_API_KEY", "value": None}]})
    assert config.envs == (EnvVar("WANDB_API_KEY", None, secret=True),)  # type: ignore[attr-defined]
    assert config.warnings == (  # type: ignore[attr-defined]
        "$.Envs[0]: WANDB_API_KEY is null (an unset variable when the file was written?): "
        "it is not passed to the container",
    )


def test_user_as_a_number_shm_size_with_a_blank_and_empty_network() -> None:
    config = _parse({"Mounts": [], "DockerOptions": {"user": 1000, "shm_size": "16 G", "network": ""}})
    assert config.options == DockerOptions(user="1000", shm_size="16G", network=None)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("shm", "expected"), [("16G", "16G"), ("16 GB", "16GB"), (" 1.5 g", "1.5g"), (1024, "1024")]
)
def test_shm_size_forms_docker_py_reads(shm: object, expected: str) -> None:
    config = _parse({"Mounts": [], "DockerOptions": {"shm_size": shm}})
    assert config.options.shm_size == expected  # type: ignore[attr-defined]


def test_mode_ro_binds_read_only_and_says_the_launcher_did_not() -> None:
    doc = {
        "Mounts": [
            {"source": "/d", "destination": "/w", "mode": "ro"},
            {"source": "/e", "destination": "/x", "mode": "rw"},
        ]
    }
    config = _parse(doc)
    assert config.mounts == (Mount("/d", "/w", read_only=True), Mount("/e", "/x"))  # type: ignore[attr-defined]
    assert config.warnings == (  # type: ignore[attr-defined]
        '$.Mounts[0]: "mode": "ro" binds /w read-only '
        '(the TAO launcher ignores "mode" and mounts it read-write)',
    )


def test_an_unknown_mode_or_one_that_contradicts_read_only_is_an_error() -> None:
    assert "$.Mounts[0].mode: 'z' is not one of ['ro', 'rw']" in _problem(
        {"Mounts": [{"source": "/d", "destination": "/w", "mode": "z"}]}
    )
    assert '$.Mounts[0]: "mode" and "read_only" disagree' in _problem(
        {"Mounts": [{"source": "/d", "destination": "/w", "mode": "ro", "read_only": False}]}
    )


@pytest.mark.parametrize("name", ["MY-VAR", "1ST", "a.b", "Ünïcode"])
def test_names_the_launcher_passes_are_valid(name: str) -> None:
    config = _parse({"Mounts": [], "Envs": [{"variable": name, "value": "v"}]})
    assert config.envs[0].name == name  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------- item 20


@pytest.mark.parametrize(
    ("value", "expected"), [(True, "True"), (False, "False"), (1.0, "1.0"), (3, "3"), (1e-7, "1e-07")]
)
def test_values_reach_the_container_as_pythons_str_as_under_launcher(value: object, expected: str) -> None:
    config = _parse({"Mounts": [], "Envs": [{"variable": "V", "value": value}]})
    assert config.envs[0].value == expected  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------- item 9


@pytest.mark.parametrize("name", ["", "A=B", "ABC\n", "A B", "A\tB", "A\x00B", "#X", "X\r"])
def test_names_an_env_file_cannot_carry_are_refused_at_their_path(name: str) -> None:
    message = _problem({"Mounts": [], "Envs": [{"variable": name, "value": SECRET}]})
    assert "$.Envs[0].variable: " in message
    assert "is not a variable name docker can pass" in message
    assert SECRET not in message


@pytest.mark.parametrize(
    ("char", "what"), [("\n", "a newline"), ("\r", "a carriage return"), ("\x00", "a NUL")]
)
def test_values_an_env_file_cannot_carry_are_refused_by_name_never_by_value(char: str, what: str) -> None:
    message = _problem({"Mounts": [], "Envs": [{"variable": "API_KEY", "value": SECRET + char}]})
    assert f"$.Envs[0].value: the value of 'API_KEY' holds {what}" in message
    assert SECRET not in message


def test_a_trailing_cr_is_refused_not_silently_dropped() -> None:
    # a file edited on Windows: docker's env-file reader would strip the CR and pass a different value
    assert "carriage return" in _problem({"Mounts": [], "Envs": [{"variable": "K", "value": "v\r"}]})


# ---------------------------------------------------------------------------------------------- item 15


def test_a_lone_surrogate_is_one_problem_at_its_path() -> None:
    text = '{"Mounts": [], "Envs": [{"variable": "K", "value": "a\\udc80b"}]}'
    with pytest.raises(ConfigError, match=r"\$\.Envs\[0\]\.value: holds a lone surrogate"):
        parse_mounts_config(text, "m.json", {})


def test_deeply_nested_json_is_one_line_not_a_recursion_error() -> None:
    text = '{"Mounts": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(ConfigError, match=r"m\.json: invalid mounts file: JSON nested too deeply"):
        parse_mounts_config(text, "m.json", {})


def test_nesting_that_parses_but_is_deep_is_still_one_problem() -> None:
    text = '{"Mounts": [{"source": "/a", "destination": "/b"}], "Envs": ' + "[" * 900 + "]" * 900 + "}"
    with pytest.raises(ConfigError) as info:
        parse_mounts_config(text, "m.json", {})
    assert "$.Envs" in str(info.value) or "nested too deeply" in str(info.value)


def test_a_non_utf8_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_bytes(b'{"Mounts": [], "Envs": [{"variable": "K", "value": "caf\xe9"}]}')
    with pytest.raises(ConfigError, match=r"m.json: not UTF-8 text \(byte 0xe9 at offset 55\)"):
        load_mounts_config(str(path), {})


# ---------------------------------------------------------------------------------------------- item 22


def test_an_empty_mounts_option_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        find_mounts_file("", {}, str(tmp_path))
    assert info.value.exit_code == 2


def test_an_empty_launcher_mounts_variable_is_unset_as_for_the_launcher(tmp_path: Path) -> None:
    assert find_mounts_file(None, {"LAUNCHER_MOUNTS": ""}, str(tmp_path)) is None
