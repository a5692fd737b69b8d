"""Index kinds: their parameters, how FAISS builds each one, and how each is searched.

- flat:     exact inner product (cosine) or L2 scan.
- hnsw:     HNSW graph over the full vectors (IndexHNSWFlat).
- ivf:      inverted lists over the full vectors (IndexIVFFlat).
- ivfpq:    inverted lists with product-quantised codes (IndexIVFPQ): `pq_m` bytes per vector,
            scores computed from the codes (approximate).
- pca-hnsw: HNSW over a PCA projection of the vectors (`pca` dimensions, FAISS PCAMatrix fitted
            on a sample) and exact re-ranking of the `k_factor * k` best candidates on the full
            vectors (IndexRefineFlat). The default: it meets recall@10 >= 0.99 at < 2 ms and
            builds several times faster than hnsw on 1024-dimensional vectors (docs/neighbors.md).

Metric cosine stores unit vectors. flat, hnsw, ivf and ivfpq search them by inner product (score
= cosine). pca-hnsw searches them by squared L2 (PCA centres the vectors, which breaks inner
product rankings but keeps L2 distances) and reports cosine = 1 - d / 2, exact for unit vectors.
"""
from __future__ import annotations

import math

import faiss
import numpy as np

from protiso.errors import InputError

KINDS = ("pca-hnsw", "hnsw", "flat", "ivf", "ivfpq")
DEFAULT_KIND = "pca-hnsw"
METRICS = ("cosine", "l2")
LOSSY = ("ivfpq",)      # stored vectors are codes: query vectors come from the run's parts

# Defaults chosen on the 516k x 1024 benchmark (benchmarks/bench_neighbors.py, docs/neighbors.md).
# None: derived from the number of vectors n and the dimension d (see `resolve_params`).
DEFAULT_PARAMS: dict[str, dict] = {
    "flat": {},
    "hnsw": {"M": 32, "efConstruction": 80, "efSearch": 128},
    "ivf": {"nlist": None, "nprobe": None},
    "ivfpq": {"nlist": None, "nprobe": None, "pq_m": None},  # nlist sqrt(n), not ivf's 4 sqrt(n)
    "pca-hnsw": {"pca": None, "M": 48, "efConstruction": 40, "efSearch": 192, "k_factor": 10},
}
# Library parameter (and CLI option) that sets each index parameter, for error messages.
PARAM_NAMES = {"M": "M", "efConstruction": "ef_construction", "efSearch": "ef_search", "nlist": "nlist",
               "nprobe": "nprobe", "pq_m": "pq_m", "pca": "pca", "k_factor": "k_factor"}
PCA_TRAIN = 65_536      # vectors sampled to fit the PCA of pca-hnsw
PQ_NBITS = 8            # bits per product-quantiser code (256 centroids per sub-vector)


def check_kind_metric(kind: str, metric: str) -> None:
    if kind not in KINDS:
        raise InputError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)}", param="kind")
    if metric not in METRICS:
        raise InputError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}", param="metric")


def _at_least(kind: str, key: str, value, low: int) -> int:
    if value is None or int(value) < low:
        raise InputError(f"{kind} index: {key} must be at least {low}, got {value}", param=PARAM_NAMES[key])
    return int(value)


def default_pca(d: int) -> int:
    """Dimensions kept by pca-hnsw: a quarter of d, at least 64 (at most d)."""
    return min(d, max(64, d // 4))


def default_pq_m(d: int) -> int:
    """Sub-quantisers (bytes per vector) of ivfpq: the largest divisor of d up to d / 8."""
    return max(m for m in range(1, max(1, d // 8) + 1) if d % m == 0)


def resolve_params(kind: str, n: int, d: int, params: dict | None) -> dict:
    """The kind's defaults overridden by `params`, filled in for n vectors of dimension d and
    validated; InputError names the parameter and the values at fault."""
    out = dict(DEFAULT_PARAMS[kind])
    for key, value in (params or {}).items():
        if key not in out:
            raise InputError(f"unknown parameter {key!r} for a {kind} index; "
                             f"known: {', '.join(out) or 'none'}", param=PARAM_NAMES.get(key))
        out[key] = value
    if kind in ("ivf", "ivfpq"):
        if out["nlist"] is None:  # ivfpq: fewer lists, its k-means runs on 1024-dimensional vectors too
            lists = (4 if kind == "ivf" else 1) * math.sqrt(max(n, 1))
            out["nlist"] = max(1, min(n // 39, int(lists)))
        nlist = _at_least(kind, "nlist", out["nlist"], 1)
        if nlist > n:
            raise InputError(f"{kind} index: nlist {nlist} is more than the {n:,} vectors to index "
                             f"(each list needs at least one vector to train); use at most {n}",
                             param="nlist")
        out["nlist"] = nlist
        if out["nprobe"] is None:
            out["nprobe"] = min(nlist, max(16, nlist // 16))
        out["nprobe"] = min(nlist, _at_least(kind, "nprobe", out["nprobe"], 1))
    if kind == "ivfpq":
        m = default_pq_m(d) if out["pq_m"] is None else _at_least(kind, "pq_m", out["pq_m"], 1)
        if d % m:
            raise InputError(f"ivfpq index: pq_m {m} must divide the dimension {d}", param="pq_m")
        if n < 2 ** PQ_NBITS:
            raise InputError(f"ivfpq index needs at least {2 ** PQ_NBITS} vectors to train its "
                             f"quantiser, got {n:,}")
        out["pq_m"] = m
    if kind in ("hnsw", "pca-hnsw"):
        for key, low in (("M", 2), ("efConstruction", 1), ("efSearch", 1)):
            out[key] = _at_least(kind, key, out[key], low)
    if kind == "pca-hnsw":
        out["k_factor"] = _at_least(kind, "k_factor", out["k_factor"], 1)
        p = min(default_pca(d), n) if out["pca"] is None else _at_least(kind, "pca", out["pca"], 1)
        if p > min(d, n):
            what = f"the {d} dimensions" if p > d else f"the {n:,} vectors to fit it on"
            raise InputError(f"pca-hnsw index: pca {p} is more than {what}", param="pca")
        out["pca"] = p
    return out


def faiss_metric(kind: str, metric: str) -> int:
    """The metric FAISS computes (see the module doc)."""
    return faiss.METRIC_INNER_PRODUCT if metric == "cosine" and kind != "pca-hnsw" else faiss.METRIC_L2


def new_index(kind: str, metric: str, d: int, params: dict):
    """An empty (untrained) FAISS index of the kind."""
    fm = faiss_metric(kind, metric)
    if kind == "flat":
        return faiss.IndexFlat(d, fm)
    if kind in ("hnsw", "pca-hnsw"):
        dim = params["pca"] if kind == "pca-hnsw" else d
        graph = faiss.IndexHNSWFlat(dim, int(params["M"]), fm)
        graph.hnsw.efConstruction = int(params["efConstruction"])
        graph.hnsw.efSearch = int(params["efSearch"])
        if kind == "hnsw":
            return graph
        # FAISS's Python wrappers keep the inner indexes alive with the outer one
        index = faiss.IndexRefineFlat(faiss.IndexPreTransform(faiss.PCAMatrix(d, dim), graph))
        index.k_factor = float(params["k_factor"])
        return index
    quantizer = faiss.IndexFlat(d, fm)
    if kind == "ivf":
        index = faiss.IndexIVFFlat(quantizer, d, int(params["nlist"]), fm)
    else:
        index = faiss.IndexIVFPQ(quantizer, d, int(params["nlist"]), int(params["pq_m"]), PQ_NBITS, fm)
        # FAISS prints one warning per sub-quantiser (dozens of lines) below 39 x 256 training
        # vectors; docs/neighbors.md states that ivfpq wants ~10,000 vectors instead
        index.pq.cp.min_points_per_centroid = 1
    index.nprobe = int(params["nprobe"])
    return index


def training_size(kind: str, params: dict) -> int:
    """Vectors to sample for training (0: the kind needs no training)."""
    if kind == "ivf":
        return max(64 * int(params["nlist"]), 10_000)
    if kind == "ivfpq":  # 39 per list (FAISS's minimum), 256 per code of each sub-quantiser
        return max(39 * int(params["nlist"]), 2 ** PQ_NBITS * 2 ** PQ_NBITS)
    if kind == "pca-hnsw":
        return PCA_TRAIN
    return 0


def search_params(kind: str, params: dict, k: int, selectivity: float | None, selector=None,
                  ef_search: int | None = None, nprobe: int | None = None, max_ef: int = 4096):
    """FAISS search parameters for one search, and the objects they point to (keep the list
    alive during the search: FAISS holds raw pointers). `selectivity` (share of vectors allowed
    by a filter, None: no filter) widens the beam or the probes so k allowed hits are found."""
    keep = [selector]
    widen = 1.0 if selectivity is None else 1.0 / max(selectivity, 1e-9)
    if kind in ("hnsw", "pca-hnsw"):
        ef = int(ef_search or params.get("efSearch", 128))
        want = k * int(params.get("k_factor", 1))
        ef = min(max_ef, max(ef, want, math.ceil(ef * widen)))
        inner = faiss.SearchParametersHNSW(efSearch=ef)
    elif kind in ("ivf", "ivfpq"):
        probe = math.ceil(int(nprobe or params.get("nprobe", 1)) * widen)
        inner = faiss.SearchParametersIVF(nprobe=min(int(params["nlist"]), probe))
    else:
        inner = faiss.SearchParameters()
    if selector is not None:
        inner.sel = selector
    keep.append(inner)
    if kind != "pca-hnsw":
        return inner, keep
    pre = faiss.SearchParametersPreTransform(index_params=inner)
    outer = faiss.IndexRefineSearchParameters(k_factor=float(params["k_factor"]), base_index_params=pre)
    keep += [pre, outer]
    return outer, keep


def to_scores(D: np.ndarray, kind: str, metric: str) -> np.ndarray:
    """FAISS distances as protiso scores: cosine similarity, or squared L2 distance."""
    if metric == "cosine" and faiss_metric(kind, metric) == faiss.METRIC_L2:
        return 1.0 - D / 2.0
    return D


def reconstruct(index, ids: np.ndarray) -> np.ndarray:
    """Stored vectors (unit length for cosine; decoded codes for ivfpq) for FAISS ids."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if isinstance(index, faiss.IndexRefine):
        return faiss.downcast_index(index.refine_index).reconstruct_batch(ids)
    if isinstance(index, faiss.IndexHNSW):
        return faiss.downcast_index(index.storage).reconstruct_batch(ids)
    if isinstance(index, faiss.IndexIVF) and not index.direct_map.type:
        index.make_direct_map()
    return index.reconstruct_batch(ids)
