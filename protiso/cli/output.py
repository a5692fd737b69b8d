"""The CLI's one output layer: every command hands its result (an Arrow table, a list of dicts or
one dict) to `emit(result, fmt, output, title=...)`, which prints a terminal table or writes
csv, tsv, json, ndjson or parquet to stdout or a file.

- table: for reading. Ids and numbers are never cut: a table too wide for the terminal first
  leaves out the columns the command marked optional (saying so), then turns into one block of
  `column  value` lines per row. Numbers show 6 significant digits; every other format keeps
  full precision.
- csv / tsv: a header row; fields quoted only where needed (as DuckDB's own writer does);
  lists and structs JSON-encoded (in TSV unquoted: JSON holds no tab); NULL is the empty field.
- json: one array of objects; ndjson: one object per line. NaN and infinities are null.
- parquet: the Arrow table as it is (needs --output).
A file named by --output is written under a temporary name and renamed when complete; missing
parent directories are created. The format follows the file's suffix when --format is not given.
"""
from __future__ import annotations

import datetime as _dt
import decimal
import io
import json
import math
import os
import sys
from pathlib import Path
from typing import Iterable, Iterator, Optional

import pyarrow as pa
import typer
from rich import box
from rich.console import Console
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from protiso.errors import ProtisoError

FORMATS = ("table", "csv", "tsv", "json", "ndjson", "parquet")
SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "table", ".json": "json",
            ".ndjson": "ndjson", ".jsonl": "ndjson", ".parquet": "parquet", ".pq": "parquet"}
FORMAT_HELP = ("table (for reading; 6 significant digits), csv, tsv, json, ndjson or parquet (full "
               "precision; parquet needs --output). Default: table, or the --output file's suffix.")
LONG_TEXT = 160         # table cells longer than this are shortened (the other formats keep all)

console = Console(soft_wrap=True)     # stdout: results (text lines never wrapped: paths stay whole)
err_console = Console(stderr=True, soft_wrap=True)   # stderr: messages, progress


# ------------------------------------------------------------------------------ options

def format_option(default: Optional[str] = None):
    """`--format FORMAT` for a command (None: table, or the --output file's suffix)."""
    return typer.Option(default, "--format", metavar="FORMAT", help=FORMAT_HELP)


def output_option():
    """`--output FILE` / `-o FILE` for a command."""
    return typer.Option(None, "--output", "-o", metavar="FILE",
                        help="Write the result to FILE (format from --format or the suffix: .csv .tsv "
                             ".json .ndjson .parquet); parent directories are created.")


def json_option():
    """`--json`, the alias of `--format json` every analysis command keeps."""
    return typer.Option(False, "--json", help="Same as --format json.")


def resolve_format(fmt: Optional[str] = None, as_json: bool = False, output: Optional[Path] = None) -> str:
    """The format of a command's output from --format, --json and --output (usage error, exit 2,
    when they disagree or the format is unknown)."""
    if fmt is not None and fmt not in FORMATS:
        raise typer.BadParameter(f"{fmt!r} is not one of {', '.join(FORMATS)}", param_hint="--format")
    if as_json:
        if fmt not in (None, "json"):
            raise typer.BadParameter(f"--json and --format {fmt} disagree; give one", param_hint="--format")
        fmt = "json"
    if fmt is None:
        fmt = SUFFIXES.get(Path(output).suffix.lower(), "table") if output is not None else "table"
    if fmt == "parquet" and output is None:
        raise typer.BadParameter("parquet is binary: give --output FILE", param_hint="--format")
    if output is not None:
        check_output(output)        # before the command's work, not after it
    return fmt


# ------------------------------------------------------------------------------ values

def _jsonable(value):
    """JSON for what json cannot encode itself: dates, decimals, NumPy values, bytes."""
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if hasattr(value, "tolist"):
        return _clean(value.tolist())
    if hasattr(value, "item"):
        return _clean(value.item())
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


def _clean(value):
    """NaN and infinities as None, recursively (JSON has no NaN)."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def json_text(value, indent: int | None = None) -> str:
    """`value` as JSON: NaN as null, dates as ISO strings, NumPy values as numbers."""
    return json.dumps(_clean(value), default=_jsonable, indent=indent, ensure_ascii=False,
                      separators=None if indent else (",", ":"))


def field_text(value) -> str:
    """A csv/tsv field: full precision, NULL as empty, lists and structs as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (int, str)):
        return str(value)
    if isinstance(value, (list, tuple, dict)) or hasattr(value, "tolist"):
        return json_text(value)
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, _dt.datetime):
        return value.isoformat(sep=" ")
    return str(value)


def cell_text(value) -> str:
    """A table cell: 6 significant digits, NULL as empty, long lists and text shortened."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, _dt.datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        items = [cell_text(v) if not isinstance(v, str) else v for v in value]
        sep = "," if all(_is_number(v) for v in value) else ", "
        if len(items) > 8:
            return "[" + sep.join(items[:4]) + f", … {len(items)} values]"
        return "[" + sep.join(items) + "]"
    if isinstance(value, dict):
        text = json_text(value)
    else:
        text = str(value)
    if len(text) > LONG_TEXT:
        return text[:LONG_TEXT - 40] + f"… ({len(text):,} characters; --format tsv shows all)"
    return text


# ------------------------------------------------------------------------------ results

class _Result:
    """A command's result as columns and a stream of row dicts (and an Arrow table if it is one)."""

    def __init__(self, result):
        self.document = None
        if isinstance(result, pa.RecordBatchReader):
            result = result.read_all()
        if isinstance(result, pa.Table):
            self.arrow = result
            self.columns = list(result.column_names)
            self.count = result.num_rows
            return
        self.arrow = None
        if isinstance(result, dict):
            self.document = result
            result = [result]
        rows = [dict(r) for r in result]
        columns: dict = {}
        for r in rows:
            columns.update(dict.fromkeys(r))
        self.columns = list(columns)
        self._rows = rows
        self.count = len(rows)

    def rows(self) -> Iterator[dict]:
        if self.arrow is None:
            yield from self._rows
            return
        for batch in self.arrow.to_batches(max_chunksize=8192):
            yield from batch.to_pylist()

    def to_arrow(self) -> pa.Table:
        """The result as an Arrow table Parquet can hold: a struct column without fields (rows
        whose dicts are all empty) becomes its JSON text."""
        table = self.arrow
        if table is None:
            try:
                table = pa.Table.from_pylist([{c: r.get(c) for c in self.columns} for r in self._rows])
            except (pa.ArrowException, TypeError, ValueError) as exc:
                raise ProtisoError(f"these rows cannot be written as Parquet ({exc}); use --format json",
                                   param="format") from None
        for i, field in enumerate(table.schema):
            if pa.types.is_struct(field.type) and field.type.num_fields == 0:
                text = pa.array([None if v is None else json_text(v) for v in table.column(i).to_pylist()],
                                pa.string())
                table = table.set_column(i, field.name, text)
        return table


def quote_field(value, delimiter: str = ",") -> str:
    """One csv/tsv field as DuckDB's writer quotes it: in double quotes (doubled inside) only when
    it holds the delimiter, a quote or a line break; NULL is empty and the empty string `""`."""
    if value is None:
        return ""
    text = field_text(value)
    if text == "" or delimiter in text or '"' in text or "\n" in text or "\r" in text:
        return '"' + text.replace('"', '""') + '"'
    return text


def _nested(value) -> bool:
    return isinstance(value, (list, tuple, dict)) or (hasattr(value, "tolist") and not hasattr(value, "item"))


def delimited_field(value, delimiter: str = ",") -> str:
    """One csv/tsv field: `quote_field`, except that in TSV a list or struct is its JSON text as
    it is (JSON holds no raw tab or line break), so `cut -f2 | jq` reads it."""
    if delimiter == "\t" and _nested(value):
        return field_text(value)
    return quote_field(value, delimiter)


def _write_delimited(res: _Result, out, delimiter: str) -> None:
    out.write(delimiter.join(quote_field(str(c), delimiter) for c in res.columns) + "\n")
    for row in res.rows():
        out.write(delimiter.join(delimited_field(row.get(c), delimiter) for c in res.columns) + "\n")


def _write_json(res: _Result, out, lines: bool) -> None:
    if res.document is not None and not lines:
        out.write(json_text(res.document, indent=2) + "\n")
        return
    if lines:
        for row in res.rows():
            out.write(json_text(row) + "\n")
        return
    first = True
    out.write("[")
    for row in res.rows():
        out.write(("\n  " if first else ",\n  ") + json_text(row))
        first = False
    out.write("]\n" if first else "\n]\n")


def _write_text(res: _Result, fmt: str, out, title: str | None, optional: Iterable[str],
                console: Console | None) -> None:
    if fmt in ("csv", "tsv"):
        _write_delimited(res, out, "," if fmt == "csv" else "\t")
    elif fmt in ("json", "ndjson"):
        _write_json(res, out, fmt == "ndjson")
    else:
        render(res, console or Console(file=out, width=160, color_system=None, highlight=False),
               title, optional)


def emit(result, fmt: str | bool | None = "table", output: str | os.PathLike | None = None, *,
         title: str | None = None, optional: Iterable[str] = (), as_json: bool = False,
         screen: Console | None = None) -> None:
    """Print or write a command's result (an Arrow table, a list of dicts, or one dict).

    fmt: one of FORMATS (True/False: json/table, as the older `emit(rows, as_json)`); output: a
    file (None: stdout). title: the table's title; optional: columns a table too wide for the
    terminal may leave out; screen: the console for a table (default: stdout's). Problems writing
    the file are ProtisoErrors naming it."""
    if isinstance(fmt, bool) or fmt is None:
        fmt = "json" if (fmt or as_json) else resolve_format(None, False, output)
    elif as_json:
        fmt = "json"
    if fmt not in FORMATS:
        raise ProtisoError(f"{fmt!r} is not one of {', '.join(FORMATS)}", param="format")
    res = _Result(result)
    if output is None:
        if fmt == "parquet":
            raise ProtisoError("parquet is binary: give --output FILE", param="output")
        try:
            if fmt == "table":
                render(res, screen or console, title, optional)
            else:
                _write_text(res, fmt, sys.stdout, title, optional, None)
                sys.stdout.flush()
        except BrokenPipeError:
            pipe_closed()
        return
    path = prepare_output(output)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            try:
                pq.write_table(res.to_arrow(), tmp)
            except pa.ArrowException as exc:
                raise ProtisoError(f"cannot write {path} as Parquet: {exc}; use --format json",
                                   param="output") from None
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as out:
                _write_text(res, fmt, out, title, optional, None)
        os.replace(tmp, path)
    except OSError as exc:
        raise ProtisoError(f"cannot write {path}: {exc.strerror or exc}", param="output") from None
    finally:
        tmp.unlink(missing_ok=True)
    err_console.print(f"wrote {res.count:,} row{'s' if res.count != 1 else ''} ({fmt}) to {path}",
                      highlight=False, markup=False, soft_wrap=True)


def pipe_closed() -> None:
    """The reader of stdout went away (`protiso sql ... | head`): stop quietly, status 0."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass
    raise typer.Exit(0)


def is_inside(path: str | os.PathLike, root: Path) -> bool:
    """Whether `path` (resolved) lies inside `root`: commands refuse to write into a store."""
    try:
        Path(path).expanduser().resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def check_output(path: str | os.PathLike, what: str = "output") -> Path:
    """A ProtisoError (naming the option `what`) when `path` cannot be a file a command writes:
    a directory, or below a file. Creates nothing (see `prepare_output`)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ProtisoError(f"{path} is a directory; give a file name", param=what)
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise ProtisoError(f"cannot write {path}: {blocking} is a file, not a directory", param=what)
    return path


def prepare_output(path: str | os.PathLike, what: str = "output") -> Path:
    """A file path a command may write: its missing parent directories created; a ProtisoError
    (naming the option `what`) when it is a directory or the directories cannot be made."""
    path = check_output(path, what)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ProtisoError(f"cannot create the directory {path.parent} for {path}: "
                           f"{exc.strerror or exc}", param=what) from None
    if not os.access(path.parent, os.W_OK):
        raise ProtisoError(f"cannot write {path}: permission denied", param=what)
    return path


def prepare_directory(path: str | os.PathLike, what: str = "out") -> Path:
    """A directory a command writes into, created with its parents; a ProtisoError naming the
    option `what` when it is a file or cannot be made."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise ProtisoError(f"{path} exists and is not a directory", param=what)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ProtisoError(f"cannot create the directory {path}: {exc.strerror or exc}", param=what) from None
    return path


# ------------------------------------------------------------------------------ the terminal table

def _is_number(v) -> bool:
    return isinstance(v, (int, float, decimal.Decimal)) and not isinstance(v, bool)


def render(res: _Result, console: Console, title: str | None = None, optional: Iterable[str] = ()) -> None:
    """A result as a table that fits the console without cutting a value: optional columns are
    left out first, then each row becomes a block of `column  value` lines."""
    rows = list(res.rows())
    columns = list(res.columns)
    if not rows:
        console.print(Text(f"{title + ': ' if title else ''}no rows", style="dim"))
        return
    cells = {c: [cell_text(r.get(c)) for r in rows] for c in columns}
    numeric = {c: all(_is_number(r.get(c)) or r.get(c) is None for r in rows)
               and any(r.get(c) is not None for r in rows) for c in columns}
    left_out: list[str] = []
    shown = list(columns)
    table = _table(shown, cells, numeric)
    for c in [c for c in optional if c in columns]:
        if _fits(table, console):
            break
        shown.remove(c)
        left_out.append(c)
        table = _table(shown, cells, numeric)
    for c in reversed(left_out[:-1]):     # put back what fits now that a wider column is gone
        trial = [x for x in columns if x in shown or x == c]
        if _fits(_table(trial, cells, numeric), console):
            shown, table = trial, _table(trial, cells, numeric)
            left_out.remove(c)
    if _fits(table, console):
        _share_width(table, [cells[c] for c in shown], console)
        if title:
            console.print(Text(title, style="bold"))
        console.print(table)
        if left_out:
            console.print(Text(f"left out to fit {console.width} columns: {', '.join(left_out)} "
                               "(--format tsv or json shows every column)", style="dim"))
        return
    _render_records(columns, cells, numeric, title, console)


def _table(columns: list[str], cells: dict, numeric: dict) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0),
                  header_style="bold")
    for c in columns:
        values = cells[c]
        atomic = all(" " not in v and "\n" not in v for v in values)
        widest = max((len(v) for v in values), default=0)
        if atomic and widest <= LONG_TEXT:   # ids and numbers: never wrapped, never cut
            table.add_column(Text(str(c)), no_wrap=True, min_width=max(widest, _longest_word(str(c))),
                             justify="right" if numeric[c] else "left", overflow="fold")
        else:
            table.add_column(Text(str(c)), overflow="fold", justify="right" if numeric[c] else "left",
                             min_width=min(max(_longest_word(v) for v in values + [str(c)]), 24))
    for i in range(len(next(iter(cells.values())))):
        table.add_row(*[Text(cells[c][i]) for c in columns])
    return table


def _share_width(table: Table, values: list[list[str]], console: Console) -> None:
    """Fix the column widths of a table that fits (`_fits`) when Rich's own layout would not
    give each column its minimum (Rich narrows the widest wrapping columns first and then
    crops): every column gets its minimum plus a share of the rest in proportion to what more
    it could use (its longest value or header)."""
    n = len(table.columns)
    room = console.width - table._extra_width                   # less the column separators
    widths = table._calculate_column_widths(console, console.options.update_width(room))
    content = [w - (1 if i < n - 1 else 0) for i, w in enumerate(widths)]   # less the padding
    if all(c >= (col.min_width or 1) for c, col in zip(content, table.columns)) and sum(widths) <= room:
        return
    mins = [col.min_width or 1 for col in table.columns]
    natural = [max([len(v) for v in vals] + [len(str(col.header))]) for col, vals in zip(table.columns, values)]
    spare = console.width - 2 * max(n - 1, 0) - sum(mins)
    wants = [max(nat - m, 0) for nat, m in zip(natural, mins)]
    total = sum(wants)
    if total <= spare:
        shares = wants
    else:
        shares = [spare * w // total for w in wants]
        for i in sorted(range(n), key=lambda i: -wants[i])[:spare - sum(shares)]:
            shares[i] += 1
    for col, m, extra in zip(table.columns, mins, shares):
        col.width = m + extra


def _longest_word(text: str) -> int:
    return max((len(w) for w in text.split()), default=0)


def _fits(table: Table, console: Console) -> bool:
    """Whether the table's narrowest layout fits the console without cutting an atomic value."""
    gaps = 2 * max(len(table.columns) - 1, 0)     # one padding and one separator between columns
    return sum(col.min_width or 1 for col in table.columns) + gaps <= console.width


def _render_records(columns: list[str], cells: dict, numeric: dict, title: str | None,
                    console: Console) -> None:
    n = len(next(iter(cells.values())))
    if title:
        console.print(Text(title, style="bold"))
    key_width = max(len(str(c)) for c in columns)
    for i in range(n):
        console.print(Rule(Text(f"row {i + 1} of {n}", style="dim"), align="left", style="dim"))
        grid = Table.grid(padding=(0, 2))
        grid.add_column(no_wrap=True, min_width=key_width, style="bold")
        grid.add_column(overflow="fold")
        for c in columns:
            grid.add_row(Text(str(c)), Text(cells[c][i]))
        console.print(grid)


def to_text(result, title: str | None = None, width: int = 80, optional: Iterable[str] = ()) -> str:
    """The table `emit` would print on a terminal of `width` columns, as plain text (tests, docs)."""
    buf = io.StringIO()
    render(_Result(result), Console(file=buf, width=width, color_system=None, highlight=False), title, optional)
    return buf.getvalue()
