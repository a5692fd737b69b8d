"""A summary of what a store holds."""
from __future__ import annotations

from protiso.store import Store


def store_info(store: Store) -> dict:
    """Tables with row counts, embedding runs (if any), store size on disk."""
    tables = store.con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
        "AND NOT temporary ORDER BY table_name").fetchall()
    rows = []
    for (name,) in tables:
        count = store.scalar(f'SELECT count(*) FROM "{name}"')  # names come from the catalog
        rows.append({"table": name, "rows": count})
    has_runs = any(name == "runs" for (name,) in tables)
    runs = store.sql("SELECT * FROM runs ORDER BY created_at").to_pylist() if has_runs else []
    return {"store": str(store.root), "size_bytes": store.size_on_disk(), "tables": rows,
            "runs": runs}
