"""Embedding distances per pair: cosine similarity and squared Euclidean distance.

The embeddings of the set's proteins are loaded once; each chunk of pairs is computed from
the Gram block X[rows_a] @ X[rows_b].T (one matrix product) when that block is not much
larger than the chunk (all-pairs sets), else from row-wise products of gathered rows.
Results: dataset pairs/<set>/dist/<run_id>/L<layer>, view `pair_distances`.
"""
from __future__ import annotations

import time

import numpy as np
import pyarrow as pa

from protiso.pairs.jobs import JobResult, _finish_job, _save_chunk, _start_job, pending_chunks
from protiso.pairs.sample import constant_column, get_pair_set, pair_indices
from protiso.runs import load_vectors, resolve
from protiso.store import Store

DIST_SCHEMA = pa.schema([("pair_set", pa.string()), ("run_id", pa.string()), ("layer", pa.int16()),
                         ("pair_id", pa.int64()), ("cosine", pa.float64()),
                         ("sq_euclidean", pa.float64())])


def pair_distances(X: np.ndarray, ia: np.ndarray, ib: np.ndarray, block: int = 1 << 20
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(cosine, squared Euclidean) of rows X[ia[k]], X[ib[k]] for all k, in float64.

    Per block of pairs: one Gram product X[rows_a] @ X[rows_b].T when the block's rows span
    a dense rectangle (all-pairs sets), else row-wise products of the gathered rows."""
    ia = np.asarray(ia, dtype=np.int64)
    ib = np.asarray(ib, dtype=np.int64)
    X64 = X.astype(np.float64) if X.nbytes <= 1 << 30 else None    # convert once if it fits
    rows = X64 if X64 is not None else X
    norms = np.einsum("ij,ij->i", rows, rows, dtype=np.float64)
    cos = np.empty(ia.size)
    sq = np.empty(ia.size)
    for lo in range(0, ia.size, block):
        a, b = ia[lo:lo + block], ib[lo:lo + block]
        ua, pa_ = np.unique(a, return_inverse=True)
        ub, pb_ = np.unique(b, return_inverse=True)
        if ua.size * ub.size <= 4 * a.size:          # dense block: one matrix product
            A = rows[ua] if X64 is not None else X[ua].astype(np.float64)
            B = rows[ub] if X64 is not None else X[ub].astype(np.float64)
            dot = (A @ B.T)[pa_, pb_]
        else:                                        # sparse pairs: row-wise products
            dot = np.empty(a.size)
            for s in range(0, a.size, 65_536):
                A = rows[a[s:s + 65_536]].astype(np.float64, copy=False)
                B = rows[b[s:s + 65_536]].astype(np.float64, copy=False)
                dot[s:s + 65_536] = np.einsum("ij,ij->i", A, B)
        n2a, n2b = norms[a], norms[b]
        with np.errstate(invalid="ignore", divide="ignore"):
            cos[lo:lo + a.size] = dot / np.sqrt(n2a * n2b)
        sq[lo:lo + a.size] = np.maximum(n2a + n2b - 2 * dot, 0.0)
    return cos, sq


def distance_pair_set(store: Store, name: str, model: str, layer: int | None = None,
                      chunk_size: int = 1_000_000, progress=None) -> JobResult:
    """Cosine and squared Euclidean distance of every pair of `name` for one run and layer."""
    ps = get_pair_set(store, name)
    run, layer = resolve(store, model, layer)
    run_id = run.run_id
    key = f"{run_id}/L{layer}"
    params = {"run_id": run_id, "layer": layer}
    n_chunks = -(-ps.n_pairs // chunk_size)
    done = _start_job(store, name, "distance", key, params, chunk_size, n_chunks)
    proteins, ia, ib = pair_indices(store, name)
    X = load_vectors(store, run_id, layer, proteins)
    total = 0.0
    for c, lo, hi in pending_chunks(ps.n_pairs, chunk_size, done):
        t0 = time.perf_counter()
        cos, sq = pair_distances(X, ia[lo:hi], ib[lo:hi])
        seconds = time.perf_counter() - t0
        total += seconds
        n = hi - lo
        table = pa.table({"pair_set": constant_column(name, n),
                          "run_id": constant_column(run_id, n),
                          "layer": pa.array(np.full(n, layer, dtype=np.int16)),
                          "pair_id": pa.array(np.arange(lo, hi, dtype=np.int64)),
                          "cosine": pa.array(cos, mask=np.isnan(cos)),
                          "sq_euclidean": pa.array(sq)}, schema=DIST_SCHEMA)
        _save_chunk(store, name, "distance", key, c, table, seconds)
        if progress:
            progress(hi, ps.n_pairs)
    _finish_job(store, name, "distance", key)
    return JobResult(name, "distance", key, ps.n_pairs, n_chunks, n_chunks - len(done), total, params)
