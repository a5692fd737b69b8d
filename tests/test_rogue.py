"""Rogue dimensions against brute force over all pairs, and standardisation."""
from __future__ import annotations

import numpy as np
import pytest

from protiso.errors import InputError
from protiso.isotropy.metrics import avg_cosine
from protiso.isotropy.rogue import rogue_dimensions, standardize, unit_square_sums, zscore
from protiso.isotropy.stats import SufficientStats

PLANTED = [3, 11, 27]


def anisotropic(n=400, d=32, seed=0):
    """Random anisotropic data with three planted rogue dimensions (large common offsets)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 2.0, size=d)
    X[:, PLANTED] += np.array([12.0, -9.0, 6.0])
    X[0] = 0.0  # a zero vector: no direction, counts in n
    return X


def brute_force(X):
    """Per-dimension mean of u_i v_i over all ordered pairs, and over distinct pairs."""
    norms = np.linalg.norm(X, axis=1)
    U = X / np.where(norms == 0, 1.0, norms)[:, None]
    n, d = U.shape
    all_pairs, distinct = np.empty(d), np.empty(d)
    for i in range(d):
        P = np.outer(U[:, i], U[:, i])
        all_pairs[i] = P.mean()
        distinct[i] = (P.sum() - np.trace(P)) / (n * (n - 1))
    return all_pairs, distinct


def test_against_brute_force():
    X = anisotropic()
    n = len(X)
    stats = SufficientStats.from_matrix(X[:150]) + SufficientStats.from_matrix(X[150:])
    all_pairs, distinct = brute_force(X)
    r = rogue_dimensions(stats, top=3)
    assert r.pairs == "all" and r.n == n
    assert r.contribution == pytest.approx(all_pairs, rel=1e-10, abs=1e-15)
    assert sorted(r.top.tolist()) == PLANTED and r.top[0] == 3
    assert r.top_share > 0.9 and r.share.sum() == pytest.approx(1.0)
    # the documented bound between 'all' and distinct-pair contributions
    assert np.abs(r.contribution * n / (n - 1) - distinct).sum() <= 1 / (n - 1) + 1e-12
    exact = rogue_dimensions(stats, top=3, sum_unit_sq=unit_square_sums(X))
    assert exact.pairs == "distinct"
    assert exact.contribution == pytest.approx(distinct, rel=1e-9, abs=1e-15)
    assert exact.mean_cosine == pytest.approx(distinct.sum(), rel=1e-12)
    # without the zero vector the distinct-pair total is metrics.avg_cosine (which subtracts
    # n self-cosines of 1, so it is 1 / (n (n - 1)) low per zero vector)
    nz = SufficientStats.from_matrix(X[1:])
    total = rogue_dimensions(nz, sum_unit_sq=unit_square_sums(X[1:])).mean_cosine
    assert total == pytest.approx(avg_cosine(nz), rel=1e-12)
    var = X.var(axis=0)
    assert r.variance_share == pytest.approx(var / var.sum(), rel=1e-9)
    rows = r.top_rows()
    assert [row["dim"] for row in rows] == r.top.tolist() and rows[0]["share"] == r.share[3]


def test_isotropic_data_has_no_rogue_dimension():
    X = np.random.default_rng(1).normal(size=(2000, 16))
    r = rogue_dimensions(SufficientStats.from_matrix(X), top=1)
    assert r.top_share < 0.5 and abs(r.mean_cosine) < 0.01


def test_standardize():
    X = anisotropic()
    X[:, 5] = 7.25  # a constant dimension: centred, not scaled
    mean, scale = standardize(SufficientStats.from_matrix(X))
    ref = X.std(axis=0, ddof=1)
    assert mean == pytest.approx(X.mean(axis=0), rel=1e-12)
    assert np.delete(scale, 5) == pytest.approx(np.delete(ref, 5), rel=1e-9) and scale[5] == 1.0
    Z = zscore(X, mean, scale)
    z = SufficientStats.from_matrix(Z)
    assert np.abs(z.sum / z.n).max() < 1e-12
    assert np.delete(Z.std(axis=0, ddof=1), 5) == pytest.approx(1.0, rel=1e-9)
    mean0, scale0 = standardize(SufficientStats.from_matrix(X), ddof=0)
    assert np.delete(scale0, 5) == pytest.approx(np.delete(X.std(axis=0), 5), rel=1e-9)


def test_bad_input():
    one = SufficientStats.from_matrix(np.ones((1, 4)))
    with pytest.raises(InputError, match="at least 2 vectors"):
        rogue_dimensions(one)
    with pytest.raises(InputError, match="more than 1 vectors"):
        standardize(one)
    with pytest.raises(InputError, match=r"shape \(4,\)"):
        rogue_dimensions(SufficientStats.from_matrix(np.eye(4)), sum_unit_sq=np.ones(3))
