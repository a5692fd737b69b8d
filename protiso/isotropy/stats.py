"""Sufficient statistics of a set of vectors, accumulated in one pass and mergeable.

Every isotropy metric depends only on n, sum x, sum x x^T and sum of unit vectors, so
chunks, shards and groups are reduced independently and merged exactly (float64).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class SufficientStats:
    """n, sum x, sum x x^T and sum x/||x|| of a set of d-dimensional vectors (float64)."""

    n: int
    sum: np.ndarray
    sum_outer: np.ndarray
    sum_unit: np.ndarray

    @classmethod
    def empty(cls, d: int) -> "SufficientStats":
        return cls(0, np.zeros(d), np.zeros((d, d)), np.zeros(d))

    @classmethod
    def from_matrix(cls, X: np.ndarray) -> "SufficientStats":
        stats = cls.empty(np.asarray(X).shape[1])
        stats.update(X)
        return stats

    @property
    def dim(self) -> int:
        return self.sum.shape[0]

    def update(self, X: np.ndarray, counts: np.ndarray | None = None) -> None:
        """Add the rows of X (n x d) in place; with `counts`, row i is added counts[i] times
        (integer multiplicities, as in a bootstrap resample)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.dim:
            raise ValueError(f"expected an (n, {self.dim}) matrix, got shape {X.shape}")
        if X.shape[0] == 0:
            return
        norms = np.sqrt(np.einsum("ij,ij->i", X, X))  # no (n, d) temporary
        norms[norms == 0] = 1.0
        if counts is None:
            w = np.ones(X.shape[0])
            self.n += X.shape[0]
            self.sum_outer += X.T @ X  # numpy uses the symmetric rank-k product here
        else:
            w = np.asarray(counts, dtype=np.float64)
            if w.shape != (X.shape[0],):
                raise ValueError(f"expected {X.shape[0]} counts, got shape {w.shape}")
            self.n += int(np.asarray(counts).sum())
            self.sum_outer += (X * w[:, None]).T @ X
        # sum x and sum x/||x|| in one pass over X
        sums = np.stack([w, w / norms]) @ X
        self.sum += sums[0]
        self.sum_unit += sums[1]

    def merge(self, other: "SufficientStats") -> "SufficientStats":
        """Statistics of the union of the two sets."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge statistics of dimension {self.dim} and {other.dim}")
        return SufficientStats(self.n + other.n, self.sum + other.sum,
                               self.sum_outer + other.sum_outer, self.sum_unit + other.sum_unit)

    __add__ = merge

    def save(self, path: Path) -> None:
        """Write to an .npz file (the caller makes the write atomic)."""
        with open(path, "wb") as fh:
            np.savez(fh, n=np.int64(self.n), sum=self.sum, sum_outer=self.sum_outer,
                     sum_unit=self.sum_unit)

    @classmethod
    def load(cls, path: Path) -> "SufficientStats":
        with np.load(path) as z:
            return cls(int(z["n"]), z["sum"], z["sum_outer"], z["sum_unit"])
