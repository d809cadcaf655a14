"""Rendering rows as a table or JSON. Returns strings; cli.py prints them."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Literal

Format = Literal["table", "json"]


def render(rows: Sequence[Mapping[str, object]], fmt: Format, *, empty: str = "No jobs.") -> str:
    if fmt == "json":
        return json.dumps(list(rows), indent=2, sort_keys=False)
    if not rows:
        return empty
    from tabulate import tabulate  # imported only when a table is printed

    headers = list(dict.fromkeys(key for row in rows for key in row))
    table = [[row.get(h, "") for h in headers] for row in rows]
    return str(tabulate(table, headers=headers, tablefmt="simple"))


def render_mapping(data: Mapping[str, object], fmt: Format) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2)
    width = max((len(k) for k in data), default=0)
    return "\n".join(f"{k.ljust(width)}  {_scalar(v)}" for k, v in data.items())


def _scalar(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "-"
    if value is None or value == "":
        return "-"
    return str(value)
