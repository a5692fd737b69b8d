"""Shared CLI helpers: opening the store from the global option, error handling, output."""
from __future__ import annotations

import contextlib
import json
import sys
from typing import Iterator

import pyarrow as pa
import typer
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table
from rich.text import Text

from protiso.errors import ProtisoError
from protiso.store import Store, open_store

console = Console()
err_console = Console(stderr=True)


@contextlib.contextmanager
def open_from_ctx(ctx: typer.Context, read_only: bool = False) -> Iterator[Store]:
    """Open the store named by the global --store option; ProtisoErrors become exit 1."""
    with handle_errors():
        store = open_store((ctx.obj or {}).get("store"), read_only=read_only)
    try:
        with handle_errors():
            yield store
    finally:
        store.close()


def choice(value: str, choices, option: str) -> str:
    """`value` if it is one of `choices`, else a usage error naming the option (exit 2)."""
    if value not in choices:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}", param_hint=option)
    return value


def progress_bar(label: str = "{task.description}", *extra, count: bool = True, eta: bool = False) -> Progress:
    """The one progress bar of the CLI: label, bar, done/total (or `extra` columns), elapsed and
    optionally ETA; on stderr, hidden when stderr is not a terminal, gone when finished."""
    columns = [TextColumn(label), BarColumn(bar_width=None)]
    columns += list(extra) if extra else ([MofNCompleteColumn()] if count else [])
    columns.append(TimeElapsedColumn())
    if eta:
        columns += [TextColumn("ETA"), TimeRemainingColumn()] if extra else [TimeRemainingColumn()]
    return Progress(*columns, console=err_console, transient=True, disable=not err_console.is_terminal)


def error(message: str) -> None:
    """Print `error: message` on stderr, unwrapped and with no markup interpretation."""
    err_console.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)


def warn(message: str) -> None:
    """Print `warning: message` on stderr, unwrapped."""
    err_console.print(Text.assemble(("warning: ", "yellow"), message), soft_wrap=True)


@contextlib.contextmanager
def handle_errors() -> Iterator[None]:
    """Print a ProtisoError as `error: message` on stderr and exit with status 1."""
    try:
        yield
    except ProtisoError as exc:
        flag = f" (option --{exc.param.replace('_', '-')})" if getattr(exc, "param", None) else ""
        error(f"{exc}{flag}")
        raise typer.Exit(1)
    except KeyboardInterrupt:
        err_console.print("interrupted; finished work is kept, re-run to resume")
        raise typer.Exit(130)


def _jsonable(value):
    """JSON for what json cannot encode itself: dates, decimals, NumPy scalars, bytes."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, bytes):
        return value.hex()
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def to_json(rows) -> str:
    """Rows as a JSON array (NaN as null, timestamps as ISO strings)."""
    return json.dumps(rows, default=_jsonable, indent=2) + "\n"


def emit(result, as_json: bool = False, title: str | None = None) -> None:
    """Print an Arrow table or a list of dicts as JSON (one array of objects) or a rich table."""
    rows = result.to_pylist() if isinstance(result, pa.Table) else list(result)
    if as_json:
        sys.stdout.write(to_json(rows))
        return
    columns = result.column_names if isinstance(result, pa.Table) else (list(rows[0]) if rows else [])
    table = Table(title=title, show_lines=False)
    for c in columns:
        table.add_column(str(c))
    for row in rows:
        table.add_row(*[_fmt(row.get(c)) for c in columns])
    console.print(table)


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."

