"""A summary of what a store holds."""
from __future__ import annotations

from protiso.store import Store, queries
from protiso.store.integrity import quick_check

Q = queries("store")


def store_info(store: Store) -> dict:
    """Tables with row counts, embedding runs (if any, with their status as it is now), store
    size on disk, and listed parts that are missing or changed."""
    tables = store.execute(Q.tables).fetchall()
    rows = []
    for (name,) in tables:
        count = store.scalar(f'SELECT count(*) FROM "{name}"')  # names come from the catalog
        rows.append({"table": name, "rows": count})
    has_runs = any(name == "runs" for (name,) in tables)
    runs = store.sql(queries("runs").all_runs).to_pylist() if has_runs else []
    damaged = [{"path": p.path, "dataset": p.dataset, "problem": p.problem} for p in quick_check(store)]
    return {"store": str(store.root), "size_bytes": store.size_on_disk(), "tables": rows,
            "runs": runs, "damaged": damaged}
