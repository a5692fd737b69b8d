"""Isotropy-correcting transforms as derived runs, and a report of what they change.

Every transform is affine, y = (x - mean) @ A, fitted from the parent layer's sufficient
statistics (one streaming pass):

- center: A = I (removes the common offset that makes all cosines large);
- whiten: A = V diag(1 / sqrt(lambda)) (PCA whitening: unit variance in every direction;
          directions of numerically zero variance, e.g. when n <= d, are mapped to 0);
- abtt:   A = I - U U^T with U the top-D principal directions ("all-but-the-top",
          Mu & Viswanath 2018; default D = max(1, round(d / 100)));
- pca:    A = V_k, the top-k principal directions (default k = ceil(effective dimensions),
          i.e. IsoScore * (d - 1) + 1 of the parent);
- standardize: A = diag(1 / s), s the per-dimension standard deviation (ddof 1; 1 for a
          constant dimension): the z-score per dimension, Timkey & van Schijndel's (2021) remedy
          for rogue dimensions (isotropy/rogue.py), which keeps every direction but no longer
          lets a few high-variance dimensions dominate the cosine.

A derived run is an ordinary run (row in `runs`, parts in `embeddings/<run_id>`) holding the
transformed vectors of one layer, so index, isotropy and pair commands use it like any other;
`nn_transforms` and store/transforms/<run_id>.npz keep its parameters, so sequences embedded on
the fly for a derived run are mapped the same way.
"""
from __future__ import annotations

import math
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from protiso.errors import InputError, NotFoundError
from protiso.isotropy.metrics import (avg_cosine, covariance, effective_dims_from_isoscore,
                                      isoscore_from_eigenvalues)
from protiso.isotropy.rogue import standardize
from protiso.isotropy.stats import SufficientStats
from protiso.neighbors.parts import iter_layer, run_parts, sample_layer
from protiso.embedding import embed_sequences
from protiso.models import load
from protiso.runs import embeddings_dataset, get_run
from protiso.runs.writer import vectors_table
from protiso.store import Store, queries

TRANSFORMS = ("center", "whiten", "abtt", "pca", "standardize")
TRANSFORM_DIR = "transforms"
Q = queries("neighbors")
_EPS = 1e-8  # whitening: directions with variance below this share of the largest are dropped

Progress = Callable[[int], None]


@dataclass
class FittedTransform:
    """y = (x - mean) @ A; A None means the identity (centering only)."""

    name: str
    param: int | None
    mean: np.ndarray
    A: np.ndarray | None

    @property
    def out_dim(self) -> int:
        return self.mean.shape[0] if self.A is None else self.A.shape[1]

    def apply(self, X: np.ndarray) -> np.ndarray:
        Y = np.asarray(X, np.float64) - self.mean
        if self.A is not None:
            Y = Y @ self.A
        return Y.astype(np.float32)

    def covariance_of_output(self, cov: np.ndarray) -> np.ndarray:
        """Covariance of y given the covariance of x (exact: the map is affine)."""
        return cov if self.A is None else self.A.T @ cov @ self.A

    def save(self, path: Path) -> None:
        tmp = path.with_name("." + path.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, name=self.name, param=-1 if self.param is None else self.param,
                     mean=self.mean, A=np.zeros((0, 0)) if self.A is None else self.A)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "FittedTransform":
        with np.load(path) as z:
            param = int(z["param"])
            A = z["A"]
            return cls(str(z["name"]), None if param < 0 else param, z["mean"],
                       None if A.size == 0 else A)


def spectrum(stats: SufficientStats) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending, clipped at 0) and eigenvectors of the covariance."""
    lam, V = np.linalg.eigh(covariance(stats))
    order = np.argsort(lam)[::-1]
    return np.clip(lam[order], 0, None), V[:, order]


def default_param(name: str, stats: SufficientStats) -> int | None:
    d = stats.dim
    if name == "abtt":
        return max(1, round(d / 100))
    if name == "pca":
        lam, _ = spectrum(stats)
        return max(1, min(d, math.ceil(effective_dims_from_isoscore(isoscore_from_eigenvalues(lam), d))))
    return None


def fit(stats: SufficientStats, name: str, param: int | None = None) -> FittedTransform:
    """Fit transform `name` (see module doc) to the statistics of the parent vectors."""
    if name not in TRANSFORMS:
        raise InputError(f"unknown transform {name!r}; choose one of {', '.join(TRANSFORMS)}", param="kind")
    if stats.n < 2:
        raise InputError(f"transform {name} needs at least 2 vectors, got {stats.n}")
    d = stats.dim
    if param is None:
        param = default_param(name, stats)
    if name in ("abtt", "pca") and not 1 <= int(param) <= d:
        raise InputError(f"transform {name}: parameter must be between 1 and {d}, got {param}", param="param")
    mean = stats.sum / stats.n
    if name == "center":
        return FittedTransform(name, None, mean, None)
    if name == "standardize":
        mean, scale = standardize(stats)
        return FittedTransform(name, None, mean, np.diag(1.0 / scale))
    lam, V = spectrum(stats)
    if name == "whiten":
        keep = lam > _EPS * lam[0]
        scale = np.zeros_like(lam)
        scale[keep] = 1.0 / np.sqrt(lam[keep])
        return FittedTransform(name, None, mean, V * scale)
    if name == "abtt":
        U = V[:, :int(param)]
        return FittedTransform(name, int(param), mean, np.eye(d) - U @ U.T)
    return FittedTransform(name, int(param), mean, V[:, :int(param)].copy())


# -- run access ------------------------------------------------------------------------------

def layer_stats(store: Store, run_id: str, layer: int, progress: Progress | None = None) -> SufficientStats:
    """Sufficient statistics of all vectors of a run's layer (one pass over its parts)."""
    stats = None
    for _, X in iter_layer(store, run_parts(store, run_id), layer):
        if stats is None:
            stats = SufficientStats.empty(X.shape[1])
        stats.update(X)
        if progress:
            progress(len(X))
    if stats is None:
        raise NotFoundError(f"run {run_id} has no embeddings for layer {layer}")
    return stats


def transform_of(store: Store, run_id: str) -> tuple[str, int, FittedTransform] | None:
    """(parent run, parent layer, transform) of a derived run; None for a model run."""
    row = store.one(Q.transform_of, {"run_id": run_id})
    if row is None:
        return None
    return row[0], int(row[1]), FittedTransform.load(store.root / row[2])


def embed_for_run(store: Store, run_id: str, layer: int, sequences: list[str]) -> np.ndarray:
    """Global embeddings of raw sequences as run `run_id` would store them at `layer`:
    the run's model and settings, then the chain of transforms of a derived run."""
    derived = transform_of(store, run_id)
    if derived is not None:
        parent, parent_layer, tf = derived
        return tf.apply(embed_for_run(store, parent, parent_layer, sequences))
    run = get_run(store, run_id)
    if run is None:
        raise NotFoundError(f"run {run_id} is not in the runs table")
    return embed_sequences(run, sequences, layer, adapter=_adapter_for(run))


_ADAPTERS: dict[str, object] = {}


def _adapter_for(run):
    """The run's model, loaded once and kept (one at a time) so repeated queries do not reload it."""
    adapter = _ADAPTERS.get(run.model)
    if adapter is None:
        adapter = load(run.model, "cpu", offline=True)
        _ADAPTERS.clear()
        _ADAPTERS[run.model] = adapter
    return adapter


def align_pairs(a: list[str], b: list[str], threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Global alignment score and identity of each pair (a[i], b[i]), with the pairs area's
    default scoring (PAM250, gaps 10/0.5, Biopython-exact)."""
    from protiso.pairs.align import align_many

    out = align_many(a, b, threads=threads or os.cpu_count() or 1)
    return out["score"], out["identity"]


# -- derived runs ----------------------------------------------------------------------------

def derived_run_id(run_id: str, layer: int, name: str, param: int | None) -> str:
    return f"{run_id}-l{int(layer)}-{name}{'' if param is None else param}"


def _register_run(store: Store, parent: str, new_id: str, layer: int, tf: FittedTransform, n: int) -> None:
    """The derived run's row in `runs`: the parent's provenance, its own id, dim and layer."""
    if not store.scalar(Q.run_exists, {"run_id": parent}):
        raise NotFoundError(f"run {parent} is not in the runs table")
    label = f"{tf.name}{'' if tf.param is None else tf.param}"
    store.execute(Q.insert_derived_run, {"run_id": new_id, "run_key": f"derived:{new_id}", "dim": tf.out_dim,
                                         "layer": layer, "n": n, "parent": parent,
                                         "transform": f"L{layer}:{label}"})


def create_derived_run(store: Store, run_id: str, layer: int, name: str, param: int | None = None,
                       progress: Progress | None = None, stats: SufficientStats | None = None
                       ) -> tuple[str, FittedTransform]:
    """Fit `name` on run_id's layer and write the transformed vectors as a new run.

    `stats`: the layer's statistics when the caller has them (`layer_stats`), saving a pass.
    Returns (derived run id, transform). All-or-nothing: the catalog rows, the parts and the
    parameter file appear together. Re-running with the same arguments is refused (it exists)."""
    stats = stats if stats is not None else layer_stats(store, run_id, layer, progress)
    tf = fit(stats, name, param)
    new_id = derived_run_id(run_id, layer, name, tf.param)
    if store.scalar(Q.transform_exists, {"run_id": new_id}):
        raise InputError(f"derived run {new_id} exists already")
    directory = store.root / TRANSFORM_DIR
    directory.mkdir(parents=True, exist_ok=True)
    param_path = directory / f"{re.sub(r'[^A-Za-z0-9_.=+-]', '_', new_id)}-{uuid.uuid4().hex[:8]}.npz"
    tf.save(param_path)
    try:
        with store.transaction():
            _register_run(store, run_id, new_id, int(layer), tf, stats.n)
            store.execute(Q.insert_transform, {
                "run_id": new_id, "parent": run_id, "layer": int(layer), "transform": name, "param": tf.param,
                "in_dim": stats.dim, "out_dim": tf.out_dim, "n_fit": stats.n,
                "path": param_path.relative_to(store.root).as_posix()})
            for acc, X in iter_layer(store, run_parts(store, run_id), layer):
                Y = tf.apply(X)
                store.write_part(embeddings_dataset(new_id), vectors_table(acc, layer, Y))
                if progress:
                    progress(len(acc))
    except BaseException:
        param_path.unlink(missing_ok=True)
        raise
    store.refresh_views()
    return new_id, tf


# -- the report ------------------------------------------------------------------------------

def _top_k(S: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest entries per row (ties broken by index)."""
    return np.argsort(-S, axis=1, kind="stable")[:, :k]


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2 or np.std(x) == 0 or np.std(y) == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if len(x) < 2 or np.std(x) == 0 or np.std(y) == 0:
        return math.nan
    return float(spearmanr(x, y).statistic)


def transform_report(store: Store, run_id: str, layer: int, transforms: list[tuple[str, int | None]],
                     n_queries: int = 50, pool: int = 1000, k: int = 10, seed: int = 0,
                     progress: Progress | None = None) -> pa.Table:
    """How each transform changes isotropy and the agreement with sequence similarity.

    Per variant (the untransformed run first): IsoScore and effective dimensions of the whole
    layer (exact, from its statistics), average cosine of the pool sample, and, over `n_queries`
    query proteins against a `pool` of proteins (seeded sample): agreement@k = mean fraction of
    the k nearest by cosine that are among the k best by global alignment score, and the Pearson
    and Spearman correlation of cosine with alignment identity over all query x pool pairs."""
    if n_queries < 1:
        raise InputError(f"report: query count {n_queries} must be at least 1", param="queries")
    if k < 1:
        raise InputError(f"report: k {k} must be at least 1", param="k")
    if pool < k + 1:
        raise InputError(f"report: pool {pool} must hold at least k + 1 = {k + 1} proteins", param="pool")
    stats = layer_stats(store, run_id, layer)
    if stats.n < k + 1:
        raise InputError(f"report: k {k} needs at least {k + 1} proteins, run {run_id} layer {layer} "
                         f"has {stats.n}", param="k")
    cov = covariance(stats)
    accs, X = sample_layer(store, run_parts(store, run_id), layer, pool, seed)
    nq = min(n_queries, len(accs))
    seqs = dict(store.execute(Q.sequences, {"accessions": accs}).fetchall())
    missing = [a for a in accs if a not in seqs]
    if missing:
        raise NotFoundError(f"accession {missing[0]} of run {run_id} has no sequence in the store")
    qi, pj = np.meshgrid(np.arange(nq), np.arange(len(accs)), indexing="ij")
    off = qi != pj
    score, ident = align_pairs([seqs[accs[i]] for i in qi[off]], [seqs[accs[j]] for j in pj[off]])
    if progress:
        progress(len(score))
    A = np.full(qi.shape, -np.inf)
    A[off] = score
    truth = _top_k(A, k)
    ident = np.asarray(ident, np.float64)
    rows = []
    variants = [("none", None, None)] + [(n, p, fit(stats, n, p)) for n, p in transforms]
    for name, param, tf in variants:
        Y = X if tf is None else tf.apply(X)
        lam = np.clip(np.linalg.eigvalsh(cov if tf is None else tf.covariance_of_output(cov)), 0, None)
        iso = isoscore_from_eigenvalues(lam[::-1])
        d = Y.shape[1]
        U = Y / np.maximum(np.linalg.norm(Y, axis=1, keepdims=True), 1e-30)
        C = U[:nq] @ U.T
        C[~off] = -np.inf
        near = _top_k(C, k)
        agree = np.mean([len(set(near[i]) & set(truth[i])) / k for i in range(nq)])
        cos = C[off]
        rows.append({"transform": name, "param": None if tf is None else tf.param, "dim": d,
                     "isoscore": iso, "effective_dims": effective_dims_from_isoscore(iso, d),
                     "avg_cosine": avg_cosine(SufficientStats.from_matrix(Y)),
                     f"agreement_at_{k}": float(agree),
                     "pearson_identity": _pearson(cos, ident),
                     "spearman_identity": _spearman(cos, ident),
                     "n_queries": nq, "pool": len(accs), "k": k, "seed": seed,
                     "run_id": run_id, "layer": int(layer)})
    return pa.Table.from_pylist(rows)
