"""Intervals that stay valid however often you look, and when to stop (pure; docs/effects.md).

A person in a trial looks at the effect every morning and stops once it says "clear". A 95%
interval computed as if each look were the only one is then wrong far more than 5% of the time
(about 1 in 3 people per metric with daily looks over 8 weeks). This module widens the interval
of the AR(1) regression effect (:mod:`collector.effects.gls`) into a *confidence sequence*: with
probability at least 1 - alpha it contains the true effect at every look at once, so stopping
the first morning it excludes 0 is honest.

The boundary, in units of the estimate's standard error (z), at information fraction
``t = nights analysed / planned nights`` (the horizon), is the smaller of two:

* within the plan (t <= 1): a continuous-monitoring O'Brien-Fleming boundary ``c / sqrt(t)``,
  constant on the Brownian-motion scale, with ``c`` chosen so that a Brownian motion leaves
  ``[-c, c]`` before t = 1 with probability ``PLAN_SHARE * alpha`` (Lan & DeMets 1983's
  O'Brien-Fleming-type spending, looked at continuously; crossing probability from the exact
  series for the maximum of |W|). Daily looks are a subset of continuous ones, so it holds for them.
* for looks beyond the plan (or without one): a two-sided normal-mixture boundary (Robbins 1970;
  the asymptotic confidence sequence of Waudby-Smith, Arnold, Wu & Ramdas 2024) at the remaining
  ``(1 - PLAN_SHARE) * alpha``, tuned to be narrowest at twice the horizon. It holds for all t.

Together (union bound) the chance of ever excluding the true effect is at most alpha. The
estimate is treated as Brownian motion in its information (the canonical joint distribution of
Jennison & Turnbull 2000, ch. 3): true for GLS estimates with a known error model, approximately
when rho and sigma are estimated. Small samples: each z boundary is turned into its nominal
two-sided p value and then into the Student t quantile with the fit's Satterthwaite degrees of
freedom (Jennison & Turnbull 2000, section 3.8: same nominal levels for t statistics), which
widens early looks, where rho and sigma are least known.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from scipy import optimize, special, stats

from collector.effects.gls import FloatArray
from collector.effects.metrics import MetricSpec

Decision = Literal["stop_clear", "keep_going", "stop_futile", "single_look"]

#: Share of alpha spent within the plan's horizon; the rest covers looks beyond it.
PLAN_SHARE = 0.8
#: The mixture boundary for looks beyond the plan is narrowest at this multiple of the horizon.
MIXTURE_TUNED_AT = 2.0
#: Without a trial plan, the horizon is an 8-week plan's nights (the default of `magsleep plan`).
DEFAULT_HORIZON = 56
#: Minimum information for a result: this share of the horizon's nights ...
MIN_INFORMATION = 0.25
#: ... and at least this many (Satterthwaite) residual degrees of freedom.
MIN_DF = 4.0
#: The metrics of the verdict: they share alpha (Bonferroni); others are secondary, each at alpha.
PRIMARY: tuple[str, ...] = ("sol_min", "tst_min")
#: Futility is judged from this share of the plan on, when the chance of a clear answer at the
#: plan's end (if the effect is what it looks like now) is below FUTILITY_POWER.
FUTILITY_FROM = 0.5
FUTILITY_POWER = 0.10
#: "N more nights to tell a change of this size": minutes metrics use this many minutes.
TELL_MINUTES = 10.0
#: ... with this chance of a clear answer by then.
TELL_POWER = 0.8
_Z_POWER = float(stats.norm.ppf(TELL_POWER))
_MAX_NIGHTS_MORE = 2000  # projections beyond this say "more than ..."


def _sup_abs_bm_tail(c: float) -> float:
    """P(max over t in [0, 1] of |W(t)| >= c) for standard Brownian motion W (Feller's series)."""
    k = np.arange(80, dtype=np.float64)
    terms = (-1.0) ** k / (2 * k + 1) * np.exp(-((2 * k + 1) ** 2) * math.pi**2 / (8 * c * c))
    return float(1.0 - 4.0 / math.pi * np.sum(terms))


@lru_cache(maxsize=64)
def obf_constant(alpha: float) -> float:
    """``c`` with P(|W(t)| >= c for some t <= 1) = alpha: the plan's boundary is c / sqrt(t)."""
    return float(optimize.brentq(lambda c: _sup_abs_bm_tail(c) - alpha, 0.5, 12.0, xtol=1e-10))


def _mixture_s(u: float, alpha: float) -> float:
    """Normal-mixture boundary divided by sqrt(information), as a function of u = rho^2 * info."""
    return math.sqrt((1 + u) / u * math.log((1 + u) / alpha**2))


@lru_cache(maxsize=64)
def _mixture_u(alpha: float) -> float:
    res = optimize.minimize_scalar(lambda lu: _mixture_s(math.exp(lu), alpha), bounds=(-8.0, 8.0),
                                   method="bounded")
    return math.exp(float(res.x))


def mixture_z(t: FloatArray | float, alpha: float) -> FloatArray:
    """Two-sided normal-mixture boundary in z units at fraction ``t`` (Ville: valid for all t)."""
    u = _mixture_u(alpha) / MIXTURE_TUNED_AT * np.asarray(t, dtype=np.float64)
    out: FloatArray = np.sqrt((1 + u) / u * np.log((1 + u) / alpha**2))
    return out


def z_boundary(t: FloatArray | float, alpha: float) -> FloatArray:
    """The anytime-valid boundary in z units at information fraction ``t`` (> 0)."""
    ta = np.asarray(t, dtype=np.float64)
    with np.errstate(divide="ignore"):
        plan = np.where(ta <= 1.0, obf_constant(PLAN_SHARE * alpha) / np.sqrt(ta), np.inf)
    out: FloatArray = np.minimum(plan, mixture_z(ta, (1 - PLAN_SHARE) * alpha))
    return out


def t_critical(z: FloatArray | float, df: FloatArray | float) -> FloatArray:
    """The Student t quantile (``df``) with the same two-sided nominal level as ``z``."""
    za, dfa = np.broadcast_arrays(np.asarray(z, dtype=np.float64), np.asarray(df, dtype=np.float64))
    log_p = special.log_ndtr(-za)  # one-sided nominal level, in logs (tiny on early looks)
    with np.errstate(under="ignore"):
        q = -special.stdtrit(np.maximum(dfa, 1e-3), np.exp(np.maximum(log_p, -745.0)))
    q = np.where((log_p < -700) | ~np.isfinite(q) | (q <= 0), np.inf, q)
    out: FloatArray = np.where(np.isfinite(dfa) & (dfa < 1e6), q, za)
    return out


def critical(n: int, horizon: int, df: float, alpha: float) -> float:
    """Critical value (multiple of the SE) of the anytime-valid interval after ``n`` nights."""
    return float(t_critical(z_boundary(max(n, 1) / horizon, alpha), df))


def min_nights(horizon: int, share: float = MIN_INFORMATION) -> int:
    """Nights (both arms) before a first result is shown: ``share`` of the horizon."""
    return max(1, math.ceil(share * horizon))


def family_alpha(metrics: list[str], alpha: float) -> dict[str, float]:
    """Alpha per metric: the primary metrics present share it (Bonferroni), others keep it."""
    primary = [m for m in metrics if m in PRIMARY]
    return {m: alpha / len(primary) if m in primary else alpha for m in metrics}


def tell_target(spec: MetricSpec, typical: float | None) -> tuple[float, str]:
    """The change (model scale) a "keep going" should be able to tell, and its words.

    Minutes metrics: 10 minutes (log1p ones at the control nights' typical value ``typical`` of
    x + 1); the others: the metric's half-width target (2 points, 20%, 1 bpm, 0.05 ln ms).
    """
    if spec.unit == "min":
        words = f"a {TELL_MINUTES:g}-minute change"
        if spec.scale == "log1p":
            if typical is None or typical <= 0:
                return spec.half_width, f"a change of {spec.describe_half_width().lstrip('±')}"
            return math.log1p(TELL_MINUTES / typical), words
        return TELL_MINUTES, words
    return spec.half_width, f"a change of {spec.describe_half_width().lstrip('±')}"


@dataclass(frozen=True, slots=True)
class Step:
    """What to do next for one metric."""

    decision: Decision
    nights_more: int | None  # analysed nights (both arms) still to log; None: not applicable
    text: str


def nights_to_tell(se: float, n: int, df: float, horizon: int, alpha: float, target: float) -> int | None:
    """More nights until a true change of ``target`` would be clear with TELL_POWER chance by then.

    That is the first night count m with (critical value + z_power) * SE(m) <= target, where the
    SE shrinks as 1/sqrt(m) from today's (the person's variability, autocorrelation and design carry
    over) and the degrees of freedom grow by one per night. None beyond 2000 more nights.
    """
    if not (se > 0 and n > 0 and target > 0 and math.isfinite(se)):
        return None

    def first_ok(m: FloatArray) -> int | None:
        q = t_critical(z_boundary(m / horizon, alpha), df + (m - n)) + _Z_POWER
        half = q * se * np.sqrt(n / m)
        ok = np.flatnonzero(half <= target)
        return int(m[ok[0]]) if ok.size else None

    near = np.arange(n, n + 201, dtype=np.float64)  # night by night for the next 200
    found = first_ok(near)
    if found is not None:
        return found - n
    far = np.unique(np.geomspace(n + 200, n + _MAX_NIGHTS_MORE, 120).round())  # then in ~2% steps
    found = first_ok(far)
    if found is None:
        return None
    prev = far[max(0, int(np.searchsorted(far, found)) - 1)]
    found = first_ok(np.arange(prev, found + 1, dtype=np.float64))
    return None if found is None else found - n


def conditional_power(z_now: float, t: float, alpha: float) -> float:
    """Chance the interval at the plan's end excludes 0 if the effect is what it looks like now."""
    if t >= 1.0:
        return 0.0
    c = float(z_boundary(1.0, alpha))
    b = z_now * math.sqrt(t)  # the Brownian-motion value at t; drift estimated as b / t
    mean, sd = b + (b / t) * (1 - t), math.sqrt(1 - t)
    return float(special.ndtr((mean - c) / sd) + special.ndtr((-c - mean) / sd))


def next_step(
    *, clear: bool, estimate: float, se: float, df: float, n: int, horizon: int, alpha: float,
    target: float, tell: str, nights_left: int | None,
) -> Step:
    """Stop (clear), keep going (about N more nights to tell ``tell``), or stop for futility.

    ``nights_left``: the trial plan's evenings after the last night analysed (None: no plan).
    """
    if clear:
        return Step("stop_clear", 0, "stop: the answer is clear")
    t = n / horizon
    more = nights_to_tell(se, n, df, horizon, alpha, target)
    more_words = (f"about {more} more nights" if more is not None
                  else f"more than {_MAX_NIGHTS_MORE} more nights")
    if nights_left is not None:
        left = max(0, nights_left)
        if left == 0:
            return Step("stop_futile", more,
                        f"stop: the plan has ended without a clear answer ({more_words} would be "
                        f"needed to tell {tell})")
        if t >= FUTILITY_FROM and conditional_power(estimate / se, t, alpha) < FUTILITY_POWER:
            return Step("stop_futile", more,
                        "stop: even at the planned end this is unlikely to become clear (futility: "
                        f"under {FUTILITY_POWER:.0%} chance if the effect is what it looks like now)")
        if more is not None and more <= left:
            return Step("keep_going", more, f"keep going: {more_words} of the plan to tell {tell}")
        return Step("keep_going", more,
                    f"keep going: the plan's {left} remaining nights will not be enough to tell {tell} "
                    f"({more_words})")
    return Step("keep_going", more, f"keep going: {more_words} to tell {tell}")
