"""One answer first: the verdict of a person's effects in plain words, ranked, with the next step.

Pure: takes the (validity-corrected) :class:`EffectResult` rows of one comparison and the
:class:`~collector.effects.validity.Assessment` of each metric, returns a :class:`Verdict`:

    For you, magnesium nights: fell asleep 9 min faster (likely), total sleep no clear change;
    WASO and REM cannot be measured with a chest strap alone.
    Next: about 40 more nights of the current plan to tell a 10-minute change in total sleep.

Metrics are ranked by what matters for sleep (falling asleep, total sleep, waking in the night,
...) with the ones this source cannot measure last, never alphabetically.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from scipy import stats

from collector.effects.analysis import EffectResult
from collector.effects.metrics import METRICS
from collector.effects.validity import SOURCE_WORDS, Assessment

#: What matters most first (the order of the verdict, the tables and the forest plot).
IMPORTANCE: tuple[str, ...] = ("sol_min", "tst_min", "waso_min", "se_pct", "awakenings", "rem_min", "deep_min",
                               "hr_mean_bpm", "hr_min5_bpm", "ln_rmssd")
#: Plain names instead of field codes.
PLAIN: dict[str, str] = {
    "sol_min": "time to fall asleep",
    "tst_min": "total sleep",
    "waso_min": "time awake in the night",
    "se_pct": "sleep efficiency",
    "awakenings": "awakenings",
    "rem_min": "REM sleep",
    "deep_min": "deep sleep",
    "hr_mean_bpm": "sleeping heart rate",
    "hr_min5_bpm": "resting heart rate",
    "ln_rmssd": "heart rate variability",
}
#: Short names in the "cannot be measured" clause.
SHORT: dict[str, str] = {"waso_min": "WASO", "rem_min": "REM", "sol_min": "time to fall asleep",
                         "se_pct": "sleep efficiency", "deep_min": "deep sleep"}
#: Metrics the "N more nights to tell a 10-minute change" line can be about, in order.
MINUTE_METRICS = ("sol_min", "tst_min", "waso_min")
TARGET_MIN = 10.0
POWER = 0.8
#: More nights than this (about a year of nights) are called out of reach in the next step.
OUT_OF_REACH = 365
#: The verdict's posterior threshold for "likely" (P(benefit) or P(harm) at least this).
LIKELY = 0.8

State = Literal["clear", "likely", "no_clear_change", "cannot_measure", "too_few_nights"]


@dataclass(frozen=True, slots=True)
class VerdictItem:
    metric: str
    name: str
    state: State
    text: str  # the phrase in the verdict ("fell asleep 9 min faster (likely)")
    rank: int
    detail: str = ""  # the full sentence (the result's summary)


@dataclass(frozen=True, slots=True)
class Verdict:
    person: str
    comparison: str
    headline: str
    next_step: str
    items: tuple[VerdictItem, ...]
    source: str = ""

    @property
    def text(self) -> str:
        return f"{self.headline} {self.next_step}".strip()


def rank(metric: str) -> int:
    return IMPORTANCE.index(metric) if metric in IMPORTANCE else len(IMPORTANCE)


def plain(metric: str) -> str:
    return PLAIN.get(metric, metric)


def _amount(x: float) -> str:
    a = abs(x)
    return f"{a:.0f}" if a >= 9.5 else f"{a:.1f}" if a >= 0.95 else f"{a:.2f}"


def change_phrase(metric: str, est: float) -> str:
    """The change in words, direction included: 'fell asleep 9 min faster'."""
    up = est > 0
    a = _amount(est)
    if metric == "sol_min":
        return f"fell asleep {a} min {'slower' if up else 'faster'}"
    if metric == "tst_min":
        return f"slept {a} min {'longer' if up else 'less'}"
    if metric == "waso_min":
        return f"{a} min {'more' if up else 'less'} awake in the night"
    if metric == "se_pct":
        return f"sleep efficiency {a} points {'higher' if up else 'lower'}"
    if metric == "awakenings":
        return f"{a} {'more' if up else 'fewer'} awakenings a night"
    if metric in ("rem_min", "deep_min"):
        return f"{a} min {'more' if up else 'less'} {plain(metric)}"
    if metric == "ln_rmssd":
        return f"heart rate variability {_amount(100 * math.expm1(est))}% {'higher' if up else 'lower'}"
    unit = METRICS[metric].unit if metric in METRICS else ""
    return f"{plain(metric)} {a} {unit} {'higher' if up else 'lower'}".replace("  ", " ")


def state_of(r: EffectResult, a: Assessment | None) -> State:
    if a is not None and not a.measurable:
        return "cannot_measure"
    if not r.reported or r.estimate is None or r.ci_low is None or r.ci_high is None:
        return "too_few_nights"
    clear = getattr(r, "clear", None)  # issue 21's decision, when the analysis gives one
    if isinstance(clear, bool):
        if clear:
            return "clear"
    elif r.ci_low > 0 or r.ci_high < 0:
        return "clear"
    pb = r.prob_benefit
    if pb is not None and (pb >= LIKELY or pb <= 1 - LIKELY):
        return "likely"
    return "no_clear_change"


def item_for(r: EffectResult, a: Assessment | None) -> VerdictItem:
    st = state_of(r, a)
    name = plain(r.metric)
    if st == "cannot_measure":
        text = f"{SHORT.get(r.metric, name)} cannot be measured"
    elif st == "too_few_nights":
        text = f"{name}: not enough nights yet"
    elif st == "no_clear_change":
        text = f"{name} no clear change"
    else:
        assert r.estimate is not None
        text = f"{change_phrase(r.metric, r.estimate)} ({st})"
    return VerdictItem(r.metric, name, st, text, rank(r.metric), r.summary)


def _join(words: Sequence[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def more_nights(r: EffectResult, target: float = TARGET_MIN, power: float = POWER) -> int | None:
    """More nights (both arms, in the current mix) for a ``target``-minute change to be detected with
    ``power`` at the 5% level, from the result's current standard error (SE shrinks as 1/sqrt(n))."""
    if r.model_se is None or not r.reported or r.model_se <= 0:
        return None
    spec = METRICS[r.metric]
    if spec.scale == "log1p":
        if None in (r.ci_low, r.ci_high, r.ratio_low, r.ratio_high):
            return None
        assert r.ci_low is not None and r.ci_high is not None
        assert r.ratio_low is not None and r.ratio_high is not None
        d = r.ratio_high - r.ratio_low
        g = (r.ci_high - r.ci_low) / d if d > 0 else 0.0
        if g <= 0:
            return None
        delta = math.log((g + target) / g)  # a 10-minute shortening or lengthening at the typical value
    else:
        delta = target
    z = float(stats.norm.ppf(0.975) + stats.norm.ppf(power))
    n_now = r.n_mg + r.n_control
    needed = math.ceil(n_now * (z * r.model_se / delta) ** 2)
    return max(0, needed - n_now)


def build_verdict(
    person: str,
    results: Sequence[EffectResult],
    assessments: Mapping[str, Assessment],
    *,
    source: str = "computed",
    has_plan: bool = False,
    min_nights_per_arm: int = 3,
    max_headline: int = 4,
) -> Verdict:
    """The verdict of one comparison's results (usually mg_vs_control)."""
    comparison = results[0].comparison if results else "mg_vs_control"
    shown = [r for r in results
             if r.n_mg + r.n_control > 0 or ((a := assessments.get(r.metric)) is not None and not a.measurable)]
    items = sorted((item_for(r, assessments.get(r.metric)) for r in shown),
                   key=lambda i: (i.state == "cannot_measure", i.rank))
    subject = ("For you, magnesium nights" if comparison == "mg_vs_control"
               else "For you, after starting magnesium (before/after, weaker evidence)")
    measurable = [i for i in items if i.state != "cannot_measure"]
    estimated = [i for i in measurable if i.state != "too_few_nights"]
    said = [i for i in estimated if i.rank < IMPORTANCE.index("hr_mean_bpm")][:max_headline]
    said += [i for i in estimated if i.state in ("clear", "likely") and i not in said]
    said.sort(key=lambda i: i.rank)
    cannot = [SHORT.get(i.metric, i.name) for i in items if i.state == "cannot_measure"
              and i.metric in IMPORTANCE[:7]]
    words = SOURCE_WORDS.get(source, f"{source} staging")
    if said:
        head = f"{subject}: " + ", ".join(i.text for i in said)
    elif measurable:
        head = f"{subject}: not enough nights yet for an answer"
    else:
        head = f"{subject}: nothing that can be measured yet"
    if cannot:
        head += f"; {_join(cannot)} cannot be measured with {words}"
    head += "."
    # the next step: the most important minute metric that is not yet clear
    next_step = ""
    plan_words = " of the current plan" if has_plan else ""
    by_metric = {r.metric: r for r in results}
    for m in MINUTE_METRICS:
        it = next((i for i in measurable if i.metric == m), None)
        if it is None or it.state == "clear" or m not in by_metric:
            continue
        r = by_metric[m]
        if it.state == "too_few_nights":
            need = max(0, min_nights_per_arm - min(r.n_mg, r.n_control))
            next_step = (f"Next: at least {need} more nights in each arm before {it.name} can be estimated "
                         f"({r.n_mg} magnesium / {r.n_control} control so far).")
            break
        if getattr(r, "decision", "") == "stop_futile":  # issue 21: the plan cannot make this one clear
            next_step = f"Next ({it.name}): {getattr(r, 'next_step', '')}."
            break
        theirs = getattr(r, "nights_more", None)  # the anytime interval's own count, when there is one
        more = theirs if isinstance(theirs, int) else more_nights(r)
        if more is None:
            continue
        next_step = (f"Next: about {more} more nights{plan_words} to tell a {TARGET_MIN:.0f}-minute change in "
                     f"{it.name} ({POWER:.0%} power)")
        if more > OUT_OF_REACH:
            next_step += (": over a year of nights, so a change this small is out of reach for you with this "
                          "measurement")
        if not has_plan:
            next_step += "; a randomised plan (magsleep plan --weeks 8) makes each night count most"
        next_step += "."
        break
    open_minutes = [i for i in estimated if i.metric in MINUTE_METRICS]
    if not next_step and open_minutes:  # every minute metric that can be measured is clear
        next_step = "Next: the answer is clear for what can be measured; keep the plan to confirm it holds."
    elif not next_step:
        # no sleep-minute metric can be measured (or none has a count): say what would measure them,
        # and how far the first measurable one still is
        first_cannot = next((i for i in items if i.state == "cannot_measure" and i.metric in MINUTE_METRICS), None)
        parts = []
        if first_cannot is not None:
            how = assessments[first_cannot.metric].measured_by
            parts.append(f"to measure {first_cannot.name}: {how}")
        other = next((i for i in estimated if i.state != "clear"), None)
        if other is not None:
            step = str(getattr(by_metric.get(other.metric), "next_step", "") or "")
            if step:
                parts.append(f"{other.name}: {step}")
        if parts:
            next_step = "Next: " + "; ".join(parts) + "."
    return Verdict(person, comparison, head, next_step, tuple(items), source)
