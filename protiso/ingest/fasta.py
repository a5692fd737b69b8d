"""Streaming FASTA parser with UniProt header parsing."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from protiso.errors import InputError
from protiso.ingest.records import ProteinRecord, check_record, normalise_sequence
from protiso.ingest.textio import numbered_lines

# >sp|P69905|HBA_HUMAN Hemoglobin subunit alpha OS=Homo sapiens OX=9606 GN=HBA1 PE=1 SV=2
_UNIPROT = re.compile(r"^(sp|tr)\|([^|\s]+)\|(\S+)(?:\s+(.*))?$")
_FIELD = re.compile(r"\s(OS|OX|GN|PE|SV)=")


def parse_uniprot_header(header: str) -> dict | None:
    """Fields of a UniProt FASTA header, or None if it is not one.

    The OS value may contain spaces and parentheses; fields end where the next KEY= starts."""
    m = _UNIPROT.match(header)
    if m is None:
        return None
    _, accession, entry_name, rest = m.groups()
    parts = _FIELD.split(" " + (rest or ""))
    fields = dict(zip(parts[1::2], (v.strip() for v in parts[2::2])))
    taxon = fields.get("OX")
    return {
        "accession": accession,
        "entry_name": entry_name,
        "description": parts[0].strip() or None,
        "organism": fields.get("OS") or None,
        "taxon_id": int(taxon) if taxon and taxon.isdigit() else None,
        "gene": fields.get("GN") or None,
    }


def _make_record(path, header: str, line: int, seq_lines, uniprot: bool | None) -> ProteinRecord:
    fields = parse_uniprot_header(header) if uniprot is not False else None
    if fields is None:
        if uniprot:
            raise InputError(f"{path}:{line}: not a UniProt FASTA header "
                             f"(expected '>sp|ACCESSION|ENTRY_NAME ...'): {header[:80]!r}")
        accession, _, description = header.strip().partition(" ")
        fields = {"accession": accession, "entry_name": None,
                  "description": description.strip() or None, "organism": None,
                  "taxon_id": None, "gene": None}
    seq = normalise_sequence("".join(text for _, text in seq_lines))
    rec = ProteinRecord(fields["accession"], fields["entry_name"], fields["description"],
                        fields["organism"], fields["taxon_id"], fields["gene"], None, seq, line)
    check_record(path, rec, seq_lines)
    return rec


def parse_fasta(path: Path, uniprot: bool | None = None) -> Iterator[ProteinRecord]:
    """Yield records from a FASTA file (plain or gzip).

    uniprot=True requires UniProt headers, False treats every header as plain
    ('>ACCESSION description'), None parses UniProt headers where they match."""
    header, header_line, seq_lines = None, 0, []
    for lineno, line in numbered_lines(path):
        if line.startswith(">"):
            if header is not None:
                yield _make_record(path, header, header_line, seq_lines, uniprot)
            header, header_line, seq_lines = line[1:].rstrip("\r"), lineno, []
        elif header is None:
            if line.strip() and not line.startswith(";"):
                raise InputError(f"{path}:{lineno}: expected a FASTA header line starting "
                                 f"with '>', got {line[:40]!r}")
        else:
            seq_lines.append((lineno, line))
    if header is None:
        raise InputError(f"{path}: no FASTA records found")
    yield _make_record(path, header, header_line, seq_lines, uniprot)
