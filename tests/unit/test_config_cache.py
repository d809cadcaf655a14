"""The validated-config cache (config.py): contents that passed jsonschema once are remembered by a marker
named for the content, taoremote's version and the schema, so an unchanged mounts file skips the
validator (whose import costs more than the rest of a --dry-run). Only files in tmp_path."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

import taoremote
from taoremote import config
from taoremote.config import (
    default_cache_dir,
    load_mounts_config,
    parse_mounts_config,
)
from taoremote.errors import ConfigError

VALID = json.dumps({"Mounts": [{"source": "~/tao/data", "destination": "/workspace/data"}]})
INVALID = json.dumps({"Mounts": [{"source": "~/tao/data", "destination": "relative/path"}]})


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every document the real validator was asked about, in order."""
    seen: list[object] = []
    real: Callable[[object], list[str]] = config.validate_mounts_document

    def spy(doc: object) -> list[str]:
        seen.append(doc)
        return real(doc)

    monkeypatch.setattr(config, "validate_mounts_document", spy)
    return seen


def parse(text: str, cache: Path | None, environ: dict[str, str] | None = None) -> config.MountsConfig:
    return parse_mounts_config(text, "mounts.json", environ or {}, cache_dir=str(cache) if cache else None)


def markers(cache: Path) -> list[Path]:
    return sorted(cache.iterdir()) if cache.exists() else []


def test_a_valid_file_is_validated_once_then_remembered(tmp_path: Path, validations: list[object]) -> None:
    cache = tmp_path / "valid"
    first = parse(VALID, cache)
    assert len(validations) == 1
    assert len(markers(cache)) == 1
    assert parse(VALID, cache) == first
    assert len(validations) == 1  # the second run trusted the marker


def test_the_marker_is_named_for_the_content(tmp_path: Path, validations: list[object]) -> None:
    cache = tmp_path / "valid"
    parse(VALID, cache)
    parse(VALID + "\n", cache)  # one byte more: other contents, validated on their own
    assert len(validations) == 2
    assert len(markers(cache)) == 2


def test_an_invalid_file_is_never_remembered(tmp_path: Path, validations: list[object]) -> None:
    cache = tmp_path / "valid"
    for _ in range(2):
        with pytest.raises(ConfigError, match=r"\$\.Mounts\[0\]\.destination"):
            parse(INVALID, cache)
    assert len(validations) == 2
    assert markers(cache) == []


def test_breaking_a_remembered_file_is_still_caught(tmp_path: Path) -> None:
    cache = tmp_path / "valid"
    parse(VALID, cache)
    with pytest.raises(ConfigError):
        parse(INVALID, cache)


def test_a_new_version_of_taoremote_validates_again(
    tmp_path: Path, validations: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a newer schema may refuse what an older one let through
    cache = tmp_path / "valid"
    parse(VALID, cache)
    monkeypatch.setattr(taoremote, "__version__", taoremote.__version__ + ".post1")
    parse(VALID, cache)
    assert len(validations) == 2
    assert len(markers(cache)) == 2


def test_a_cache_hit_still_reports_ignored_keys_and_notices(tmp_path: Path) -> None:
    text = json.dumps(
        {"Mounts": [{"source": "/d", "destination": "/workspace/d", "mode": "ro", "comment": "mine"}]}
    )
    cache = tmp_path / "valid"
    first, second = parse(text, cache), parse(text, cache)
    assert first.warnings == second.warnings
    assert "$.Mounts[0]: key 'comment' is ignored" in second.warnings
    assert any('"mode": "ro"' in w for w in second.warnings)
    assert second.mounts[0].read_only


def test_values_from_the_environment_are_read_again_on_a_cache_hit(tmp_path: Path) -> None:
    text = json.dumps({"Envs": [{"variable": "WANDB_API_KEY", "from_env": "MY_KEY"}]})
    cache = tmp_path / "valid"
    assert parse(text, cache, {"MY_KEY": "one"}).envs[0].value == "one"
    assert parse(text, cache, {"MY_KEY": "two"}).envs[0].value == "two"  # the marker vouches for text only
    assert parse(text, cache, {}).envs[0].value is None


def test_an_unwritable_cache_costs_only_time(tmp_path: Path, validations: list[object]) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    cache = blocker / "taoremote" / "valid"  # cannot be created: a file is in the way
    for _ in range(2):
        assert parse(VALID, cache).mounts
    assert len(validations) == 2


def test_without_a_cache_dir_every_run_validates(tmp_path: Path, validations: list[object]) -> None:
    parse(VALID, None)
    parse(VALID, None)
    assert len(validations) == 2
    assert list(tmp_path.iterdir()) == []


def test_the_cache_directory_is_private(tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "taoremote" / "valid"
    parse(VALID, cache)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700


def test_a_file_on_disk_goes_through_the_same_cache(tmp_path: Path, validations: list[object]) -> None:
    mounts = tmp_path / "mounts.json"
    mounts.write_text(VALID)
    cache = tmp_path / "valid"
    for _ in range(2):
        loaded = load_mounts_config(str(mounts), {}, cache_dir=str(cache))
        assert loaded.path == str(mounts)
    assert len(validations) == 1


def test_the_cache_lives_under_xdg_cache_home_or_home_cache() -> None:
    assert default_cache_dir({"XDG_CACHE_HOME": "/x/cache"}, "/home/me") == "/x/cache/taoremote/valid"
    assert default_cache_dir({}, "/home/me") == "/home/me/.cache/taoremote/valid"
    assert default_cache_dir({"XDG_CACHE_HOME": ""}, "/home/me") == "/home/me/.cache/taoremote/valid"
