"""Foundation commands: ingest, sql, info, demo."""
from __future__ import annotations

import re
from pathlib import Path
from typing import List, Optional

import duckdb
import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from protiso.cli.core import (console, ctrl_c_interrupts_queries, emit, err_console, format_option,
                              handle_errors, json_option, open_from_ctx, output_option, resolve_format, warn)
from protiso.cli.embed import RUN_OPTIONAL, run_rows
from protiso.cli.output import is_inside
from protiso.errors import InputError, QueryError
from protiso.ingest import ingest as ingest_files
from protiso.ingest.loader import FORMATS, UNKNOWN_POLICIES
from protiso.store.info import store_info
from protiso.store.readonly import check_read_only


def _choice(value: str, choices, option: str) -> str:
    if value not in choices:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}", param_hint=option)
    return value


def ingest(
    ctx: typer.Context,
    files: List[Path] = typer.Argument(None, help="Sequence files: FASTA (UniProt headers parsed), "
                                       "Swiss-Prot/UniProt flat files (.dat); plain or .gz."),
    fmt: str = typer.Option("auto", "--format", help=f"Input format: {'|'.join(FORMATS)}."),
    annotations: List[Path] = typer.Option(
        None, "--annotations", "-a", help="Annotation TSV (accession, namespace, term), "
        "e.g. GO terms with aspect BPO/CCO/MFO. Repeatable."),
    unknown: str = typer.Option("error", "--unknown", help="Annotations naming accessions not "
                                "in the store: 'error' (default, nothing is ingested) or 'skip' "
                                "(skipped with a warning)."),
) -> None:
    """Ingest proteins and annotations in one transaction (all or nothing).

    Re-ingesting the same accession with the same sequence is a no-op; a different sequence
    is an error that names the file and line."""
    _choice(fmt, FORMATS, "--format")
    _choice(unknown, UNKNOWN_POLICIES, "--unknown")
    with open_from_ctx(ctx, create=True) as store:
        with Progress(TextColumn("ingest"), BarColumn(bar_width=None), TextColumn("{task.completed:,} records"),
                      TimeElapsedColumn(), console=err_console, transient=True,
                      disable=not err_console.is_terminal) as bar:
            task = bar.add_task("ingest", total=None)
            result = ingest_files(store, files or [], fmt, annotations or [], unknown,
                                  progress=lambda n: bar.advance(task, n))
    for w in result.warnings:
        warn(w)
    for go in result.go:
        console.print(go.summary(), highlight=False, markup=False, soft_wrap=True)
    if len(result.files) > len(result.go):     # sequence files or annotation TSVs were given
        console.print(f"{result.n_records:,} records read, {result.n_new:,} new proteins; "
                      f"{result.n_annotations:,} annotation rows, {result.n_new_annotations:,} new",
                      highlight=False, soft_wrap=True)


def sql(
    ctx: typer.Context,
    query: Optional[str] = typer.Argument(None, help="SQL query over the store's tables and views."),
    file: Optional[Path] = typer.Option(None, "--file", "-f", help="Read the query from a file."),
    fmt: Optional[str] = format_option(),
    output: Optional[Path] = output_option(),
    as_json: bool = json_option(),
) -> None:
    """Run ad-hoc SQL on the store, read-only: one SELECT/WITH, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN or
    read-only PRAGMA, e.g. `protiso sql "SELECT * FROM organism_summary"`. Statements that write
    files, attach databases, change settings or load extensions are refused. Ctrl-C stops it.
    csv and tsv quote only where needed and write lists and structs as JSON."""
    fmt = resolve_format(fmt, as_json, output)
    with handle_errors():
        if (query is None) == (file is None):
            raise QueryError("give either a QUERY argument or --file, not both or neither")
        if file is not None:
            if not file.is_file():
                raise InputError(f"{file}: no such file", param="file")
            try:
                query = file.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise InputError(f"{file}: not a UTF-8 text file", param="file") from None
    with ctrl_c_interrupts_queries() as interrupt:
        with open_from_ctx(ctx, read_only=True) as store:
            if output is not None and is_inside(output, store.root):
                raise QueryError(f"{output} is inside the store {store.root}; write query results elsewhere",
                                 param="output")
            statements = check_read_only(store.con, query)
            if len(statements) > 1:
                raise QueryError(f"give one statement, not {len(statements)}")
            interrupt["con"] = store.con
            try:
                table = store.sql(statements[0])
            except duckdb.InterruptException:
                _interrupted()
            except duckdb.Error as exc:
                raise QueryError(f"query failed: {' '.join(str(exc).split())}") from exc
            finally:
                interrupt["con"] = None
            if interrupt["interrupted"]:
                _interrupted()
            emit(table, fmt, output)
    null_go = [c for c in table.column_names if GO_PAIR_COLUMNS.match(c)
               and table.num_rows and table.column(c).null_count == table.num_rows]
    if null_go:
        warn(f"{', '.join(null_go)} {'is' if len(null_go) == 1 else 'are'} NULL in every row: a pair set's GO "
             "similarities stay NULL until `protiso correlate PAIR_SET` computes them (and where a protein "
             "has no term)")


# Pair columns (view pair_metrics) that stay NULL until `protiso correlate` computes them: a
# result with one of them NULL in every row says so.
GO_PAIR_COLUMNS = re.compile(r"^(go_jaccard|resnik_\w+|lin_\w+)$")


def _interrupted() -> None:
    err_console.print("interrupted: the query was stopped; the store is unchanged", highlight=False)
    raise typer.Exit(130)


def info(ctx: typer.Context, fmt: Optional[str] = format_option(), output: Optional[Path] = output_option(),
         as_json: bool = json_option()) -> None:
    """Tables with row counts, embedding runs and the store's size on disk; damaged parts (missing
    or changed files) are listed too (see `protiso verify`).

    json and ndjson give the whole summary as one object; csv, tsv and parquet the table of row
    counts (the runs: `protiso runs --format ...`)."""
    fmt = resolve_format(fmt, as_json, output)
    with open_from_ctx(ctx, read_only=True, check=False) as store:
        summary = store_info(store)
        runs = run_rows(store) if summary["runs"] and fmt == "table" else []
    for problem in summary["damaged"]:
        warn(f"{problem['path']} ({problem['dataset']}): {problem['problem']}; run `protiso repair`")
    if fmt in ("json", "ndjson"):
        emit([summary], fmt, output)
        return
    if fmt != "table" or output is not None:
        emit(summary["tables"], fmt, output)
        return
    console.print(f"store [bold]{summary['store']}[/] ({summary['size_bytes'] / 1e6:.1f} MB on disk)",
                  highlight=False)
    emit(summary["tables"], title="tables")
    if runs:
        emit(runs, title="embedding runs (id: short run id, usable wherever a run is)", optional=RUN_OPTIONAL)


def demo(ctx: typer.Context,
         proteins: Optional[int] = typer.Option(
             None, "--proteins", min=300, metavar="N",
             help="Analyse a fixed subset of N of the sample's proteins (a quicker look); default all."),
         ) -> None:
    """Run the whole pipeline on the bundled Swiss-Prot sample (2,000 proteins with GO terms and
    100 flat-file entries) and write the report: ingest, embed with the bundled protiso-mini
    (all layers, per-residue statistics) and its training checkpoints, global/local/per-group
    isotropy, a pair sample with alignments, distances and correlations. Each step is skipped
    when already done, so an interrupted demo resumes. protiso-mini is a demonstration model,
    not a stand-in for published pLMs."""
    from protiso.cli.report import pipeline_callbacks
    from protiso.pipeline.demo import demo_settings, run_demo, sample_overview, settings_text

    def on_ingest(result) -> None:
        console.print(f"[bold]ingest[/]: {result.n_records:,} records, {result.n_new:,} new; "
                      f"{result.n_new_annotations:,} new annotations", highlight=False)
        for title, table in sample_overview(store).items():
            emit(table, title=title)

    console.print(settings_text(demo_settings(proteins), proteins), highlight=False, markup=False,
                  soft_wrap=True)
    with open_from_ctx(ctx, create=True) as store, pipeline_callbacks() as callbacks:
        result = run_demo(store, proteins=proteins, on_ingest=on_ingest, **callbacks)
        emit(result.isotropy, title="isotropy (last layer)")
        console.print(f"store: {store.root}", highlight=False)
    console.print(f"report: {result.report}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command()(ingest)
    app.command()(sql)
    app.command()(info)
    app.command()(demo)
