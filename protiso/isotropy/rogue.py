"""Rogue dimensions (Timkey & van Schijndel 2021) and per-dimension standardisation, from
SufficientStats alone.

A few "rogue" dimensions with a large common offset can dominate cosine similarity, making
every pair look alike. The cosine of u, v is sum_i u_i v_i over the unit vectors, so the mean
cosine splits into per-dimension contributions. With S = sum_j x_j / ||x_j|| (sum_unit):

- over all n^2 ordered pairs, self-pairs included (pairs drawn with replacement):
  contribution_i = (S_i / n)^2, summing to ||S / n||^2. Exact from the statistics, and
  never negative, so shares lie in [0, 1]. This is what `rogue_dimensions` reports.
- over the n (n - 1) pairs of distinct points (the paper's mean cosine, `avg_cosine`):
  contribution_i = (S_i^2 - Q_i) / (n (n - 1)), Q_i = sum_j u_ji^2, which SufficientStats does
  not hold; pass `sum_unit_sq` (Q) to get these exactly. Without Q: since sum_i Q_i = n (zero
  vectors aside), distinct_i = all_i * n / (n - 1) - Q_i / (n (n - 1)), so the reported
  contributions times n / (n - 1) differ from the distinct-pair ones by at most 1 / (n - 1)
  summed over all dimensions: negligible for the sample sizes measured here.

`variance_share` is each dimension's share of the total variance (diagonal of the covariance),
the other symptom Timkey & van Schijndel report. `standardize` gives the per-dimension mean and
standard deviation for z-scoring, their remedy (postprocessing, not refitting the model).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from protiso.errors import InputError
from protiso.isotropy.stats import SufficientStats

DEFAULT_TOP = 10


@dataclass
class RogueDimensions:
    """Per-dimension contributions to the mean cosine similarity, largest first in `top`."""

    n: int
    pairs: str  # 'all' (ordered pairs incl. self; exact from the stats) or 'distinct'
    mean_cosine: float  # sum of contributions: mean cosine over those pairs
    contribution: np.ndarray  # (d,)
    share: np.ndarray  # contribution / mean_cosine
    variance_share: np.ndarray  # (d,) variance_i / total variance
    top: np.ndarray  # indices of the `top` largest contributions, descending

    def top_rows(self) -> list[dict]:
        """One dict per top dimension: dim, contribution, share, variance_share."""
        return [{"dim": int(i), "contribution": float(self.contribution[i]),
                 "share": float(self.share[i]), "variance_share": float(self.variance_share[i])}
                for i in self.top]

    @property
    def top_share(self) -> float:
        """Share of the mean cosine carried by the top dimensions together."""
        return float(self.share[self.top].sum())


def unit_square_sums(X: np.ndarray) -> np.ndarray:
    """Q_i = sum_j (x_ji / ||x_j||)^2 of the rows of X (zero rows add nothing): accumulate it
    next to SufficientStats to get exact distinct-pair contributions."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise InputError(f"expected an (n, d) matrix, got shape {X.shape}")
    norms = np.sqrt(np.einsum("ij,ij->i", X, X))
    norms[norms == 0] = 1.0
    return ((X / norms[:, None]) ** 2).sum(axis=0)


def rogue_dimensions(stats: SufficientStats, top: int = DEFAULT_TOP,
                     sum_unit_sq: np.ndarray | None = None) -> RogueDimensions:
    """Per-dimension contributions to the mean cosine (see the module docstring for which
    pairs); `sum_unit_sq` switches to exact distinct-pair contributions."""
    n, d = stats.n, stats.dim
    if n < 2:
        raise InputError(f"rogue dimensions need at least 2 vectors, got {n}")
    if top < 1:
        raise InputError(f"top must be at least 1, got {top}")
    S = np.asarray(stats.sum_unit, dtype=np.float64)
    if sum_unit_sq is None:
        contribution, pairs = (S / n) ** 2, "all"
    else:
        Q = np.asarray(sum_unit_sq, dtype=np.float64)
        if Q.shape != (d,):
            raise InputError(f"sum_unit_sq must have shape ({d},), got {Q.shape}")
        contribution, pairs = (S**2 - Q) / (n * (n - 1)), "distinct"
    total = float(contribution.sum())
    share = contribution / total if total != 0 else np.full(d, math.nan)
    var = np.diag(stats.sum_outer) / n - (stats.sum / n) ** 2
    var = np.clip(var, 0.0, None)
    var_share = var / var.sum() if var.sum() > 0 else np.full(d, math.nan)
    order = np.argsort(-contribution, kind="stable")[:min(top, d)]
    return RogueDimensions(int(n), pairs, total, contribution, share, var_share, order)


def standardize(stats: SufficientStats, ddof: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) per dimension for z = (x - mean) / scale; scale is the standard deviation
    (ddof 1 by default, as `covariance`); 1 where a dimension is constant, relative variance
    below 1e-12 of its second moment (such a dimension is only centred)."""
    n = stats.n
    if n <= ddof:
        raise InputError(f"standardisation needs more than {ddof} vectors, got {n}")
    mean = stats.sum / n
    var = (np.diag(stats.sum_outer) - n * mean**2) / (n - ddof)
    second = np.diag(stats.sum_outer) / n
    constant = var <= 1e-12 * second  # zero up to the rounding of sum x^2 - n mean^2
    scale = np.where(constant, 1.0, np.sqrt(np.where(constant, 1.0, var)))
    return mean, scale


def zscore(X: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Apply a `standardize` fit to the rows of X."""
    return (np.asarray(X, dtype=np.float64) - mean) / scale
