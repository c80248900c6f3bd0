"""The end of every evaluation: one rich table for people, one JSON object for programs."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import IO, Any


@dataclass(frozen=True)
class Column:
    """One table column: the row key it shows, its header and how a number is formatted."""

    key: str
    header: str
    format: str = "{:.3f}"


@dataclass
class EvalReport:
    """Summary of one evaluation run: a row per condition (or judge) plus run facts."""

    task: str
    source: str
    engine: str
    items: int
    resumed: int
    columns: list[Column]
    rows: dict[str, dict[str, Any]]
    save: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` object."""
        return {
            "task": self.task,
            "file": self.source,
            "engine": self.engine,
            "items": self.items,
            "resumed": self.resumed,
            "save": self.save,
            "results": self.rows,
            **self.details,
        }

    def to_json(self) -> str:
        """One line of JSON."""
        return json.dumps(self.as_dict(), ensure_ascii=False)

    def print_table(self, file: IO[str] | None = None) -> None:
        """The rows as one rich table (numbers formatted, missing values as '-')."""
        from rich.console import Console
        from rich.table import Table

        resumed = f", {self.resumed} resumed" if self.resumed else ""
        table = Table(
            title=f"{self.task} on {self.source} ({self.items} items{resumed}; {self.engine})"
        )
        table.add_column("", overflow="fold")
        for column in self.columns:
            table.add_column(column.header, justify="right")
        for name, row in self.rows.items():
            table.add_row(name, *(_cell(row.get(c.key), c.format) for c in self.columns))
        Console(file=file or sys.stdout, width=110).print(table)


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return fmt.format(value)
    return str(value)


def mean(values: list[float]) -> float | None:
    """Arithmetic mean, or None for no values."""
    return sum(values) / len(values) if values else None


__all__ = ["Column", "EvalReport", "mean"]
