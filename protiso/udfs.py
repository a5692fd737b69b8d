"""All Python UDFs, registered on every catalog connection in one place.

Each UDF is a plain Python function usable without DuckDB too; this module only lists them
with their SQL signatures. Areas add entries to UDFS."""
from __future__ import annotations

import duckdb

from protiso.isotropy.metrics import avg_cosine_of, isoscore_of
from protiso.pairs.align import align_identity, align_score

# (sql_name, python_function, [parameter types], return type); types as DuckDB type strings.
UDFS: list[tuple] = [
    # isoscore(list(embedding)), avg_cosine(list(embedding)): FLOAT[d][] casts to DOUBLE[][]
    ("isoscore", isoscore_of, ["DOUBLE[][]"], "DOUBLE"),
    ("avg_cosine", avg_cosine_of, ["DOUBLE[][]"], "DOUBLE"),
    # align_score(seq_a, seq_b), align_identity(seq_a, seq_b): PAM250 global, gaps 10/0.5
    ("align_score", align_score, ["VARCHAR", "VARCHAR"], "DOUBLE"),
    ("align_identity", align_identity, ["VARCHAR", "VARCHAR"], "DOUBLE"),
]


def register_udfs(con: duckdb.DuckDBPyConnection) -> None:
    for name, func, params, returns in UDFS:
        con.create_function(name, func, params, returns)
