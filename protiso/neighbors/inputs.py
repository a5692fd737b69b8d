"""Queries of a neighbour search: accessions of the index, FASTA files or raw sequences (embedded
on the fly with the run's model and settings, and its transform when the run is derived)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from protiso.errors import InputError, NotFoundError
from protiso.ingest.records import PROTEIN_ALPHABET, invalid_residue, normalise_sequence
from protiso.neighbors.index import IndexInfo, Q, load_faiss, reconstruct
from protiso.neighbors.kinds import LOSSY
from protiso.neighbors.parts import run_parts, vectors_of
from protiso.store import Store

# UniProt accession format (and entry-name-like ids): taken as accessions, never as sequences
_ACCESSION_LIKE = re.compile(
    r"^([OPQ][0-9][A-Z0-9]{3}[0-9]|[A-NR-Z][0-9]([A-Z][A-Z0-9]{2}[0-9]){1,2})(-\d+)?$|[_|]")


@dataclass
class Query:
    """One query: its label (accession or FASTA id), sequence if known, and vector."""

    label: str
    vector: np.ndarray
    accession: str | None = None   # set when the query is a protein of the index itself
    sequence: str | None = None


def check_sequence(seq: str, label: str) -> str:
    """Normalised sequence, or InputError naming the query and the bad residue."""
    s = normalise_sequence(seq)
    if not s:
        raise InputError(f"query {label}: empty sequence")
    bad = invalid_residue(s)
    if bad is not None:
        pos, char = bad
        raise InputError(f"query {label}: character {char!r} at residue {pos + 1} is not in the "
                         f"IUPAC protein alphabet ({PROTEIN_ALPHABET})")
    return s


def indexed_ids(store: Store, info: IndexInfo, accessions: list[str]) -> dict[str, tuple[int, str | None]]:
    """accession -> (FAISS id, sequence) for those of `accessions` the index holds."""
    rows = store.execute(Q.ids_of_accessions, {"index_id": info.index_id,
                                               "accessions": list(accessions)}).fetchall()
    return {a: (int(i), s) for a, i, s in rows}


def queries_from_accessions(store: Store, info: IndexInfo, accessions: list[str]) -> list[Query]:
    """Queries for proteins of the index (their stored vectors)."""
    found = indexed_ids(store, info, accessions)
    missing = [a for a in accessions if a not in found]
    if missing:
        known = {a for (a,) in store.execute(Q.known_accessions, {"accessions": missing}).fetchall()}
        a = missing[0]
        if a in known:
            raise NotFoundError(f"accession {a} is in the store but has no embedding in run "
                                f"{info.run_id} layer {info.layer}; embed it first or pass its "
                                "sequence as the query")
        raise NotFoundError(f"unknown accession {a}: not in the store "
                            f"({len(missing)} of {len(accessions)} queried accessions unknown)")
    if info.kind in LOSSY:  # the index keeps codes only: the original vectors come from the run
        stored = vectors_of(store, run_parts(store, info.run_id), info.layer, accessions)
        V = np.stack([stored[a] for a in accessions])
    else:
        V = reconstruct(load_faiss(info), np.array([found[a][0] for a in accessions], np.int64))
    return [Query(a, V[j], a, found[a][1]) for j, a in enumerate(accessions)]


def embed_query_sequences(store: Store, run_id: str, layer: int, sequences: list[str]) -> np.ndarray:
    """Embed raw sequences with the run's model and settings (and its transform, if derived)."""
    from protiso.neighbors.transforms import embed_for_run

    return embed_for_run(store, run_id, layer, sequences)


def resolve_queries(store: Store, info: IndexInfo, query: str | Path | list[str]) -> list[Query]:
    """A query as given: a FASTA file, accession(s) in the index, or a raw amino-acid sequence
    (embedded on the fly)."""
    if isinstance(query, list):
        return queries_from_accessions(store, info, query)
    text = str(query).strip()
    path = Path(text).expanduser()
    if text and path.is_file():
        from protiso.ingest.fasta import parse_fasta

        records = list(parse_fasta(path, uniprot=None))
        seqs = [r.sequence for r in records]
        X = embed_query_sequences(store, info.run_id, info.layer, seqs)
        return [Query(r.accession, X[j], None, r.sequence) for j, r in enumerate(records)]
    if not text:
        raise InputError("empty query: give an accession, a FASTA file or a sequence")
    if store.scalar(Q.protein_exists, {"accession": text}) or _ACCESSION_LIKE.search(text):
        return queries_from_accessions(store, info, [text])
    if text.endswith((".fa", ".fasta", ".faa", ".gz")):
        raise InputError(f"query file {text} not found")
    try:
        seq = check_sequence(text, "sequence")
    except InputError as exc:
        raise InputError(f"query {text[:40]!r} is neither an accession in the store, a file, nor a "
                         f"valid sequence: {str(exc).split(': ', 1)[1]}") from None
    X = embed_query_sequences(store, info.run_id, info.layer, [seq])
    return [Query("sequence", X[0], None, seq)]
