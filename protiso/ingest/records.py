"""The protein record every parser yields, and sequence normalisation/validation."""
from __future__ import annotations

import re
from typing import NamedTuple

from protiso.errors import InputError

# IUPAC protein alphabet: the 20 standard residues, B (D/N), Z (E/Q), J (I/L), X (any),
# U (selenocysteine), O (pyrrolysine). A trailing '*' (stop) is dropped.
PROTEIN_ALPHABET = "ACDEFGHIKLMNPQRSTVWYBZJXUO"
_INVALID = re.compile(f"[^{PROTEIN_ALPHABET}]")
_WHITESPACE = re.compile(r"\s+")


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


def check_record(path, rec: ProteinRecord, seq_lines: list[tuple[int, str]] | None = None) -> None:
    """Raise InputError naming file and line for an empty record or an invalid residue."""
    if not rec.accession:
        raise InputError(f"{path}:{rec.line}: record without an accession")
    if not rec.sequence:
        raise InputError(f"{path}:{rec.line}: record {rec.accession} has an empty sequence")
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
