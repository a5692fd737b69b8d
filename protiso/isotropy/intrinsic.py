"""Intrinsic dimension of a point cloud from exact nearest-neighbour distances.

IsoScore counts the directions the variance spreads over (a linear notion); the intrinsic
dimension counts the degrees of freedom of the manifold the points lie on, which can be far
smaller than the number of principal components a curved manifold needs.

- TwoNN (Facco, d'Errico, Rodriguez & Laio 2017, Sci Rep 7:12140): mu = r2 / r1, the ratio of
  each point's second to first neighbour distance, is Pareto distributed, F(mu) = 1 - mu^-d.
  'regression' (the paper's estimator): sort the N ratios, discard the largest fraction
  (default 10%, the paper's choice, against non-uniform density at large scales), and fit
  -ln(1 - i/N) = d ln mu_(i), i = 1..n_fit, by least squares through the origin.
  'mle': the maximum-likelihood d of the same right-censored sample,
  (n_fit - 1) / (sum_i ln mu_(i) + (N - n_fit) ln mu_(n_fit)); with no discard,
  (N - 1) / sum ln mu.
- Levina & Bickel (2005) MLE with k neighbours (default 20): per point,
  1 / m(x) = 1/(k-1) sum_{j<k} ln(T_k(x) / T_j(x)); the global estimate follows MacKay &
  Ghahramani (2005) and averages those inverses, d = 1 / mean(1 / m(x)) (the MLE of the pooled
  likelihood, less biased than the mean of m(x), which `average='estimate'` gives).

Neighbours come from FAISS IndexFlatL2 (exact) over the centred points in float32, queried in
batches so memory stays bounded by batch x k x d; the distances to the neighbours found are
then recomputed in float64. Identical rows would give zero distances (and infinite ratios):
they are removed before the search, one copy kept, and counted in `n_duplicates`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import faiss
import numpy as np

from protiso.errors import InputError

DEFAULT_DISCARD = 0.1  # TwoNN: fraction of the largest mu left out of the fit (Facco et al.)
DEFAULT_K = 20  # Levina-Bickel: neighbours per point
BATCH_ELEMENTS = 1 << 23  # float64 elements per batch of neighbour differences (64 MiB)


@dataclass
class IntrinsicDimension:
    """An intrinsic dimension estimate and what it rests on."""

    dim: float
    method: str  # 'twonn-regression', 'twonn-mle', 'levina-bickel'
    n_used: int  # distinct points whose neighbourhoods enter the estimate
    n_duplicates: int  # rows identical to another row, removed first
    n_fit: int  # TwoNN: ratios in the fit (after the discard); Levina-Bickel: n_used
    k: int  # neighbours per point (2 for TwoNN)
    discard_fraction: float  # TwoNN's; 0 for Levina-Bickel

    def to_dict(self) -> dict:
        return asdict(self)


def unique_rows(X: np.ndarray) -> tuple[np.ndarray, int]:
    """(the distinct rows of X as float32, number of rows removed as duplicates)."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[0] == 0:
        raise InputError(f"expected an (n, d) matrix of points, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise InputError("points contain NaN or infinite values; drop or fix those rows first")
    U = np.unique(X, axis=0)
    return np.ascontiguousarray(U), X.shape[0] - U.shape[0]


def knn_distances(X: np.ndarray, k: int, batch_size: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Distances (float64, ascending) and row indices of each row's k nearest other rows.

    Exact search (FAISS IndexFlatL2 on the centred float32 rows, in query batches), self
    excluded by index; distances recomputed in float64 for the neighbours found."""
    X = np.asarray(X, dtype=np.float32)
    n, d = X.shape
    if not 1 <= k < n:
        raise InputError(f"need more than k = {k} distinct points, got {n}")
    Xc = np.ascontiguousarray(X - X.mean(axis=0, dtype=np.float64).astype(np.float32))
    index = faiss.IndexFlatL2(d)
    index.add(Xc)
    batch = batch_size or max(1, BATCH_ELEMENTS // ((k + 1) * d))
    dist = np.empty((n, k))
    idx = np.empty((n, k), dtype=np.int64)
    for s in range(0, n, batch):
        q = np.arange(s, min(s + batch, n))
        _, I = index.search(Xc[q], k + 1)
        is_self = I == q[:, None]
        drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), k)  # self, else the last
        keep = np.ones(I.shape, bool)
        keep[np.arange(len(q)), drop] = False
        I = I[keep].reshape(len(q), k)
        diff = Xc[I].astype(np.float64) - Xc[q].astype(np.float64)[:, None, :]
        D = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
        order = np.argsort(D, axis=1, kind="stable")
        dist[q] = np.take_along_axis(D, order, axis=1)
        idx[q] = np.take_along_axis(I, order, axis=1)
    return dist, idx


def twonn(X: np.ndarray, discard_fraction: float = DEFAULT_DISCARD,
          method: str = "regression") -> IntrinsicDimension:
    """TwoNN intrinsic dimension of the rows of X (see the module docstring)."""
    if method not in ("regression", "mle"):
        raise InputError(f"unknown TwoNN method {method!r}; choose 'regression' or 'mle'")
    if not 0.0 <= discard_fraction < 1.0:
        raise InputError(f"discard_fraction must be in [0, 1), got {discard_fraction}")
    U, n_dup = unique_rows(X)
    dist, _ = knn_distances(U, 2)
    return twonn_from_distances(dist, n_dup, discard_fraction, method)


def twonn_from_distances(dist: np.ndarray, n_duplicates: int = 0,
                         discard_fraction: float = DEFAULT_DISCARD,
                         method: str = "regression") -> IntrinsicDimension:
    """TwoNN from each distinct point's ascending neighbour distances (columns 0 and 1 used)."""
    if method not in ("regression", "mle"):
        raise InputError(f"unknown TwoNN method {method!r}; choose 'regression' or 'mle'")
    ok = dist[:, 0] > 0  # only float underflow could leave a zero after deduplication
    mu = np.sort(dist[ok, 1] / dist[ok, 0])
    N = len(mu)
    n_fit = int(N * (1.0 - discard_fraction))
    if method == "regression":
        n_fit = min(n_fit, N - 1)  # F = N/N would put -ln(0) in the fit
    if n_fit < 2:
        raise InputError(f"TwoNN needs at least 3 distinct points after discarding "
                         f"{discard_fraction:.0%}; got {N}")
    x = np.log(mu[:n_fit])
    if method == "regression":
        y = -np.log1p(-np.arange(1, n_fit + 1) / N)
        dim = float(x @ y / (x @ x))
    else:
        dim = float((n_fit - 1) / (x.sum() + (N - n_fit) * x[-1]))
    return IntrinsicDimension(dim, f"twonn-{method}", N, n_duplicates + int((~ok).sum()), n_fit, 2,
                              float(discard_fraction))


def levina_bickel(X: np.ndarray, k: int = DEFAULT_K, average: str = "inverse"
                  ) -> IntrinsicDimension:
    """Levina-Bickel MLE intrinsic dimension with k neighbours; `average='inverse'` is the
    MacKay-Ghahramani global estimate (default), 'estimate' the mean of per-point estimates."""
    if average not in ("inverse", "estimate"):
        raise InputError(f"unknown average {average!r}; choose 'inverse' or 'estimate'")
    if k < 2:
        raise InputError(f"Levina-Bickel needs k >= 2 neighbours, got {k}")
    U, n_dup = unique_rows(X)
    dist, _ = knn_distances(U, k)
    return levina_bickel_from_distances(dist, n_dup, average)


def levina_bickel_from_distances(dist: np.ndarray, n_duplicates: int = 0,
                                 average: str = "inverse") -> IntrinsicDimension:
    """Levina-Bickel from each distinct point's k ascending neighbour distances (k = columns)."""
    if average not in ("inverse", "estimate"):
        raise InputError(f"unknown average {average!r}; choose 'inverse' or 'estimate'")
    k = dist.shape[1]
    if k < 2:
        raise InputError(f"Levina-Bickel needs k >= 2 neighbours, got {k}")
    ok = dist[:, 0] > 0
    T = dist[ok]
    inv = np.log(T[:, -1:] / T[:, :-1]).sum(axis=1) / (k - 1)  # 1 / m_k(x)
    if average == "inverse":
        dim = 1.0 / float(inv.mean()) if inv.mean() > 0 else math.inf
    else:
        with np.errstate(divide="ignore"):
            dim = float(np.mean(1.0 / inv))
    n = int(ok.sum())
    return IntrinsicDimension(dim, "levina-bickel", n, n_duplicates + int((~ok).sum()), n, k, 0.0)


@dataclass
class IntrinsicSummary:
    """Both estimates of one point cloud from one neighbour search (what `protiso isotropy
    --intrinsic` stores): NaN where too few distinct points."""

    twonn: float
    mle: float
    k: int  # Levina-Bickel neighbours used (DEFAULT_K, fewer for small sets)
    n_duplicates: int  # rows identical to another row, removed first


def estimate(X: np.ndarray, k: int = DEFAULT_K, discard_fraction: float = DEFAULT_DISCARD
             ) -> IntrinsicSummary:
    """TwoNN (regression) and Levina-Bickel (k neighbours, fewer when the set has at most k
    distinct points) from one exact k-neighbour search; NaN for sets of fewer than 3 distinct
    points (TwoNN needs 3, Levina-Bickel 2 neighbours per point)."""
    U, n_dup = unique_rows(X)
    k = min(k, U.shape[0] - 1)
    if k < 2:
        return IntrinsicSummary(math.nan, math.nan, max(k, 0), n_dup)
    dist, _ = knn_distances(U, k)
    try:
        two = twonn_from_distances(dist[:, :2], n_dup, discard_fraction).dim
    except InputError:   # too few ratios left after the discard
        two = math.nan
    return IntrinsicSummary(two, levina_bickel_from_distances(dist, n_dup).dim, k, n_dup)
