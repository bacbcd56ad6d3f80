"""Regression with AR(1) errors on irregularly spaced nights (pure NumPy/SciPy).

Nights are indexed by their day number, so gaps (missing nights) are handled exactly: two nights
``d`` days apart have error correlation ``rho**d``. The model is fitted by generalised least
squares after the exact (Prais-Winsten) whitening transform; ``rho`` is estimated by restricted
maximum likelihood (REML), which is much less biased in short series than the lag-1
autocorrelation of OLS residuals. Inference uses Student's t with ``n - p`` degrees of freedom.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, stats

from collector.errors import AnalysisError

FloatArray = NDArray[np.float64]

RHO_BOUNDS = (-0.9, 0.95)  # beyond these a single person's nights cannot tell rho apart


@dataclass(frozen=True, slots=True)
class GlsFit:
    """A fitted coefficient of interest (column ``k`` of the design) and the error model."""

    estimate: float
    se: float
    df: int
    t: float
    p: float
    ci_low: float
    ci_high: float
    rho: float
    sigma: float  # marginal SD of the errors (same scale as y)
    n: int
    beta: tuple[float, ...]


def _phi(days: NDArray[np.int64], rho: float) -> FloatArray:
    """Correlation of each night with the previous one (0 for the first)."""
    gaps = np.diff(days).astype(np.float64)
    if np.any(gaps <= 0):
        raise AnalysisError("nights must be strictly increasing in date (a night appears twice?)")
    phi = np.zeros(days.shape[0], dtype=np.float64)
    if rho != 0.0:
        phi[1:] = np.sign(rho) ** gaps * np.abs(rho) ** gaps
    return phi


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
    phi = _phi(days, rho)
    yw, xw = whiten(y, phi), whiten(x, phi)
    beta, *_ = np.linalg.lstsq(xw, yw, rcond=None)
    rss = float(np.sum((yw - xw @ beta) ** 2))
    n, p = x.shape
    sign, logdet = np.linalg.slogdet(xw.T @ xw)
    if sign <= 0 or rss <= 0:
        return float("inf")
    return float((n - p) * np.log(rss) + np.sum(np.log1p(-(phi[1:] ** 2))) + logdet)


def estimate_rho(y: FloatArray, x: FloatArray, days: NDArray[np.int64]) -> float:
    """REML estimate of the AR(1) coefficient of the errors."""
    n, p = x.shape
    if n - p < 3:
        return 0.0
    res = optimize.minimize_scalar(
        _reml_objective, bounds=RHO_BOUNDS, args=(y, x, days), method="bounded",
        options={"xatol": 1e-3},
    )
    return float(res.x)


def fit_gls(
    y: FloatArray,
    x: FloatArray,
    days: NDArray[np.int64],
    k: int,
    *,
    rho: float | None = None,
    level: float = 0.95,
) -> GlsFit:
    """GLS fit of ``y`` on the columns of ``x`` with AR(1) errors; inference for column ``k``."""
    n, p = x.shape
    if n <= p + 1:
        raise AnalysisError(f"{n} nights are too few for a model with {p} terms")
    if np.linalg.matrix_rank(x) < p:
        raise AnalysisError("the model terms are collinear (e.g. every night has the same dose)")
    if rho is None:
        rho = estimate_rho(y, x, days)
    phi = _phi(days, rho)
    yw, xw = whiten(y, phi), whiten(x, phi)
    xtx_inv = np.linalg.inv(xw.T @ xw)
    beta = xtx_inv @ (xw.T @ yw)
    df = n - p
    s2 = float(np.sum((yw - xw @ beta) ** 2)) / df
    se = float(np.sqrt(s2 * xtx_inv[k, k]))
    est = float(beta[k])
    t = est / se if se > 0 else float("inf")
    p_val = float(2 * stats.t.sf(abs(t), df))
    q = float(stats.t.ppf(0.5 + level / 2, df))
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
