"""Ingest files into the catalog in one transaction: all or nothing.

A background thread parses the files (decompression in another) into Arrow batches of whole
records, while this thread hands each batch to DuckDB: proteins are checked against the store
(earlier batches included) and inserted, or fill in missing metadata; annotation rows are
checked for unknown accessions and inserted once. Memory is bounded by a few batches plus
DuckDB's index of protein accessions: batches are handed over as relations, never registered
(see `_rows`), and big INSERTs are written to the database file as they come. Any error rolls
the whole ingest back, leaving the store as it was. The SQL is in sql/queries/ingest.sql.
"""
from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from protiso._version import __version__
from protiso.errors import InputError
from protiso.ingest.annotations import annotation_batches, strictly_increasing
from protiso.ingest.fasta import fasta_batches
from protiso.ingest.records import records_table, table_records
from protiso.ingest.swiss import parse_swiss
from protiso.ingest.textio import prefetch, sniff
from protiso.store import Store, queries

FORMATS = ("auto", "fasta", "uniprot", "swiss")
UNKNOWN_POLICIES = ("error", "skip")
# Rows per DuckDB statement (coalesced from the parsers' blocks). An INSERT of at least a row
# group (122,880 rows) is written to the database file during the transaction; smaller ones
# stay in memory until the commit (measured: 230 MB of Swiss-Prot held with 65,536-row batches).
BATCH = 131_072
ANNOTATION_BATCH = 1 << 19   # rows; each batch scans the proteins once (the unknown-accession check)
MEMORY_BASE, MEMORY_PER_PROTEIN = 256 << 20, 512   # DuckDB's memory limit during an ingest (_Settings)
Q = queries("ingest")


@dataclass
class IngestResult:
    """What an ingest did (new = not already in the store)."""
    n_records: int = 0
    n_new: int = 0
    n_annotations: int = 0
    n_new_annotations: int = 0
    n_unknown_skipped: int = 0
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def detect_format(path: Path) -> str:
    """fasta or swiss, from the first non-blank line of the (decompressed) file."""
    for line in sniff(path).splitlines():
        if not line.strip():
            continue
        if line.startswith(">"):
            return "fasta"
        if line.startswith("ID   "):
            return "swiss"
        break
    raise InputError(f"{path}: cannot detect the format (expected FASTA '>' or a Swiss-Prot 'ID   ' "
                     "line); give the format explicitly (fasta, uniprot or swiss)", param="format")


def protein_batches(path: Path, fmt: str = "auto") -> Iterator[pa.Table]:
    """Batches (records.BATCH_SCHEMA) of one sequence file in the given or detected format."""
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}", param="format")
    kind = detect_format(path) if fmt == "auto" else fmt
    if kind == "swiss":
        return _coalesced(_chunked_records(parse_swiss(path)))
    return _coalesced(fasta_batches(path, uniprot={"auto": None, "fasta": False, "uniprot": True}[fmt]))


def parse_proteins(path: Path, fmt: str = "auto"):
    """Records of one sequence file (ProteinRecord tuples)."""
    for table in protein_batches(path, fmt):
        yield from table_records(table)


def _chunked_records(records, size: int = 20_000) -> Iterator[pa.Table]:
    chunk = []
    for rec in records:
        chunk.append(rec)
        if len(chunk) >= size:
            yield records_table(chunk)
            chunk = []
    if chunk:
        yield records_table(chunk)


def _coalesced(tables: Iterable[pa.Table], rows: int | None = None) -> Iterator[pa.Table]:
    """Consecutive tables joined (without copying) into batches of at least `rows` (BATCH) rows."""
    rows = rows or BATCH
    pending, n = [], 0
    for table in tables:
        pending.append(table)
        n += table.num_rows
        if n >= rows:
            yield pa.concat_tables(pending)
            pending, n = [], 0
    if pending:
        yield pa.concat_tables(pending)


def _unique_runs(batch: pa.Table) -> list[pa.Table]:
    """The batch cut into consecutive runs without a repeated accession, so that a repeat is
    checked against the earlier occurrence, in file order."""
    accs = batch.column("accession")
    if pc.count_distinct(accs).as_py() == batch.num_rows:
        return [batch]
    runs, seen, start = [], set(), 0
    for i, acc in enumerate(accs.to_pylist()):
        if acc in seen:
            runs.append(batch.slice(start, i - start))
            seen, start = set(), i
        seen.add(acc)
    runs.append(batch.slice(start))
    return runs


def _rows(store: Store, name: str, table: pa.Table, query: str) -> list[tuple]:
    """The rows of `query` (a named query, no parameters) over `table` seen as `name`.

    Not `con.register`: a view registered inside a transaction keeps its table alive until the
    commit, even once unregistered (the undo log holds the dropped view), so a full ingest held
    all its input (measured: 0.4 GB more at the peak). A relation's query leaves nothing behind,
    also when it fails (a Ctrl-C, a constraint)."""
    rel = store.con.from_arrow(table).query(name, query)
    return rel.fetchall() if rel is not None else []


class _Loader:
    """The state of one ingest inside its transaction."""

    def __init__(self, store: Store, files: list[Path], fmt: str, unknown: str, result: IngestResult):
        self.store, self.files, self.fmt, self.unknown, self.result = store, files, fmt, unknown, result
        self.missing = 0
        self.first_missing: str | None = None
        self.fresh: bool | None = None      # rows so far new and in increasing order (no repeats)
        self.last_key: tuple | None = None
        self.source: int | None = None      # the file whose name proteins.source gets

    # -- proteins ----------------------------------------------------------------------------
    def proteins(self, file_no: int, batch: pa.Table) -> None:
        if file_no != self.source:   # the file the batch comes from: proteins.source
            self.store.execute(Q.set_source, {"source": str(self.files[file_no])})
            self.source = file_no
        self.result.n_records += batch.num_rows
        for run in _unique_runs(batch):
            if _rows(self.store, "ingest_batch", run, Q.batch_matches)[0][0]:
                clash = _rows(self.store, "ingest_batch", run, Q.first_conflict)
                if clash:
                    raise self._conflict(file_no, *clash[0])
                _rows(self.store, "ingest_batch", run, Q.fill_metadata)
                query = Q.insert_new_proteins
            else:
                query = Q.insert_proteins
            self.result.n_new += _rows(self.store, "ingest_batch", run, query)[0][0]

    def _conflict(self, file_no: int, accession: str, line: int, stored_source: str) -> InputError:
        path = self.files[file_no]
        first = _first_occurrence(self.files[:file_no + 1], self.fmt, accession, (file_no, line))
        if first is not None:
            return InputError(f"{path}:{line}: accession {accession} appears again with a different "
                              f"sequence (first at {first[0]}:{first[1]})")
        return InputError(f"{path}:{line}: accession {accession} is already in the store with a "
                          f"different sequence (ingested from {stored_source})")

    # -- annotations -------------------------------------------------------------------------
    def annotations(self, path: Path, batch: pa.Table) -> None:
        self.result.n_annotations += batch.num_rows
        # the distinct accessions (about 1 in 9 rows) are checked first; rows only when one is unknown
        accessions = pa.table({"accession": pc.unique(batch.column("accession"))})
        n = 0
        if _rows(self.store, "ingest_accessions", accessions, Q.unknown_accessions)[0][0]:
            n, accession, line = _rows(self.store, "ingest_annotations", batch, Q.unknown_annotations)[0]
        if n:
            self.missing += n
            if self.first_missing is None:
                self.first_missing = f"{path}:{line}: accession {accession}"
        if self.missing and self.unknown == "error":
            return   # the ingest fails after counting the rest
        if self.fresh is None:
            self.fresh = bool(self.store.scalar(Q.annotations_empty))
        self.fresh = self.fresh and strictly_increasing(batch, self.last_key)
        if batch.num_rows:
            self.last_key = tuple(batch.column(c)[-1].as_py() for c in ("accession", "namespace", "term"))
        # sorted input into an empty table cannot repeat a row: skip the DISTINCT and anti-join
        query = Q.insert_known_annotations if n else Q.insert_sorted_annotations if self.fresh \
            else Q.insert_annotations
        self.result.n_new_annotations += _rows(self.store, "ingest_annotations", batch, query)[0][0]

    def finish_annotations(self) -> None:
        if not self.missing:
            return
        if self.unknown == "error":
            raise InputError(f"{self.first_missing} is not in the store ({self.missing} annotation rows "
                             "name unknown accessions; ingest their sequences first, or skip such rows "
                             "with the unknown-accession policy 'skip')", param="unknown")
        self.result.n_unknown_skipped = self.missing
        self.result.warnings.append(f"skipped {self.missing} annotation rows for accessions not in "
                                    f"the store (e.g. {self.first_missing})")


def _first_occurrence(files: list[Path], fmt: str, accession: str, before: tuple[int, int]
                      ) -> tuple[Path, int] | None:
    """Where `accession` first occurs in the input before (file, line): the error path re-reads."""
    for file_no, path in enumerate(files):
        for batch in protein_batches(path, fmt):
            hit = batch.filter(pc.equal(batch.column("accession"), accession))
            if hit.num_rows:
                line = hit.column("line")[0].as_py()
                return (path, line) if (file_no, line) < before else None
    return None


def _inputs(files: list[Path], fmt: str, annotation_files: list[Path]) -> Iterator[tuple]:
    """Everything to ingest as ("proteins", file_no, batch) then ("annotations", path, batch)."""
    for file_no, path in enumerate(files):
        for batch in protein_batches(path, fmt):
            yield "proteins", file_no, batch
    for path in annotation_files:
        for batch in _coalesced(annotation_batches(path), ANNOTATION_BATCH):
            yield "annotations", path, batch


_UNITS = {"bytes": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
          "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}


def _size_bytes(text: str) -> int | None:
    """Bytes of a size as DuckDB prints it ('18.8 GiB'), or None."""
    number, _, unit = str(text).strip().partition(" ")
    try:
        return int(float(number) * _UNITS[unit or "B"])
    except (KeyError, ValueError):
        return None


class _Settings:
    """DuckDB's memory limit during the ingest, restored after it: it grows with the proteins
    (`cap`), never above the one set before. At its default (80% of RAM) DuckDB keeps every block it wrote cached (0.1-0.2 GB of the full
      set's peak). What it cannot spill is the index of protein accessions (about 50 bytes a
      key, held twice at the commit): MEMORY_PER_PROTEIN leaves a wide margin (the full set's
      ingest fails its commit under a 50 MB limit, and passes at 100 MB)."""

    def __init__(self, store: Store):
        self.store = store
        self.limit = store.memory_limit()
        self.limit_bytes = _size_bytes(self.limit)
        self.capped: int | None = None

    def __enter__(self) -> "_Settings":
        return self

    def cap(self, proteins: int) -> None:
        """Memory enough for `proteins` proteins in the store (those of this ingest included)."""
        want = MEMORY_BASE + MEMORY_PER_PROTEIN * proteins
        if self.limit_bytes is None or want >= self.limit_bytes or want == self.capped:
            return
        self.store.set_memory_limit(f"{want}B")
        self.capped = want

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(duckdb.Error):   # an aborted transaction refuses them; never mask its error
            if self.capped is not None:
                self.store.restore_memory_limit(self.limit)


def ingest(store: Store, files: Iterable[str | Path] = (), fmt: str = "auto",
           annotations: Iterable[str | Path] = (), unknown: str = "error",
           progress: Callable[[int], None] | None = None) -> IngestResult:
    """Ingest sequence files and annotation TSVs in one transaction.

    Same accession with the same sequence: no-op (missing metadata is filled in). Same
    accession with another sequence, an invalid record, or (with unknown='error') an
    annotation for an accession not in the store: InputError, and nothing is written.
    `progress(n)` is called with the number of records or annotation rows of each batch."""
    if unknown not in UNKNOWN_POLICIES:
        raise InputError(f"unknown-accession policy must be one of {', '.join(UNKNOWN_POLICIES)}, "
                         f"got {unknown!r}", param="unknown")
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}", param="format")
    files = [Path(f) for f in files]
    annotation_files = [Path(f) for f in annotations]
    for path in files + annotation_files:
        if path.is_dir():
            raise InputError(f"{path} is a directory; give the files in it, e.g. {path}/*.fasta.gz")
        if not path.is_file():
            raise InputError(f"{path}: no such file")
    if not files and not annotation_files:
        raise InputError("nothing to ingest: give sequence files and/or annotation TSVs")
    result = IngestResult(files=[str(p) for p in files + annotation_files])
    started = dt.datetime.now()
    with store.transaction(), _Settings(store) as settings:
        loader = _Loader(store, files, fmt, unknown, result)
        stored = store.scalar(Q.protein_count)
        settings.cap(stored)
        for kind, where, batch in prefetch(_inputs(files, fmt, annotation_files), depth=1):
            if kind == "proteins":
                settings.cap(stored + result.n_records + batch.num_rows)
                loader.proteins(where, batch)
            else:
                loader.annotations(where, batch)
            if progress:
                progress(batch.num_rows)
        loader.finish_annotations()
        store.execute(Q.clear_source)
        store.execute(Q.log_ingest, {
            "files": result.files, "format": fmt, "n_records": result.n_records, "n_new": result.n_new,
            "n_annotations": result.n_annotations, "n_new_annotations": result.n_new_annotations,
            "started": started, "version": __version__})
    return result
