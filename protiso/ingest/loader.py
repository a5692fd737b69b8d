"""Ingest files into the catalog in one transaction: all or nothing.

Records stream from the parsers in batches into temporary staging tables, so memory is
bounded by the batch size; conflicts are then checked in SQL and new rows inserted. Any
error rolls the whole ingest back, leaving the store as it was.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pyarrow as pa

from protiso._version import __version__
from protiso.errors import InputError
from protiso.ingest.annotations import parse_annotations
from protiso.ingest.fasta import parse_fasta
from protiso.ingest.records import ProteinRecord
from protiso.ingest.swiss import parse_swiss
from protiso.ingest.textio import sniff
from protiso.store import Store

FORMATS = ("auto", "fasta", "uniprot", "swiss")
UNKNOWN_POLICIES = ("error", "skip")
BATCH = 20_000

_STAGING_SCHEMA = pa.schema([
    ("accession", pa.string()), ("entry_name", pa.string()), ("description", pa.string()),
    ("organism", pa.string()), ("taxon_id", pa.int32()), ("gene", pa.string()),
    ("keywords", pa.list_(pa.string())), ("sequence", pa.string()), ("line", pa.int64()),
    ("source", pa.string()), ("seqno", pa.int64()),
])
_ANNOTATION_SCHEMA = pa.schema([
    ("accession", pa.string()), ("namespace", pa.string()), ("term", pa.string()),
    ("line", pa.int64()), ("source", pa.string()),
])


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
    raise InputError(f"{path}: cannot detect the format (expected FASTA '>' or a Swiss-Prot "
                     "'ID   ' line); pass --format")


def parse_proteins(path: Path, fmt: str = "auto") -> Iterator[ProteinRecord]:
    """Records of one sequence file in the given or detected format."""
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    kind = detect_format(path) if fmt == "auto" else fmt
    if kind == "swiss":
        return parse_swiss(path)
    return parse_fasta(path, uniprot={"auto": None, "fasta": False, "uniprot": True}[fmt])


def _batches(rows: Iterable[tuple], schema: pa.Schema) -> Iterator[pa.Table]:
    """Arrow tables of up to BATCH rows, built column-wise (rows are tuples in schema order)."""
    chunk: list[tuple] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= BATCH:
            yield _to_table(chunk, schema)
            chunk = []
    if chunk:
        yield _to_table(chunk, schema)


def _to_table(chunk: list[tuple], schema: pa.Schema) -> pa.Table:
    cols = zip(*chunk)
    return pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(cols, schema)],
                                schema=schema)


def _stage(store: Store, staging_table: str, rows: Iterable[tuple], schema: pa.Schema,
           progress: Callable[[int], None] | None) -> int:
    """Insert rows into a staging table in Arrow batches; returns the number of rows."""
    n = 0
    for batch in _batches(rows, schema):  # noqa: B007 (read by DuckDB by name)
        store.con.execute(f"INSERT INTO {staging_table} SELECT * FROM batch")
        n += batch.num_rows
        if progress:
            progress(batch.num_rows)
    return n


def _stage_proteins(store: Store, path: Path, fmt: str, seqno: int,
                    progress: Callable[[int], None] | None) -> int:
    source = str(path)
    rows = ((*rec, source, seqno + i) for i, rec in enumerate(parse_proteins(path, fmt)))
    return seqno + _stage(store, "staging_proteins", rows, _STAGING_SCHEMA, progress)


def _check_proteins(store: Store) -> None:
    clash = store.one("""
        SELECT a.accession, a.source, a.line, b.source, b.line
        FROM staging_proteins a JOIN staging_proteins b
          ON a.accession = b.accession AND a.seqno < b.seqno AND a.sequence <> b.sequence
        ORDER BY b.seqno LIMIT 1""")
    if clash:
        acc, src_a, line_a, src_b, line_b = clash
        raise InputError(f"{src_b}:{line_b}: accession {acc} appears again with a different "
                         f"sequence (first at {src_a}:{line_a})")
    clash = store.one("""
        SELECT s.accession, s.source, s.line, p.source
        FROM staging_proteins s JOIN proteins p USING (accession)
        WHERE s.sequence <> p.sequence ORDER BY s.seqno LIMIT 1""")
    if clash:
        acc, src, line, old_src = clash
        raise InputError(f"{src}:{line}: accession {acc} is already in the store with a "
                         f"different sequence (ingested from {old_src})")


def _merge_proteins(store: Store) -> int:
    """Insert new accessions; for known ones with the same sequence, fill missing metadata."""
    con = store.con
    before = store.scalar("SELECT count(*) FROM proteins")
    con.execute("""
        INSERT INTO proteins (accession, entry_name, description, organism, taxon_id, gene,
                              keywords, length, sequence, source)
        SELECT accession, entry_name, description, organism, taxon_id, gene, keywords,
               length(sequence), sequence, source
        FROM (SELECT *, row_number() OVER (PARTITION BY accession ORDER BY seqno) AS k
              FROM staging_proteins) s
        WHERE k = 1 AND NOT EXISTS (SELECT 1 FROM proteins p WHERE p.accession = s.accession)""")
    con.execute("""
        UPDATE proteins p SET
            entry_name = coalesce(p.entry_name, s.entry_name),
            description = coalesce(p.description, s.description),
            organism = coalesce(p.organism, s.organism),
            taxon_id = coalesce(p.taxon_id, s.taxon_id),
            gene = coalesce(p.gene, s.gene),
            keywords = coalesce(p.keywords, s.keywords)
        FROM staging_proteins s
        WHERE p.accession = s.accession
          AND ((p.entry_name IS NULL AND s.entry_name IS NOT NULL)
            OR (p.description IS NULL AND s.description IS NOT NULL)
            OR (p.organism IS NULL AND s.organism IS NOT NULL)
            OR (p.taxon_id IS NULL AND s.taxon_id IS NOT NULL)
            OR (p.gene IS NULL AND s.gene IS NOT NULL)
            OR (p.keywords IS NULL AND s.keywords IS NOT NULL))""")
    return store.scalar("SELECT count(*) FROM proteins") - before


def _stage_annotations(store: Store, path: Path, progress) -> int:
    rows = ((acc, ns, term, line, str(path)) for acc, ns, term, line in parse_annotations(path))
    return _stage(store, "staging_annotations", rows, _ANNOTATION_SCHEMA, progress)


def _merge_annotations(store: Store, unknown: str, result: IngestResult) -> None:
    con = store.con
    missing = store.one("""
        SELECT count(*), min(source || ':' || line || ': accession ' || accession)
        FROM staging_annotations s
        WHERE NOT EXISTS (SELECT 1 FROM proteins p WHERE p.accession = s.accession)""")
    if missing[0]:
        if unknown == "error":
            raise InputError(f"{missing[1]} is not in the store ({missing[0]} annotation rows "
                             "name unknown accessions; ingest their sequences first, or pass "
                             "--unknown skip to skip them)")
        result.n_unknown_skipped = missing[0]
        result.warnings.append(f"skipped {missing[0]} annotation rows for accessions not in "
                               f"the store (e.g. {missing[1]})")
    before = store.scalar("SELECT count(*) FROM annotations")
    con.execute("""
        INSERT INTO annotations (accession, namespace, term)
        SELECT DISTINCT s.accession, s.namespace, s.term FROM staging_annotations s
        WHERE EXISTS (SELECT 1 FROM proteins p WHERE p.accession = s.accession)
          AND NOT EXISTS (SELECT 1 FROM annotations a WHERE a.accession = s.accession
                          AND a.namespace = s.namespace AND a.term = s.term)""")
    result.n_new_annotations = store.scalar("SELECT count(*) FROM annotations") - before


def ingest(store: Store, files: Iterable[str | Path] = (), fmt: str = "auto",
           annotations: Iterable[str | Path] = (), unknown: str = "error",
           progress: Callable[[int], None] | None = None) -> IngestResult:
    """Ingest sequence files and annotation TSVs in one transaction.

    Same accession with the same sequence: no-op (missing metadata is filled in). Same
    accession with another sequence, an invalid record, or (with unknown='error') an
    annotation for an accession not in the store: InputError, and nothing is written.
    `progress(n)` is called with the number of records staged per batch."""
    if unknown not in UNKNOWN_POLICIES:
        raise InputError(f"unknown-accession policy must be one of {UNKNOWN_POLICIES}, got {unknown!r}")
    files = [Path(f) for f in files]
    annotation_files = [Path(f) for f in annotations]
    for path in files + annotation_files:
        if not path.is_file():
            raise InputError(f"{path}: no such file")
    if not files and not annotation_files:
        raise InputError("nothing to ingest: give sequence files and/or --annotations TSVs")
    result = IngestResult(files=[str(p) for p in files + annotation_files])
    started = dt.datetime.now()
    con = store.con
    with store.transaction():
        empty = _STAGING_SCHEMA.empty_table()  # noqa: F841 (read by DuckDB)
        con.execute("CREATE OR REPLACE TEMP TABLE staging_proteins AS SELECT * FROM empty")
        empty_ann = _ANNOTATION_SCHEMA.empty_table()  # noqa: F841
        con.execute("CREATE OR REPLACE TEMP TABLE staging_annotations AS SELECT * FROM empty_ann")
        try:
            seqno = 0
            for path in files:
                seqno = _stage_proteins(store, path, fmt, seqno, progress)
            result.n_records = seqno
            if files:
                _check_proteins(store)
                result.n_new = _merge_proteins(store)
            for path in annotation_files:
                result.n_annotations += _stage_annotations(store, path, progress)
            if annotation_files:
                _merge_annotations(store, unknown, result)
            con.execute(
                "INSERT INTO ingests (files, format, n_records, n_new, n_annotations, "
                "n_new_annotations, started_at, finished_at, software_version) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, current_timestamp, ?)",
                [result.files, fmt, result.n_records, result.n_new, result.n_annotations,
                 result.n_new_annotations, started, __version__])
        finally:
            con.execute("DROP TABLE IF EXISTS staging_proteins")
            con.execute("DROP TABLE IF EXISTS staging_annotations")
    return result
