"""IsoScore*'s shrinkage target, named precisely, with the identity target offered too.

IsoScore* (Rudman & Eickhoff 2023) is IsoScore of the shrunk covariance (1 - zeta) C + zeta C0.
Which C0 changes the number, so a result names its target:

- `scaled-identity`: C0 = tr(C)/d * I, what protiso used so far without a reference population
  (`metrics.shrunk_covariance`'s default). It keeps the total variance, so the score does not
  depend on the units of the vectors (x -> c x leaves it unchanged).
- `identity`: C0 = I, what the reference package's `IsoScore_star` documentation suggests
  ("if you do not have access to a larger distribution of points, use the identity matrix").
  It is not scale-free: when the per-dimension variance is far below 1 the identity dominates
  and the score tends to 1; far above 1 it tends to IsoScore.
- `reference`: C0 = the covariance of a larger population (with --group-by, the pooled groups),
  the use the paper intends.

`resolve_target('auto', grouped)` is protiso's default: reference when grouped, else
scaled-identity. Scores use the closed form IsoScore = (PR - 1)/(d - 1) of the shrunk matrix
(PR = tr^2 / ||.||_F^2), equal to the reference's eigenvalue steps (tests/test_isotropy_shrinkage.py).
This module imports nothing from metrics.py, so metrics.py may use `shrunk_covariance`.
"""
from __future__ import annotations

import math

import numpy as np

from protiso.errors import InputError
from protiso.isotropy.stats import SufficientStats

STAR_TARGETS = ("scaled-identity", "identity", "reference")
TARGET_CHOICES = ("auto",) + STAR_TARGETS   # what a --star-target option accepts


def resolve_target(option: str, grouped: bool) -> str:
    """The target a --star-target value means: 'auto' is reference when grouped, else
    scaled-identity; 'reference' needs a group-by (the pooled groups are the population)."""
    if option not in TARGET_CHOICES:
        raise InputError(f"IsoScore* target {option!r}: choose one of {', '.join(TARGET_CHOICES)}")
    if option == "auto":
        return "reference" if grouped else "scaled-identity"
    if option == "reference" and not grouped:
        raise InputError("IsoScore* target 'reference' shrinks toward the pooled covariance of the "
                         "groups: it needs --group-by (or use scaled-identity or identity)")
    return option


def target_covariance(cov: np.ndarray, target: str, reference_cov: np.ndarray | None = None) -> np.ndarray:
    """C0 for a d x d covariance `cov`: tr(C)/d * I, I, or the reference population's."""
    d = cov.shape[0]
    if target == "scaled-identity":
        return np.eye(d) * (np.trace(cov) / d)
    if target == "identity":
        return np.eye(d)
    if target == "reference":
        if reference_cov is None or reference_cov.shape != cov.shape:
            raise InputError("IsoScore* target 'reference' needs a reference covariance of the same "
                             f"dimension ({d} x {d})")
        return reference_cov
    raise InputError(f"IsoScore* target {target!r}: choose one of {', '.join(STAR_TARGETS)}")


def shrunk_covariance(cov: np.ndarray, zeta: float, target: str = "scaled-identity",
                      reference_cov: np.ndarray | None = None) -> np.ndarray:
    """(1 - zeta) C + zeta C0 with C0 named by `target`."""
    if not 0.0 <= zeta <= 1.0:
        raise InputError(f"IsoScore* shrinkage zeta must be in [0, 1], got {zeta}")
    return (1.0 - zeta) * cov + zeta * target_covariance(cov, target, reference_cov)


def isoscore_star(stats: SufficientStats, zeta: float, target: str = "scaled-identity",
                  reference: SufficientStats | None = None) -> float:
    """IsoScore* of a set of vectors (its sufficient statistics) toward the named target; NaN
    with fewer than 2 vectors. `reference`: the larger population, for target 'reference'."""
    if stats.n < 2:
        return math.nan
    ref = None
    if target == "reference":
        if reference is None or reference.n < 2:
            raise InputError("IsoScore* target 'reference' needs a reference population of at "
                             "least 2 vectors")
        ref = _covariance(reference)
    return _isoscore(shrunk_covariance(_covariance(stats), zeta, target, ref))


def _covariance(stats: SufficientStats) -> np.ndarray:
    """Sample covariance (ddof 1), as metrics.covariance."""
    mean = stats.sum / stats.n
    cov = (stats.sum_outer - stats.n * np.outer(mean, mean)) / (stats.n - 1)
    return (cov + cov.T) / 2


def _isoscore(cov: np.ndarray) -> float:
    """IsoScore = (PR - 1) / (d - 1), PR = tr(C)^2 / ||C||_F^2, as metrics.isoscore_from_covariance."""
    d = cov.shape[0]
    fro2 = float(np.sum(cov * cov))
    if d < 2 or not np.isfinite(fro2) or fro2 == 0:
        return math.nan
    return float((np.trace(cov) ** 2 / fro2 - 1.0) / (d - 1))
