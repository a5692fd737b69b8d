"""Nearest-neighbour lookup over a run's FAISS index, filtered with SQL, joined with metadata.

A `where` filter is evaluated in DuckDB over `protein_meta`, turned into the set of FAISS ids it
allows and passed to FAISS as an id selector (a bitmap), so the search itself skips everything
else. Approximate indexes can return fewer than k hits under a selective filter; those queries,
and filters that leave few vectors, are answered by an exact scan of the allowed vectors
instead, so k hits come back whenever k exist.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import faiss
import numpy as np
import pyarrow as pa

from protiso.errors import InputError, NotFoundError
from protiso.neighbors.index import (IndexInfo, Q, extend_index, get_index_info, index_state, load_faiss,
                                     prepare)
from protiso.neighbors.inputs import Query, check_sequence, indexed_ids, resolve_queries
from protiso.neighbors.kinds import reconstruct, search_params, to_scores
from protiso.query import Subset, as_subset
from protiso.runs import resolve
from protiso.store import Store

__all__ = ["NeighborResult", "Query", "allowed_ids", "check_sequence", "find_index", "neighbors",
           "resolve_queries", "resolve_run_layer", "search_vectors"]

# Below this many allowed vectors a filtered search scans them exactly (fast and exact).
EXACT_SUBSET_LIMIT = 20_000
# Fewer queries than this are searched on one FAISS thread. A few queries gain little from
# threads, and FAISS's OpenMP regions (the BLAS product of pca-hnsw's projection, HNSW's set-up)
# cost far more than the work when cores are busy: measured on 2 busy cores, one pca-hnsw query
# took 57 ms on 2 threads and 0.5 ms on one.
SINGLE_THREAD_BELOW = 64
# Upper bound on the widened efSearch used for selective filters.
MAX_EF_SEARCH = 4096


@dataclass
class NeighborResult:
    """Hits (one row per query and rank) and how they were found."""

    hits: pa.Table
    index: IndexInfo
    n_allowed: int
    exact_queries: int = 0          # queries answered by the exact fallback scan
    notes: list[str] = field(default_factory=list)


# -- the core: vectors in, ids and scores out ----------------------------------------------

def allowed_ids(store: Store, info: IndexInfo, where: str | Subset | None) -> np.ndarray | None:
    """FAISS ids whose proteins are in the subset (None: no filter)."""
    subset = as_subset(store, where)
    if subset.is_all:
        return None
    query = Q.allowed_ids.replace("$subset", subset.accessions_sql())
    got = store.execute(query, {"index_id": info.index_id}).fetchnumpy()["id"]
    return np.asarray(got, dtype=np.int64)


@contextlib.contextmanager
def _faiss_threads(n: int | None):
    """FAISS's OpenMP thread count set to n for the block (None: unchanged)."""
    before = faiss.omp_get_max_threads()
    if n is not None:
        faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _bitmap_selector(ids: np.ndarray, n: int):
    mask = np.zeros(n, bool)
    mask[ids] = True
    bitmap = np.packbits(mask, bitorder="little")
    return faiss.IDSelectorBitmap(n, faiss.swig_ptr(bitmap)), bitmap


def _exact(V: np.ndarray, ids: np.ndarray, Q: np.ndarray, k: int, metric: str):
    """Brute-force top-k of prepared queries Q over prepared vectors V (rows = ids).

    NumPy rather than a temporary IndexFlat: V is already a reconstructed subset, and this
    keeps the ids of the subset without an id map."""
    if metric == "cosine":
        S = Q @ V.T
        order_key = -S
    else:
        S = (Q * Q).sum(1)[:, None] - 2 * Q @ V.T + (V * V).sum(1)[None, :]
        np.maximum(S, 0, out=S)
        order_key = S
    kk = min(k, V.shape[0])
    part = np.argpartition(order_key, kk - 1, axis=1)[:, :kk] if kk < V.shape[0] else \
        np.tile(np.arange(V.shape[0]), (Q.shape[0], 1))
    rows = np.arange(Q.shape[0])[:, None]
    order = np.argsort(order_key[rows, part], axis=1, kind="stable")
    top = part[rows, order]
    D = np.full((Q.shape[0], k), np.nan, np.float32)
    I = np.full((Q.shape[0], k), -1, np.int64)
    D[:, :kk] = S[rows, top]
    I[:, :kk] = ids[top]
    return D, I


def search_vectors(index, info: IndexInfo, Q: np.ndarray, k: int, allowed: np.ndarray | None = None,
                   ef_search: int | None = None, nprobe: int | None = None):
    """Top-k (scores, ids) for raw query vectors Q; ids -1 where fewer than k exist.

    Scores are cosine similarities (metric cosine) or squared L2 distances (metric l2).
    Returns (D, I, n_exact) where n_exact counts queries answered by the exact scan."""
    for name, value in (("ef_search", ef_search), ("nprobe", nprobe)):
        if value is not None and value < 1:
            raise InputError(f"{name.replace('_', ' ')} must be at least 1, got {value}", param=name)
    Qp = prepare(np.atleast_2d(Q), info.metric)
    n = index.ntotal
    n_allowed = n if allowed is None else len(allowed)
    nq = Qp.shape[0]
    if n_allowed == 0 or k <= 0:
        return np.full((nq, max(k, 0)), np.nan, np.float32), np.full((nq, max(k, 0)), -1, np.int64), 0
    want = min(k, n_allowed)
    subset = np.arange(n, dtype=np.int64) if allowed is None else allowed
    if info.kind != "flat" and allowed is not None and n_allowed <= EXACT_SUBSET_LIMIT:
        D, I = _exact(reconstruct(index, subset), subset, Qp, k, info.metric)
        return D, I, nq
    selector = bitmap = None
    if allowed is not None:  # the bitmap must outlive the search (FAISS keeps a pointer)
        selector, bitmap = _bitmap_selector(allowed, n)
    params, keep = search_params(info.kind, info.params, k, None if allowed is None else n_allowed / max(n, 1),
                                 selector, ef_search, nprobe, MAX_EF_SEARCH)
    with _faiss_threads(1 if nq < SINGLE_THREAD_BELOW else None):
        D, I = index.search(Qp, k, params=params)
    del params, keep, selector, bitmap
    D = to_scores(D, info.kind, info.metric).astype(np.float32)
    I = I.astype(np.int64)
    D[I < 0] = np.nan
    short = np.flatnonzero((I >= 0).sum(1) < want)
    if len(short):  # approximate search came up short: exact scan of the allowed vectors
        D2, I2 = _exact(reconstruct(index, subset), subset, Qp[short], k, info.metric)
        D[short], I[short] = D2, I2
    return D, I, len(short)


# -- the whole lookup ------------------------------------------------------------------------

def resolve_run_layer(store: Store, model: str, layer: int | None = None) -> tuple[str, int]:
    """(run_id, layer) for a model alias or run id (see `protiso.runs.resolve`)."""
    run, layer = resolve(store, model, layer)
    return run.run_id, layer


def find_index(store: Store, run_id: str, layer: int, kind: str | None = None,
               metric: str | None = None) -> IndexInfo:
    info = get_index_info(store, run_id, layer, kind, metric)
    if info is None:
        what = " ".join(x for x in (kind, metric) if x)
        raise NotFoundError(f"no {what + ' ' if what else ''}index for run {run_id} layer {layer}; "
                            f"build one with `protiso index build --model {run_id} --layer {layer}`")
    return info


def neighbors(store: Store, run_id: str, layer: int | None, query, k: int = 10, where: str | None = None,
              kind: str | None = None, metric: str | None = None, with_alignment: bool = False,
              ef_search: int | None = None, nprobe: int | None = None,
              include_self: bool = False) -> NeighborResult:
    """k nearest proteins of each query (see `resolve_queries`) among the run's layer,
    restricted to proteins matching `where`, joined with their metadata.

    run_id may be a model alias too, and layer None (the run's last layer). The index is
    extended first when the run grew and the store is writable. Each hit row carries its
    provenance (index_id: run, layer, kind and metric)."""
    if k < 1:
        raise InputError(f"k must be at least 1, got {k}", param="k")
    if layer is None or not store.scalar(Q.run_has_index, {"run_id": run_id}):
        run_id, layer = resolve_run_layer(store, run_id, layer)
    info = find_index(store, run_id, layer, kind, metric)
    notes: list[str] = []
    state = index_state(store, info)
    if state.status == "behind":
        if store.read_only:
            notes.append(f"index covers {info.n_vectors} vectors; the run has new parts: "
                         "run `protiso index build` to extend it")
        else:
            info = extend_index(store, info, state.new_parts)
    elif state.status == "stale":
        notes.append(f"index {info.index_id} is stale ({len(state.missing_parts)} source parts "
                     "gone); rebuild with `protiso index build --rebuild`")
    queries = resolve_queries(store, info, query)
    allowed = allowed_ids(store, info, where)
    index = load_faiss(info)
    self_ids = {}
    if not include_self:
        acc = [q.accession for q in queries if q.accession]
        if acc:
            self_ids = {a: i for a, (i, _) in indexed_ids(store, info, acc).items()}
    extra = 1 if self_ids else 0
    Qv = np.stack([q.vector for q in queries]).astype(np.float32)
    D, I, n_exact = search_vectors(index, info, Qv, k + extra, allowed, ef_search, nprobe)
    rows = {"query_no": [], "query": [], "rank": [], "id": [], "score": []}
    for qi, q in enumerate(queries):
        skip = self_ids.get(q.accession) if q.accession else None
        rank = 0
        for d, i in zip(D[qi], I[qi]):
            if i < 0 or i == skip or rank >= k:
                continue
            rank += 1
            rows["query_no"].append(qi)
            rows["query"].append(q.label)
            rows["rank"].append(rank)
            rows["id"].append(int(i))
            rows["score"].append(float(d))
    hits = _join_metadata(store, info, pa.table({
        "query_no": pa.array(rows["query_no"], pa.int32()), "query": pa.array(rows["query"], pa.string()),
        "rank": pa.array(rows["rank"], pa.int32()), "id": pa.array(rows["id"], pa.int64()),
        "score": pa.array(rows["score"], pa.float64())}))
    if with_alignment:
        hits = _add_alignment(store, hits, queries)
    hits = hits.drop_columns(["query_no"])
    n_allowed = index.ntotal if allowed is None else len(allowed)
    return NeighborResult(hits, info, n_allowed, n_exact, notes)


def _join_metadata(store: Store, info: IndexInfo, raw: pa.Table) -> pa.Table:
    """Hits with accession and protein metadata; the score column named for the metric."""
    store.con.register("_protiso_nn_hits", raw)
    try:
        table = store.sql(Q.hits_with_metadata, {"index_id": info.index_id})
    finally:
        store.con.unregister("_protiso_nn_hits")
    score = "cosine" if info.metric == "cosine" else "sq_l2"
    return table.rename_columns([score if c == "score" else c for c in table.column_names])


def _add_alignment(store: Store, hits: pa.Table, queries: list[Query]) -> pa.Table:
    """Global alignment score and identity of each query with each hit."""
    from protiso.neighbors.transforms import align_pairs

    accs = list(dict.fromkeys(hits.column("accession").to_pylist()))
    target = dict(store.execute(Q.sequences, {"accessions": accs}).fetchall()) if accs else {}
    a = [queries[q].sequence for q in hits.column("query_no").to_pylist()]
    b = [target.get(x) for x in hits.column("accession").to_pylist()]
    ok = [i for i in range(len(a)) if a[i] and b[i]]
    scores = np.full(len(a), np.nan)
    ident = np.full(len(a), np.nan)
    if ok:
        s, idt = align_pairs([a[i] for i in ok], [b[i] for i in ok])
        scores[ok], ident[ok] = s, idt
    return hits.append_column("align_score", pa.array(scores, pa.float64(), from_pandas=True)) \
               .append_column("identity", pa.array(ident, pa.float64(), from_pandas=True))
