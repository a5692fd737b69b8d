"""SQL views over the runs' Parquet parts, rebuilt at every connect and after writes (their file
lists change as parts are written): `embeddings_<run_id>`, `embeddings`, `local_embeddings`."""
from __future__ import annotations

from protiso.runs.catalog import Q, RUN_ID_RE, embeddings_dataset, local_dataset, view_name
from protiso.store import Store, parquet_source, registry, sql_literal


@registry.views
def create_embedding_views(store: Store) -> None:
    """TEMP views over the runs' Parquet parts: `embeddings_<run_id>` per run (embedding as
    FLOAT[dim]), `embeddings` (all runs; FLOAT[dim] when every run has the same dim, else FLOAT[]),
    and `local_embeddings` over per-residue vectors written with --store-local.

    Run ids are validated against a whitelist; the model name is quoted as an SQL literal."""
    try:
        runs = store.execute(Q.view_sources).fetchall()
    except Exception:   # noqa: BLE001 - catalog without the runs table (older store opened read-only)
        return
    per_run, dims = [], set()
    local = []
    for run_id, model, dim in runs:
        if not RUN_ID_RE.match(run_id):
            continue
        parts = store.parts(embeddings_dataset(run_id))
        if parts:
            name = view_name(run_id)
            store.con.execute(
                f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT accession, {sql_literal(run_id)} AS run_id, "
                f"{sql_literal(model)} AS model, layer, embedding::FLOAT[{int(dim)}] AS embedding "
                f"FROM {parquet_source(parts)}")
            per_run.append(name)
            dims.add(int(dim))
        lparts = store.parts(local_dataset(run_id))
        if lparts:
            local.append(f"SELECT accession, {sql_literal(run_id)} AS run_id, {sql_literal(model)} AS model, layer, "
                         f"position, residue, embedding::FLOAT[] AS embedding FROM {parquet_source(lparts)}")
    if per_run:
        cast = f"FLOAT[{dims.pop()}]" if len(dims) == 1 else "FLOAT[]"
        body = " UNION ALL ".join(f"SELECT accession, run_id, model, layer, embedding::{cast} AS embedding "
                                  f"FROM {v}" for v in per_run)
    else:
        body = ("SELECT NULL::VARCHAR AS accession, NULL::VARCHAR AS run_id, NULL::VARCHAR AS model, "
                "NULL::SMALLINT AS layer, NULL::FLOAT[] AS embedding WHERE false")
    store.con.execute(f"CREATE OR REPLACE TEMP VIEW embeddings AS {body}")
    lbody = " UNION ALL ".join(local) if local else (
        "SELECT NULL::VARCHAR AS accession, NULL::VARCHAR AS run_id, NULL::VARCHAR AS model, "
        "NULL::SMALLINT AS layer, NULL::INTEGER AS position, NULL::VARCHAR AS residue, "
        "NULL::FLOAT[] AS embedding WHERE false")
    store.con.execute(f"CREATE OR REPLACE TEMP VIEW local_embeddings AS {lbody}")

