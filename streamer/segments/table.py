"""Plain-text tables for the terminal (the `--json` output is the API's own document)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def format_table(columns: Sequence[str], rows: Sequence[Mapping[str, Any]], empty: str) -> str:
    if not rows:
        return empty
    table = [tuple(columns), *[tuple(_cell(row.get(c)) for c in columns) for row in rows]]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in table
    )


def _cell(value: Any) -> str:
    return "" if value is None else str(value)
