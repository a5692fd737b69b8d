"""Functional similarity per pair: Jaccard overlap of the two proteins' annotation terms
(GO terms in the shipped data), |A ∩ B| / |A ∪ B|, NULL when neither has any term.

Computed like the embedding distances, blockwise with sparse matrix products over a
protein x term incidence matrix, into dataset pairs/<set>/go (view pair_go). The job records
how many annotation rows it saw, so it is recomputed when annotations change."""
from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
from scipy import sparse

from protiso.pairs.jobs import JobResult, _finish_job, _save_chunk, _start_job, pending_chunks
from protiso.pairs.sample import constant_column, get_pair_set, pair_indices, registered
from protiso.store import Store, queries

Q = queries("pairs")

GO_SCHEMA = pa.schema([("pair_set", pa.string()), ("pair_id", pa.int64()),
                       ("go_jaccard", pa.float64())])
KEY = "annotations"


def pair_jaccard(M: sparse.csr_matrix, ia: np.ndarray, ib: np.ndarray, block: int = 1 << 20
                 ) -> np.ndarray:
    """Jaccard overlap of the 0/1 rows M[ia[k]] and M[ib[k]] (NaN where both are empty)."""
    M = sparse.csr_matrix(M, dtype=np.float64)
    size = np.asarray(M.sum(axis=1)).ravel()
    out = np.empty(len(ia))
    for lo in range(0, len(ia), block):
        a, b = np.asarray(ia[lo:lo + block]), np.asarray(ib[lo:lo + block])
        ua, pa_ = np.unique(a, return_inverse=True)
        ub, pb_ = np.unique(b, return_inverse=True)
        if ua.size * ub.size <= 4 * a.size:
            inter = (M[ua] @ M[ub].T).toarray()[pa_, pb_]
        else:
            inter = np.asarray(M[a].multiply(M[b]).sum(axis=1)).ravel()
        union = size[a] + size[b] - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            out[lo:lo + a.size] = np.where(union > 0, inter / union, np.nan)
    return out


def go_pair_set(store: Store, name: str, chunk_size: int = 2_000_000) -> JobResult:
    """Jaccard overlap of annotation terms for every pair of `name` (skipped if current)."""
    ps = get_pair_set(store, name)
    proteins, ia, ib = pair_indices(store, name)
    want = pa.table({"accession": pa.array(proteins, pa.string()),
                     "idx": pa.array(np.arange(len(proteins), dtype=np.int64))})
    with registered(store, "_protiso_term_proteins", want):
        rows = store.execute(Q.protein_terms).fetchnumpy()
    terms, col = np.unique(rows["term"].astype(str), return_inverse=True) if len(rows["term"]) \
        else (np.array([]), np.array([], dtype=np.int64))
    M = sparse.csr_matrix((np.ones(len(col)), (np.asarray(rows["idx"], dtype=np.int64), col)),
                          shape=(len(proteins), max(1, len(terms))))
    params = {"n_annotations": int(len(col)), "n_terms": int(len(terms))}
    n_chunks = -(-ps.n_pairs // chunk_size)
    done = _start_job(store, name, "go", KEY, params, chunk_size, n_chunks)
    total = 0.0
    for c, lo, hi in pending_chunks(ps.n_pairs, chunk_size, done):
        t0 = time.perf_counter()
        jac = pair_jaccard(M, ia[lo:hi], ib[lo:hi])
        seconds = time.perf_counter() - t0
        total += seconds
        table = pa.table({"pair_set": constant_column(name, hi - lo),
                          "pair_id": pa.array(np.arange(lo, hi, dtype=np.int64)),
                          "go_jaccard": pa.array(jac, mask=np.isnan(jac))}, schema=GO_SCHEMA)
        _save_chunk(store, name, "go", KEY, c, table, seconds)
    _finish_job(store, name, "go", KEY)
    return JobResult(name, "go", KEY, ps.n_pairs, n_chunks, n_chunks - len(done), total, params)
