"""Running an evaluation item by item: a progress bar, a JSON-lines save file, and resuming.

Each finished item is appended to the ``--save`` file at once (flushed and synced), so an
interrupted run loses at most the item in flight. Run again with the same file and the items saved
already are skipped. A last line cut short by a crash is dropped (and redone); any other broken
line stops the run with an error naming it. When an id appears twice the later record wins: that
is how a resumed run that adds a condition supersedes the earlier record.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from medgraph.errors import MedgraphError

Item = TypeVar("Item")
Record = dict[str, Any]


class SaveFileError(MedgraphError):
    """A ``--save`` file cannot be resumed (malformed, or written by another eval or model)."""


class SaveFile:
    """A JSON-lines file of one record per evaluated item (``task``, ``id``, ``engine``, ...)."""

    def __init__(self, path: Path | str, task: str, engine: str) -> None:
        """Records of ``task`` produced by ``engine``; other tasks or engines refuse to resume."""
        self.path = Path(path)
        self.task = task
        self.engine = engine
        self.dropped_partial_line = False

    def load(self) -> dict[str, Record]:
        """The saved records by id (last one wins); a truncated last line is cut off the file."""
        if not self.path.exists():
            return {}
        if self.path.is_dir():
            raise SaveFileError(f"save file {self.path} is a folder; give a file path")
        raw = self.path.read_bytes()
        records: dict[str, Record] = {}
        lines = raw.split(b"\n")
        offset = 0
        for number, line in enumerate(lines, start=1):
            start, offset = offset, offset + len(line) + 1
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                if number == len(lines):  # no newline after it: a write cut short by a crash
                    self._truncate(start)
                    break
                raise SaveFileError(
                    f"{self.path} line {number} is not a JSON record; repair or delete that "
                    "line, or choose a new --save file"
                ) from None
            self._check(record, number)
            records[str(record["id"])] = record
        return records

    def _truncate(self, size: int) -> None:
        with self.path.open("r+b") as handle:
            handle.truncate(size)
        self.dropped_partial_line = True

    def _check(self, record: Any, number: int) -> None:
        where = f"{self.path} line {number}"
        if not isinstance(record, dict) or "id" not in record:
            raise SaveFileError(f"{where}: not a saved evaluation record (no 'id')")
        if record.get("task") != self.task:
            raise SaveFileError(
                f"{where} holds a {record.get('task')!r} record, not {self.task!r}; choose a new "
                "--save file for this evaluation"
            )
        if record.get("engine") != self.engine:
            raise SaveFileError(
                f"{where} was written with engine {record.get('engine')!r}, this run uses "
                f"{self.engine!r}; resume with the same model or choose a new --save file"
            )

    def append(self, record: Record) -> None:
        """Write one record as a line and make it durable before the next item starts."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        needs_newline = self.path.exists() and not _ends_with_newline(self.path)
        with self.path.open("a", encoding="utf-8") as handle:
            if needs_newline:
                handle.write("\n")
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def _ends_with_newline(path: Path) -> bool:
    """Whether ``path`` is empty or its last byte is a newline."""
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell() == 0:
            return True
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


@dataclass
class RunResult:
    """Records in item order, and how many came from the save file versus this run."""

    records: list[Record] = field(default_factory=list)
    resumed: int = 0
    evaluated: int = 0


@contextmanager
def progress_bar(description: str, total: int, *, enabled: bool = True) -> Iterator[Any]:
    """A rich progress bar on standard error; yields ``advance()`` (a no-op when disabled)."""
    if not enabled:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(file=sys.stderr),
        transient=False,
    ) as progress:
        task = progress.add_task(description, total=total)
        yield lambda: progress.advance(task)


def run_items(
    items: Sequence[Item],
    work: Callable[[Item, Record | None], Record],
    *,
    item_id: Callable[[Item], str],
    is_complete: Callable[[Record], bool],
    save: SaveFile | None = None,
    description: str = "evaluating",
    progress: bool = True,
) -> RunResult:
    """Run ``work(item, previous_record)`` for every item whose saved record is not complete.

    ``previous_record`` is the saved record of that item (or None), so work can keep what is there
    and add what is missing. Each new record is appended to ``save`` as soon as it is made.
    """
    saved = save.load() if save is not None else {}
    if save is not None and save.dropped_partial_line:
        print(
            f"medgraph: {save.path}: dropped an incomplete last record (an interrupted write); "
            "that item is evaluated again",
            file=sys.stderr,
        )
    result = RunResult()
    with progress_bar(description, len(items), enabled=progress) as advance:
        for item in items:
            previous = saved.get(item_id(item))
            if previous is not None and is_complete(previous):
                result.records.append(previous)
                result.resumed += 1
            else:
                record = work(item, previous)
                if save is not None:
                    save.append(record)
                result.records.append(record)
                result.evaluated += 1
            advance()
    return result


__all__ = ["Record", "RunResult", "SaveFile", "SaveFileError", "progress_bar", "run_items"]
