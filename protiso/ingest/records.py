"""The protein record every parser yields, its Arrow batch form, and sequence normalisation and
validation."""
from __future__ import annotations

import re
from typing import Iterable, NamedTuple

import pyarrow as pa

from protiso.errors import InputError

# IUPAC protein alphabet: the 20 standard residues, B (D/N), Z (E/Q), J (I/L), X (any),
# U (selenocysteine), O (pyrrolysine). A trailing '*' (stop) is dropped.
PROTEIN_ALPHABET = "ACDEFGHIKLMNPQRSTVWYBZJXUO"
_INVALID = re.compile(f"[^{PROTEIN_ALPHABET}]")
_WHITESPACE = re.compile(r"\s+")
INT32_MAX = 2**31 - 1

# One batch of parsed proteins, whatever the format: what the loader hands to DuckDB.
BATCH_SCHEMA = pa.schema([
    ("accession", pa.string()), ("entry_name", pa.string()), ("description", pa.string()),
    ("organism", pa.string()), ("taxon_id", pa.int32()), ("gene", pa.string()),
    ("keywords", pa.list_(pa.string())), ("sequence", pa.string()), ("length", pa.int32()),
    ("line", pa.int64()),
])


class ProteinRecord(NamedTuple):
    accession: str
    entry_name: str | None
    description: str | None
    organism: str | None
    taxon_id: int | None
    gene: str | None
    keywords: list[str] | None
    sequence: str
    line: int  # line of the record's header in its file, for error messages


def normalise_sequence(raw: str) -> str:
    """Upper-case, whitespace removed, a terminal '*' dropped."""
    seq = _WHITESPACE.sub("", raw).upper()
    return seq[:-1] if seq.endswith("*") else seq


def invalid_residue(seq: str) -> tuple[int, str] | None:
    """(0-based position, character) of the first character outside the alphabet, or None."""
    m = _INVALID.search(seq)
    return None if m is None else (m.start(), m.group())


def check_taxon(path, taxon: int | None, line: int) -> None:
    """Taxon ids are stored as INTEGER: a larger one is an error, not an overflow."""
    if taxon is not None and taxon > INT32_MAX:
        raise InputError(f"{path}:{line}: taxon id {taxon} is too large (at most {INT32_MAX})")


def check_record(path, rec: ProteinRecord, seq_lines: list[tuple[int, str]] | None = None) -> None:
    """Raise InputError naming file and line for an empty record or an invalid residue."""
    if not rec.accession:
        raise InputError(f"{path}:{rec.line}: record without an accession")
    if not rec.sequence:
        raise InputError(f"{path}:{rec.line}: record {rec.accession} has an empty sequence")
    check_taxon(path, rec.taxon_id, rec.line)
    bad = invalid_residue(rec.sequence)
    if bad is None:
        return
    pos, char = bad
    line = rec.line
    seen = 0
    for lineno, text in seq_lines or ():  # map the residue position back to its line
        seen += len(_WHITESPACE.sub("", text))
        if seen > pos:
            line = lineno
            break
    raise InputError(f"{path}:{line}: record {rec.accession}: character {char!r} at residue "
                     f"{pos + 1} is not in the IUPAC protein alphabet ({PROTEIN_ALPHABET})")


def records_table(records: Iterable[ProteinRecord]) -> pa.Table:
    """Checked records as one Arrow batch (BATCH_SCHEMA)."""
    rows = list(records)
    cols = list(zip(*rows)) if rows else [()] * len(ProteinRecord._fields)
    by_name = dict(zip(ProteinRecord._fields, cols))
    by_name["length"] = [len(s) for s in by_name["sequence"]]
    return pa.Table.from_arrays([pa.array(by_name[f.name], type=f.type) for f in BATCH_SCHEMA],
                                schema=BATCH_SCHEMA)


def table_records(table: pa.Table) -> Iterable[ProteinRecord]:
    """The records of a batch, in order (for callers that want Python objects)."""
    cols = [table.column(name).to_pylist() for name in ProteinRecord._fields]
    return (ProteinRecord(*row) for row in zip(*cols))
