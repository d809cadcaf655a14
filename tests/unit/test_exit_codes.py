"""errors.EXIT_CODES is the one exit-code table: `--help` and the README say exactly its codes, and every
error class exits with one of them (issue 8 step 2)."""

from __future__ import annotations

import re
from pathlib import Path

from taoremote import errors
from taoremote.cli_shared import HELP

README = Path(__file__).resolve().parents[2] / "README.md"
TABLE_CODES = {code for code, _ in errors.EXIT_CODES if code.isdigit()}


def _help_codes() -> set[str]:
    line = HELP[HELP.index("Exit codes:") :]
    return set(re.findall(r"\b\d+\b", line.replace("\n", " ")))


def _readme_codes() -> set[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Exit codes") :]
    rows = [ln for ln in section.splitlines()[1:] if ln.startswith("|")]
    table = rows[: next((i for i, r in enumerate(rows[2:], 2) if not r.startswith("|")), len(rows))]
    codes: set[str] = set()
    for row in table[2:]:  # after the header and its |---| line
        cell = row.rstrip().rstrip("|").rsplit("|", 1)[-1]
        codes.update(re.findall(r"\b\d+\b", cell))
    return codes


def test_help_names_exactly_the_codes_of_the_table() -> None:
    assert _help_codes() == TABLE_CODES
    assert "the task's own" in HELP


def test_readme_names_exactly_the_codes_of_the_table() -> None:
    assert _readme_codes() == TABLE_CODES
    assert "the task's own exit code" in README.read_text(encoding="utf-8")


def _subclasses(cls: type) -> list[type]:
    return [cls, *(s for sub in cls.__subclasses__() for s in _subclasses(sub))]


def test_every_error_class_exits_with_a_code_of_the_table() -> None:
    for cls in _subclasses(errors.TaoRemoteError):
        if cls is errors.Interrupted:  # 128 + the signal: 129, 130, 143 are in the table
            continue
        assert str(cls.exit_code) in TABLE_CODES, cls.__name__
    for signum in (1, 2, 15):  # SIGHUP, SIGINT, SIGTERM
        assert str(errors.Interrupted("x", signum).exit_code) in TABLE_CODES
    assert str(128 + errors.OutputClosed().signum) in TABLE_CODES
