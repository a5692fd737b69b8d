"""All Python UDFs, registered on every catalog connection in one place.

Each UDF is a plain Python function usable without DuckDB too; this module only lists them
with their SQL signatures. Areas add entries to UDFS."""
from __future__ import annotations

import duckdb

# (sql_name, python_function, [parameter types], return type); types as DuckDB type strings.
UDFS: list[tuple] = []


def register_udfs(con: duckdb.DuckDBPyConnection) -> None:
    for name, func, params, returns in UDFS:
        con.create_function(name, func, params, returns)
