"""A subset of proteins: a `--where` filter and an optional `--group-by` expression over
`protein_meta`, validated once and carried as a value.

Both are SQL by design (organism, length, GO term, ...). DuckDB's own parser decides that each is
a single expression (so `organism = 'a;b'` is fine and `1) ; DROP TABLE x; (1` is not), then the
query is bound once against `protein_meta` so a typo fails early. A subset is recorded the same
way everywhere: the expression text, '' for all proteins (no grouping).
"""
from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

from protiso.errors import QueryError
from protiso.store import Store, queries

Q = queries("query")


def _single_expression(store: Store, expr: str, what: str, query: str) -> None:
    """Refuse anything that is not exactly one SELECT over the expression, then bind it."""
    try:
        statements = store.con.extract_statements(query)
    except duckdb.Error as exc:
        raise QueryError(f"invalid {what} {expr!r}: {str(exc).splitlines()[0]}") from exc
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise QueryError(f"{what} must be a single SQL expression: {expr!r}")
    try:
        store.con.execute(f"EXPLAIN {query}")
    except duckdb.Error as exc:
        raise QueryError(f"invalid {what} {expr!r}: {str(exc).splitlines()[0]}") from exc


@dataclass(frozen=True)
class Subset:
    """Proteins matching `where` ('' = all), optionally grouped by `group_by` ('' = none).

    Build it with `Subset.parse(store, where, group_by)`, which validates; `Subset()` is all
    proteins, ungrouped."""

    where: str = ""
    group_by: str = ""

    @classmethod
    def parse(cls, store: Store, where: str | None = None, group_by: str | None = None) -> "Subset":
        where = (where or "").strip()
        group_by = (group_by or "").strip()
        if where:
            _single_expression(store, where, "filter", Q.matching_accessions.replace("$where", where))
        if group_by:
            _single_expression(store, group_by, "group-by expression",
                               Q.group_keys.replace("$group_by", group_by))
        return cls(where, group_by)

    @property
    def is_all(self) -> bool:
        return not self.where

    def accessions_sql(self) -> str:
        """A subquery selecting the accessions of the matching proteins (for `IN (...)`)."""
        if self.is_all:
            return Q.all_accessions
        return Q.matching_accessions.replace("$where", self.where)

    def groups_sql(self) -> str:
        """A subquery `(accession, grp)` over the matching proteins' group keys."""
        if not self.group_by:
            raise QueryError("this subset has no group-by expression")
        return (Q.group_keys.replace("$group_by", self.group_by)
                + ("" if self.is_all else f" WHERE accession IN ({self.accessions_sql()})"))

    def narrow(self, store: Store, extra: str | None) -> "Subset":
        """This subset further restricted by another filter (both must hold)."""
        extra = (extra or "").strip()
        if not extra:
            return self
        where = f"({self.where}) AND ({extra})" if self.where else extra
        return Subset.parse(store, where, self.group_by)

    def count(self, store: Store) -> int:
        return int(store.scalar(f"SELECT count(*) FROM ({self.accessions_sql()})"))

    def accessions(self, store: Store) -> pa.Array:
        """The matching accessions, materialised (for filters outside SQL, e.g. FAISS ids)."""
        return store.sql(self.accessions_sql()).column("accession").combine_chunks()

    def describe(self) -> str:
        return self.where or "all proteins"


ALL = Subset()


def as_subset(store: Store, where: "str | Subset | None", group_by: str | None = None) -> Subset:
    """A Subset from what library callers pass: a Subset as it is, or filter text to validate."""
    if isinstance(where, Subset):
        return where if group_by is None else Subset.parse(store, where.where, group_by)
    return Subset.parse(store, where, group_by)
