"""Functional similarity per pair.

- Jaccard overlap of the two proteins' annotation terms (GO terms in the shipped data),
  |A ∩ B| / |A ∪ B|, NULL when neither has any term. Blockwise sparse matrix products over a
  protein x term incidence matrix, into dataset pairs/<set>/go/annotations (view pair_go).
- GO semantic similarity, when the store holds an ontology: Resnik and Lin similarity per
  namespace (biological process, molecular function, cellular component), the best-match
  average of the two proteins' direct annotations, with information content counted over every
  annotation of the store (protiso/go/semantic.py); NULL where either protein has no
  annotation in that namespace. Dataset pairs/<set>/go/semantic (view pair_go_semantic).

Each job records what it rests on (annotation rows; the ontology's checksum), so it is
recomputed when the annotations or the ontology change."""
from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
from scipy import sparse

from protiso.go.semantic import METHODS, InformationContent, pair_similarity
from protiso.pairs.jobs import JobResult, _finish_job, _save_chunk, _start_job, pending_chunks
from protiso.pairs.sample import constant_column, get_pair_set, pair_indices, registered
from protiso.store import Store, queries

Q = queries("pairs")
QGO = queries("go")

GO_SCHEMA = pa.schema([("pair_set", pa.string()), ("pair_id", pa.int64()),
                       ("go_jaccard", pa.float64())])
KEY = "annotations"
SEMANTIC_KEY = "semantic"
NAMESPACES = {"bp": "biological_process", "mf": "molecular_function", "cc": "cellular_component"}
SEMANTIC_COLUMNS = tuple(f"{m}_{ns}" for ns in NAMESPACES for m in METHODS)  # resnik_bp, lin_bp, ...
SEMANTIC_SCHEMA = pa.schema([("pair_set", pa.string()), ("pair_id", pa.int64())]
                            + [(c, pa.float64()) for c in SEMANTIC_COLUMNS])


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


def information_content(store: Store) -> InformationContent:
    """Information content of the store's ontology over all of its annotations."""
    return InformationContent.from_tables(store.sql(QGO.ic_ancestors), store.sql(QGO.ic_annotations),
                                          store.sql(QGO.ic_terms), store.sql(QGO.ic_alt_ids))


def semantic_similarity(ic: InformationContent, prots_a, prots_b) -> dict[str, np.ndarray]:
    """{resnik_bp: ..., lin_bp: ..., ...}: each pair's best-match-average similarity per
    namespace and method (NaN where a protein has no annotation there, or the store none)."""
    out = {}
    for short, ns in NAMESPACES.items():
        for method in METHODS:
            out[f"{method}_{short}"] = (pair_similarity(ic, prots_a, prots_b, ns, method)
                                        if ns in ic.namespaces else np.full(len(prots_a), np.nan))
    return out


def go_semantic_pair_set(store: Store, name: str, chunk_size: int = 500_000) -> JobResult | None:
    """Resnik and Lin similarity per namespace for every pair of `name` (skipped if current);
    None when the store holds no ontology (`protiso ingest go.obo`)."""
    ontology = store.one(QGO.ontology)
    if ontology is None:
        return None
    ps = get_pair_set(store, name)
    proteins, ia, ib = pair_indices(store, name)
    ic = information_content(store)
    params = {"ontology_sha256": ontology[2], "n_annotations": ic.n_annotations,
              "namespaces": {ns: x.n_proteins for ns, x in ic.namespaces.items()}}
    n_chunks = -(-ps.n_pairs // chunk_size)
    done = _start_job(store, name, "go", SEMANTIC_KEY, params, chunk_size, n_chunks)
    prots = np.asarray(proteins, dtype=object)
    total = 0.0
    for c, lo, hi in pending_chunks(ps.n_pairs, chunk_size, done):
        t0 = time.perf_counter()
        sims = semantic_similarity(ic, prots[ia[lo:hi]], prots[ib[lo:hi]])
        seconds = time.perf_counter() - t0
        total += seconds
        table = pa.table({"pair_set": constant_column(name, hi - lo),
                          "pair_id": pa.array(np.arange(lo, hi, dtype=np.int64)),
                          **{k: pa.array(v, mask=np.isnan(v)) for k, v in sims.items()}},
                         schema=SEMANTIC_SCHEMA)
        _save_chunk(store, name, "go", SEMANTIC_KEY, c, table, seconds)
    _finish_job(store, name, "go", SEMANTIC_KEY)
    return JobResult(name, "go", SEMANTIC_KEY, ps.n_pairs, n_chunks, n_chunks - len(done), total, params)
