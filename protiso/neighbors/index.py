"""FAISS indexes over one embedding run and layer, kept in the store.

An index file lives under store/indexes/<run_id>/; the catalog table `nn_indexes` records its
build parameters and the embedding parts it covers, `nn_index_ids` maps FAISS ids (positions
0..n-1) to accessions. When the run grows (new parts) the index is extended with the new
vectors; when parts it covered are gone it is stale and must be rebuilt. Files are written
under a fresh name and swapped in the catalog inside one transaction, so a crash never leaves
the catalog pointing at a half-written index. Kinds and their parameters: `kinds.py`.

On a store whose parts are at a URL (protiso.store.fs) the index file goes there too, under
indexes/<run_id>/ (written whole to a hidden name, then moved), listed by its URL with its size and
SHA-256; FAISS reads local files, so each process uses a copy in store/cache/indexes/<sha256>.faiss,
fetched once and checked against the recorded checksum.

Metric `cosine` L2-normalises the vectors (score = cosine similarity); `l2` uses squared
Euclidean distance (score = distance, smaller is nearer).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import faiss
import numpy as np
import pyarrow as pa

from protiso._version import __version__
from protiso.errors import DamagedStoreError, InputError, NotFoundError, ProtisoError
from protiso.neighbors.kinds import (DEFAULT_KIND, KINDS, METRICS, check_kind_metric, new_index,
                                     reconstruct, resolve_params, training_size)
from protiso.neighbors.parts import (count_layer, iter_layer, layer_dim, read_part_layer, relative,
                                     run_parts, sample_layer)
from protiso.store import Store, queries
from protiso.store.fs import DataFS, is_url

Q = queries("neighbors")
INDEX_DIR = "indexes"
CACHE_DIR = "cache/indexes"      # local copies of index files kept at a data URL, by SHA-256
_SAFE_RE = re.compile(r"^[A-Za-z0-9_.=~+-]+$")

Progress = Callable[[int], None]
_GRAPH_BATCH = 65_536  # vectors per add to a graph (FAISS parallelises within a batch)

__all__ = ["DEFAULT_KIND", "KINDS", "METRICS", "IndexInfo", "IndexState", "build_index", "count_layer",
           "drop_index", "extend_index", "get_index_info", "index_state", "iter_layer", "list_indexes",
           "load_faiss", "prepare", "read_part_layer", "reconstruct", "run_parts"]


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
    path: Path | str                   # a file under the store, or a URL at its data location
    source_parts: list[str] = field(default_factory=list)
    build_seconds: float | None = None
    created_at: object = None
    size_bytes: int | None = None      # recorded for files at a data URL
    sha256: str | None = None
    remote: "_Remote | None" = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class _Remote:
    """Where an index file at a data URL is read from, and its local copies kept."""

    data: DataFS
    cache: Path


@dataclass
class IndexState:
    """How an index relates to its run now: `fresh`, `behind` (new parts to add) or
    `stale` (parts it was built from are gone; rebuild)."""

    status: str
    new_parts: list[str]
    missing_parts: list[str]


def index_id_for(run_id: str, layer: int, kind: str, metric: str) -> str:
    return f"{run_id}/L{int(layer)}/{kind}-{metric}"


def prepare(X: np.ndarray, metric: str) -> np.ndarray:
    """Vectors as the index stores them: float32, C-contiguous, unit length for cosine."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    if metric == "cosine":
        X = X.copy()
        faiss.normalize_L2(X)
    return X


# -- the catalog -------------------------------------------------------------------------

def get_index_info(store: Store, run_id: str, layer: int, kind: str | None = None,
                   metric: str | None = None) -> IndexInfo | None:
    """The index of (run, layer), optionally of a given kind/metric; the newest if several."""
    row = store.one(Q.index_info, {"run_id": run_id, "layer": int(layer), "kind": kind, "metric": metric})
    if row is None:
        return None
    remote = is_url(row[8])
    return IndexInfo(row[0], row[1], int(row[2]), row[3], row[4], int(row[5]), int(row[6]),
                     json.loads(row[7]), row[8] if remote else store.root / row[8], list(row[9]), row[10],
                     row[11], row[12], row[13], _remote(store) if remote else None)


def list_indexes(store: Store, run_id: str | None = None) -> pa.Table:
    """The indexes (optionally of one run) with their freshness, from view nn_index_summary."""
    return store.sql(Q.index_list, {"run_id": run_id})


def index_state(store: Store, info: IndexInfo) -> IndexState:
    current = run_parts(store, info.run_id)
    have = set(info.source_parts)
    new = [p for p in current if p not in have]
    missing = sorted(have - set(current))
    status = "stale" if missing or not _exists(info) else ("behind" if new else "fresh")
    return IndexState(status, new, missing)


def _record(store: Store, info: IndexInfo, accessions: list[str], first_id: int,
            replace_ids: bool) -> None:
    """Upsert the catalog row and append/replace the id map (caller holds a transaction)."""
    store.execute(Q.upsert_index, {
        "index_id": info.index_id, "run_id": info.run_id, "layer": info.layer, "kind": info.kind,
        "metric": info.metric, "dim": info.dim, "n_vectors": info.n_vectors,
        "params": json.dumps(info.params),
        "path": info.path if info.remote else relative(store, info.path),
        "size_bytes": info.size_bytes, "sha256": info.sha256,
        "source_parts": info.source_parts, "build_seconds": info.build_seconds,
        "faiss_version": faiss.__version__, "software_version": __version__,
        "created_at": info.created_at})
    if replace_ids:
        store.execute(Q.delete_ids, {"index_id": info.index_id})
    if accessions:
        ids = pa.table({"index_id": pa.array([info.index_id] * len(accessions)),
                        "id": pa.array(np.arange(first_id, first_id + len(accessions), dtype=np.int64)),
                        "accession": pa.array(accessions, pa.string())})
        store.con.register("_protiso_nn_ids", ids)
        try:
            store.execute(Q.append_ids)
        finally:
            store.con.unregister("_protiso_nn_ids")


def drop_index(store: Store, info: IndexInfo) -> None:
    with store.transaction():
        store.execute(Q.drop_index, {"index_id": info.index_id})
    _remove(info.remote, info.path, info.sha256)


# -- files -------------------------------------------------------------------------------

def _remote(store: Store) -> _Remote | None:
    """The data location and local cache of a store whose parts are at a URL, else None."""
    return _Remote(store.data, store.root / CACHE_DIR) if store.data is not None else None


def _exists(info: IndexInfo) -> bool:
    if info.remote is not None:
        return info.remote.data.size(str(info.path)) is not None
    return Path(info.path).exists()


def _remove(remote: _Remote | None, path: Path | str, sha256: str | None) -> None:
    """Remove an index file (and, at a data URL, its local copy)."""
    if remote is None:
        Path(path).unlink(missing_ok=True)
        return
    remote.data.delete(str(path))
    if sha256:
        (remote.cache / f"{sha256}.faiss").unlink(missing_ok=True)


def _index_file(store: Store, run_id: str, layer: int, kind: str, metric: str) -> Path | str:
    """A fresh name for an index file: under store/indexes/<run_id>/, or at the data URL."""
    if not _SAFE_RE.match(run_id):
        raise InputError(f"run id {run_id!r} cannot name an index directory")
    rel = f"{INDEX_DIR}/{run_id}/L{int(layer)}-{kind}-{metric}-{uuid.uuid4().hex[:12]}.faiss"
    if store.data is not None:
        return store.data.uri(rel)
    (store.root / INDEX_DIR / run_id).mkdir(parents=True, exist_ok=True)
    return store.root / rel


def _write_index(index, path: Path) -> None:
    """Atomic write: temporary name, fsync, rename."""
    tmp = path.with_name("." + path.name + ".tmp")
    faiss.write_index(index, str(tmp))
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _upload_index(index, remote: _Remote, uri: str) -> tuple[int, str]:
    """Write the index to the data URL atomically (DataFS.put) by way of a local file, which is
    kept as the local copy of the new file; returns its (size, SHA-256)."""
    remote.cache.mkdir(parents=True, exist_ok=True)
    tmp = remote.cache / f".{uuid.uuid4().hex}.faiss.tmp"
    try:
        faiss.write_index(index, str(tmp))
        size, sha = remote.data.put(tmp, uri)
        os.replace(tmp, remote.cache / f"{sha}.faiss")
    finally:
        tmp.unlink(missing_ok=True)
    return size, sha


def _local_copy(info: IndexInfo, rebuild: str, fresh: bool = False) -> Path:
    """The local copy of an index file at a data URL, fetched (and checked against the recorded
    size and SHA-256) unless present; `fresh` fetches it again."""
    remote = info.remote
    if not info.sha256:
        raise DamagedStoreError(f"index file {info.path} has no recorded checksum; {rebuild}")
    copy = remote.cache / f"{info.sha256}.faiss"
    if not fresh and copy.is_file() and (info.size_bytes is None or copy.stat().st_size == info.size_bytes):
        return copy
    if remote.data.size(str(info.path)) is None:
        raise DamagedStoreError(f"index file {info.path} is missing; {rebuild}")
    remote.cache.mkdir(parents=True, exist_ok=True)
    tmp = remote.cache / f".{uuid.uuid4().hex}.faiss.tmp"
    try:
        _, sha = remote.data.get(str(info.path), tmp)
        if sha != info.sha256:
            raise DamagedStoreError(f"index file {info.path} has changed (checksum differs from the "
                                    f"recorded one); {rebuild}")
        os.replace(tmp, copy)
    finally:
        tmp.unlink(missing_ok=True)
    return copy


_CACHE: dict[tuple[str, object], object] = {}


def load_faiss(info: IndexInfo):
    """Read the index file (cached within the process per path and mtime, or, at a data URL,
    per URL and checksum, read from its local copy)."""
    rebuild = f"rebuild it with `protiso index build --model {info.run_id} --layer {info.layer} " \
              f"--kind {info.kind} --metric {info.metric} --rebuild`"
    if info.remote is not None:
        key = (str(info.path), info.sha256)
    else:
        if not info.path.exists():
            raise DamagedStoreError(f"index file {info.path} is missing; {rebuild}")
        key = (str(info.path), info.path.stat().st_mtime)
    index = _CACHE.get(key)
    if index is None:
        _CACHE.clear()
        try:
            index = faiss.read_index(str(info.path if info.remote is None else _local_copy(info, rebuild)))
        except RuntimeError:  # FAISS reports a truncated or corrupt file as a read error
            if info.remote is None:
                raise DamagedStoreError(f"index file {info.path} is truncated or damaged; {rebuild}") from None
            try:              # the local copy went bad after it was checked: fetch it again
                index = faiss.read_index(str(_local_copy(info, rebuild, fresh=True)))
            except RuntimeError:
                raise DamagedStoreError(f"index file {info.path} is truncated or damaged; {rebuild}") from None
        if index.ntotal != info.n_vectors or index.d != info.dim:
            raise DamagedStoreError(f"index file {info.path} holds {index.ntotal:,} vectors of dimension "
                                    f"{index.d}, the catalog {info.n_vectors:,} of {info.dim}; {rebuild}")
        _CACHE[key] = index
    return index


def _commit(store: Store, info: IndexInfo, index, accessions: list[str], first_id: int,
            replace_ids: bool, old: IndexInfo | None) -> None:
    """Write the index under a new name, swap it in the catalog, then drop the old file."""
    old_file = (old.remote, old.path, old.sha256) if old is not None else None
    path = _index_file(store, info.run_id, info.layer, info.kind, info.metric)
    info.remote = _remote(store)
    if info.remote is None:
        _write_index(index, path)
        info.size_bytes = info.sha256 = None
    else:
        info.size_bytes, info.sha256 = _upload_index(index, info.remote, path)
    info.path = path
    try:
        with store.transaction():
            _record(store, info, accessions, first_id, replace_ids)
    except BaseException:
        _remove(info.remote, path, info.sha256)
        raise
    if old_file is not None and old_file[1] != path:
        _remove(*old_file[:2], old_file[2] if old_file[2] != info.sha256 else None)


# -- building ----------------------------------------------------------------------------

def _add_vectors(index, store: Store, parts: list[str], layer: int, metric: str,
                 skip: set[str], progress: Progress | None) -> list[str]:
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
    return added


def _add_refined(index, store: Store, parts: list[str], layer: int, metric: str,
                 progress: Progress | None) -> list[str]:
    """Fill a new pca-hnsw index in one pass over the parts: the full vectors go into its exact
    store first, then the PCA is fitted on a uniform sample of them and the graph is built from
    the store (IndexRefine.add would need the PCA fitted, hence a second pass, first)."""
    refine = faiss.downcast_index(index.refine_index)
    accessions = _add_vectors(refine, store, parts, layer, metric, set(), progress)
    n = refine.ntotal
    pick = np.sort(np.random.default_rng(0).permutation(n)[:training_size("pca-hnsw", {})])
    base = index.base_index
    base.train(refine.reconstruct_batch(pick))
    for start in range(0, n, _GRAPH_BATCH):
        m = min(_GRAPH_BATCH, n - start)
        base.add(refine.reconstruct_n(start, m))
        if progress:
            progress(m)
    index.ntotal = n
    index.is_trained = True
    return accessions


def build_index(store: Store, run_id: str, layer: int, kind: str = DEFAULT_KIND, metric: str = "cosine",
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
    if existing and not rebuild and (
            params is None or resolve_params(kind, existing.n_vectors, existing.dim, params) == existing.params):
        state = index_state(store, existing)
        if state.status == "fresh":
            return existing, "fresh"
        if state.status == "behind":
            return extend_index(store, existing, state.new_parts, progress, total), "extended"
    t0 = time.perf_counter()
    n_total = count_layer(store, parts, layer)
    dim = layer_dim(store, parts, layer) if n_total else None
    if not dim:
        raise NotFoundError(f"run {run_id} has no embeddings for layer {layer}")
    resolved = resolve_params(kind, n_total, dim, params)
    index = new_index(kind, metric, dim, resolved)
    if kind == "pca-hnsw":
        if total:
            total(2 * n_total)
        accessions = _add_refined(index, store, parts, layer, metric, progress)
    else:
        n_train = training_size(kind, resolved)
        if n_train:
            _, sample = sample_layer(store, parts, layer, n_train)
            index.train(prepare(sample, metric))
            del sample
        if total:
            total(n_total)
        accessions = _add_vectors(index, store, parts, layer, metric, set(), progress)
    info = IndexInfo(index_id_for(run_id, layer, kind, metric), run_id, int(layer), kind, metric,
                     dim, len(accessions), resolved, Path(), parts, time.perf_counter() - t0, None)
    _commit(store, info, index, accessions, 0, True, existing)
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
    _CACHE.clear()  # the object is changed below; the file it was read from is replaced
    have = set(store.execute(Q.indexed_accessions, {"index_id": info.index_id})
               .fetchnumpy()["accession"].tolist())
    if total:
        total(count_layer(store, new_parts, info.layer))
    accessions = _add_vectors(index, store, new_parts, info.layer, info.metric, have, progress)
    first = info.n_vectors
    old = dataclasses.replace(info)       # the file it replaces
    info.n_vectors = first + len(accessions)
    info.source_parts = info.source_parts + list(new_parts)
    info.build_seconds = (info.build_seconds or 0.0) + time.perf_counter() - t0
    _commit(store, info, index, accessions, first, False, old)
    return info
