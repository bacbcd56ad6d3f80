"""The AR(1) GLS core against statsmodels, and its error handling."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm

from collector.effects.gls import _phi, estimate_rho, fit_gls, permutation_coefs, whiten
from collector.errors import AnalysisError
from tests.effects.simpeople import ar1


def _data(rng: np.random.Generator, n: int = 60, rho: float = 0.4, gaps: bool = True):
    days = np.cumsum(rng.integers(1, 3, size=n) if gaps else np.ones(n, dtype=int)).astype(np.int64)
    treat = (rng.random(n) < 0.5).astype(float)
    weekend = (days % 7 >= 5).astype(float)
    # AR(1) on the full day grid, then read at the observed days
    grid = ar1(rng, int(days[-1]) + 1, rho)
    y = 400 + 20 * weekend + 12 * treat + 40 * grid[days]
    x = np.column_stack([np.ones(n), treat, weekend])
    return y, x, days


def test_gls_matches_statsmodels_with_the_same_covariance() -> None:
    rng = np.random.default_rng(7)
    y, x, days = _data(rng)
    rho = 0.35
    sigma = rho ** np.abs(days[:, None] - days[None, :]).astype(float)
    ref = sm.GLS(y, x, sigma=sigma).fit()
    ours = fit_gls(y, x, days, 1, rho=rho)
    np.testing.assert_allclose(ours.beta, ref.params, rtol=1e-9)
    assert ours.se == pytest.approx(ref.bse[1], rel=1e-9)
    assert ours.p == pytest.approx(ref.pvalues[1], rel=1e-7)
    lo, hi = ref.conf_int()[1]
    assert (ours.ci_low, ours.ci_high) == pytest.approx((lo, hi), rel=1e-9)


def test_whitening_decorrelates_with_gaps() -> None:
    days = np.array([0, 1, 3, 4, 9], dtype=np.int64)
    rho = 0.5
    cov = rho ** np.abs(days[:, None] - days[None, :]).astype(float)
    phi = _phi(days, rho)
    w = whiten(np.eye(5), phi)  # rows of the whitening matrix
    np.testing.assert_allclose(w @ cov @ w.T, np.eye(5), atol=1e-12)


def test_reml_recovers_rho_on_average() -> None:
    rng = np.random.default_rng(11)
    est = []
    for _ in range(150):
        y, x, days = _data(rng, n=56, rho=0.3, gaps=False)
        est.append(estimate_rho(y, x, days))
    # 150 estimates with SD ~0.13 each: the mean has SE ~0.011
    assert np.mean(est) == pytest.approx(0.3, abs=0.04)


def test_permutation_coefs_equal_full_fits() -> None:
    rng = np.random.default_rng(3)
    y, x, days = _data(rng, n=40)
    perms = np.column_stack([rng.permutation(x[:, 1]) for _ in range(5)])
    fast = permutation_coefs(y, np.delete(x, 1, axis=1), days, perms, rho=0.3)
    for j in range(5):
        xj = x.copy()
        xj[:, 1] = perms[:, j]
        assert fast[j] == pytest.approx(fit_gls(y, xj, days, 1, rho=0.3).estimate, rel=1e-9)


def test_errors_say_what_is_wrong() -> None:
    x = np.column_stack([np.ones(6), np.ones(6)])
    with pytest.raises(AnalysisError, match="collinear"):
        fit_gls(np.arange(6.0), x, np.arange(6, dtype=np.int64), 1)
    with pytest.raises(AnalysisError, match="too few"):
        fit_gls(np.arange(3.0), np.column_stack([np.ones(3), [0, 1, 0]]), np.arange(3, dtype=np.int64), 1)
    with pytest.raises(AnalysisError, match="appears twice"):
        fit_gls(np.arange(6.0), np.column_stack([np.ones(6), [0, 1, 0, 1, 0, 1]]),
                np.array([0, 1, 1, 2, 3, 4], dtype=np.int64), 1)
