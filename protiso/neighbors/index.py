"""FAISS indexes over one embedding run and layer, kept in the store.

An index file lives under store/indexes/<run_id>/; the catalog table `nn_indexes` records its
build parameters and the embedding parts it covers, `nn_index_ids` maps FAISS ids (positions
0..n-1) to accessions. When the run grows (new parts) the index is extended with the new
vectors; when parts it covered are gone it is stale and must be rebuilt. Files are written
under a fresh name and swapped in the catalog inside one transaction, so a crash never leaves
the catalog pointing at a half-written index.

Metric `cosine` L2-normalises the vectors and uses inner product (score = cosine similarity);
`l2` uses squared Euclidean distance (score = distance, smaller is nearer).
"""
from __future__ import annotations

import json
import math
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from protiso._version import __version__
from protiso.errors import InputError, NotFoundError, ProtisoError
from protiso.runs import embeddings_dataset, matrix
from protiso.store import Store

KINDS = ("flat", "hnsw", "ivf")
METRICS = ("cosine", "l2")
INDEX_DIR = "indexes"
_SAFE_RE = re.compile(r"^[A-Za-z0-9_.=~+-]+$")

# Defaults chosen on the 516k x 1024 benchmark (benchmarks/bench_neighbors.py).
DEFAULT_PARAMS = {
    "hnsw": {"M": 32, "efConstruction": 80, "efSearch": 128},
    "ivf": {"nlist": None, "nprobe": None},  # None: nlist = 4 sqrt(n), nprobe = max(16, nlist / 16)
}

Progress = Callable[[int], None]


@dataclass
class IndexInfo:
    """One row of `nn_indexes`."""

    index_id: str
    run_id: str
    layer: int
    kind: str
    metric: str
    dim: int
    n_vectors: int
    params: dict
    path: Path
    source_parts: list[str] = field(default_factory=list)
    build_seconds: float | None = None
    created_at: object = None


@dataclass
class IndexState:
    """How an index relates to its run now: `fresh`, `behind` (new parts to add) or
    `stale` (parts it was built from are gone; rebuild)."""

    status: str
    new_parts: list[str]
    missing_parts: list[str]


def index_id_for(run_id: str, layer: int, kind: str, metric: str) -> str:
    return f"{run_id}/L{int(layer)}/{kind}-{metric}"


def check_kind_metric(kind: str, metric: str) -> None:
    if kind not in KINDS:
        raise InputError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)}")
    if metric not in METRICS:
        raise InputError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")


# -- reading embeddings ------------------------------------------------------------------

def _relative(store: Store, path: Path) -> str:
    return Path(path).relative_to(store.root).as_posix()


def run_parts(store: Store, run_id: str) -> list[str]:
    """Relative paths of the run's embedding parts, oldest first."""
    return [_relative(store, p) for p in store.parts(embeddings_dataset(run_id))]


def read_part_layer(store: Store, rel_path: str, layer: int) -> tuple[list[str], np.ndarray]:
    """Accessions and vectors of one layer from one embedding part."""
    table = pq.read_table(store.root / rel_path, columns=["accession", "layer", "embedding"],
                          filters=[("layer", "=", int(layer))])
    kind = table.schema.field("embedding").type
    dim = kind.list_size if pa.types.is_fixed_size_list(kind) else None
    if dim is None:  # variable-size lists: width from the data
        dim = len(table.column("embedding")[0]) if table.num_rows else 0
    return table.column("accession").to_pylist(), matrix(table.column("embedding"), dim)


def iter_layer(store: Store, parts: list[str], layer: int) -> Iterator[tuple[list[str], np.ndarray]]:
    for rel in parts:
        acc, X = read_part_layer(store, rel, layer)
        if acc:
            yield acc, X


def count_layer(store: Store, parts: list[str], layer: int) -> int:
    """Number of vectors of `layer` in the given parts (reads only the layer column)."""
    total = 0
    for rel in parts:
        t = pq.read_table(store.root / rel, columns=["layer"])
        total += int(np.count_nonzero(t.column("layer").to_numpy() == layer))
    return total


# -- building ----------------------------------------------------------------------------

def _faiss_metric(metric: str) -> int:
    return faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2


def prepare(X: np.ndarray, metric: str) -> np.ndarray:
    """Vectors as the index stores them: float32, C-contiguous, unit length for cosine."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    if metric == "cosine":
        X = X.copy()
        faiss.normalize_L2(X)
    return X


def _resolve_params(kind: str, n: int, params: dict | None) -> dict:
    out = dict(DEFAULT_PARAMS.get(kind, {}))
    for key, value in (params or {}).items():
        if key not in out:
            raise InputError(f"unknown parameter {key!r} for a {kind} index; "
                             f"known: {', '.join(out) or 'none'}")
        out[key] = value
    if kind == "ivf":
        if out["nlist"] is None:
            out["nlist"] = max(1, min(n // 39, int(4 * math.sqrt(max(n, 1)))))
        out["nlist"] = int(out["nlist"])
        if out["nprobe"] is None:
            out["nprobe"] = min(out["nlist"], max(16, out["nlist"] // 16))
        out["nprobe"] = int(out["nprobe"])
    return out


def _new_index(kind: str, metric: str, dim: int, params: dict):
    fm = _faiss_metric(metric)
    if kind == "flat":
        return faiss.IndexFlatIP(dim) if metric == "cosine" else faiss.IndexFlatL2(dim)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, int(params["M"]), fm)
        index.hnsw.efConstruction = int(params["efConstruction"])
        index.hnsw.efSearch = int(params["efSearch"])
        return index
    quantizer = faiss.IndexFlatIP(dim) if metric == "cosine" else faiss.IndexFlatL2(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, int(params["nlist"]), fm)
    index.nprobe = int(params["nprobe"])
    return index


def _training_sample(store: Store, parts: list[str], layer: int, n_total: int, n_train: int,
                     metric: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rate = min(1.0, n_train / max(n_total, 1))
    chunks = []
    for _, X in iter_layer(store, parts, layer):
        keep = rng.random(len(X)) < rate if rate < 1 else slice(None)
        chunks.append(prepare(X[keep], metric))
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)


def _index_file(store: Store, run_id: str, layer: int, kind: str, metric: str) -> Path:
    if not _SAFE_RE.match(run_id):
        raise InputError(f"run id {run_id!r} cannot name an index directory")
    directory = store.root / INDEX_DIR / run_id
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"L{int(layer)}-{kind}-{metric}-{uuid.uuid4().hex[:12]}.faiss"


def _write_index(index, path: Path) -> None:
    """Atomic write: temporary name, fsync, rename."""
    tmp = path.with_name("." + path.name + ".tmp")
    faiss.write_index(index, str(tmp))
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _add_vectors(index, store: Store, parts: list[str], layer: int, metric: str, start_id: int,
                 skip: set[str], progress: Progress | None) -> tuple[list[str], int]:
    """Add the layer's vectors of `parts` (accessions not in `skip`); returns accessions added."""
    added: list[str] = []
    for acc, X in iter_layer(store, parts, layer):
        if X.shape[1] != index.d:
            raise ProtisoError(f"embedding parts of the run have dimension {X.shape[1]}, "
                               f"the index {index.d}")
        # one vector per accession and layer: skip those indexed already (first one wins)
        keep = []
        for i, a in enumerate(acc):
            if a not in skip:
                skip.add(a)
                keep.append(i)
        if not keep:
            continue
        if len(keep) != len(acc):
            acc = [acc[i] for i in keep]
            X = X[keep]
        index.add(prepare(X, metric))
        added.extend(acc)
        if progress:
            progress(len(acc))
    return added, start_id + len(added)


def _run_dim(store: Store, parts: list[str], layer: int) -> int:
    for _, X in iter_layer(store, parts, layer):
        return X.shape[1]
    raise NotFoundError(f"the run has no embeddings for layer {layer}")


def get_index_info(store: Store, run_id: str, layer: int, kind: str | None = None,
                   metric: str | None = None) -> IndexInfo | None:
    """The index of (run, layer), optionally of a given kind/metric; the newest if several."""
    query = ("SELECT index_id, run_id, layer, kind, metric, dim, n_vectors, params, path, "
             "source_parts, build_seconds, created_at FROM nn_indexes WHERE run_id = ? AND layer = ?")
    args: list = [run_id, int(layer)]
    if kind:
        query += " AND kind = ?"
        args.append(kind)
    if metric:
        query += " AND metric = ?"
        args.append(metric)
    rows = store.con.execute(query + " ORDER BY updated_at DESC LIMIT 1", args).fetchall()
    if not rows:
        return None
    row = rows[0]
    return IndexInfo(row[0], row[1], int(row[2]), row[3], row[4], int(row[5]), int(row[6]),
                     json.loads(row[7]), store.root / row[8], list(row[9]), row[10], row[11])


def list_indexes(store: Store, run_id: str | None = None) -> pa.Table:
    """The indexes (optionally of one run) with their freshness, from view nn_index_summary."""
    query = ("SELECT index_id, model, kind, metric, dim, n_vectors, status, "
             "round(build_seconds, 2) AS build_seconds, params, updated_at FROM nn_index_summary")
    if run_id:
        return store.sql(query + " WHERE run_id = ? ORDER BY index_id", [run_id])
    return store.sql(query + " ORDER BY index_id", [])


def index_state(store: Store, info: IndexInfo) -> IndexState:
    current = run_parts(store, info.run_id)
    have = set(info.source_parts)
    new = [p for p in current if p not in have]
    missing = sorted(have - set(current))
    status = "stale" if missing or not info.path.exists() else ("behind" if new else "fresh")
    return IndexState(status, new, missing)


def _record(store: Store, info: IndexInfo, accessions: list[str], first_id: int,
            replace_ids: bool) -> None:
    """Upsert the catalog row and append/replace the id map (caller holds a transaction)."""
    con = store.con
    con.execute("DELETE FROM nn_indexes WHERE index_id = ?", [info.index_id])
    con.execute(
        "INSERT INTO nn_indexes (index_id, run_id, layer, kind, metric, dim, n_vectors, params, "
        "path, source_parts, build_seconds, faiss_version, software_version, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, coalesce(?, current_timestamp), current_timestamp)",
        [info.index_id, info.run_id, info.layer, info.kind, info.metric, info.dim, info.n_vectors,
         json.dumps(info.params), _relative(store, info.path), info.source_parts,
         info.build_seconds, faiss.__version__, __version__, info.created_at])
    if replace_ids:
        con.execute("DELETE FROM nn_index_ids WHERE index_id = ?", [info.index_id])
    if accessions:
        ids = pa.table({"index_id": pa.array([info.index_id] * len(accessions)),
                        "id": pa.array(np.arange(first_id, first_id + len(accessions), dtype=np.int64)),
                        "accession": pa.array(accessions, pa.string())})
        con.register("_nn_new_ids", ids)
        try:
            con.execute("INSERT INTO nn_index_ids SELECT index_id, id, accession FROM _nn_new_ids")
        finally:
            con.unregister("_nn_new_ids")


def _commit(store: Store, info: IndexInfo, index, accessions: list[str], first_id: int,
            replace_ids: bool, old_path: Path | None) -> None:
    """Write the index under a new name, swap it in the catalog, then drop the old file."""
    path = _index_file(store, info.run_id, info.layer, info.kind, info.metric)
    _write_index(index, path)
    info.path = path
    try:
        with store.transaction():
            _record(store, info, accessions, first_id, replace_ids)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if old_path is not None and old_path != path:
        old_path.unlink(missing_ok=True)


def build_index(store: Store, run_id: str, layer: int, kind: str = "hnsw", metric: str = "cosine",
                params: dict | None = None, rebuild: bool = False,
                progress: Progress | None = None, total: Callable[[int], None] | None = None
                ) -> tuple[IndexInfo, str]:
    """Build (or bring up to date) the index of a run's layer.

    An existing index of the same kind and metric is extended with new parts when the run grew,
    left alone when fresh, and rebuilt when stale or `rebuild` is set (or `params` differ).
    Returns the index and what was done: 'built', 'extended' or 'fresh'.
    `total(n)` is called once with the number of vectors to add; `progress(n)` per batch."""
    check_kind_metric(kind, metric)
    existing = get_index_info(store, run_id, layer, kind, metric)
    parts = run_parts(store, run_id)
    if not parts:
        raise NotFoundError(f"run {run_id} has no embeddings; run `protiso embed` first")
    if existing and not rebuild and (params is None or
                                     _resolve_params(kind, existing.n_vectors, params) == existing.params):
        state = index_state(store, existing)
        if state.status == "fresh":
            return existing, "fresh"
        if state.status == "behind":
            return extend_index(store, existing, state.new_parts, progress, total), "extended"
    t0 = time.perf_counter()
    n_total = count_layer(store, parts, layer)
    if n_total == 0:
        raise NotFoundError(f"run {run_id} has no embeddings for layer {layer}")
    dim = _run_dim(store, parts, layer)
    resolved = _resolve_params(kind, n_total, params)
    index = _new_index(kind, metric, dim, resolved)
    if kind == "ivf":
        nlist = resolved["nlist"]
        sample = _training_sample(store, parts, layer, n_total, max(64 * nlist, 10_000), metric)
        index.train(sample)
    if total:
        total(n_total)
    accessions, _ = _add_vectors(index, store, parts, layer, metric, 0, set(), progress)
    info = IndexInfo(index_id_for(run_id, layer, kind, metric), run_id, int(layer), kind, metric,
                     dim, len(accessions), resolved, Path(), parts,
                     time.perf_counter() - t0, None)
    _commit(store, info, index, accessions, 0, True, existing.path if existing else None)
    return info, "built"


def extend_index(store: Store, info: IndexInfo, new_parts: list[str] | None = None,
                 progress: Progress | None = None, total: Callable[[int], None] | None = None
                 ) -> IndexInfo:
    """Add the vectors of the run's new parts to an index (not stale)."""
    if new_parts is None:
        state = index_state(store, info)
        if state.status == "stale":
            raise ProtisoError(f"index {info.index_id} is stale (parts {state.missing_parts[:3]} "
                               "are gone); rebuild it with `protiso index build --rebuild`")
        new_parts = state.new_parts
    if not new_parts:
        return info
    t0 = time.perf_counter()
    index = load_faiss(info)
    have = set(store.con.execute("SELECT accession FROM nn_index_ids WHERE index_id = ?",
                                 [info.index_id]).fetchnumpy()["accession"].tolist())
    if total:
        total(count_layer(store, new_parts, info.layer))
    accessions, _ = _add_vectors(index, store, new_parts, info.layer, info.metric,
                                 info.n_vectors, have, progress)
    first = info.n_vectors
    old_path = info.path
    info.n_vectors = first + len(accessions)
    info.source_parts = info.source_parts + list(new_parts)
    info.build_seconds = (info.build_seconds or 0.0) + time.perf_counter() - t0
    _commit(store, info, index, accessions, first, False, old_path)
    return info


def drop_index(store: Store, info: IndexInfo) -> None:
    with store.transaction():
        store.con.execute("DELETE FROM nn_index_ids WHERE index_id = ?", [info.index_id])
        store.con.execute("DELETE FROM nn_indexes WHERE index_id = ?", [info.index_id])
    info.path.unlink(missing_ok=True)


_CACHE: dict[tuple[str, float], object] = {}


def load_faiss(info: IndexInfo):
    """Read the index file (cached per path and mtime within the process)."""
    if not info.path.exists():
        raise ProtisoError(f"index file {info.path} is missing; rebuild with "
                           "`protiso index build --rebuild`")
    key = (str(info.path), info.path.stat().st_mtime)
    index = _CACHE.get(key)
    if index is None:
        _CACHE.clear()
        index = faiss.read_index(str(info.path))
        _CACHE[key] = index
    return index


def reconstruct(index, ids: np.ndarray) -> np.ndarray:
    """Stored vectors (normalised for cosine) for FAISS ids."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if isinstance(index, faiss.IndexHNSW):
        return faiss.downcast_index(index.storage).reconstruct_batch(ids)
    if isinstance(index, faiss.IndexIVF):
        if not index.direct_map.type:
            index.make_direct_map()
    return index.reconstruct_batch(ids)
