"""The `protiso` command line: a thin Typer layer over the library.

Each area registers its commands from its own module (protiso/cli/<area>.py, `register(app)`).
"""
from __future__ import annotations

import os
import signal
import sys


def _interrupted_at_start(signum, frame) -> None:
    """Ctrl-C while the command line loads (pyarrow, DuckDB, FAISS, SciPy): nothing ran yet."""
    sys.stderr.write("interrupted\n")
    os._exit(130)


try:   # until the commands are loaded; then the one error path (cli/group.py) handles Ctrl-C
    _previous_sigint = signal.signal(signal.SIGINT, _interrupted_at_start)
except ValueError:     # imported outside the main thread: leave signals alone
    _previous_sigint = None

import importlib  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Optional  # noqa: E402

import typer  # noqa: E402

from protiso._version import __version__
from protiso.cli.group import EPILOG, ProtisoGroup

# Modules under protiso.cli that add commands; each exposes register(app).
CLI_MODULES = ("foundation", "store", "train", "isotropy", "neighbors", "pairs", "embed", "report", "interchange")

app = typer.Typer(
    name="protiso",
    help="Embedding store and query database for the isotropy of protein language models.",
    epilog=EPILOG,
    cls=ProtisoGroup,  # one error path (one line, documented exit status) and clean help
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="markdown",  # docstrings are paragraphs: single line breaks are joined
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"protiso {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    ctx: typer.Context,
    store: Optional[Path] = typer.Option(
        None, "--store", metavar="DIR", envvar="PROTISO_STORE",
        help="Store directory (default: $PROTISO_STORE, else ./store). Created by ingest and demo."),
    data: Optional[str] = typer.Option(
        None, "--data", metavar="URL", envvar="PROTISO_DATA",
        help="Where a new store keeps its Parquet parts: s3://bucket/prefix, gs://..., any URL pyarrow's "
             "filesystems open (options as query parameters). Default: data/ beside the catalog."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Show the version and exit."),
) -> None:
    ctx.obj = {"store": store, "data": data}


for _name in CLI_MODULES:
    importlib.import_module(f"protiso.cli.{_name}").register(app)
if _previous_sigint is not None:
    signal.signal(signal.SIGINT, _previous_sigint)


def main() -> None:
    app()
