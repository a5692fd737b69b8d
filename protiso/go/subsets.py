"""Subsets and groups of proteins by GO terms, as the --where / --group-by expressions that
protiso.query.Subset evaluates over protein_meta (macros of sql/views/60_go.sql).

- `under(term)`: the filter text `go_under(accession, 'GO:...')` (true-path rule).
- `top_terms(store, namespace, depth, n)`: the n terms of a namespace at a depth with the most
  proteins under them.
- `group_by_terms(terms)` / `group_by_top_terms(...)`: a group-by expression giving each protein
  the first of the chosen terms it is under (list order is priority), NULL if none; the terms are
  written out, so the recorded expression means the same whatever is ingested later.
"""
from __future__ import annotations

import re
from typing import Sequence

import pyarrow as pa

from protiso.errors import InputError, NotFoundError
from protiso.store import Store, queries

Q = queries("go")
_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]*:[A-Za-z0-9_.-]+$")


def _literal(term: str) -> str:
    if not isinstance(term, str) or not _ID.match(term):
        raise InputError(f"{term!r} is not an ontology id such as GO:0005737")
    return f"'{term}'"


def under(term: str) -> str:
    """--where text: proteins annotated to `term` or to any of its descendants."""
    return f"go_under(accession, {_literal(term)})"


def group_by_terms(terms: Sequence[str]) -> str:
    """--group-by text: each protein's first term of `terms` it is under, else NULL."""
    if not terms:
        raise InputError("no GO terms to group by")
    return f"go_first(accession, [{', '.join(_literal(t) for t in terms)}])"


def top_terms(store: Store, namespace: str, depth: int, n: int = 10) -> pa.Table:
    """(term, name, namespace, depth, n_proteins): the n live terms of `namespace` (aliases
    such as CC, BPO accepted) at `depth` with the most proteins under them, most first."""
    if int(depth) < 0 or int(n) < 1:
        raise InputError(f"depth must be >= 0 and n >= 1, got depth {depth}, n {n}")
    table = store.sql(Q.top_terms, {"namespace": namespace, "depth": int(depth), "n": int(n)})
    if table.num_rows == 0:
        if not store.scalar("SELECT count(*) FROM go_terms"):
            raise NotFoundError("no Gene Ontology in the store; ingest one first, e.g. "
                                "`protiso ingest go.obo`")
        raise NotFoundError(f"no annotated GO terms in namespace {namespace!r} at depth {depth}")
    return table


def group_by_top_terms(store: Store, namespace: str, depth: int, n: int = 10) -> str:
    """--group-by text over the n most frequent terms of a namespace at a depth (most first)."""
    return group_by_terms(top_terms(store, namespace, depth, n).column("term").to_pylist())
