"""Effect estimates for one person's nights: magnesium vs control, before/after, dose-response.

Pure: takes :class:`NightData` rows (from InfluxDB or a simulator) and returns
:class:`EffectResult` rows. See docs/effects.md for the methods and how to read them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy import stats
from statsmodels.stats.multitest import multipletests

from collector.effects.gls import FloatArray, fit_gls, permutation_coefs
from collector.effects.metrics import METRICS, MetricSpec
from collector.effects.planner import PlanInfo, assignments_for, within_week_assignments
from collector.effects.tagging import COVARIATE_TAGS, DoseStatus
from collector.errors import AnalysisError

__all__ = ["AnalysisOptions", "EffectResult", "NightData", "PlanInfo", "analyse_person", "compare"]

Z95 = 1.959963984540054
BANDS: tuple[tuple[float, float], ...] = ((0.0, 200.0), (200.0, 400.0), (400.0, math.inf))


@dataclass(frozen=True, slots=True)
class NightData:
    """One night: its dose status and its metrics (missing metrics are simply absent)."""

    night: date
    status: DoseStatus
    values: Mapping[str, float]
    elemental_mg: float = 0.0
    form: str = ""
    covariates: Mapping[str, bool] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AnalysisOptions:
    min_nights_per_arm: int = 3
    covariates: Literal["auto", "none"] | tuple[str, ...] = "auto"
    permutations: int = 1999
    seed: int = 20261124
    level: float = 0.95


@dataclass(frozen=True, slots=True)
class EffectResult:
    """One estimated effect. Differences are magnesium minus control, in the metric's unit."""

    person: str
    metric: str
    comparison: str
    unit: str
    n_mg: int
    n_control: int
    reported: bool
    summary: str
    estimate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    ratio: float | None = None  # log1p metrics: (x+1) ratio and its CI
    ratio_low: float | None = None
    ratio_high: float | None = None
    model_estimate: float | None = None  # on the model scale (log ratio for log1p)
    model_se: float | None = None
    p: float | None = None
    p_adj: float | None = None
    p_perm: float | None = None
    perm_method: str = ""
    prob_benefit: float | None = None
    prob_meaningful: float | None = None
    effect_size: float | None = None
    rho: float | None = None
    nights_needed: int | None = None
    half_width: str = ""
    covariates: tuple[str, ...] = ()
    note: str = ""


def is_weekend(d: date) -> bool:
    """Friday and Saturday evenings (the nights before a day off)."""
    return d.weekday() in (4, 5)


def _transform(spec: MetricSpec, y: FloatArray) -> FloatArray:
    if spec.scale == "log1p":
        if np.any(y < 0):
            raise AnalysisError(f"{spec.name} has negative values; check the night summaries")
        return np.log1p(y)
    return y


def posterior(
    estimate: float, se: float, spec: MetricSpec
) -> tuple[float, float]:
    """P(beneficial) and P(beneficial by more than the threshold), sceptical normal prior."""
    tau2, se2 = spec.prior_sd**2, se**2
    mean = estimate * tau2 / (tau2 + se2)
    sd = math.sqrt(tau2 * se2 / (tau2 + se2))
    if spec.better == "lower":
        return float(stats.norm.cdf(-mean / sd)), float(stats.norm.cdf((-spec.threshold - mean) / sd))
    return float(stats.norm.sf(-mean / sd)), float(stats.norm.sf((spec.threshold - mean) / sd))


def nights_needed(se: float | None, n_per_arm: float, sd: float | None, spec: MetricSpec) -> int | None:
    """Nights per arm for the 95% CI half-width to reach ``spec.half_width``.

    From the current standard error when there is one (SE shrinks as 1/sqrt(n), so the design
    and the autocorrelation carry over); otherwise from the night-to-night SD as if nights were
    independent and the arms balanced.
    """
    if se is not None and n_per_arm > 0:
        return max(1, math.ceil(n_per_arm * (Z95 * se / spec.half_width) ** 2))
    if sd is not None and sd > 0:
        return max(1, math.ceil(2 * (Z95 * sd / spec.half_width) ** 2))
    return None


def _fmt(x: float) -> str:
    a = abs(x)
    return f"{a:.0f}" if a >= 10 else f"{a:.1f}" if a >= 0.95 else f"{a:.2f}"


def summarise(spec: MetricSpec, r: EffectResult, context: str, arms: str) -> str:
    """The result in plain words."""
    if not r.reported:
        return (f"{spec.label}: not enough nights for an estimate ({arms}); "
                f"{r.note or 'keep logging'}.")
    assert r.estimate is not None
    assert r.ci_low is not None
    assert r.ci_high is not None
    est, lo, hi = r.estimate, r.ci_low, r.ci_high
    unit = spec.unit
    if spec.name == "ln_rmssd":  # report HRV changes in percent
        est, lo, hi = (100 * math.expm1(v) for v in (est, lo, hi))
        unit = "%"

    def word(x: float) -> str:
        return spec.more if x > 0 else spec.less

    if spec.name == "awakenings":
        unit = ""

    def amount(x: float) -> str:
        return f"{_fmt(x)}%" if unit == "%" else f"{_fmt(x)} {unit}".rstrip()

    if spec.name == "awakenings":
        head = f"There were {_fmt(est)} {word(est)} awakenings per night {context}"
    else:
        head = f"{spec.label} was {amount(est)} {word(est)} {context}"
    if lo > 0 or hi < 0:
        a, b = sorted((abs(lo), abs(hi)))
        ci = f"95% CI {_fmt(a)} to {amount(b)}"
        tail = ""
    else:
        ci = f"95% CI {amount(lo)} {word(lo)} to {amount(hi)} {word(hi)}"
        tail = "; no clear difference"
    return f"{head} ({ci}{tail}), {arms}."


def _design(
    nights: Sequence[NightData], treat: NDArray[np.bool_], opts: AnalysisOptions,
    extra: Sequence[tuple[str, FloatArray]] = (),
) -> tuple[FloatArray, list[str]]:
    """Model matrix: intercept, treatment, weekend, extra terms, covariates (col 1 = treatment)."""
    n = len(nights)
    cols: list[FloatArray] = [np.ones(n), treat.astype(np.float64)]
    names = ["intercept", "magnesium"]
    weekend = np.array([is_weekend(x.night) for x in nights], dtype=np.float64)
    if 0 < weekend.sum() < n:
        cols.append(weekend)
        names.append("weekend")
    for name, col in extra:
        cols.append(col)
        names.append(name)
    wanted: Iterable[str] = ()
    if opts.covariates == "auto":
        wanted = COVARIATE_TAGS
    elif opts.covariates != "none":
        wanted = opts.covariates
    for tag in wanted:
        col = np.array([bool(x.covariates.get(tag, False)) for x in nights], dtype=np.float64)
        if 2 <= col.sum() <= n - 2:
            trial = np.column_stack([*cols, col])
            if np.linalg.matrix_rank(trial) == trial.shape[1]:
                cols.append(col)
                names.append(tag)
    return np.column_stack(cols), names


def compare(
    person: str,
    spec: MetricSpec,
    nights: Sequence[NightData],
    treat_of: Mapping[date, bool],
    comparison: str,
    opts: AnalysisOptions,
    *,
    plan: PlanInfo | None = None,
    context: str = "on magnesium nights",
    trend: bool = False,
    randomise: bool = True,
) -> EffectResult:
    """One comparison for one metric. ``treat_of`` maps the nights in play to their arm."""
    rows = sorted(
        (x for x in nights if x.night in treat_of and math.isfinite(x.values.get(spec.name, math.nan))),
        key=lambda x: x.night,
    )
    treat = np.array([treat_of[x.night] for x in rows], dtype=bool)
    n_mg, n_c = int(treat.sum()), int((~treat).sum())
    arms = (f"{n_mg} vs {n_c} nights" if comparison != "before_after"
            else f"{n_c} baseline vs {n_mg} supplement nights")
    base = EffectResult(person, spec.name, comparison, spec.unit, n_mg, n_c, False, "",
                        half_width=spec.describe_half_width())
    y_raw = np.array([x.values[spec.name] for x in rows], dtype=np.float64)
    y = _transform(spec, y_raw) if len(rows) else y_raw
    sd = float(np.std(y, ddof=1)) if len(rows) >= 3 else None
    if min(n_mg, n_c) < opts.min_nights_per_arm:
        note = (f"at least {opts.min_nights_per_arm} nights per arm are needed" if rows
                else "no nights have this metric")
        r = replace(base, nights_needed=nights_needed(None, 0, sd, spec), note=note)
        return replace(r, summary=summarise(spec, r, context, arms))
    days = np.array([x.night.toordinal() for x in rows], dtype=np.int64)
    extra: list[tuple[str, FloatArray]] = []
    if trend:
        extra.append(("trend", (days - days.mean()) / 7.0))
    x_mat, names = _design(rows, treat, opts, extra)
    try:
        if sd is not None and sd == 0.0:
            raise AnalysisError(f"{spec.name} had the same value on every night; no effect can be estimated")
        fit = fit_gls(y, x_mat, days, 1, level=opts.level)
        if not (math.isfinite(fit.se) and fit.se > 0):
            raise AnalysisError(f"{spec.name} fits the nights exactly (no residual variation); no interval exists")
    except AnalysisError as exc:
        r = replace(base, nights_needed=nights_needed(None, 0, sd, spec), note=str(exc))
        return replace(r, summary=summarise(spec, r, context, arms))
    p_perm, method = (None, "none (before/after is not randomised)")
    if randomise:
        p_perm, method = _randomisation_p(rows, y, x_mat, days, treat, fit.rho, plan, opts)
    if spec.scale == "log1p":
        typical = float(np.exp(np.mean(y[~treat])))  # control nights, on the (x+1) scale
        est, lo, hi = (typical * math.expm1(v) for v in (fit.estimate, fit.ci_low, fit.ci_high))
        ratios: tuple[float | None, ...] = tuple(math.exp(v) for v in (fit.estimate, fit.ci_low, fit.ci_high))
    else:
        est, lo, hi = fit.estimate, fit.ci_low, fit.ci_high
        ratios = (None, None, None)
    pb, pm = posterior(fit.estimate, fit.se, spec)
    r = replace(
        base, reported=True, estimate=est, ci_low=lo, ci_high=hi,
        ratio=ratios[0], ratio_low=ratios[1], ratio_high=ratios[2],
        model_estimate=fit.estimate, model_se=fit.se, p=fit.p, p_perm=p_perm, perm_method=method,
        prob_benefit=pb, prob_meaningful=pm, effect_size=fit.estimate / fit.sigma,
        rho=fit.rho, nights_needed=nights_needed(fit.se, (n_mg + n_c) / 2, sd, spec),
        covariates=tuple(n for n in names[2:] if n != "weekend" and n != "trend"),
    )
    return replace(r, summary=summarise(spec, r, context, arms))


def _randomisation_p(
    rows: Sequence[NightData], y: FloatArray, x_mat: FloatArray, days: NDArray[np.int64],
    treat: NDArray[np.bool_], rho: float, plan: PlanInfo | None, opts: AnalysisOptions,
) -> tuple[float | None, str]:
    rng = np.random.default_rng(opts.seed)
    dates = [x.night for x in rows]
    z = np.delete(x_mat, 1, axis=1)
    if plan is not None:
        redrawn, inside = assignments_for(plan.spec, dates, rng, opts.permutations)
        observed = np.array([plan.planned.get(d, False) for d in dates], dtype=bool)[inside]
        if inside.sum() < 4 or observed.all() or not observed.any():
            return None, "none (too few nights inside the trial plan)"
        y_in, z_in, d_in = y[inside], z[inside], days[inside]
        keep = np.linalg.matrix_rank(z_in) == z_in.shape[1]
        if not keep:
            z_in = z_in[:, :1]
        method = "trial plan re-drawn (intention to treat)"
    else:
        observed = treat
        redrawn = within_week_assignments(dates, treat, rng, opts.permutations)
        y_in, z_in, d_in = y, z, days
        method = "nights permuted within weeks"
    obs = permutation_coefs(y_in, z_in, d_in, observed[:, None].astype(np.float64), rho)[0]
    perm = permutation_coefs(y_in, z_in, d_in, redrawn.T.astype(np.float64), rho)
    hits = int(np.sum(np.abs(perm) >= abs(obs) - 1e-9 * (1 + abs(obs))))
    return (1 + hits) / (1 + perm.shape[0]), method


def adjust_bh(results: list[EffectResult]) -> list[EffectResult]:
    """Benjamini-Hochberg adjusted p beside the raw one, within each (person, comparison)."""
    out = list(results)
    groups: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(out):
        if r.reported and r.p is not None:
            groups.setdefault((r.person, r.comparison), []).append(i)
    for idx in groups.values():
        _, adj, _, _ = multipletests([out[i].p for i in idx], method="fdr_bh")
        for i, a in zip(idx, adj, strict=True):
            out[i] = replace(out[i], p_adj=float(a))
    return out


def analyse_person(
    person: str,
    nights: Sequence[NightData],
    opts: AnalysisOptions | None = None,
    *,
    metrics: Sequence[str] | None = None,
    plan: PlanInfo | None = None,
    supplement_start: date | None = None,
    baseline_end: date | None = None,
) -> list[EffectResult]:
    """All comparisons for one person, BH-adjusted within each comparison."""
    opts = opts or AnalysisOptions()
    specs = [METRICS[m] for m in (metrics or list(METRICS))]
    arm = {x.night: x.status == "magnesium" for x in nights if x.status in ("magnesium", "control")}
    results: list[EffectResult] = []
    for spec in specs:
        results.append(compare(person, spec, nights, arm, "mg_vs_control", opts, plan=plan))
    # before/after: baseline control nights vs magnesium nights from the start date on
    start = supplement_start or min((x.night for x in nights if x.status == "magnesium"), default=None)
    if start is not None:
        end = baseline_end or start
        ba = {x.night: x.night >= start for x in nights
              if (x.night < end and x.status == "control") or (x.night >= start and x.status == "magnesium")}
        for spec in specs:
            results.append(compare(person, spec, nights, ba, "before_after", opts, trend=True,
                                   randomise=False, context="after starting magnesium than at baseline"))
    # dose-response: elemental-mg bands and forms, each against the control nights
    mg_nights = [x for x in nights if x.status == "magnesium"]
    control = {x.night: False for x in nights if x.status == "control"}
    groups: list[tuple[str, str, set[date]]] = []
    for lo, hi in BANDS:
        sel = {x.night for x in mg_nights if lo <= x.elemental_mg < hi}
        hi_s = "inf" if math.isinf(hi) else f"{hi:.0f}"
        label = f"{lo:.0f}+ mg" if math.isinf(hi) else f"{lo:.0f}-{hi:.0f} mg"
        groups.append((f"band_{lo:.0f}_{hi_s}", f"on {label} nights", sel))
    forms = sorted({x.form for x in mg_nights if x.form})
    for form in forms:
        groups.append((f"form_{form}", f"on {form} nights",
                       {x.night for x in mg_nights if x.form == form}))
    for kind in ("band_", "form_"):
        present = [g for g in groups if g[0].startswith(kind) and g[2]]
        enough = [g for g in present if len(g[2]) >= opts.min_nights_per_arm]
        if len(present) < 2 or not enough:
            continue  # one band/form only: the main comparison already says it
        for comp, ctx, sel in enough:
            treat_of = {**control, **{d: True for d in sel}}
            for spec in specs:
                results.append(compare(person, spec, nights, treat_of, comp, opts, context=ctx))
    return adjust_bh(results)
