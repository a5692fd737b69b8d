"""User-supplied SQL filters and grouping expressions over `protein_meta`.

`--where` and `--group-by` are SQL by design (organism, length, GO term, ...). They are
bound once against `protein_meta` before use, so a typo fails early with a clear message,
and a statement separator is refused so an expression cannot smuggle in a second statement.
"""
from __future__ import annotations

import duckdb

from protiso.errors import QueryError
from protiso.store import Store


def _check(store: Store, expr: str, what: str, query: str) -> None:
    if ";" in expr:
        raise QueryError(f"{what} must be a single SQL expression without ';': {expr!r}")
    try:
        store.con.execute(f"EXPLAIN {query}")
    except duckdb.Error as exc:
        raise QueryError(f"invalid {what} {expr!r}: {str(exc).splitlines()[0]}") from exc


def accessions_sql(store: Store, where: str | None) -> str:
    """A validated subquery selecting the accessions of proteins that match `where`."""
    if where is None or not where.strip():
        return "SELECT accession FROM proteins"
    query = f"SELECT accession FROM protein_meta WHERE ({where})"
    _check(store, where, "--where filter", query)
    return query


def group_sql(store: Store, expr: str) -> str:
    """A validated subquery `SELECT accession, <expr> AS grp FROM protein_meta`."""
    query = f"SELECT accession, ({expr}) AS grp FROM protein_meta"
    _check(store, expr, "--group-by expression", query)
    return query


def count_matching(store: Store, where: str | None) -> int:
    return store.scalar(f"SELECT count(*) FROM ({accessions_sql(store, where)})")
