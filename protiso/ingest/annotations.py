"""Annotation TSVs: accession, namespace (GO aspect or any vocabulary), term."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from protiso.errors import InputError
from protiso.ingest.textio import numbered_lines

HEADER_FIRST_FIELDS = {"accession", "acc", "entry", "protein"}


def parse_annotations(path: Path) -> Iterator[tuple[str, str, str, int]]:
    """Yield (accession, namespace, term, line). A header row is recognised by its first
    field ('accession', ...); blank lines and '#' comments are skipped."""
    for lineno, line in numbered_lines(path):
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
