"""Isotropy metrics from sufficient statistics, checked against the reference IsoScore package,
brute force, hand-worked cases and invariances."""
import itertools
import math

import numpy as np
import pytest
from IsoScore import IsoScore as IsoScoreRef  # the reference package (PyPI IsoScore), test dependency

from protiso.isotropy import metrics as M
from protiso.isotropy.stats import SufficientStats


def _aniso(rng, n, d, shift=2.0):
    return rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * rng.uniform(0.1, 3, d) + shift


def _iso(X):
    return M.compute_metrics(SufficientStats.from_matrix(X)).isoscore


@pytest.mark.parametrize("n,d", [(400, 16), (300, 37), (12, 40), (3, 7), (2, 50)])
def test_isoscore_matches_reference(torch64, n, d):
    X = _aniso(np.random.default_rng(n * d), n, d)
    ref = float(IsoScoreRef.IsoScore(X))  # reference convention: rows are points
    ours = _iso(X)
    assert ours == pytest.approx(ref, rel=1e-9, abs=1e-12)
    # the eigenvalue-free closed form (PR - 1) / (d - 1) agrees too
    closed = M.isoscore_from_covariance(M.covariance(SufficientStats.from_matrix(X)))
    assert closed == pytest.approx(ref, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("n,d,zeta", [(10, 30, 0.3), (200, 12, 0.05), (5, 64, 0.9)])
def test_isoscore_star_matches_reference(torch64, n, d, zeta):
    rng = np.random.default_rng(d)
    X = _aniso(rng, n, d)
    R = _aniso(rng, 500, d)
    ref = float(IsoScoreRef.IsoScore_star(X, np.cov(R.T), zeta))
    ours = M.isoscore_star(SufficientStats.from_matrix(X), zeta, SufficientStats.from_matrix(R))
    assert ours == pytest.approx(ref, rel=1e-9)
    # without a reference: the scaled-identity target tr(C)/d * I
    C = np.cov(X.T)
    ref_id = float(IsoScoreRef.IsoScore_star(X, np.eye(d) * np.trace(C) / d, zeta))
    assert M.isoscore_star(SufficientStats.from_matrix(X), zeta) == pytest.approx(ref_id, rel=1e-9)


def test_star_with_zero_shrinkage_is_isoscore():
    X = _aniso(np.random.default_rng(1), 50, 10)
    s = SufficientStats.from_matrix(X)
    assert M.isoscore_star(s, 0.0) == pytest.approx(_iso(X), rel=1e-12)
    # shrinking a small sample toward an isotropic target raises the score
    assert M.isoscore_star(s, 0.5) > _iso(X)


def test_avg_cosine_brute_force():
    rng = np.random.default_rng(2)
    X = _aniso(rng, 60, 9, shift=0.7)
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    pairs = [U[i] @ U[j] for i, j in itertools.combinations(range(len(U)), 2)]
    assert M.avg_cosine(SufficientStats.from_matrix(X)) == pytest.approx(np.mean(pairs), rel=1e-12)
    assert M.avg_cosine_of(X.tolist()) == pytest.approx(np.mean(pairs), rel=1e-12)


def test_invariances():
    rng = np.random.default_rng(3)
    X = _aniso(rng, 200, 12, shift=0.0)
    Q, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    base = M.compute_metrics(SufficientStats.from_matrix(X))
    for Y in (X @ Q, X * 7.5, X + rng.normal(0, 5, 12)):
        assert _iso(Y) == pytest.approx(base.isoscore, rel=1e-10)
    # rotation and scaling keep cosines, translation changes them
    assert M.avg_cosine(SufficientStats.from_matrix(X @ Q)) == pytest.approx(base.avg_cosine, abs=1e-12)
    assert M.avg_cosine(SufficientStats.from_matrix(X * 7.5)) == pytest.approx(base.avg_cosine, abs=1e-12)
    shifted = M.avg_cosine(SufficientStats.from_matrix(X + 5.0))
    assert abs(shifted - base.avg_cosine) > 0.1


def test_isotropic_gaussian_scores_near_one():
    X = np.random.default_rng(4).standard_normal((20000, 16))
    m = M.compute_metrics(SufficientStats.from_matrix(X))
    assert m.isoscore > 0.98
    assert m.effective_dims > 15.7
    assert abs(m.avg_cosine) < 0.01


@pytest.mark.parametrize("k", [1, 3, 8])
def test_rank_k_data_has_k_effective_dims(k):
    rng = np.random.default_rng(k)
    d = 32
    basis, _ = np.linalg.qr(rng.standard_normal((d, k)))
    X = rng.standard_normal((20000, k)) @ basis.T + rng.normal(0, 1, d)
    m = M.compute_metrics(SufficientStats.from_matrix(X))
    assert m.effective_dims == pytest.approx(k, rel=0.03)
    assert m.effective_rank == pytest.approx(k, rel=0.03)
    assert M.variance_explained(M.eigenvalues(M.covariance(SufficientStats.from_matrix(X))), k) \
        == pytest.approx(1.0, abs=1e-9)


def test_hand_worked_spectrum():
    lam = np.array([1.0, 1.0, 0.0, 0.0])
    # d = 4: s = (sqrt2, sqrt2, 0, 0), delta^2 = ((sqrt2-1)^2*2 + 2) / (2*(4-2)) ...
    assert M.isoscore_from_eigenvalues(lam) == pytest.approx(1 / 3, rel=1e-12)
    assert M.participation_ratio(lam) == pytest.approx(2.0)
    assert M.effective_rank(lam) == pytest.approx(2.0)
    assert M.variance_explained(lam, 1) == pytest.approx(0.5)
    assert M.isoscore_from_eigenvalues(np.ones(5)) == pytest.approx(1.0)
    assert M.isoscore_from_eigenvalues(np.array([3.0, 0, 0, 0, 0])) == pytest.approx(0.0, abs=1e-12)
    # mean share: points (1,0) and (3,0): mean (2,0), E||x||^2 = 5
    assert M.mean_share(SufficientStats.from_matrix(np.array([[1.0, 0], [3.0, 0]]))) == pytest.approx(0.8)


def test_effective_dims_equal_participation_ratio_and_spectrum_matches_svd():
    X = _aniso(np.random.default_rng(5), 150, 20)
    m = M.compute_metrics(SufficientStats.from_matrix(X))
    assert m.effective_dims == pytest.approx(m.participation_ratio, rel=1e-10)
    sv = np.linalg.svd(X - X.mean(0), compute_uv=False) ** 2 / (len(X) - 1)  # independent route
    p = sv / sv.sum()
    assert m.effective_rank == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-9)
    assert m.var_top1 == pytest.approx(sv[0] / sv.sum(), rel=1e-9)
    assert m.var_top10 == pytest.approx(sv[:10].sum() / sv.sum(), rel=1e-9)


def test_quick_metrics_equal_full_metrics():
    rng = np.random.default_rng(8)
    s, ref = SufficientStats.from_matrix(_aniso(rng, 40, 12)), SufficientStats.from_matrix(_aniso(rng, 90, 12))
    full = M.compute_metrics(s, ref, 0.3)
    quick = M.quick_metrics(s, ref, 0.3)
    for name, value in quick.items():
        assert value == pytest.approx(getattr(full, name), rel=1e-10), name


def test_merge_equals_union():
    rng = np.random.default_rng(6)
    A, B = _aniso(rng, 70, 11), _aniso(rng, 30, 11) + 1
    merged = M.compute_metrics(SufficientStats.from_matrix(A) + SufficientStats.from_matrix(B))
    union = M.compute_metrics(SufficientStats.from_matrix(np.vstack([A, B])))
    for key, value in union.to_dict().items():
        if isinstance(value, float):
            assert getattr(merged, key) == pytest.approx(value, rel=1e-10), key
        else:
            assert getattr(merged, key) == value


def test_undefined_cases():
    one = SufficientStats.from_matrix(np.ones((1, 4)))
    m = M.compute_metrics(one)
    assert math.isnan(m.isoscore) and math.isnan(m.avg_cosine) and math.isnan(m.isoscore_star)
    assert math.isnan(M.isoscore_of([[1.0, 2.0]]))
    assert math.isnan(M.avg_cosine_of(None))
    with pytest.raises(ValueError):
        M.isoscore_of([[1.0, 2.0], [1.0]])
