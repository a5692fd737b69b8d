"""Shared CLI helpers: opening the store from the global option, error handling, output."""
from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from typing import Iterator

import duckdb

import pyarrow as pa
import typer
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.text import Text

# The one output layer (protiso/cli/output.py): every command prints or writes through emit.
from protiso.cli.output import (FORMATS, console, emit, err_console, format_option, json_option, json_text,
                                output_option, prepare_directory, prepare_output, resolve_format)
from protiso.errors import ProtisoError
from protiso.store import CATALOG_NAME, Store, lock, open_store, resolve_store_path
from protiso.store.catalog import discard_new_store

try:            # typer >= 0.2x carries its own copy of click
    from typer._click.globals import get_current_context
except ImportError:   # pragma: no cover - older typer on click
    from click import get_current_context

__all__ = ["FORMATS", "RUN_HELP", "choice", "console", "emit", "err_console", "error", "format_option", "handle_errors",
           "json_option", "open_from_ctx", "output_option", "prepare_directory", "prepare_output",
           "progress_bar", "resolve_format", "to_json", "warn"]

# The --model option of every command that reads a run (resolved by protiso.runs.resolve).
RUN_HELP = ("Model alias, run id or short run id (the `id` column of `protiso runs`). Default: the "
            "store's only run, else the latest run of the default model (protiso-mini).")


# What a Ctrl-C leaves behind, per command (others: nothing is said beyond "interrupted").
INTERRUPTED = {
    "ingest": "nothing was ingested: the store is as it was",
    "embed": "finished proteins are kept: re-run the same command to resume",
    "reproduce": "finished steps are kept: re-run the same command to resume",
    "demo": "finished steps are kept: re-run the same command to resume",
    "pairs align": "finished chunks are kept: re-run the same command to resume",
    "pairs distances": "finished chunks are kept: re-run the same command to resume",
    "correlate": "finished distance chunks are kept: re-run the same command to resume",
    "train-mini": "re-run the same command to resume from the last checkpoint",
    "isotropy": "nothing was saved",
    "sql": "nothing was changed (sql is read-only)",
    "report": "the previous report, if any, is unchanged",
}


_RUNNING: list[str] = [""]     # the path of the command being run (`pairs align`), set on invoke


def _path(ctx) -> str:
    names = []
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(reversed(names))


_CTRL_C: dict = {"seen": False}    # a Ctrl-C arrived during this command (see notice_ctrl_c)


def _on_sigint(signum, frame) -> None:
    _CTRL_C["seen"] = True
    signal.default_int_handler(signum, frame)     # KeyboardInterrupt, as Python's own handler


@contextlib.contextmanager
def notice_ctrl_c() -> Iterator[None]:
    """Remember that a Ctrl-C arrived while a command ran. A Ctrl-C inside a DuckDB call aborts
    its transaction, and what surfaces may be a later statement's "transaction is aborted" (or
    a ProtisoError wrapping it) instead of KeyboardInterrupt: `handle_errors` then reports the
    interruption, not that error. Only where Python's own handler is in place (main thread)."""
    _CTRL_C["seen"] = False
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def ctrl_c_seen() -> bool:
    return _CTRL_C["seen"]


def interrupted_message() -> str:
    """The line printed on Ctrl-C for the command being run."""
    ctx = get_current_context(silent=True)
    path = _path(ctx) if ctx is not None and ctx.parent is not None else _RUNNING[0]
    note = INTERRUPTED.get(path)
    return f"interrupted; {note}" if note else "interrupted"


@contextlib.contextmanager
def open_from_ctx(ctx: typer.Context, read_only: bool = False, create: bool = False, job: bool = False,
                  check: bool = True) -> Iterator[Store]:
    """Open the store named by the global --store option; ProtisoErrors become exit 1.

    create: the command writes and may make the store (ingest, import, demo); a store it made
    whose command fails is removed again, leaving nothing. job: a long command that holds the
    catalog only while it reads and commits (`Store.job`), so readers are never locked out.
    check: fail on a store whose listed parts are missing or changed (verify/repair/info don't)."""
    path = (ctx.obj or {}).get("store")
    root = resolve_store_path(path)
    root_existed = root.exists()
    new = create and not (root / CATALOG_NAME).exists()
    lock.on_wait = lambda message: err_console.print(message, highlight=False, markup=False, soft_wrap=True)
    ok = False
    try:
        with handle_errors():
            store = open_store(path, read_only=read_only, create=create, check=check,
                               data=None if read_only else (ctx.obj or {}).get("data"))
        try:
            with handle_errors():
                if job:
                    with store.job():
                        yield store
                else:
                    yield store
            ok = True
        finally:
            store.close()
    finally:
        if new and not ok:
            discard_new_store(root, root_existed)


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
        try:
            yield
        except (ProtisoError, duckdb.Error, pa.ArrowException, OSError):
            if ctrl_c_seen():      # a consequence of the Ctrl-C (an aborted transaction): say that
                err_console.print(interrupted_message(), highlight=False, markup=False)
                raise typer.Exit(130) from None
            raise
    except ProtisoError as exc:
        flag = f" (option --{exc.param.replace('_', '-')})" if getattr(exc, "param", None) else ""
        error(f"{exc}{flag}")
        raise typer.Exit(1)
    except (KeyboardInterrupt, duckdb.InterruptException):   # Ctrl-C, also inside a DuckDB query
        err_console.print(interrupted_message(), highlight=False, markup=False)
        raise typer.Exit(130)
    except duckdb.Error as exc:   # a damaged catalog, or a DuckDB failure no library call expected
        text = " ".join(str(exc).split())[:300]
        error(f"the store catalog is damaged ({text}); restore it from a backup (`protiso verify` "
              "reads every table)" if _damage_text(exc) else f"DuckDB: {text}")
        raise typer.Exit(1)
    except BrokenPipeError:   # stdout's reader went away (`| head`): stop quietly
        from protiso.cli.output import pipe_closed

        pipe_closed()
    except (pa.ArrowException, OSError) as exc:
        where = getattr(exc, "filename", None)
        error(f"{where + ': ' if where else ''}{' '.join(str(exc).split())[:300]}; if it is a file of the "
              "store, `protiso verify` checks them all")
        raise typer.Exit(1)


def _damage_text(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "checksum" in text or "corrupt" in text


@contextlib.contextmanager
def ctrl_c_interrupts_queries() -> Iterator[dict]:
    """Make Ctrl-C stop a running DuckDB query: DuckDB keeps the main thread while it computes,
    so Python's own handler cannot run. Python's C-level handler still writes the signal to the
    wakeup fd (whichever thread receives it); a watcher thread reading it calls `interrupt()` on
    the connection put in the yielded dict (`state["con"]`), and `state["interrupted"]` tells
    afterwards whether it happened. Elsewhere than in the main thread it does nothing."""
    state: dict = {"con": None, "interrupted": False}
    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    stop = threading.Event()

    def on_sigint(signum, frame) -> None:
        state["interrupted"] = True

    def watch() -> None:
        while not stop.is_set():
            ready, _, _ = select.select([read_fd], [], [], 0.1)
            if ready and signal.SIGINT in os.read(read_fd, 64):
                state["interrupted"] = True
                con = state.get("con")
                if con is not None:
                    with contextlib.suppress(Exception):
                        con.interrupt()
    old_handler = signal.signal(signal.SIGINT, on_sigint)
    old_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    watcher = threading.Thread(target=watch, name="protiso-sigint", daemon=True)
    watcher.start()
    try:
        yield state
    finally:
        stop.set()
        watcher.join()
        signal.set_wakeup_fd(old_fd)
        signal.signal(signal.SIGINT, old_handler)
        os.close(read_fd)
        os.close(write_fd)


def to_json(rows) -> str:
    """Rows (or one object) as indented JSON: NaN as null, timestamps as ISO strings."""
    return json_text(rows, indent=2) + "\n"
