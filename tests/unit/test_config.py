"""Mounts-file parsing and validation: every launcher file works, every problem is named by path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taoremote.config import (
    DockerOptions,
    EnvVar,
    Mount,
    PortMapping,
    Ulimit,
    find_mounts_file,
    load_mounts_config,
    parse_mounts_config,
)
from taoremote.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
BAD = ROOT / "tests" / "data" / "bad_configs"

# bad config file -> the JSON paths its error must name
EXPECTED_PATHS = {
    "invalid_json.json": ["line 2 column 10"],
    "unknown_top_key.json": ["$: unknown key 'Mountz'; allowed: Mounts, Envs, DockerOptions"],
    "unknown_docker_option.json": ["$.DockerOptions: unknown key 'shm-size'; allowed: user, shm_size"],
    "mounts_as_object.json": ["$.Mounts: "],
    "relative_destination.json": [
        "$.Mounts[0].destination: 'workspace/data' must be an absolute container path"
    ],
    "duplicate_destination.json": [
        "$.Mounts[1].destination: '/workspace/x/' is already the destination of $.Mounts[0]"
    ],
    "missing_destination.json": ["$.Mounts[0]: 'destination' is a required property"],
    "env_value_and_from_env.json": ["$.Envs[0]: give exactly one of 'value' or 'from_env'"],
    "env_without_value.json": ["$.Envs[0]: give exactly one of 'value' or 'from_env'"],
    "env_bad_name.json": ["$.Envs[0].variable: 'A=B' is not a variable name docker can pass"],
    "tty_as_string.json": ["$.DockerOptions.tty: 'false' is not of type 'boolean'"],
    "ulimit_string.json": ["$.DockerOptions.ulimits.memlock: 'unlimited' is not a valid value here"],
    "port_bad_key.json": ["$.DockerOptions.ports: 'http' is not a container port"],
    "many_problems.json": [
        "4 problems",
        "$.DockerOptions.user: 1.5 is not a valid value here",
        "$.Envs[0].value: [1] is not of type 'string', 'number', 'boolean'",
        "$.Mounts[0]: unknown key 'readonly'; allowed: source, destination, read_only",
        "$.Mounts[0].destination: 'rel' must be an absolute container path",
    ],
}


def _error_for(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_mounts_config(str(path), {})
    return str(info.value)


@pytest.mark.parametrize("name", sorted(EXPECTED_PATHS))
def test_bad_config_fails_naming_every_problem_by_path(name: str) -> None:
    message = _error_for(BAD / name)
    assert message.startswith(str(BAD / name))
    for fragment in EXPECTED_PATHS[name]:
        assert fragment in message


def test_every_bad_config_file_has_an_expectation() -> None:
    assert sorted(p.name for p in BAD.glob("*.json")) == sorted(EXPECTED_PATHS)


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("tao_mounts*.json")), ids=lambda p: p.name)
def test_every_shipped_config_validates(path: Path) -> None:
    config = load_mounts_config(str(path), {"WANDB_API_KEY": "k"})
    assert config.path == str(path)


def test_problems_are_listed_in_document_order() -> None:
    message = _error_for(BAD / "many_problems.json")
    lines = message.splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == [
        "$.DockerOptions.user",
        "$.Envs[0].value",
        "$.Mounts[0]",
        "$.Mounts[0].destination",
    ]


def test_launcher_example_becomes_typed_config() -> None:
    config = load_mounts_config(str(ROOT / "configs" / "tao_mounts.example.json"), {})
    assert config.mounts[0] == Mount("~/tao/data", "/workspace/tao-experiments/data", read_only=False)
    assert config.envs == (EnvVar("CUDA_DEVICE_ORDER", "PCI_BUS_ID", secret=False),)
    assert config.options == DockerOptions(
        user="1000:1000",
        shm_size="16G",
        ulimits=(Ulimit("memlock", -1, -1), Ulimit("stack", 67108864, 67108864)),
        ports=(PortMapping("8888", None, "8888"),),
    )


def test_credential_names_are_secret_by_default() -> None:
    config = load_mounts_config(str(ROOT / "configs" / "tao_mounts.clearml.json"), {})
    secret = {e.name: e.secret for e in config.envs}
    assert secret == {
        "CLEARML_WEB_HOST": False,
        "CLEARML_API_ACCESS_KEY": True,
        "CLEARML_API_SECRET_KEY": True,
    }


def test_extensions_read_only_from_env_and_explicit_secret() -> None:
    config = load_mounts_config(
        str(ROOT / "configs" / "tao_mounts.extensions.json"), {"WANDB_API_KEY": "w-123"}
    )
    assert config.mounts[0].read_only is True
    assert config.envs[0] == EnvVar("WANDB_API_KEY", "w-123", secret=True, from_env="WANDB_API_KEY")
    assert config.envs[1].secret is False
    assert config.envs[2].secret is True
    assert Ulimit("nofile", 65536, 1048576) in config.options.ulimits
    assert config.options.ports == (
        PortMapping("8888", None, "8888"),
        PortMapping("6006/tcp", "127.0.0.1", "16006"),
        PortMapping("9000", None, None),
    )
    assert config.options.tty is False


def test_from_env_not_set_gives_value_none() -> None:
    doc = {"Envs": [{"variable": "WANDB_API_KEY", "from_env": "MY_WANDB"}]}
    config = parse_mounts_config(json.dumps(doc), "m.json", {})
    assert config.envs[0].value is None


def test_numeric_env_values_are_accepted_like_the_launcher() -> None:
    config = parse_mounts_config('{"Mounts": [], "Envs": [{"variable": "N", "value": 4}]}', "m.json", {})
    assert config.envs[0].value == "4"


def test_mounts_key_may_be_absent() -> None:
    assert parse_mounts_config("{}", "m.json", {}).mounts == ()


def test_lookup_order_option_then_variable_then_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".tao_mounts.json").write_text("{}")
    explicit = tmp_path / "explicit.json"
    explicit.write_text("{}")
    via_env = tmp_path / "env.json"
    via_env.write_text("{}")
    env = {"LAUNCHER_MOUNTS": str(via_env)}
    assert find_mounts_file(str(explicit), env, str(home)) == str(explicit)
    assert find_mounts_file(None, env, str(home)) == str(via_env)
    assert find_mounts_file(None, {}, str(home)) == str(home / ".tao_mounts.json")
    assert find_mounts_file(None, {}, str(tmp_path)) is None


def test_named_mounts_file_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="named by \\$LAUNCHER_MOUNTS does not exist"):
        find_mounts_file(None, {"LAUNCHER_MOUNTS": str(tmp_path / "nope.json")}, str(tmp_path))


def test_config_error_exit_code_is_78() -> None:
    assert ConfigError("x").exit_code == 78


def test_keys_the_launcher_ignores_inside_items_are_ignored_with_a_warning() -> None:
    doc = {
        "Mounts": [{"source": "/d", "destination": "/w", "comment": "data"}],
        "Envs": [{"variable": "A", "value": "1", "note": "x"}],
    }
    config = parse_mounts_config(json.dumps(doc), "m.json", {})
    assert config.mounts == (Mount("/d", "/w"),)
    assert config.warnings == ("$.Mounts[0]: key 'comment' is ignored", "$.Envs[0]: key 'note' is ignored")


# "mode" is the launcher's own key (docker-py): see test_config_compat
@pytest.mark.parametrize("key", ["readonly", "ro", "read-only"])
def test_a_mistyped_read_only_key_is_an_error_not_a_read_write_mount(key: str) -> None:
    doc = {"Mounts": [{"source": "/d", "destination": "/w", key: True}]}
    with pytest.raises(ConfigError, match=f"unknown key '{key}'; allowed: source, destination, read_only"):
        parse_mounts_config(json.dumps(doc), "m.json", {})


def test_a_list_of_host_ports_publishes_the_container_port_on_each() -> None:
    doc = {"DockerOptions": {"ports": {"8888": [8888, 8889], "6006": ["127.0.0.1", 6006]}}}
    config = parse_mounts_config(json.dumps(doc), "m.json", {})
    assert config.options.ports == (
        PortMapping("8888", None, "8888"),
        PortMapping("8888", None, "8889"),
        PortMapping("6006", "127.0.0.1", "6006"),
    )
