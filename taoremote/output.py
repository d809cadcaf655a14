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

    return str(tabulate(table, headers=headers, tablefmt="simple"))


def simple_table(headers: Sequence[str], table: Sequence[Sequence[object]]) -> str | None:
    """tabulate's "simple" format, character for character, for the cells `list` shows: one-line ASCII
    text and ints. None for anything tabulate treats specially (text it would read as a number or a bool,
    several lines, escape codes, wide characters): tabulate renders those, as before."""
    columns: list[list[str]] = []
    numeric: list[bool] = []
    for i in range(len(headers)):
        cells = [row[i] for row in table]
        ints = [type(c) is int for c in cells]
        if not all(n or c == "" for n, c in zip(ints, cells, strict=True)):
            ints = [False] * len(cells)  # text and numbers mixed: all text, as tabulate has it
        text: list[str] = []
        for cell, is_int in zip(cells, ints, strict=True):
            shown = str(cell) if is_int else str(cell).strip()
            if not is_int and not (type(cell) is int or (isinstance(cell, str) and _plain_text(shown))):
                return None
            text.append(shown)
        columns.append(text)
        numeric.append(any(ints))
    widths = [
        max(len(h) + 2, *(len(c) for c in col)) for h, col in zip(headers, columns, strict=True)
    ]  # tabulate pads every header by 2
    lines = [
        _row([h.rjust(w) if n else h.ljust(w) for h, w, n in zip(headers, widths, numeric, strict=True)]),
        _row(["-" * w for w in widths]),
    ]
    aligned = list(zip(columns, widths, numeric, strict=True))
    for r in range(len(table)):
        lines.append(_row([col[r].rjust(w) if n else col[r].ljust(w) for col, w, n in aligned]))
    return "\n".join(lines)


def _row(cells: Sequence[str]) -> str:
    return "  ".join(cells).rstrip()


def _plain_text(text: str) -> bool:
    if not text:
        return True
    if not text.isascii() or not text.isprintable() or text in ("True", "False"):
        return False
    try:  # tabulate would read it as a number ("1e5", "inf", "1_000")
        float(text.replace(",", ""))
    except ValueError:
        return True
    return False


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
