"""Store commands: verify (every part, index and statistics file against what the catalog
recorded, and every catalog table) and repair (unlist what is lost, mark its work not done)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import pyarrow as pa
import typer

from protiso.cli.core import (console, emit, err_console, error, format_option, json_option, open_from_ctx,
                              output_option, resolve_format)
from protiso.store.integrity import repair as repair_store
from protiso.store.integrity import verify as verify_store


PROBLEMS = pa.schema([("path", pa.string()), ("owner", pa.string()), ("problem", pa.string())])


def verify(ctx: typer.Context, fmt: Optional[str] = format_option(), output: Optional[Path] = output_option(),
           as_json: bool = json_option()) -> None:
    """Check the store: every Parquet part (present, size, SHA-256, row count), every index and
    statistics file the catalog lists, and every catalog table (read in full). Exits 1 listing
    what is wrong; `protiso repair` then unlists lost files and marks their work as not done.
    The other formats than table list the problems (none: just the header, or [])."""
    fmt = resolve_format(fmt, as_json, output)
    with open_from_ctx(ctx, read_only=True, check=False) as store:
        result = verify_store(store)
    rows = [{"path": p.path, "owner": p.dataset or p.kind, "problem": p.problem} for p in result.problems]
    if fmt != "table" or output is not None:
        emit(pa.Table.from_pylist(rows, schema=PROBLEMS), fmt, output)
    elif rows:
        emit(rows, title="damaged")
    summary = (f"checked {result.checked_tables} tables, {result.checked_parts:,} parts and "
               f"{result.checked_files:,} other files")
    if result.unchecked:
        summary += f" ({result.unchecked:,} parts have no recorded checksum)"
    if rows:
        error(f"{summary}: {len(rows)} problem(s); run `protiso repair` to unlist lost or changed files "
              "and mark their work as not done, then re-run the jobs that made them")
        raise typer.Exit(1)
    err_console.print(f"{summary}: all intact", highlight=False)


def repair(ctx: typer.Context) -> None:
    """Unlist lost or changed parts and files (changed ones are moved to STORE/damaged/) and mark
    the proteins, pairs or chunks they held as not done, so re-running `embed`, `pairs align`,
    `pairs distances` or `index build` restores them. A damaged catalog cannot be repaired."""
    with open_from_ctx(ctx, check=False) as store:
        result, actions = repair_store(store)
    if not result.problems:
        console.print("nothing to repair: every listed file is intact", highlight=False)
        return
    for line in actions:
        console.print(line, highlight=False, markup=False)
    console.print(f"repaired {len(result.problems)} problem(s); re-run the jobs above to restore the data",
                  highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(verify)
    app.command()(repair)
