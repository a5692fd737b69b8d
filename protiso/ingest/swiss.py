"""Swiss-Prot / UniProt flat files (.dat, plain or gzip) through Biopython.

Every entry's SQ line is checked against its sequence (length and CRC64); the checksums are
computed for a chunk of entries at once (`checksums.crc64_many`), and the first bad entry in
file order is reported, before any later error."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from Bio import SwissProt

from protiso.errors import InputError
from protiso.ingest.checksums import crc64_many
from protiso.ingest.records import ProteinRecord, check_record, normalise_sequence
from protiso.ingest.textio import GZIP_ERRORS, gzip_error, open_text

_FULL_NAME = re.compile(r"Full=([^;{]+)")
CHECK_CHUNK = 2048   # entries whose SQ lines are checked together


class _LineCounter:
    """Wraps a text handle and counts the lines Biopython has read (and where the last SQ line
    was), for error messages."""

    def __init__(self, handle):
        self.handle = handle
        self.lineno = 0
        self.sq_line = 0

    def __iter__(self):
        return self

    def __next__(self):
        line = next(self.handle)
        self.lineno += 1
        if line.startswith("SQ "):
            self.sq_line = self.lineno
        return line

    def read(self, size: int = -1):
        if size:
            raise NotImplementedError("only line-wise reading is counted")
        return ""

    def readline(self):
        line = self.handle.readline()
        if line:
            self.lineno += 1
        return line


def _gene(gene_name) -> str | None:
    """The first gene Name= of the GN lines (Biopython gives a list of dicts or a string)."""
    if isinstance(gene_name, list):
        for entry in gene_name:
            if entry.get("Name"):
                return entry["Name"].split("{")[0].strip()
        return None
    m = re.search(r"Name=([^;{]+)", gene_name or "")
    return m.group(1).strip() if m else None


def _record(entry, line: int) -> ProteinRecord:
    desc = _FULL_NAME.search(entry.description or "")
    organism = (entry.organism or "").strip().rstrip(".") or None
    taxon = entry.taxonomy_id[0] if entry.taxonomy_id else None
    return ProteinRecord(
        accession=entry.accessions[0] if entry.accessions else "",
        entry_name=entry.entry_name,
        description=desc.group(1).strip() if desc else (entry.description or None),
        organism=organism,
        taxon_id=int(taxon) if taxon and taxon.isdigit() else None,
        gene=_gene(entry.gene_name),
        keywords=[k.strip() for k in entry.keywords if k.strip()] or None,
        sequence=normalise_sequence(entry.sequence or ""),
        line=line,
    )


def check_sequence_lines(path, pending: list[tuple[ProteinRecord, int, tuple | None]]) -> None:
    """Raise for the first entry whose SQ line (length, CRC64) disagrees with its sequence.
    `pending`: (record, SQ line number, Biopython's seqinfo (length, weight, crc))."""
    checked = [(rec, sq, info) for rec, sq, info in pending if info is not None]
    crcs = crc64_many([rec.sequence.encode() for rec, _, _ in checked])
    for (rec, sq, (length, _, crc_text)), crc in zip(checked, crcs):
        where = f"{path}:{sq}: entry {rec.accession}"
        if length != len(rec.sequence):
            raise InputError(f"{where}: the SQ line gives {length} residues but the sequence has "
                             f"{len(rec.sequence)}")
        try:
            given = int(crc_text, 16)
        except ValueError:
            raise InputError(f"{where}: malformed CRC64 {crc_text!r} on the SQ line") from None
        if given != int(crc):
            raise InputError(f"{where}: the SQ line's CRC64 {crc_text} does not match the "
                             f"sequence's ({int(crc):016X})")


def parse_swiss(path: Path) -> Iterator[ProteinRecord]:
    """Yield one record per entry, with organism, taxon id, names, gene and keywords."""
    counter = _LineCounter(open_text(path))
    start = 1
    previous = None
    pending: list[tuple[ProteinRecord, int, tuple | None]] = []
    try:
        for entry in SwissProt.parse(counter):
            rec = _record(entry, start)
            check_record(path, rec)
            pending.append((rec, counter.sq_line, entry.seqinfo))
            if len(pending) >= CHECK_CHUNK:
                check_sequence_lines(path, pending)
                yield from (p[0] for p in pending)
                pending = []
            previous, start = rec.accession, counter.lineno + 1
        check_sequence_lines(path, pending)
        yield from (p[0] for p in pending)
    except InputError:
        check_sequence_lines(path, pending)   # an earlier entry's bad SQ line comes first
        raise
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}:{counter.lineno + 1}: not UTF-8 text ({exc.reason})") from exc
    except (ValueError, AssertionError, IndexError, KeyError) as exc:
        check_sequence_lines(path, pending)
        after = f" (after entry {previous})" if previous else ""
        raise InputError(f"{path}:{counter.lineno}: malformed Swiss-Prot entry starting at line "
                         f"{start}{after}: {exc}") from exc
    except GZIP_ERRORS as exc:
        raise gzip_error(path, exc, counter.lineno) from exc
    finally:
        counter.handle.close()
    if previous is None:
        raise InputError(f"{path}: no Swiss-Prot entries found")
