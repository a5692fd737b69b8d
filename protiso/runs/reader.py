"""Reading a run's vectors: the one reader every analysis uses (global vectors of one layer,
streamed part by part, restricted to a Subset) and the per-residue-type statistics."""
from __future__ import annotations

import contextlib
from typing import Iterator

import duckdb
import numpy as np
import pyarrow as pa

from protiso.errors import InputError, NotFoundError, QueryError
from protiso.isotropy.stats import SufficientStats, load_stats_map
from protiso.query import ALL, Subset, as_subset
from protiso.runs.catalog import Q, Run, resolve, resolve_run
from protiso.store import Store, parquet_source


def matrix(column, dim: int) -> np.ndarray:
    """A (fixed-size) list<float> Arrow column -> float32 (n, dim), zero-copy where possible;
    NULL vectors or a wrong dimension are errors, never silently reshaped."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(arr) == 0:
        return np.zeros((0, dim), np.float32)
    if arr.null_count:
        raise InputError(f"{arr.null_count} NULL embeddings where vectors of dimension {dim} were expected")
    values = arr.flatten()
    if len(values) != len(arr) * dim:
        raise InputError(f"embeddings are not all of dimension {dim}")
    return values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(len(arr), dim)


def layer_query(store: Store, run: Run, subset: Subset = ALL) -> str:
    """SQL streaming (embedding, accession) of one layer ($layer) of a run's parts, restricted to
    `subset` by a semi-join. Group keys are never joined here: DuckDB would build its hash table
    on the embeddings side and hold them all in memory."""
    parts = store.parts(run.dataset)
    if not parts:
        raise NotFoundError(f"run {run.run_id} has no stored embeddings (dataset {run.dataset} is empty)")
    query = Q.layer_vectors.replace("$source", parquet_source(parts))
    if not subset.is_all:
        query += f" AND e.accession IN ({subset.accessions_sql()})"
    return query


@contextlib.contextmanager
def reading(run_id: str, layer: int):
    """DuckDB errors while reading a run (a group expression failing at run time, a damaged
    part) become QueryErrors naming the run and layer."""
    try:
        yield
    except duckdb.Error as exc:
        raise QueryError(f"reading embeddings of run {run_id}, layer {layer}: {str(exc).splitlines()[0]}") from exc


def stream_layer(store: Store, run_id: str, layer: int | None = None, where: str | Subset | None = None,
                 batch_rows: int = 65536) -> Iterator[pa.RecordBatch]:
    """The one reader of stored global vectors: Arrow batches (embedding, accession) of one
    layer, restricted to `subset`, streamed by DuckDB with bounded memory."""
    run, layer = resolve(store, run_id, layer)
    subset = as_subset(store, where)
    with reading(run.run_id, layer):
        reader = store.con.sql(layer_query(store, run, subset), params={"layer": layer}).to_arrow_reader(batch_rows)
        try:
            yield from reader
        finally:
            reader.close()  # frees the connection even when interrupted


def count_layer(store: Store, run_id: str, layer: int | None = None, where: str | Subset | None = None) -> int:
    """Vectors a pass over this layer (and subset) will read; for progress bars."""
    run, layer = resolve(store, run_id, layer)
    subset = as_subset(store, where)
    with reading(run.run_id, layer):
        return int(store.scalar(f"SELECT count(*) FROM ({layer_query(store, run, subset)})", {"layer": layer}))


def iter_embeddings(store: Store, run_id: str, layer: int | None = None, where: str | Subset | None = None,
                    batch_rows: int = 65536) -> Iterator[tuple[list[str], np.ndarray]]:
    """Stream a run's global embeddings of one layer (default: the last embedded; negative
    counts from the end) as (accessions, float32 (n, dim)) batches of at most `batch_rows`."""
    run = resolve_run(store, run_id)
    for batch in stream_layer(store, run.run_id, layer, where, batch_rows):
        yield batch.column("accession").to_pylist(), matrix(batch.column("embedding"), run.dim)


def load_embeddings(store: Store, run_id: str, layer: int | None = None, where: str | Subset | None = None
                    ) -> tuple[list[str], np.ndarray]:
    """All embeddings of one layer as (accessions sorted, float32 (n, dim)) in memory."""
    run = resolve_run(store, run_id)
    accs: list[str] = []
    blocks = []
    for a, X in iter_embeddings(store, run.run_id, layer, where):
        accs.extend(a)
        blocks.append(X)
    if not blocks:
        return [], np.zeros((0, run.dim), np.float32)
    X = np.concatenate(blocks)
    order = np.argsort(np.asarray(accs, dtype=object), kind="stable")
    return [accs[i] for i in order], X[order]


def load_vectors(store: Store, run_id: str, layer: int, accessions: list[str]) -> np.ndarray:
    """Embeddings of `accessions` (in that order) as float32 (n, dim), streamed part by part so
    memory holds only the proteins asked for; fails naming proteins without a vector."""
    run = resolve_run(store, run_id)
    pos = {a: i for i, a in enumerate(accessions)}
    X = np.zeros((len(accessions), run.dim), dtype=np.float32)
    seen = np.zeros(len(accessions), dtype=bool)
    for accs, block in iter_embeddings(store, run.run_id, layer):
        idx = np.array([pos.get(a, -1) for a in accs], dtype=np.int64)
        keep = idx >= 0
        X[idx[keep]] = block[keep]
        seen[idx[keep]] = True
    if not seen.all():
        missing = [a for a, ok in zip(accessions, seen) if not ok]
        raise NotFoundError(f"run {run.run_id!r} layer {layer} lacks embeddings for {len(missing)} "
                            f"protein(s), e.g. {', '.join(missing[:5])}")
    return X


def load_local_stats(store: Store, run_id: str, layer: int | None = None) -> dict[str, SufficientStats]:
    """Per-residue-type statistics (one-letter code -> SufficientStats) of a run's layer,
    accumulated by `embed --local-stats`; {} when the run has none."""
    run, layer = resolve(store, run_id, layer)
    rel = store.scalar(Q.stats_path, {"run_id": run.run_id, "layer": layer})
    if rel is None:
        return {}
    return load_stats_map(store.root / rel)


