"""Nearest-neighbour lookup over a run's FAISS index, filtered with SQL, joined with metadata.

A `--where` filter is evaluated in DuckDB over `protein_meta`, turned into the set of FAISS
ids it allows and passed to FAISS as an id selector (a bitmap), so the search itself skips
everything else. Approximate indexes can return fewer than k hits under a selective filter;
those queries, and filters that leave few vectors, are answered by an exact scan of the
allowed vectors instead, so k hits come back whenever k exist.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa

from protiso.errors import InputError, NotFoundError
from protiso.ingest.records import PROTEIN_ALPHABET, invalid_residue, normalise_sequence
from protiso.neighbors.index import (IndexInfo, extend_index, get_index_info, index_state,
                                     load_faiss, prepare, reconstruct)
from protiso.query import Subset, as_subset
from protiso.runs import resolve
from protiso.store import Store

# Below this many allowed vectors a filtered search scans them exactly (fast and exact).
EXACT_SUBSET_LIMIT = 20_000
# Upper bound on the widened efSearch / nprobe used for selective filters.
MAX_EF_SEARCH = 4096

# UniProt accession format (and entry-name-like ids): taken as accessions, never as sequences
_ACCESSION_LIKE = re.compile(
    r"^([OPQ][0-9][A-Z0-9]{3}[0-9]|[A-NR-Z][0-9]([A-Z][A-Z0-9]{2}[0-9]){1,2})(-\d+)?$|[_|]")


@dataclass
class Query:
    """One query: its label (accession or FASTA id), sequence if known, and vector."""

    label: str
    vector: np.ndarray
    accession: str | None = None   # set when the query is a protein of the index itself
    sequence: str | None = None


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
    got = store.con.execute(
        f"SELECT id FROM nn_index_ids WHERE index_id = ? AND accession IN ({subset.accessions_sql()}) ORDER BY id",
        [info.index_id]).fetchnumpy()["id"]
    return np.asarray(got, dtype=np.int64)


def _bitmap_selector(ids: np.ndarray, n: int):
    mask = np.zeros(n, bool)
    mask[ids] = True
    bitmap = np.packbits(mask, bitorder="little")
    return faiss.IDSelectorBitmap(n, faiss.swig_ptr(bitmap)), bitmap


def _exact(V: np.ndarray, ids: np.ndarray, Q: np.ndarray, k: int, metric: str):
    """Brute-force top-k of prepared queries Q over prepared vectors V (rows = ids)."""
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
    selectivity = n_allowed / max(n, 1)
    if info.kind == "hnsw":
        ef = int(ef_search or info.params.get("efSearch", 128))
        ef = min(MAX_EF_SEARCH, max(ef, k, math.ceil(ef / selectivity) if allowed is not None else ef))
        params = faiss.SearchParametersHNSW(efSearch=ef)
    elif info.kind == "ivf":
        nlist = int(info.params["nlist"])
        probe = int(nprobe or info.params.get("nprobe", 1))
        if allowed is not None:
            probe = math.ceil(probe / selectivity)
        params = faiss.SearchParametersIVF(nprobe=min(nlist, probe))
    else:
        params = faiss.SearchParameters()
    if allowed is not None:  # both Python objects must outlive the search (FAISS keeps pointers)
        selector, bitmap = _bitmap_selector(allowed, n)
        params.sel = selector
    D, I = index.search(Qp, k, params=params)
    del params, selector, bitmap
    D = D.astype(np.float32)
    I = I.astype(np.int64)
    D[I < 0] = np.nan
    short = np.flatnonzero((I >= 0).sum(1) < want)
    if len(short):  # approximate search came up short: exact scan of the allowed vectors
        D2, I2 = _exact(reconstruct(index, subset), subset, Qp[short], k, info.metric)
        D[short], I[short] = D2, I2
    return D, I, len(short)


# -- queries --------------------------------------------------------------------------------

def check_sequence(seq: str, label: str) -> str:
    """Normalised sequence, or InputError naming the query and the bad residue."""
    s = normalise_sequence(seq)
    if not s:
        raise InputError(f"query {label}: empty sequence")
    bad = invalid_residue(s)
    if bad is not None:
        pos, char = bad
        raise InputError(f"query {label}: character {char!r} at residue {pos + 1} is not in the "
                         f"IUPAC protein alphabet ({PROTEIN_ALPHABET})")
    return s


def queries_from_accessions(store: Store, info: IndexInfo, accessions: list[str]) -> list[Query]:
    """Queries for proteins of the index (their stored, indexed vectors)."""
    got = store.con.execute(
        "SELECT i.accession, i.id, p.sequence FROM nn_index_ids i LEFT JOIN proteins p USING "
        "(accession) WHERE i.index_id = ? AND i.accession IN (SELECT unnest(?::VARCHAR[]))",
        [info.index_id, list(accessions)]).fetchall()
    found = {a: (i, s) for a, i, s in got}
    missing = [a for a in accessions if a not in found]
    if missing:
        known = {a for (a,) in store.con.execute(
            "SELECT accession FROM proteins WHERE accession IN (SELECT unnest(?::VARCHAR[]))",
            [missing]).fetchall()}
        a = missing[0]
        if a in known:
            raise NotFoundError(f"accession {a} is in the store but has no embedding in run "
                                f"{info.run_id} layer {info.layer}; embed it first or pass its "
                                "sequence as the query")
        raise NotFoundError(f"unknown accession {a}: not in the store "
                            f"({len(missing)} of {len(accessions)} queried accessions unknown)")
    index = load_faiss(info)
    ids = np.array([found[a][0] for a in accessions], np.int64)
    V = reconstruct(index, ids)
    return [Query(a, V[j], a, found[a][1]) for j, a in enumerate(accessions)]


def embed_query_sequences(store: Store, run_id: str, layer: int, sequences: list[str]) -> np.ndarray:
    """Embed raw sequences with the run's model and settings (and its transform, if derived)."""
    from protiso.neighbors.transforms import embed_for_run

    return embed_for_run(store, run_id, layer, sequences)


def resolve_queries(store: Store, info: IndexInfo, query: str | Path | list[str]) -> list[Query]:
    """QUERY as given on the command line: a FASTA file, accession(s) in the index, or a raw
    amino-acid sequence (embedded on the fly)."""
    if isinstance(query, list):
        return queries_from_accessions(store, info, query)
    text = str(query).strip()
    path = Path(text).expanduser()
    if text and path.is_file():
        from protiso.ingest.fasta import parse_fasta

        records = list(parse_fasta(path, uniprot=None))
        seqs = [r.sequence for r in records]
        X = embed_query_sequences(store, info.run_id, info.layer, seqs)
        return [Query(r.accession, X[j], None, r.sequence) for j, r in enumerate(records)]
    if not text:
        raise InputError("empty query: give an accession, a FASTA file or a sequence")
    exists = store.scalar("SELECT count(*) FROM proteins WHERE accession = ?", [text])
    if exists or _ACCESSION_LIKE.search(text):
        return queries_from_accessions(store, info, [text])
    if text.endswith((".fa", ".fasta", ".faa", ".gz")):
        raise InputError(f"query file {text} not found")
    try:
        seq = check_sequence(text, "sequence")
    except InputError as exc:
        raise InputError(f"query {text[:40]!r} is neither an accession in the store, a file, nor a "
                         f"valid sequence: {str(exc).split(': ', 1)[1]}") from None
    X = embed_query_sequences(store, info.run_id, info.layer, [seq])
    return [Query("sequence", X[0], None, seq)]


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
    provenance (run_id, layer, index kind and metric)."""
    if k < 1:
        raise InputError(f"-k must be at least 1, got {k}")
    if layer is None or not store.scalar("SELECT count(*) FROM nn_indexes WHERE run_id = ?", [run_id]):
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
            self_ids = dict(store.con.execute(
                "SELECT accession, id FROM nn_index_ids WHERE index_id = ? AND accession IN "
                "(SELECT unnest(?::VARCHAR[]))", [info.index_id, acc]).fetchall())
    extra = 1 if self_ids else 0
    Q = np.stack([q.vector for q in queries]).astype(np.float32)
    D, I, n_exact = search_vectors(index, info, Q, k + extra, allowed, ef_search, nprobe)
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
    score = "cosine" if info.metric == "cosine" else "sq_l2"
    store.con.register("_nn_hits", raw)
    try:
        return store.sql(
            f"SELECT h.query_no, h.query, h.rank, i.accession, h.score AS {score}, p.entry_name, p.organism, "
            "p.length, p.description, i.index_id AS index_id FROM _nn_hits h "
            "JOIN nn_index_ids i ON i.index_id = ? AND i.id = h.id "
            "LEFT JOIN proteins p ON p.accession = i.accession ORDER BY h.query_no, h.rank",
            [info.index_id])
    finally:
        store.con.unregister("_nn_hits")


def _add_alignment(store: Store, hits: pa.Table, queries: list[Query]) -> pa.Table:
    """Global alignment score and identity of each query with each hit."""
    from protiso.neighbors.transforms import align_pairs

    accs = list(dict.fromkeys(hits.column("accession").to_pylist()))
    target = dict(store.con.execute(
        "SELECT accession, sequence FROM proteins WHERE accession IN (SELECT unnest(?::VARCHAR[]))",
        [accs]).fetchall()) if accs else {}
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
