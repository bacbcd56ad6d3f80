"""Regression with AR(1) errors on irregularly spaced nights (pure NumPy/SciPy).

Nights are indexed by their day number, so gaps (missing nights) are handled exactly: two nights
``d`` days apart have error correlation ``rho**d``. The model is fitted by generalised least
squares after the exact (Prais-Winsten) whitening transform; ``rho`` is estimated by restricted
maximum likelihood (REML), which is much less biased in short series than the lag-1
autocorrelation of OLS residuals. With rho estimated, the coefficient's variance gets the
Kackar-Harville term (how much the estimate moves with rho, times rho's variance) and the t
interval uses Satterthwaite degrees of freedom; with rho known it is the exact t with n - p df.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, special

from collector.errors import AnalysisError

FloatArray = NDArray[np.float64]

RHO_BOUNDS = (-0.9, 0.95)  # beyond these a single person's nights cannot tell rho apart


@dataclass(frozen=True, slots=True)
class GlsFit:
    """A fitted coefficient of interest (column ``k`` of the design) and the error model."""

    estimate: float
    se: float
    df: float
    t: float
    p: float
    ci_low: float
    ci_high: float
    rho: float
    sigma: float  # marginal SD of the errors (same scale as y)
    n: int
    beta: tuple[float, ...]


def _gaps(days: NDArray[np.int64]) -> FloatArray:
    gaps = np.diff(days).astype(np.float64)
    if np.any(gaps <= 0):
        raise AnalysisError("nights must be strictly increasing in date (a night appears twice?)")
    return gaps


def _phi_of_gaps(gaps: FloatArray, rho: float) -> FloatArray:
    phi = np.zeros(gaps.shape[0] + 1, dtype=np.float64)
    if rho != 0.0:
        phi[1:] = np.sign(rho) ** gaps * np.abs(rho) ** gaps
    return phi


def _phi(days: NDArray[np.int64], rho: float) -> FloatArray:
    """Correlation of each night with the previous one (0 for the first)."""
    return _phi_of_gaps(_gaps(days), rho)


def whiten(m: FloatArray, phi: FloatArray) -> FloatArray:
    """Apply the exact AR(1) whitening transform to the rows of ``m`` (vector or matrix)."""
    out = np.array(m, dtype=np.float64, copy=True)
    scale = 1.0 / np.sqrt(1.0 - phi[1:] ** 2)
    if m.ndim == 1:
        out[1:] = (m[1:] - phi[1:] * m[:-1]) * scale
    else:
        out[1:] = (m[1:] - phi[1:, None] * m[:-1]) * scale[:, None]
    return out


def _reml_objective(rho: float, y: FloatArray, x: FloatArray, days: NDArray[np.int64]) -> float:
    return _reml_of_gaps(rho, y, x, _gaps(days))


def _reml_of_gaps(rho: float, y: FloatArray, x: FloatArray, gaps: FloatArray) -> float:
    """-2 x restricted log-likelihood (up to a constant), profiled over beta and sigma."""
    phi = _phi_of_gaps(gaps, rho)
    yw, xw = whiten(y, phi), whiten(x, phi)
    xtx = xw.T @ xw
    sign, logdet = np.linalg.slogdet(xtx)
    if sign <= 0:
        return float("inf")
    resid = yw - xw @ np.linalg.solve(xtx, xw.T @ yw)  # full rank: checked by fit_gls
    rss = float(resid @ resid)
    if rss <= 0:
        return float("inf")
    n, p = x.shape
    return float((n - p) * math.log(rss) + np.sum(np.log1p(-(phi[1:] ** 2))) + logdet)


def estimate_rho(y: FloatArray, x: FloatArray, days: NDArray[np.int64]) -> float:
    """REML estimate of the AR(1) coefficient of the errors."""
    n, p = x.shape
    if n - p < 3:
        return 0.0
    res = optimize.minimize_scalar(
        _reml_of_gaps, bounds=RHO_BOUNDS, args=(y, x, _gaps(days)), method="bounded",
        options={"xatol": 1e-3},
    )
    return float(res.x)


def _core(
    y: FloatArray, x: FloatArray, days: NDArray[np.int64], rho: float
) -> tuple[FloatArray, FloatArray, float]:
    """GLS coefficients, their unscaled covariance and the residual variance at ``rho``."""
    phi = _phi(days, rho)
    yw, xw = whiten(y, phi), whiten(x, phi)
    xtx_inv: FloatArray = np.linalg.inv(xw.T @ xw).astype(np.float64)
    beta: FloatArray = xtx_inv @ (xw.T @ yw)
    s2 = float(np.sum((yw - xw @ beta) ** 2)) / (x.shape[0] - x.shape[1])
    return beta, xtx_inv, s2


def _rho_adjustment(
    y: FloatArray, x: FloatArray, days: NDArray[np.int64], k: int, rho: float, var_k: float
) -> tuple[float, float]:
    """Degrees of freedom and extra variance for coefficient ``k`` allowing for estimated rho.

    The variance of coefficient ``k`` depends on rho; its sampling variance is approximated by
    the delta method (rho's variance from the curvature of the REML objective) plus the usual
    chi-square part for sigma^2; Satterthwaite's formula turns that into degrees of freedom.
    With randomised nights the variance barely depends on rho and df stays near n - p; with
    blocks or before/after it drops, widening the interval as it should.
    """
    n, p = x.shape
    h = 0.01
    lo, hi = RHO_BOUNDS
    r0 = min(max(rho, lo + h), hi - h)
    gaps = _gaps(days)
    f = [_reml_of_gaps(r, y, x, gaps) for r in (r0 - h, r0, r0 + h)]
    curv = (f[0] - 2 * f[1] + f[2]) / h**2
    var_rho = 2.0 / curv if curv > 0 and np.isfinite(curv) else (1 - rho**2) / n
    var_rho = min(var_rho, 1.0)
    v, b = [], []
    for r in (r0 - h, r0 + h):
        beta, inv, s2 = _core(y, x, days, r)
        v.append(s2 * inv[k, k])
        b.append(float(beta[k]))
    extra = ((b[1] - b[0]) / (2 * h)) ** 2 * var_rho  # Kackar-Harville: beta moves with rho
    grad = (v[1] - v[0]) / (2 * h)
    var_v = grad**2 * var_rho + 2 * var_k**2 / (n - p)
    df = float(min(n - p, 2 * var_k**2 / var_v)) if var_v > 0 else float(n - p)
    return df, extra


def fit_gls(
    y: FloatArray,
    x: FloatArray,
    days: NDArray[np.int64],
    k: int,
    *,
    rho: float | None = None,
    level: float = 0.95,
) -> GlsFit:
    """GLS fit of ``y`` on the columns of ``x`` with AR(1) errors; inference for column ``k``.

    With ``rho`` given it is treated as known (t with n - p df, exact for normal errors);
    otherwise it is estimated by REML and the df are reduced by Satterthwaite's approximation.
    """
    n, p = x.shape
    if n <= p + 1:
        raise AnalysisError(f"{n} nights are too few for a model with {p} terms")
    if np.linalg.matrix_rank(x) < p:
        raise AnalysisError("the model terms are collinear (e.g. every night has the same dose)")
    known = rho is not None
    if rho is None:
        rho = estimate_rho(y, x, days)
    beta, xtx_inv, s2 = _core(y, x, days, rho)
    var_k = s2 * float(xtx_inv[k, k])
    df = float(n - p)
    if not known:
        df, extra = _rho_adjustment(y, x, days, k, rho, var_k)
        var_k += extra
    se = float(np.sqrt(var_k))
    est = float(beta[k])
    t = est / se if se > 0 else float("inf")
    p_val = float(2 * special.stdtr(df, -abs(t)))  # scipy.special: same values as stats.t, less overhead
    q = float(special.stdtrit(df, 0.5 + level / 2))
    return GlsFit(est, se, df, t, p_val, est - q * se, est + q * se, rho, float(np.sqrt(s2)), n,
                  tuple(float(b) for b in beta))


def permutation_coefs(
    y: FloatArray,
    z: FloatArray,
    days: NDArray[np.int64],
    treatments: FloatArray,
    rho: float,
) -> FloatArray:
    """GLS treatment coefficient (rho fixed) for each column of ``treatments`` (n x B).

    ``z`` holds the other model terms (intercept, weekend, covariates). Frisch-Waugh-Lovell: the
    coefficient equals the regression of the whitened ``y`` on the whitened treatment after both
    are residualised on the whitened ``z``, which vectorises over all assignments at once.
    """
    phi = _phi(days, rho)
    yw, zw = whiten(y, phi), whiten(z, phi)
    tw = whiten(treatments, phi)
    q, _ = np.linalg.qr(zw)
    ry = yw - q @ (q.T @ yw)
    rt = tw - q @ (q.T @ tw)
    denom = np.sum(rt * rt, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        coefs = (rt.T @ ry) / denom
    return np.where(denom > 1e-12, coefs, 0.0)
