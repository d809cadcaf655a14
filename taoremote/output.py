"""Rendering rows as a table or JSON. Returns strings; cli.py prints them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

Format = Literal["table", "json"]


def render(rows: Sequence[Mapping[str, object]], fmt: Format, *, empty: str = "No jobs.") -> str:
    if fmt == "json":
        import json  # only for json: `list` prints a table

        return json.dumps(list(rows), indent=2, sort_keys=False)
    if not rows:
        return empty
    headers = list(dict.fromkeys(key for row in rows for key in row))
    table = [[row.get(h, "") for h in headers] for row in rows]
    simple = simple_table(headers, table)
    if simple is not None:
        return simple
    from tabulate import tabulate  # ~20 ms to import: only for cells simple_table leaves to it

    # Ids and exit codes print as they are: "01234567" keeps its zero, "1234e5" is no float.
    return str(tabulate(table, headers=headers, tablefmt="simple", disable_numparse=True))


def simple_table(headers: Sequence[str], table: Sequence[Sequence[object]]) -> str | None:
    """tabulate's "simple" format without number parsing, character for character, for the cells `list`
    shows: every cell is its text, left-aligned. None for what tabulate measures specially (several lines,
    escape codes, wide characters): tabulate renders those, as before."""
    columns: list[list[str]] = []
    for i in range(len(headers)):
        text: list[str] = []
        for row in table:
            cell = row[i]
            if cell is not None and not isinstance(cell, (str, int, float)):
                return None
            shown = "" if cell is None else str(cell).strip() if isinstance(cell, str) else str(cell)
            if shown and not (shown.isascii() and shown.isprintable()):
                return None
            text.append(shown)
        columns.append(text)
    widths = [
        max(len(h) + 2, *(len(c) for c in col)) for h, col in zip(headers, columns, strict=True)
    ]  # tabulate pads every header by 2
    lines = [_row([h.ljust(w) for h, w in zip(headers, widths, strict=True)])]
    lines.append(_row(["-" * w for w in widths]))
    for r in range(len(table)):
        lines.append(_row([col[r].ljust(w) for col, w in zip(columns, widths, strict=True)]))
    return "\n".join(lines)


def _row(cells: Sequence[str]) -> str:
    return "  ".join(cells).rstrip()


def render_mapping(data: Mapping[str, object], fmt: Format) -> str:
    if fmt == "json":
        import json

        return json.dumps(data, indent=2)
    width = max((len(k) for k in data), default=0)
    return "\n".join(f"{k.ljust(width)}  {_scalar(v)}" for k, v in data.items())


def _scalar(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "-"
    if value is None or value == "":
        return "-"
    return str(value)
