"""`list` renders its table without importing tabulate (~20 ms), character for character as tabulate does
without number parsing."""

from __future__ import annotations

import subprocess
import sys

import pytest
from tabulate import tabulate

from taoremote.output import render, simple_table

JOB = {
    "job": "0a1b2c3d",
    "container_id": "f00dfeedbeef",
    "task": "detectnet_v2",
    "status": "Up 3 minutes",
    "exit_code": "",
    "gpus": "all",
    "user": "alice",
    "command": "detectnet_v2 train -e /workspace/specs/train.txt -k 'a key'",
}
EXITED = {**JOB, "job": "9f8e7d6c", "status": "Exited (3) 2 hours ago", "exit_code": 3}
ROWS = [
    [JOB],
    [JOB, EXITED],
    [EXITED, {**EXITED, "exit_code": -1}, {**EXITED, "exit_code": 137}],  # ints are text too: left-aligned
    [{**JOB, "exit_code": "", "command": "  padded  "}],
    [{"host": "gpu1", **JOB}, {"host": "a-much-longer-host-name", **EXITED}],
    [{"task": "x", "image": "nvcr.io/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5"}],
    [{"host": "h", "check": "docker", "status": "ok", "detail": "Docker Engine answers", "fix": ""}],
    [{"a": 1}, {"b": "x"}],  # a key missing from a row is an empty cell
    [{"n": 5, "t": "mixed"}, {"n": "text", "t": "mixed"}],  # ints and text in one column: text
]


@pytest.mark.parametrize("rows", ROWS)
def test_simple_table_is_what_tabulate_printed(rows: list[dict[str, object]]) -> None:
    headers = list(dict.fromkeys(k for r in rows for k in r))
    table = [[r.get(h, "") for h in headers] for r in rows]
    assert simple_table(headers, table) == _tabulate(table, headers)
    assert render(rows, "table") == _tabulate(table, headers)


SPECIAL = ["two\nlines", "\x1b[31mred\x1b[0m", "日本", b"ab12cd34"]


@pytest.mark.parametrize("cell", SPECIAL)
def test_cells_tabulate_treats_specially_are_left_to_it(cell: object) -> None:
    headers, table = ["job", "n"], [[cell, 1]]
    assert simple_table(headers, table) is None
    assert render([{"job": cell, "n": 1}], "table") == _tabulate(table, headers)


def _tabulate(table: list[list[object]], headers: list[str]) -> str:
    return tabulate(table, headers=headers, tablefmt="simple", disable_numparse=True)


def test_list_output_imports_no_tabulate_and_no_json() -> None:
    code = (
        "import sys; from taoremote.output import render;"
        "render([{'job': 'ab12cd34', 'exit_code': 3}], 'table');"
        "print('tabulate' in sys.modules, 'json' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
