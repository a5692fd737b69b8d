"""IsoScore*'s shrinkage targets (protiso.isotropy.shrinkage) against the reference package's
IsoScore_star with each C0 passed explicitly, a hand-worked 2-d case, and scale behaviour."""
import math

import numpy as np
import pytest
import torch
from IsoScore import IsoScore as IsoScoreRef  # the reference package (PyPI IsoScore), test dependency

from protiso.errors import InputError
from protiso.isotropy import metrics as M
from protiso.isotropy import shrinkage as S
from protiso.isotropy.stats import SufficientStats


def _aniso(rng, n, d, scale=1.0):
    return (rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * rng.uniform(0.1, 3, d) + 2.0) * scale


def _stats(X):
    return SufficientStats.from_matrix(X)


@pytest.mark.parametrize("n,d,zeta,scale", [(10, 30, 0.3, 1.0), (200, 12, 0.05, 1.0), (5, 64, 0.9, 1.0),
                                            (50, 20, 0.2, 0.01), (50, 20, 0.2, 30.0), (3, 7, 1.0, 1.0)])
def test_targets_match_reference(torch64, n, d, zeta, scale):
    rng = np.random.default_rng(n + d)
    X = _aniso(rng, n, d, scale)
    R = _aniso(rng, 400, d, scale)
    C = np.cov(X.T)
    cases = {"identity": np.eye(d), "scaled-identity": np.eye(d) * np.trace(C) / d, "reference": np.cov(R.T)}
    for target, C0 in cases.items():
        ref = float(IsoScoreRef.IsoScore_star(X, torch.tensor(C0), zeta))
        ours = S.isoscore_star(_stats(X), zeta, target, reference=_stats(R))
        assert ours == pytest.approx(ref, rel=1e-9, abs=1e-12), target
    # scaled-identity and reference are what metrics.isoscore_star computes
    assert S.isoscore_star(_stats(X), zeta) == pytest.approx(M.isoscore_star(_stats(X), zeta), rel=1e-12)
    assert S.isoscore_star(_stats(X), zeta, "reference", _stats(R)) == pytest.approx(
        M.isoscore_star(_stats(X), zeta, _stats(R)), rel=1e-12)


def test_hand_worked_two_dimensions():
    """Points (-sqrt2, 0), (sqrt2, 0): C = diag(4, 0). zeta = 1/2:
    identity        -> diag(2.5, 0.5): PR = 3^2 / 6.5,  IsoScore = (PR - 1) / 1 = 2.5 / 6.5
    scaled-identity -> diag(3, 1):     PR = 4^2 / 10 = 1.6, IsoScore = 0.6
    zeta = 0 -> IsoScore of diag(4, 0) = 0 for both."""
    X = np.array([[-math.sqrt(2), 0.0], [math.sqrt(2), 0.0]])
    s = _stats(X)
    assert np.allclose(M.covariance(s), np.diag([4.0, 0.0]))
    assert S.isoscore_star(s, 0.5, "identity") == pytest.approx(2.5 / 6.5, abs=1e-12)
    assert S.isoscore_star(s, 0.5, "scaled-identity") == pytest.approx(0.6, abs=1e-12)
    for target in ("identity", "scaled-identity"):
        assert S.isoscore_star(s, 0.0, target) == pytest.approx(0.0, abs=1e-12)
        assert S.isoscore_star(s, 1.0, target) == pytest.approx(1.0, abs=1e-12)


def test_scale_dependence():
    """scaled-identity is unit-free; identity drifts to 1 for tiny variances and to IsoScore
    (of the unshrunk C) for huge ones."""
    X = _aniso(np.random.default_rng(7), 40, 16)
    iso = M.compute_metrics(_stats(X)).isoscore
    base = S.isoscore_star(_stats(X), 0.2, "scaled-identity")
    for c in (1e-4, 1.0, 1e4):
        assert S.isoscore_star(_stats(X * c), 0.2, "scaled-identity") == pytest.approx(base, rel=1e-9)
    assert S.isoscore_star(_stats(X * 1e-4), 0.2, "identity") == pytest.approx(1.0, abs=1e-6)
    assert S.isoscore_star(_stats(X * 1e4), 0.2, "identity") == pytest.approx(iso, rel=1e-6)
    mid = S.isoscore_star(_stats(X), 0.2, "identity")
    assert iso < mid < 1.0


def test_resolve_target_and_errors():
    assert S.resolve_target("auto", grouped=True) == "reference"
    assert S.resolve_target("auto", grouped=False) == "scaled-identity"
    assert S.resolve_target("identity", grouped=True) == "identity"
    with pytest.raises(InputError, match="needs --group-by"):
        S.resolve_target("reference", grouped=False)
    with pytest.raises(InputError, match="choose one of auto, scaled-identity, identity, reference"):
        S.resolve_target("eye", grouped=False)
    s = _stats(_aniso(np.random.default_rng(1), 10, 4))
    with pytest.raises(InputError, match="needs a reference population"):
        S.isoscore_star(s, 0.2, "reference")
    with pytest.raises(InputError, match=r"zeta must be in \[0, 1\], got 1.5"):
        S.isoscore_star(s, 1.5, "identity")
    assert math.isnan(S.isoscore_star(_stats(np.ones((1, 4))), 0.2, "identity"))
