"""Ingest proteins (FASTA, UniProt FASTA, Swiss-Prot flat files), annotation TSVs and Gene
Ontology files (.obo / .obo.gz, see protiso.go.store): all in one transaction."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from protiso.ingest import loader
from protiso.ingest.loader import IngestResult as _LoaderResult


@dataclass
class IngestResult(_LoaderResult):
    """What an ingest did; `go` holds one protiso.go.store.GoIngestResult per OBO file."""

    go: list = field(default_factory=list)


def ingest(store, files=(), fmt: str = "auto", annotations=(), unknown: str = "error",
           progress=None) -> IngestResult:
    """protiso.ingest.loader.ingest, plus OBO files among `files` (by name: .obo, .obo.gz) made
    the store's Gene Ontology, in the same transaction."""
    from protiso.errors import InputError
    from protiso.go.store import is_obo, read_go, write_go

    files, annotations = list(files), list(annotations)
    obo = [Path(f) for f in files if is_obo(f)]
    if not obo:
        return IngestResult(**asdict(loader.ingest(store, files, fmt, annotations, unknown, progress)))
    if len(obo) > 1:
        raise InputError(f"{obo[1]}: one ontology per store, give one OBO file (got "
                         f"{', '.join(p.name for p in obo)})")
    parsed = read_go(obo[0])      # parse and check before anything is written
    rest = [f for f in files if not is_obo(f)]
    with store.transaction():     # proteins and annotations first: GO's coverage warnings see them
        base = (loader.ingest(store, rest, fmt, annotations, unknown, progress)
                if rest or annotations else _LoaderResult())
        go = [write_go(store, *parsed)]
    result = IngestResult(**asdict(base), go=go)
    result.files = [str(p) for p in obo] + result.files
    for g in go:
        result.warnings.extend(g.warnings)
    return result


__all__ = ["IngestResult", "ingest"]
