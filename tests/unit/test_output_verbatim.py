"""Tables print every cell as the text it is: a job id of hex digits that looks like a number (a leading
zero, an exponent) must not be read as one, or `list` shows an id that `stop` and `logs` cannot find."""

from __future__ import annotations

import pytest
from tabulate import tabulate

from taoremote.output import render, simple_table

NUMERIC_LOOKING_IDS = ["01234567", "1234e567", "1234e5", "00000e10", "12345678", "0000000a", "inf", "nan"]


@pytest.mark.parametrize("job", NUMERIC_LOOKING_IDS)
def test_numeric_looking_job_id_prints_verbatim(job: str) -> None:
    rows = [{"job": job, "container_id": "0123456789ab", "exit_code": 0}]
    table = render(rows, "table")
    assert table.splitlines()[2].split() == [job, "0123456789ab", "0"]


def test_a_column_of_numeric_looking_ids_keeps_every_digit() -> None:
    rows = [{"job": "00000001", "exit_code": 0}, {"job": "1e000002", "exit_code": 137}]
    lines = render(rows, "table").splitlines()
    assert [line.split() for line in lines[2:]] == [["00000001", "0"], ["1e000002", "137"]]


CELLS: list[object] = ["01234567", "1234e567", "  padded  ", "True", 3, -1, "", None, 1.5, "1,234", "x"]


@pytest.mark.parametrize("cell", CELLS)
def test_simple_table_is_tabulate_without_number_parsing(cell: object) -> None:
    headers, table = ["job", "exit_code"], [[cell, 3], ["ab12cd34", ""]]
    expected = tabulate(table, headers=headers, tablefmt="simple", disable_numparse=True)
    assert simple_table(headers, table) == expected
    assert render([dict(zip(headers, r, strict=True)) for r in table], "table") == expected
