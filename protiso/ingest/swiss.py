"""Swiss-Prot / UniProt flat files (.dat, plain or gzip) through Biopython."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from Bio import SwissProt

from protiso.errors import InputError
from protiso.ingest.records import ProteinRecord, check_record, normalise_sequence
from protiso.ingest.textio import open_text

_FULL_NAME = re.compile(r"Full=([^;{]+)")


class _LineCounter:
    """Wraps a text handle and counts the lines Biopython has read, for error messages."""

    def __init__(self, handle):
        self.handle = handle
        self.lineno = 0

    def __iter__(self):
        return self

    def __next__(self):
        line = next(self.handle)
        self.lineno += 1
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


def parse_swiss(path: Path) -> Iterator[ProteinRecord]:
    """Yield one record per entry, with organism, taxon id, names, gene and keywords."""
    counter = _LineCounter(open_text(path))
    start = 1
    previous = None
    try:
        for entry in SwissProt.parse(counter):
            desc = _FULL_NAME.search(entry.description or "")
            organism = (entry.organism or "").strip().rstrip(".") or None
            taxon = entry.taxonomy_id[0] if entry.taxonomy_id else None
            rec = ProteinRecord(
                accession=entry.accessions[0] if entry.accessions else "",
                entry_name=entry.entry_name,
                description=desc.group(1).strip() if desc else (entry.description or None),
                organism=organism,
                taxon_id=int(taxon) if taxon and taxon.isdigit() else None,
                gene=_gene(entry.gene_name),
                keywords=[k.strip() for k in entry.keywords if k.strip()] or None,
                sequence=normalise_sequence(entry.sequence or ""),
                line=start,
            )
            check_record(path, rec)
            yield rec
            previous, start = rec.accession, counter.lineno + 1
    except InputError:
        raise
    except (ValueError, AssertionError, IndexError, KeyError) as exc:
        after = f" (after entry {previous})" if previous else ""
        raise InputError(f"{path}:{counter.lineno}: malformed Swiss-Prot entry starting at line "
                         f"{start}{after}: {exc}") from exc
    finally:
        counter.handle.close()
    if previous is None:
        raise InputError(f"{path}: no Swiss-Prot entries found")
