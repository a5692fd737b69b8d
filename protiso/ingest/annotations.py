"""Annotation TSVs: accession, namespace (GO aspect or any vocabulary), term, as Arrow batches.

As for FASTA, two paths give the same rows: blocks of plain lines (printable ASCII, exactly
three tab-separated non-empty fields, no blank or '#' lines) are parsed by pyarrow's CSV reader
with quoting off; anything else in a block goes to the exact line-by-line rules, which raise the
error naming the file and line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from protiso.errors import InputError
from protiso.ingest.textio import block_lines, blocks, line_breaks

HEADER_FIRST_FIELDS = {"accession", "acc", "entry", "protein"}
ANNOTATION_SCHEMA = pa.schema([("accession", pa.string()), ("namespace", pa.string()),
                               ("term", pa.string()), ("line", pa.int64())])
_COLUMNS = ["accession", "namespace", "term"]
_PLAIN_BYTES = bytes(range(0x20, 0x7F)) + b"\t\r\n"
_READ = pacsv.ReadOptions(column_names=_COLUMNS, use_threads=False, block_size=1 << 26)
_PARSE = pacsv.ParseOptions(delimiter="\t", quote_char=False, double_quote=False, escape_char=False,
                            newlines_in_values=False, ignore_empty_lines=False)
_CONVERT = pacsv.ConvertOptions(column_types={c: pa.string() for c in _COLUMNS},
                                strings_can_be_null=False, quoted_strings_can_be_null=False)


def rows_from_lines(path, lines: Iterable[tuple[int, str]]) -> Iterator[tuple[str, str, str, int]]:
    """(accession, namespace, term, line) by the exact rules. A header row is recognised on
    line 1 by its first field ('accession', ...); blank lines and '#' comments are skipped."""
    for lineno, line in lines:
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.rstrip("\r").split("\t")
        if len(fields) != 3:
            raise InputError(f"{path}:{lineno}: expected 3 tab-separated columns "
                             f"(accession, namespace, term), got {len(fields)}: {line[:80]!r}")
        acc, namespace, term = (f.strip() for f in fields)
        if lineno == 1 and acc.lower() in HEADER_FIRST_FIELDS:
            continue
        if not (acc and namespace and term):
            raise InputError(f"{path}:{lineno}: empty field in {line[:80]!r}")
        yield acc, namespace, term, lineno


def exact_block(path, block: bytes, first_line: int) -> pa.Table:
    rows = list(rows_from_lines(path, block_lines(path, block, first_line)))
    cols = list(zip(*rows)) if rows else [(), (), (), ()]
    return pa.Table.from_arrays([pa.array(c, f.type) for c, f in zip(cols, ANNOTATION_SCHEMA)],
                                schema=ANNOTATION_SCHEMA)


def fast_block(block: bytes, first_line: int) -> pa.Table | None:
    """The rows of a block of plain lines, or None when it needs the exact rules."""
    if (not block or block.startswith((b"\n", b"#")) or b"\n\n" in block or b"\n#" in block
            or block.translate(None, _PLAIN_BYTES)):
        return None
    if b"\r" in block and block.count(b"\r") != block.count(b"\r\n"):
        return None   # a lone CR is a line break to universal newlines
    n_lines = block.count(b"\n") + (not block.endswith(b"\n"))
    if block.count(b"\t") != 2 * n_lines:
        return None
    try:
        table = pacsv.read_csv(pa.BufferReader(block), _READ, _PARSE, _CONVERT)
    except pa.ArrowInvalid:
        return None
    if table.num_rows != n_lines:
        return None
    cols = [table.column(c).combine_chunks() for c in _COLUMNS]
    if b" " in block or b"\r" in block:  # fields are stripped (space, CR: the whitespace left)
        cols = [pc.utf8_trim_whitespace(c) for c in cols]
    if not all(pc.min(pc.utf8_length(c)).as_py() for c in cols):
        return None   # an empty field: the exact rules name its line
    line = pa.array(np.arange(first_line, first_line + n_lines, dtype=np.int64))
    return pa.Table.from_arrays([*cols, line], schema=ANNOTATION_SCHEMA)


def strictly_increasing(table: pa.Table, after: tuple | None = None) -> bool:
    """Whether the (accession, namespace, term) rows are in strictly increasing order (bytewise,
    which is code point order), all after `after`: then no row repeats another."""
    if table.num_rows == 0:
        return True
    cols = [table.column(c) for c in _COLUMNS]
    first = tuple(c[0].as_py() for c in cols)
    if after is not None and not after < first:
        return False
    if table.num_rows == 1:
        return True
    a, b = [c.slice(0, table.num_rows - 1) for c in cols], [c.slice(1) for c in cols]
    less = pc.less(a[2], b[2])
    for x, y in ((a[1], b[1]), (a[0], b[0])):
        less = pc.or_(pc.less(x, y), pc.and_(pc.equal(x, y), less))
    return bool(pc.all(less).as_py())


def annotation_batches(path: Path) -> Iterator[pa.Table]:
    """Batches (ANNOTATION_SCHEMA) of an annotation TSV (plain or gzip), in file order."""
    for block, line in blocks(path, b"\n"):
        if line == 1:   # the first line may be a header row: the exact rules take it
            head, sep, block = block.partition(b"\n")
            yield exact_block(path, head + sep, 1)
            if not block:
                continue
            line = 1 + line_breaks(head + sep)
        table = fast_block(block, line)
        yield table if table is not None else exact_block(path, block, line)


def parse_annotations(path: Path) -> Iterator[tuple[str, str, str, int]]:
    """(accession, namespace, term, line) rows of an annotation TSV."""
    for table in annotation_batches(path):
        yield from zip(*(table.column(c).to_pylist() for c in ANNOTATION_SCHEMA.names))
