"""Sufficient statistics of a set of vectors, accumulated in one pass and mergeable.

Every isotropy metric depends only on n, sum x, sum x x^T and sum of unit vectors, so
chunks, shards and groups are reduced independently and merged exactly (float64).
"""
from __future__ import annotations

from dataclasses import dataclass
import io
from pathlib import Path
from typing import BinaryIO

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
        save_stats_map({"": self}, path)

    @classmethod
    def load(cls, path: Path) -> "SufficientStats":
        return load_stats_map(path)[""]


# One serialisation for every set of statistics protiso keeps (a layer's per-residue-type
# statistics file, statistics shipped from Ray workers, transforms): an .npz with arrays
# `<name>__n`, `<name>__sum`, `<name>__sum_outer`, `<name>__sum_unit` per named entry.
_FIELDS = ("n", "sum", "sum_outer", "sum_unit")


def save_stats_map(stats: dict[str, SufficientStats], target: str | Path | BinaryIO) -> None:
    """Write named statistics (float64, exact) to a path or binary file object."""
    arrays = {}
    for name, s in stats.items():
        if "__" in name:
            raise ValueError(f"statistics name {name!r} must not contain '__'")
        arrays.update({f"{name}__n": np.int64(s.n), f"{name}__sum": s.sum,
                       f"{name}__sum_outer": s.sum_outer, f"{name}__sum_unit": s.sum_unit})
    if isinstance(target, (str, Path)):
        with open(target, "wb") as fh:
            np.savez(fh, **arrays)
    else:
        np.savez(target, **arrays)


def load_stats_map(source: str | Path | BinaryIO) -> dict[str, SufficientStats]:
    """Read what `save_stats_map` wrote."""
    out = {}
    with np.load(source) as z:
        for name in [k[:-3] for k in z.files if k.endswith("__n")]:
            out[name] = SufficientStats(*(int(z[f"{name}__n"]) if f == "n" else z[f"{name}__{f}"]
                                          for f in _FIELDS))
    return out


def stats_to_bytes(stats: dict[str, SufficientStats]) -> bytes:
    """Named statistics as .npz bytes (for shipping between processes)."""
    buf = io.BytesIO()
    save_stats_map(stats, buf)
    return buf.getvalue()


def stats_from_bytes(data: bytes) -> dict[str, SufficientStats]:
    return load_stats_map(io.BytesIO(data)) if data else {}
