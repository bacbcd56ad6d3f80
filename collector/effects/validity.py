"""How well each nightly metric measures real sleep, per staging source, and effects corrected for it.

The validity table (``validity.json`` beside this module) is built by ``scripts/make-validity`` from
``magsleep validate --json`` on polysomnography-scored records: per metric, computed minus expert
(bias, Bland-Altman limits) and the slope of computed on expert over nights with its interval. An
effect on a metric whose computed value follows real changes with slope ``s`` shows up about ``s``
times as large (docs/effects.md, "Measurement validity"). Here:

- :func:`assess` sorts a metric of a staging source into ``calibrated`` (slope interval above
  :data:`FLOOR`: divide by the slope), ``not_measurable`` (the interval reaches below the floor, or the
  source does not give the metric) or ``unchecked`` (no real-data check possible here: shown as
  measured, with the published accuracy stated);
- :func:`calibrate` applies it to one :class:`EffectResult`: regression calibration with Fieller's
  interval for the ratio effect / slope (the slope's uncertainty propagated), or withholding it.

Pure functions; the table is read once from package data.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from typing import Any, Literal

import numpy as np
from scipy import stats

from collector.effects.analysis import EffectResult, nights_needed, posterior
from collector.effects.metrics import METRICS, MetricSpec
from collector.errors import MagsleepError

#: A metric is reported as an effect only when the lower end of its slope interval is at least this:
#: below it, the measured change could be a third or less of the real one (or none at all).
FLOOR = 0.3
#: Level of the slope interval stored in the table and used by the floor.
SLOPE_LEVEL = 0.95
TABLE_FILE = "validity.json"

Status = Literal["calibrated", "not_measurable", "unchecked"]

#: Effects metric -> (key in ``magsleep validate`` night metrics, transform onto the model scale).
VALIDATED: dict[str, tuple[str, Literal["linear", "log1p", "log"]]] = {
    "tst_min": ("tst_min", "linear"),
    "sol_min": ("sol_min", "log1p"),
    "waso_min": ("waso_min", "log1p"),
    "se_pct": ("se_pct", "linear"),
    "awakenings": ("awakenings", "log1p"),
    "rem_min": ("rem_min", "linear"),
    "ln_rmssd": ("rmssd_ms", "log"),
    "hr_mean_bpm": ("hr_mean_bpm", "linear"),
}

#: What would measure a metric that this source cannot (shown in place of the effect).
MEASURED_BY: dict[str, str] = {
    "sol_min": "tap lights out and lights on (phone page or `magsleep night lights-out`) and use a "
               "device that detects sleep onset (motion sensor or a staging device)",
    "waso_min": "a motion sensor (wrist actigraphy) or a device that stages wake",
    "awakenings": "a motion sensor (wrist actigraphy) or a device that stages wake",
    "se_pct": "lights-out and lights-on taps plus a motion sensor or a staging device",
    "rem_min": "a device that stages REM (e.g. a ring or watch with its own sleep stages)",
    "deep_min": "a device that stages deep sleep (heartbeats give wake/NREM/REM only)",
    "tst_min": "a motion sensor or a staging device",
    "hr_mean_bpm": "a chest strap with beat-to-beat intervals",
    "hr_min5_bpm": "a chest strap with beat-to-beat intervals",
    "ln_rmssd": "a chest strap with beat-to-beat intervals",
}

#: How each staging source is named in sentences ("cannot be measured with ... alone").
SOURCE_WORDS: dict[str, str] = {
    "computed": "a chest strap alone",
    "device": "this device's own sleep stages",
}


#: What an unchecked result's sentence adds, per source.
UNCHECKED_WORDS: dict[str, str] = {
    "computed": "not compared with polysomnography by magsleep validate",
    "device": "the device's staging is not checked here (published epoch agreement of consumer devices: "
              "kappa 0.20-0.44, Miller et al. 2022)",
}


class ValidityError(MagsleepError):
    """The validity table is missing or malformed; regenerate it with scripts/make-validity."""


@dataclass(frozen=True, slots=True)
class MetricValidity:
    """One row of the table: a metric as a staging source measures it."""

    source: str
    metric: str
    kind: Literal["measured", "published", "unchecked", "not_staged"]
    n: int = 0
    bias: float | None = None
    loa_low: float | None = None
    loa_high: float | None = None
    slope: float | None = None  # on the model scale (ln(x+1) for log1p metrics, ln for ln_rmssd)
    slope_se: float | None = None
    slope_low: float | None = None
    slope_high: float | None = None
    slope_df: int | None = None
    r: float | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class ValidityTable:
    provenance: Mapping[str, Any]
    floor: float
    rows: Mapping[tuple[str, str], MetricValidity]

    def get(self, source: str, metric: str) -> MetricValidity | None:
        return self.rows.get((source, metric))

    @property
    def sources(self) -> list[str]:
        return sorted({s for s, _ in self.rows})


@dataclass(frozen=True, slots=True)
class Assessment:
    """What the effects code does with a metric of a staging source."""

    source: str
    metric: str
    status: Status
    slope: float | None = None
    slope_se: float | None = None
    slope_crit: float | None = None  # the slope interval's critical value (Student t on its df)
    reason: str = ""
    measured_by: str = ""

    @property
    def measurable(self) -> bool:
        return self.status != "not_measurable"


# -- building the table from `magsleep validate --json` ---------------------------------------------


def _transform(values: Sequence[float], how: str) -> Any:
    x = np.asarray(values, dtype=np.float64)
    if how == "log1p":
        return np.log1p(x)
    if how == "log":
        return np.log(x)
    return x


def slope_fit(true: Any, computed: Any, level: float = SLOPE_LEVEL) -> dict[str, Any]:
    """OLS slope of computed on true with its standard error and Student-t interval (df n - 2)."""
    x = np.asarray(true, dtype=np.float64)
    y = np.asarray(computed, dtype=np.float64)
    n = int(x.size)
    if n < 3 or np.ptp(x) == 0:
        return {"n": n, "slope": None, "slope_se": None, "slope_low": None, "slope_high": None, "slope_df": None,
                "r": None}
    fit = stats.linregress(x, y)
    df = n - 2
    t = float(stats.t.ppf(0.5 + level / 2, df))
    se = float(fit.stderr)
    return {"n": n, "slope": float(fit.slope), "slope_se": se, "slope_low": float(fit.slope) - t * se,
            "slope_high": float(fit.slope) + t * se, "slope_df": df,
            "r": float(fit.rvalue) if np.ptp(y) > 0 else None}


def _rounded(d: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}


#: Rows for sources no record here can check: what is published, with its citation.
PUBLISHED: dict[str, dict[str, Any]] = {
    "device": {
        "kind": "published",
        "note": "Consumer devices' own stages against polysomnography, per 30-s epoch: multi-stage kappa "
                "0.20-0.44 (Apple 0.20, Garmin 0.25, Polar 0.28, Oura 0.43, WHOOP 0.44), wake/sleep "
                "accuracy 86-89% (Miller et al. 2022, Sensors 22:6317); Apple Watch motion + heart rate "
                "(Walch et al. 2019, Sleep 42:zsz180): sleep/wake 90%, wake/NREM/REM about 72%. No "
                "night-level slope is published for these devices, and none can be checked here (no "
                "device recordings with polysomnography): effects on device-staged nights are shown as the "
                "device measures them, uncorrected. The other devices magsleep reads stages from (Bangle.js, "
                "PineTime/InfiniTime, Mi Band/Amazfit through Gadgetbridge) have no published check against "
                "polysomnography known to magsleep: their stages are unvalidated.",
    },
    "computed_motion": {
        "kind": "unchecked",
        "note": "Heartbeats fused with wrist motion (nights.motion_staging). Not checked: the records here "
                "have no activity. Cole-Kripke actigraphy alone agrees about 88% with polysomnography on "
                "sleep/wake (Cole et al. 1992, Sleep 15:461). Night points do not yet say whether motion "
                "was fused, so such nights are assessed with the 'computed' rows.",
    },
}


def build_table(report: Mapping[str, Any], *, variant: str = "default", date: str, algo_version: int,
                options: Mapping[str, Any], data: str, command: str, floor: float = FLOOR) -> dict[str, Any]:
    """The validity table (JSON-ready) from ``magsleep validate --json`` output; pure."""
    v = next((x for x in report["variants"] if x["name"] == variant), None)
    if v is None:
        raise ValidityError(f"variant {variant!r} not in the validate output")
    nights = [n for n in v["nights"] if not n.get("flagged")]
    rows: dict[str, dict[str, Any]] = {}
    for metric, (key, how) in VALIDATED.items():
        pairs = [(n["true"].get(key), n["computed_metrics"].get(key)) for n in nights]
        ok = [(float(a), float(b)) for a, b in pairs if a is not None and b is not None
              and (how != "log" or (a > 0 and b > 0))]
        natural = v["metrics"][key]
        fit = slope_fit(_transform([a for a, _ in ok], how), _transform([b for _, b in ok], how))
        rows[metric] = _rounded({"kind": "measured", "scale": how, "bias": natural["bias"],
                                 "mae": natural["mae"], "loa_low": natural["loa_low"],
                                 "loa_high": natural["loa_high"], "natural_slope": natural["slope"], **fit})
    rows["deep_min"] = {"kind": "not_staged", "note": "heartbeat staging gives wake / NREM / REM: no deep sleep"}
    rows["hr_min5_bpm"] = {"kind": "unchecked",
                           "note": "not compared by magsleep validate; from beat times like mean HR, whose "
                                   "slope is in this table"}
    records = sorted({n["record"] for n in v["nights"]})
    return {
        "provenance": {
            "command": command, "data": data, "records": records,
            "subjects": len({n["subject"] for n in v["nights"]}), "nights": len(nights),
            "date": date, "algo_version": algo_version, "options": dict(options),
            "slope": f"OLS of computed on expert over nights, on the effects model scale; {SLOPE_LEVEL:.0%} "
                     "Student-t interval (df n - 2)",
        },
        "floor": floor,
        "sources": {"computed": rows, **{k: {"*": dict(val)} for k, val in PUBLISHED.items()}},
    }


# -- reading the table ---------------------------------------------------------------------------


def parse_table(doc: Mapping[str, Any]) -> ValidityTable:
    try:
        rows: dict[tuple[str, str], MetricValidity] = {}
        for source, metrics in doc["sources"].items():
            for metric, row in metrics.items():
                targets = list(METRICS) if metric == "*" else [metric]
                for m in targets:
                    rows[(source, m)] = MetricValidity(
                        source=source, metric=m, kind=row["kind"], n=int(row.get("n", 0)),
                        bias=row.get("bias"), loa_low=row.get("loa_low"), loa_high=row.get("loa_high"),
                        slope=row.get("slope"), slope_se=row.get("slope_se"), slope_low=row.get("slope_low"),
                        slope_high=row.get("slope_high"), slope_df=row.get("slope_df"), r=row.get("r"),
                        note=str(row.get("note", "")))
        return ValidityTable(dict(doc["provenance"]), float(doc["floor"]), rows)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValidityError(f"the validity table is malformed ({exc!r}); regenerate it: scripts/make-validity") from exc


@cache
def load_table() -> ValidityTable:
    """The table shipped with the package (collector/effects/validity.json)."""
    try:
        text = resources.files("collector.effects").joinpath(TABLE_FILE).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidityError(f"the validity table {TABLE_FILE} is missing ({exc}); regenerate it: "
                            "scripts/make-validity") from exc
    return parse_table(json.loads(text))


# -- using it ------------------------------------------------------------------------------------


def assess(table: ValidityTable, source: str, metric: str) -> Assessment:
    """How ``metric`` measured by staging ``source`` is treated (see the module docstring)."""
    row = table.get(source, metric)
    by = MEASURED_BY.get(metric, "")
    if row is None:
        return Assessment(source, metric, "unchecked", reason=f"no validity data for {source} nights", measured_by=by)
    if row.kind == "not_staged":
        return Assessment(source, metric, "not_measurable", reason=row.note, measured_by=by)
    if row.kind == "measured" and (row.slope is None or row.slope_se is None):
        return Assessment(source, metric, "not_measurable", reason=f"only {row.n} polysomnography nights have it: "
                          "too few to check that it follows real changes", measured_by=by)
    if row.kind in ("published", "unchecked") or row.slope is None or row.slope_se is None:
        return Assessment(source, metric, "unchecked", reason=row.note or "not checked against polysomnography",
                          measured_by=by)
    crit = (row.slope_high - row.slope) / row.slope_se if row.slope_high is not None and row.slope_se > 0 else 1.96
    low = row.slope_low if row.slope_low is not None else row.slope - crit * row.slope_se
    if low < table.floor:
        reason = (f"on {row.n} polysomnography nights it follows real changes with slope {row.slope:.2f} "
                  f"(95% {low:.2f} to {row.slope_high:.2f}), below the floor {table.floor:g}")
        return Assessment(source, metric, "not_measurable", row.slope, row.slope_se, crit, reason, by)
    reason = (f"follows about {row.slope:.0%} of real changes (slope {row.slope:.2f}, 95% {low:.2f} to "
              f"{row.slope_high:.2f}, {row.n} polysomnography nights)")
    return Assessment(source, metric, "calibrated", row.slope, row.slope_se, crit, reason, by)


def fieller(b: float, se_b: float, s: float, se_s: float, q: float) -> tuple[float, float] | None:
    """Fieller's interval for b / s with independent normal b and s: {t : |b - t s| <= q sqrt(se_b² + t² se_s²)}.

    None when it is unbounded (s not clearly away from 0 at this level)."""
    a = s * s - q * q * se_s * se_s
    if a <= 0:
        return None
    root = q * math.sqrt(b * b * se_s * se_s + se_b * se_b * a)
    return (b * s - root) / a, (b * s + root) / a


def corrected_interval(b: float, se_b: float, ci: tuple[float, float], s: float,
                       s_half: float) -> tuple[float, float] | None:
    """The interval ``ci`` of the observed effect ``b`` as an interval for b / s (Fieller, per side).

    Each end keeps its own critical value (q = distance from b in SEs), so an interval that is not
    symmetric about b (an anytime interval intersected with an earlier one) keeps its shape, and an
    end on the far side of 0 stays there. ``s_half`` is the half-width of the slope's own interval: the
    slope's SE is put on each side's scale so that ±q·SE_s is that interval. None when unbounded.
    """
    q_lo, q_hi = (b - ci[0]) / se_b, (ci[1] - b) / se_b
    if q_lo <= 0 or q_hi <= 0:  # the estimate outside its own interval: use the interval's half-width
        q_lo = q_hi = (ci[1] - ci[0]) / (2 * se_b)
    low = fieller(b, se_b, s, s_half / q_lo, q_lo)
    high = fieller(b, se_b, s, s_half / q_hi, q_hi)
    if low is None or high is None:
        return None
    return low[0], high[1]


def _model_ci(r: EffectResult, spec: MetricSpec) -> tuple[float, float] | None:
    if spec.scale == "log1p":
        if r.ratio_low is None or r.ratio_high is None or r.ratio_low <= 0:
            return None
        return math.log(r.ratio_low), math.log(r.ratio_high)
    if r.ci_low is None or r.ci_high is None:
        return None
    return r.ci_low, r.ci_high


def _exp(v: float) -> float:
    return math.exp(v) if v < 700.0 else math.inf


def _typical(r: EffectResult) -> float | None:
    """G of a log1p metric (minutes shown = G·(ratio − 1)), recovered from the CI in both forms."""
    if None in (r.ci_low, r.ci_high, r.ratio_low, r.ratio_high):
        return None
    assert r.ci_low is not None and r.ci_high is not None and r.ratio_low is not None and r.ratio_high is not None
    d = r.ratio_high - r.ratio_low
    return (r.ci_high - r.ci_low) / d if d > 0 else None


def context_of(comparison: str) -> str:
    """The phrase analysis.compare uses for a comparison ("on magnesium nights", ...)."""
    if comparison == "mg_vs_control":
        return "on magnesium nights"
    if comparison == "before_after":
        return "after starting magnesium than at baseline"
    if comparison.startswith("band_"):
        _, lo, hi = comparison.split("_")
        return f"on {lo}+ mg nights" if hi == "inf" else f"on {lo}-{hi} mg nights"
    return f"on {comparison.removeprefix('form_')} nights"


def arms_of(r: EffectResult) -> str:
    if r.comparison == "before_after":
        return f"{r.n_control} baseline vs {r.n_mg} supplement nights"
    return f"{r.n_mg} vs {r.n_control} nights"


def withheld(r: EffectResult, a: Assessment, source_words: str) -> EffectResult:
    """The result of a metric this source cannot measure: no numbers, and what would measure it."""
    spec = METRICS[r.metric]
    text = (f"{spec.label}: not reported as an effect: it cannot be measured with {source_words} "
            f"({a.reason}); to measure it: {a.measured_by}.")
    out = replace(r, reported=False, estimate=None, ci_low=None, ci_high=None, ratio=None, ratio_low=None,
                  ratio_high=None, model_estimate=None, model_se=None, p=None, p_adj=None, p_perm=None,
                  prob_benefit=None, prob_meaningful=None, effect_size=None, nights_needed=None,
                  note="not measurable: " + a.reason, summary=text)
    # issue 21's intervals and decision say nothing either when the metric is not measured
    blank: dict[str, Any] = {k: v for k, v in (("clear", False), ("anytime_low", None), ("anytime_high", None),
                                               ("fixed_low", None), ("fixed_high", None), ("decision", ""),
                                               ("nights_more", None), ("next_step", "")) if hasattr(r, k)}
    return replace(out, **blank)


def calibrate(r: EffectResult, a: Assessment, *, source_words: str = "") -> EffectResult:
    """``r`` corrected for how ``a``'s source measures the metric (regression calibration).

    calibrated: effect and interval on the model scale divided by the slope, Fieller's interval with
    the effect's own critical value (the slope's SE put on that scale); SE by the delta method;
    P(benefit) and nights needed from the corrected SE. p values are kept: dividing by a positive
    slope does not change the test of "no effect". not_measurable: :func:`withheld`. unchecked: as
    measured, the sentence saying so.
    """
    words = source_words or SOURCE_WORDS.get(a.source, f"{a.source} staging")
    if a.status == "not_measurable":
        return withheld(r, a, words)
    if a.status == "unchecked" and r.reported:
        said = UNCHECKED_WORDS.get(a.source, "not checked against polysomnography here")
        return replace(r, summary=r.summary.rstrip(".") + f"; as measured, {said}.")
    if a.status != "calibrated" or not r.reported:
        return r
    spec = METRICS[r.metric]
    slope, slope_se, slope_crit = a.slope, a.slope_se, a.slope_crit
    assert slope is not None and slope_se is not None and slope_crit is not None
    b, se_b = r.model_estimate, r.model_se
    ci = _model_ci(r, spec)
    if b is None or se_b is None or ci is None or se_b <= 0:
        return r
    bounds = corrected_interval(b, se_b, ci, slope, slope_se * slope_crit)
    if bounds is None:
        return withheld(r, replace(a, reason=a.reason + "; too uncertain to correct for"), words)
    est = b / slope
    se = math.sqrt(se_b**2 / slope**2 + b**2 * slope_se**2 / slope**4)
    lo, hi = bounds
    pb, pm = posterior(est, se, spec)
    n_arm = (r.n_mg + r.n_control) / 2
    out = replace(r, model_estimate=est, model_se=se, prob_benefit=pb, prob_meaningful=pm,
                  nights_needed=nights_needed(se, n_arm, None, spec),
                  note=(r.note + "; " if r.note else "") + f"corrected: {a.reason}")
    g = _typical(r) if spec.scale == "log1p" else None
    if spec.scale == "log1p" and g is None:
        return r

    def to_model(v: float) -> float:
        return math.log1p(v / g) if g is not None else v

    def to_unit(v: float) -> float:
        if g is None:
            return v
        return g * math.expm1(v) if v < 700.0 else math.inf  # a very wide early interval: unbounded

    def other(low: float | None, high: float | None) -> tuple[float | None, float | None]:
        """Another interval of the same estimate (anytime / fixed) through the same correction."""
        if low is None or high is None or (g is not None and (low <= -g or high <= -g)):
            return None, None
        got = corrected_interval(b, se_b, (to_model(low), to_model(high)), slope, slope_se * slope_crit)
        return (to_unit(got[0]), to_unit(got[1])) if got else (None, None)

    out = replace(out, estimate=to_unit(est), ci_low=to_unit(lo), ci_high=to_unit(hi))
    if g is not None:
        out = replace(out, ratio=_exp(est), ratio_low=_exp(lo), ratio_high=_exp(hi))
    # issue 21's extra intervals and its "N more nights", when the analysis gives them
    if hasattr(r, "anytime_low"):
        a_lo, a_hi = other(getattr(r, "anytime_low", None), getattr(r, "anytime_high", None))
        f_lo, f_hi = other(getattr(r, "fixed_low", None), getattr(r, "fixed_high", None))
        extra: dict[str, Any] = {"anytime_low": a_lo, "anytime_high": a_hi, "fixed_low": f_lo, "fixed_high": f_hi}
        out = replace(out, **extra)
    more = getattr(r, "nights_more", None)
    if isinstance(more, int) and more > 0:
        # SE shrinks as 1/sqrt(n): the corrected SE needs (se / se_b)² times the nights (approximately)
        n_now = r.n_mg + r.n_control
        new = max(0, math.ceil((n_now + more) * (se / se_b) ** 2) - n_now)
        text = str(getattr(r, "next_step", "")).replace(f"about {more} more nights", f"about {new} more nights")
        step: dict[str, Any] = {"nights_more": new, "next_step": text}
        out = replace(out, **step)
    from collector.effects.analysis import summarise

    text = summarise(spec, out, context_of(r.comparison), arms_of(r))
    text = text.rstrip(".") + f"; corrected for the measurement, which {a.reason}."
    return replace(out, summary=text)


def dominant_source(stagings: Sequence[str]) -> str | None:
    """The staging source of most nights (ties: computed first)."""
    counts: dict[str, int] = {}
    for s in stagings:
        counts[s] = counts.get(s, 0) + 1
    if not counts:
        return None
    return max(sorted(counts), key=lambda s: (counts[s], s == "computed"))
