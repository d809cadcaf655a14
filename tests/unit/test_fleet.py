"""Choosing the target hosts: --host, an inventory file, $TAOREMOTE_HOSTS."""

from __future__ import annotations

from pathlib import Path

import pytest

from taoremote.errors import ConfigError
from taoremote.fleet import parse_inventory, resolve_hosts

ROOT = Path(__file__).resolve().parents[2]


def test_inventory_ignores_comments_blank_lines_and_duplicates() -> None:
    assert parse_inventory("# fleet\ngpu1  # big one\n\ngpu2\ngpu1\n  tao@10.0.0.13:2222\n") == (
        "gpu1",
        "gpu2",
        "tao@10.0.0.13:2222",
    )


def test_shipped_example_inventory_parses() -> None:
    assert parse_inventory((ROOT / "configs" / "fleet.example.txt").read_text()) == (
        "gpu1",
        "gpu2",
        "tao@10.0.0.13:2222",
    )


def test_explicit_hosts_win_over_inventory_and_environment(tmp_path: Path) -> None:
    inventory = tmp_path / "fleet.txt"
    inventory.write_text("a\nb\n")
    env = {"TAOREMOTE_HOSTS": "x y", "TAOREMOTE_INVENTORY": str(inventory)}
    assert resolve_hosts(["h1"], str(inventory), env) == ("h1",)
    assert resolve_hosts([], str(inventory), env) == ("a", "b")
    assert resolve_hosts([], None, env) == ("a", "b")
    assert resolve_hosts([], None, {"TAOREMOTE_HOSTS": "x, y"}) == ("x", "y")
    assert resolve_hosts([], None, {}) == ()


def test_unreadable_or_empty_inventory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read inventory"):
        resolve_hosts([], str(tmp_path / "missing.txt"), {})
    empty = tmp_path / "empty.txt"
    empty.write_text("# nobody\n")
    with pytest.raises(ConfigError, match="names no host"):
        resolve_hosts([], str(empty), {})
