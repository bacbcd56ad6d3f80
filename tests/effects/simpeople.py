"""A small nightly-metric simulator with planted effects (for tests and bench/bench_effects.py).

Each metric is ``mean + weekend + effect * magnesium + e`` with AR(1) errors ``e`` (correlation
``rho`` between consecutive nights, marginal SD ``sd``). ``sol_min`` and ``waso_min`` are
simulated on the log scale (the effect is a log ratio of ``x + 1``), ``awakenings`` as Poisson
counts whose log rate follows the same AR(1) process. Missing nights can be dropped at random.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
from scipy.signal import lfilter

from collector.effects.analysis import NightData, PlanInfo, is_weekend
from collector.effects.planner import PlanSpec, draw

START = date(2026, 1, 5)  # a Monday


@dataclass(frozen=True)
class MetricModel:
    mean: float
    sd: float
    weekend: float
    kind: str = "linear"  # linear | log1p | poisson


MODELS: dict[str, MetricModel] = {
    "tst_min": MetricModel(420.0, 45.0, 25.0),
    "sol_min": MetricModel(math.log(16.0), 0.6, -0.1, "log1p"),
    "waso_min": MetricModel(math.log(31.0), 0.5, 0.05, "log1p"),
    "se_pct": MetricModel(88.0, 4.0, 1.0),
    "awakenings": MetricModel(math.log(5.0), 0.25, 0.1, "poisson"),
    "deep_min": MetricModel(80.0, 20.0, 5.0),
    "rem_min": MetricModel(95.0, 22.0, 8.0),
    "hr_mean_bpm": MetricModel(56.0, 3.0, 1.5),
    "hr_min5_bpm": MetricModel(50.0, 2.5, 1.0),
    "ln_rmssd": MetricModel(math.log(45.0), 0.15, -0.05),
}


@dataclass(frozen=True)
class Person:
    nights: list[NightData]
    plan: PlanInfo | None
    truth: dict[str, float] = field(default_factory=dict)  # planted effect, model scale


def ar1(rng: np.random.Generator, n: int, rho: float) -> np.ndarray:
    """A stationary AR(1) series with unit marginal variance."""
    z = rng.normal(size=n) * math.sqrt(1 - rho**2)
    z[0] = rng.normal()
    return lfilter([1.0], [1.0, -rho], z)  # type: ignore[no-any-return]


def assignment(design: str, weeks: int, rng: np.random.Generator) -> tuple[np.ndarray, PlanInfo | None]:
    """Magnesium nights for a design: randomised, blocks (2-week), blocks1 (1-week), before_after."""
    n = 7 * weeks
    if design == "before_after":
        return np.arange(n) >= n // 2, None
    if design == "all_mg":
        return np.ones(n, dtype=bool), None
    if design == "none":
        return np.zeros(n, dtype=bool), None
    spec = PlanSpec(START, weeks, "randomised" if design == "randomised" else "blocks",
                    1 if design == "blocks1" else 2)
    a = draw(spec, rng)
    return a, PlanInfo(spec, {d: bool(x) for d, x in zip(spec.dates(), a, strict=True)})


def simulate(
    rng: np.random.Generator,
    design: str = "randomised",
    weeks: int = 8,
    effects: dict[str, float] | None = None,
    *,
    rho: float = 0.3,
    metrics: tuple[str, ...] = ("tst_min", "sol_min"),
    missing: float = 0.0,
    dose_mg: float = 300.0,
    form: str = "glycinate",
) -> Person:
    effects = effects or {}
    treat, plan = assignment(design, weeks, rng)
    n = treat.shape[0]
    dates = [START + timedelta(days=i) for i in range(n)]
    weekend = np.array([is_weekend(d) for d in dates], dtype=float)
    values: dict[str, np.ndarray] = {}
    for name in metrics:
        m = MODELS[name]
        lin = m.mean + m.weekend * weekend + effects.get(name, 0.0) * treat + m.sd * ar1(rng, n, rho)
        if m.kind == "log1p":
            values[name] = np.maximum(np.expm1(lin), 0.0)  # latencies are never negative
        elif m.kind == "poisson":
            values[name] = rng.poisson(np.exp(lin)).astype(float)
        else:
            values[name] = lin
    keep = np.asarray(rng.random(n) >= missing, dtype=bool)
    nights = [
        NightData(d, "magnesium" if t else "control", {k: float(v[i]) for k, v in values.items()},
                  dose_mg if t else 0.0, form if t else "")
        for i, (d, t) in enumerate(zip(dates, treat, strict=True)) if keep[i]
    ]
    return Person(nights, plan, dict(effects))


@dataclass(frozen=True)
class ScenarioResult:
    people: int
    coverage: float  # share of 95% CIs containing the planted effect
    reject: float  # share with regression p < 0.05
    reject_perm: float | None  # share with randomisation p < 0.05 (None: not randomised)
    reject_naive: float  # share with a naive Welch t-test p < 0.05
    mean_n_per_arm: float


def run_scenario(
    seed: int,
    people: int,
    design: str,
    metric_name: str = "tst_min",
    effect: float = 0.0,
    *,
    weeks: int = 8,
    permutations: int = 0,
    rho: float = 0.3,
) -> ScenarioResult:
    """Simulate ``people`` people and analyse each; rates of coverage and rejection."""
    from scipy import stats

    from collector.effects.analysis import AnalysisOptions, compare
    from collector.effects.metrics import METRICS

    spec = METRICS[metric_name]
    rng = np.random.default_rng(seed)
    opts = AnalysisOptions(permutations=max(permutations, 1), seed=seed)
    cover = rej = rej_perm = rej_naive = 0
    n_arm = 0.0
    ba = design == "before_after"
    for _ in range(people):
        p = simulate(rng, design, weeks, {metric_name: effect} if effect else {}, rho=rho,
                     metrics=(metric_name,))
        arm = {n.night: n.status == "magnesium" for n in p.nights}
        r = compare("sim", spec, p.nights, arm, "before_after" if ba else "mg_vs_control", opts,
                    plan=p.plan, trend=ba, randomise=permutations > 0 and not ba)
        assert r.model_estimate is not None and r.model_se is not None and r.p is not None
        if spec.scale == "log1p":
            assert r.ratio_low is not None and r.ratio_high is not None
            lo, hi = math.log(r.ratio_low), math.log(r.ratio_high)
        else:
            assert r.ci_low is not None and r.ci_high is not None
            lo, hi = r.ci_low, r.ci_high
        cover += lo <= effect <= hi
        rej += r.p < 0.05
        rej_perm += r.p_perm is not None and r.p_perm < 0.05
        y = np.array([n.values[metric_name] for n in p.nights])
        if spec.scale == "log1p":
            y = np.log1p(y)
        t = np.array([n.status == "magnesium" for n in p.nights])
        rej_naive += stats.ttest_ind(y[t], y[~t], equal_var=False).pvalue < 0.05
        n_arm += (r.n_mg + r.n_control) / 2
    return ScenarioResult(
        people, cover / people, rej / people,
        rej_perm / people if permutations > 0 and not ba else None,
        rej_naive / people, n_arm / people,
    )
