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
from scipy import special
from statsmodels.stats.multitest import multipletests

from collector.effects.gls import FloatArray, GlsFit, fit_gls, permutation_coefs
from collector.effects.metrics import METRICS, MetricSpec
from collector.effects.planner import PlanInfo, assignments_for, within_week_assignments
from collector.effects.sequential import (
    DEFAULT_HORIZON,
    MIN_DF,
    MIN_INFORMATION,
    Step,
    critical,
    family_alpha,
    min_nights,
    next_step,
    tell_target,
)
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
    #: True: intervals valid however often you look (confidence sequences, the default);
    #: False: the fixed-sample interval, valid for one look chosen in advance (``--fixed``).
    sequential: bool = True
    #: planned nights (information time 1); None: the trial plan's nights, else DEFAULT_HORIZON
    horizon_nights: int | None = None
    #: no result before this share of the horizon's nights and MIN_DF residual degrees of freedom
    min_information: float = MIN_INFORMATION
    min_df: float = MIN_DF


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
    df: float | None = None  # degrees of freedom of the model-scale SE (Satterthwaite)
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
    # -- looking every morning (collector/effects/sequential.py) --
    #: the interval in force (ci_low/ci_high, ratio_low/ratio_high) excludes no effect
    clear: bool = False
    #: which interval ci_low/ci_high are: "anytime" (valid at every look) or "fixed" (one look)
    interval: str = ""
    alpha: float | None = None  # error rate of this metric's interval (after the Bonferroni split)
    anytime_low: float | None = None  # the anytime-valid interval, metric unit
    anytime_high: float | None = None
    fixed_low: float | None = None  # the fixed-sample 95% interval, metric unit
    fixed_high: float | None = None
    horizon: int | None = None  # planned nights (information time 1)
    info_fraction: float | None = None  # nights analysed / horizon
    #: stop_clear | keep_going | stop_futile | single_look (fixed), and the words for it
    decision: str = ""
    nights_more: int | None = None  # more nights (both arms) to tell the change named in next_step
    next_step: str = ""


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
        return float(special.ndtr(-mean / sd)), float(special.ndtr((-spec.threshold - mean) / sd))
    return float(special.ndtr(mean / sd)), float(special.ndtr((mean - spec.threshold) / sd))


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


def _safe_expm1(v: float) -> float:
    """expm1 that says "unbounded" (inf) instead of overflowing on a very wide early interval."""
    return math.expm1(v) if v < 700.0 else math.inf


def _safe_exp(v: float) -> float:
    return math.exp(v) if v < 700.0 else math.inf


def _interval_words(r: EffectResult) -> tuple[str, str]:
    """How the interval is named before and after its bounds."""
    level = f"{100 * (1 - r.alpha):.4g}%" if r.alpha is not None else "95%"
    if r.interval == "anytime":
        return f"{level} CI", ", valid at every look"
    if r.interval == "fixed":
        return f"fixed-sample {level} CI", ", for one look planned in advance"
    return f"{level} CI", ""


def summarise(spec: MetricSpec, r: EffectResult, context: str, arms: str) -> str:
    """The result in plain words, then the next step when there is one."""
    step = f"; {r.next_step}" if r.next_step else ""
    if not r.reported:
        return (f"{spec.label}: not enough nights for an estimate ({arms}); "
                f"{r.note or 'keep logging'}{step}.")
    assert r.estimate is not None
    assert r.ci_low is not None
    assert r.ci_high is not None
    est, lo, hi = r.estimate, r.ci_low, r.ci_high
    unit = spec.unit
    if spec.name == "ln_rmssd":  # report HRV changes in percent
        est, lo, hi = (100 * _safe_expm1(v) for v in (est, lo, hi))
        unit = "%"

    def word(x: float) -> str:
        return spec.more if x > 0 else spec.less

    if spec.name == "awakenings":
        unit = ""

    def amount(x: float) -> str:
        if math.isinf(x):
            return "any amount"
        return f"{_fmt(x)}%" if unit == "%" else f"{_fmt(x)} {unit}".rstrip()

    if spec.name == "awakenings":
        head = f"There were {_fmt(est)} {word(est)} awakenings per night {context}"
    else:
        head = f"{spec.label} was {amount(est)} {word(est)} {context}"
    name, label = _interval_words(r)
    if lo > 0 or hi < 0:
        a, b = sorted((abs(lo), abs(hi)))
        ci = f"{name} {_fmt(a)} to {amount(b)}{label}"
        tail = ""
    else:
        ci = f"{name} {amount(lo)} {word(lo)} to {amount(hi)} {word(hi)}{label}"
        tail = "; no clear difference"
    return f"{head} ({ci}{tail}), {arms}{step}."


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


def _fit(
    rows: Sequence[NightData], y: FloatArray, treat: NDArray[np.bool_], opts: AnalysisOptions,
    spec: MetricSpec, trend: bool,
) -> tuple[GlsFit, list[str], FloatArray, NDArray[np.int64]]:
    """The AR(1) regression of one metric on the nights ``rows``; AnalysisError when it cannot be fitted."""
    days = np.array([x.night.toordinal() for x in rows], dtype=np.int64)
    extra: list[tuple[str, FloatArray]] = []
    if trend:
        extra.append(("trend", (days - days.mean()) / 7.0))
    x_mat, names = _design(rows, treat, opts, extra)
    if len(rows) >= 2 and float(np.std(y)) == 0.0:
        raise AnalysisError(f"{spec.name} had the same value on every night; no effect can be estimated")
    fit = fit_gls(y, x_mat, days, 1, level=opts.level)
    if not (math.isfinite(fit.se) and fit.se > 0):
        raise AnalysisError(f"{spec.name} fits the nights exactly (no residual variation); no interval exists")
    return fit, names, x_mat, days


def _anytime(fit: GlsFit, n: int, horizon: int, alpha: float) -> tuple[float, float]:
    q = critical(n, horizon, fit.df, alpha)
    return fit.estimate - q * fit.se, fit.estimate + q * fit.se


def _first_result_step(n: int, n_mg: int, n_c: int, min_n: int, opts: AnalysisOptions) -> Step:
    short = max(min_n - n, 2 * (opts.min_nights_per_arm - min(n_mg, n_c)), 1)
    return Step("keep_going", short, f"keep going: a first result after about {short} more nights")


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
    alpha: float | None = None,
) -> EffectResult:
    """One comparison for one metric. ``treat_of`` maps the nights in play to their arm.

    ``alpha``: error rate of the anytime-valid interval (default 1 - level; analyse_person splits
    it over the primary metrics). Below the minimum information (a share of the horizon's nights,
    residual degrees of freedom, nights per arm) only counts and the next step are given.
    """
    rows = sorted(
        (x for x in nights if x.night in treat_of and math.isfinite(x.values.get(spec.name, math.nan))),
        key=lambda x: x.night,
    )
    treat = np.array([treat_of[x.night] for x in rows], dtype=bool)
    n_mg, n_c = int(treat.sum()), int((~treat).sum())
    n = n_mg + n_c
    arms = (f"{n_mg} vs {n_c} nights" if comparison != "before_after"
            else f"{n_c} baseline vs {n_mg} supplement nights")
    horizon = opts.horizon_nights or (plan.spec.n_nights if plan is not None else DEFAULT_HORIZON)
    alpha = alpha if alpha is not None else 1 - opts.level
    min_n = min_nights(horizon, opts.min_information)
    base = EffectResult(person, spec.name, comparison, spec.unit, n_mg, n_c, False, "",
                        half_width=spec.describe_half_width(),
                        interval="anytime" if opts.sequential else "fixed",
                        alpha=alpha if opts.sequential else 1 - opts.level,
                        horizon=horizon, info_fraction=n / horizon)
    y_raw = np.array([x.values[spec.name] for x in rows], dtype=np.float64)
    y = _transform(spec, y_raw) if len(rows) else y_raw
    sd = float(np.std(y, ddof=1)) if len(rows) >= 3 else None

    def withheld(note: str) -> EffectResult:
        step = _first_result_step(n, n_mg, n_c, min_n, opts) if n_mg and n_c else Step("keep_going", None, "")
        r = replace(base, nights_needed=nights_needed(None, 0, sd, spec), note=note,
                    decision=step.decision if step.text else "", nights_more=step.nights_more,
                    next_step=step.text)
        return replace(r, summary=summarise(spec, r, context, arms))

    if min(n_mg, n_c) < opts.min_nights_per_arm:
        return withheld(f"at least {opts.min_nights_per_arm} nights per arm are needed" if rows
                        else "no nights have this metric")
    if n < min_n:
        return withheld(f"results start after {min_n} nights ({opts.min_information:.0%} of the "
                        f"{horizon} planned)")
    try:
        fit, names, x_mat, days = _fit(rows, y, treat, opts, spec, trend)
    except AnalysisError as exc:
        return withheld(str(exc))
    if fit.df < opts.min_df:
        return withheld("too few nights yet to tell the night-to-night noise apart "
                        f"({fit.df:.1f} degrees of freedom, {opts.min_df:g} needed)")
    p_perm, method = (None, "none (before/after is not randomised)")
    if randomise:
        p_perm, method = _randomisation_p(rows, y, x_mat, days, treat, fit.rho, plan, opts)
    a_lo, a_hi = _anytime(fit, n, horizon, alpha)
    if n > horizon:  # past the plan: also valid is the interval at its end (a running intersection)
        try:
            end_fit = _fit(rows[:horizon], y[:horizon], treat[:horizon], opts, spec, trend)[0]
            e_lo, e_hi = _anytime(end_fit, horizon, horizon, alpha)
            if max(a_lo, e_lo) <= min(a_hi, e_hi):
                a_lo, a_hi = max(a_lo, e_lo), min(a_hi, e_hi)
        except AnalysisError:
            pass
    lo, hi = (a_lo, a_hi) if opts.sequential else (fit.ci_low, fit.ci_high)
    typical = float(np.exp(np.mean(y[~treat])))  # control nights, on the (x+1) scale
    if spec.scale == "log1p":
        def to_unit(v: float) -> float:
            return typical * _safe_expm1(v)
        ratios: tuple[float | None, ...] = tuple(_safe_exp(v) for v in (fit.estimate, lo, hi))
    else:
        def to_unit(v: float) -> float:
            return v
        ratios = (None, None, None)
    clear = lo > 0 or hi < 0
    if opts.sequential:
        target, tell = tell_target(spec, typical if spec.scale == "log1p" else None)
        step = next_step(clear=clear, estimate=fit.estimate, se=fit.se, df=fit.df, n=n, horizon=horizon,
                         alpha=alpha, target=target, tell=tell,
                         nights_left=None if plan is None else (plan.spec.dates()[-1] - rows[-1].night).days)
    else:
        step = Step("single_look", None, "decide only at the look you planned (e.g. the plan's end); "
                    "to stop early, use the default anytime-valid interval")
    pb, pm = posterior(fit.estimate, fit.se, spec)
    r = replace(
        base, reported=True, estimate=to_unit(fit.estimate), ci_low=to_unit(lo), ci_high=to_unit(hi),
        ratio=ratios[0], ratio_low=ratios[1], ratio_high=ratios[2],
        model_estimate=fit.estimate, model_se=fit.se, df=fit.df, p=fit.p, p_perm=p_perm, perm_method=method,
        prob_benefit=pb, prob_meaningful=pm, effect_size=fit.estimate / fit.sigma,
        rho=fit.rho, nights_needed=nights_needed(fit.se, n / 2, sd, spec),
        covariates=tuple(x for x in names[2:] if x != "weekend" and x != "trend"),
        clear=clear, anytime_low=to_unit(a_lo), anytime_high=to_unit(a_hi),
        fixed_low=to_unit(fit.ci_low), fixed_high=to_unit(fit.ci_high),
        decision=step.decision, nights_more=step.nights_more, next_step=step.text,
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
    """All comparisons for one person, BH-adjusted within each comparison.

    The primary metrics (sequential.PRIMARY) present share the anytime-valid alpha (Bonferroni),
    so "any primary metric clear by chance, at any look" stays below 1 - level.
    """
    opts = opts or AnalysisOptions()
    specs = [METRICS[m] for m in (metrics or list(METRICS))]
    alpha = family_alpha([s.name for s in specs], 1 - opts.level)
    # one horizon for every comparison: the plan's nights (dose bands are compared without the plan)
    opts = replace(opts, horizon_nights=opts.horizon_nights or (
        plan.spec.n_nights if plan is not None else DEFAULT_HORIZON))
    arm = {x.night: x.status == "magnesium" for x in nights if x.status in ("magnesium", "control")}
    results: list[EffectResult] = []
    for spec in specs:
        results.append(compare(person, spec, nights, arm, "mg_vs_control", opts, plan=plan,
                               alpha=alpha[spec.name]))
    # before/after: baseline control nights vs magnesium nights from the start date on
    start = supplement_start or min((x.night for x in nights if x.status == "magnesium"), default=None)
    if start is not None:
        end = baseline_end or start
        ba = {x.night: x.night >= start for x in nights
              if (x.night < end and x.status == "control") or (x.night >= start and x.status == "magnesium")}
        for spec in specs:
            results.append(compare(person, spec, nights, ba, "before_after", opts, trend=True,
                                   randomise=False, context="after starting magnesium than at baseline",
                                   plan=plan, alpha=alpha[spec.name]))
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
                results.append(compare(person, spec, nights, treat_of, comp, opts, context=ctx,
                                       alpha=alpha[spec.name]))
    return adjust_bh(results)
