"""Shared CLI output: readable tables for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()


def emit(rows: Sequence[Mapping[str, Any]] | Mapping[str, Any], *, as_json: bool, title: str = "",
         columns: Iterable[str] | None = None) -> None:
    """Print rows as a table (or one mapping as a two-column table), or as JSON when asked."""
    if as_json:
        print(json.dumps(rows, indent=2, sort_keys=True, default=str))
        return
    if isinstance(rows, Mapping):
        table = Table(title=title or None, show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value")
        for key, value in rows.items():
            table.add_row(str(key), _cell(value))
        console.print(table)
        return
    cols = list(columns) if columns is not None else (list(rows[0].keys()) if rows else [])
    table = Table(title=title or None)
    for col in cols:
        table.add_column(col)
    for row in rows:
        table.add_row(*(_cell(row.get(col)) for col in cols))
    console.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)
