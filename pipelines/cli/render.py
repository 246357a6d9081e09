"""How every ``binds`` command prints what it found: rows as an aligned table, or JSON.

Commands parse their options, call the library (pipelines/describe, pipelines/access ...) and
hand the result here, so that a table or a ``--json`` document looks the same whichever
command printed it (issue 20).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from pipelines.progress import human_bytes

# pipes and CI logs get wide lines rather than a table folded into 80 columns
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, soft_wrap=True)


def print_table(
    rows: Iterable[Sequence[str]],
    *,
    columns: Sequence[str],
    title: str,
    empty: str | None = None,
) -> None:
    """``rows`` (one string a cell) under ``columns``, titled; ``empty`` instead when there
    are no rows and it is given (without it, an empty table shows the columns)."""
    rows = list(rows)
    if not rows and empty is not None:
        out.print(empty)
        return
    table = Table(title=title, title_justify="left")
    for col in columns:
        # a long cell folds inside its column rather than widening the table past the screen
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*row)
    out.print(table)


def print_json(
    value: Any,
    *,
    indent: int | None = 2,
    default: Callable[[Any], Any] | None = None,
    coloured: bool = False,
) -> None:
    """``value`` as JSON on stdout, one document ending in a newline.

    ``indent=None``: one line (a watcher's rounds, one JSON document a line).  ``coloured``:
    rich's JSON, coloured on a terminal (the result of a run, a move, an adoption, which a
    person reads as often as a script), plain in a pipe.
    """
    if coloured:
        out.print_json(json.dumps(value, default=default))
        return
    sys.stdout.write(json.dumps(value, indent=indent, default=default) + "\n")
    sys.stdout.flush()  # a watcher's round reaches the pipe when it ends, not at exit


def print_arrow_json(table: Any) -> None:
    """The rows of an Arrow table as a JSON array, bytes straight from Arrow (no pandas):
    ~220 MB at 100,000 catalog versions."""
    from pipelines.access.catalog_json import write_records_json

    sys.stdout.flush()
    write_records_json(table, sys.stdout.buffer)
    sys.stdout.buffer.flush()


__all__ = ["err", "human_bytes", "out", "print_arrow_json", "print_json", "print_table"]
