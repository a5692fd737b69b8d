"""Resampling draws for the isotropy engine's bootstrap and jackknife, as pure functions of the
accession (and seed): a protein's Poisson(1) counts and its jackknife block do not depend on
batch order, filters or grouping, so one streaming pass reproduces them anywhere."""
from __future__ import annotations

import hashlib
import math
from typing import Iterable

import numpy as np

_POISSON1_CDF = np.cumsum([math.exp(-1) / math.factorial(k) for k in range(20)])


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a bijective scramble of uint64 values."""
    x = x.copy()
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def poisson_counts(accessions: Iterable[str], seed: int, replicates: int) -> np.ndarray:
    """(n, replicates) Poisson(1) counts, a pure function of (seed, accession, replicate)."""
    key = int(seed).to_bytes(8, "little", signed=True)
    h = np.fromiter((int.from_bytes(hashlib.blake2b(a.encode(), digest_size=8, key=key).digest(), "little")
                     for a in accessions), dtype=np.uint64)
    b = np.arange(1, replicates + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        u = (_mix64(h[:, None] ^ _mix64(b)[None, :]) >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return np.searchsorted(_POISSON1_CDF, u, side="right").astype(np.int64)


def jackknife_blocks(accessions: Iterable[str], blocks: int) -> np.ndarray:
    """Each protein's jackknife block in [0, blocks): a hash of the accession alone, so a
    protein's block does not depend on batch order, filters, grouping or the bootstrap seed."""
    h = np.fromiter((int.from_bytes(hashlib.blake2b(a.encode(), digest_size=8, person=b"jackknife").digest(),
                                    "little") for a in accessions), dtype=np.uint64)
    return (h % np.uint64(blocks)).astype(np.int64)
