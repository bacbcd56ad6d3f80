"""The verdict: one answer first, ranked by what matters and what is measurable, with the next step."""

from __future__ import annotations

import math

import numpy as np

from collector.effects.analysis import AnalysisOptions, EffectResult, analyse_person
from collector.effects.validity import SOURCE_WORDS, Assessment, load_table
from collector.effects.verdict import IMPORTANCE, build_verdict, change_phrase, more_nights
from tests.effects.simpeople import simulate

OPTS = AnalysisOptions(permutations=1, seed=7)
ALL = ("sol_min", "tst_min", "waso_min", "se_pct", "awakenings", "rem_min", "hr_mean_bpm", "ln_rmssd")


def _results(seed: int, effects: dict[str, float], weeks: int = 8) -> list[EffectResult]:
    p = simulate(np.random.default_rng(seed), "randomised", weeks=weeks, effects=effects, metrics=ALL)
    return [r for r in analyse_person("alice", p.nights, OPTS, metrics=list(ALL), plan=p.plan)
            if r.comparison == "mg_vs_control"]


def _assess(status_of: dict[str, str]) -> dict[str, Assessment]:
    return {m: Assessment("computed", m, "not_measurable" if status_of.get(m) == "no" else "calibrated",
                          1.0, 0.01, 2.0, "x", "a device that stages it") for m in ALL}


def test_headline_first_ranked_plain_and_honest_about_what_cannot_be_measured() -> None:
    res = _results(4, {"sol_min": math.log(0.4)}, weeks=12)
    v = build_verdict("alice", res, _assess({"waso_min": "no", "rem_min": "no"}), source="computed", has_plan=True)
    assert v.headline.startswith("For you, magnesium nights: fell asleep ")
    assert "min faster (clear)" in v.headline or "min faster (likely)" in v.headline
    assert "WASO and REM cannot be measured with a chest strap alone" in v.headline
    assert "sol_min" not in v.headline and "tst_min" not in v.headline  # plain names
    # ranked by what matters, the ones that cannot be measured last; not alphabetical
    order = [i.metric for i in v.items]
    measurable = [m for m in order if m not in ("waso_min", "rem_min")]
    assert measurable == sorted(measurable, key=IMPORTANCE.index)
    assert order[-2:] == ["waso_min", "rem_min"]
    assert order != sorted(order)
    tst = v.headline.index("slept") if "slept" in v.headline else v.headline.index("total sleep")
    assert v.headline.index("fell asleep") < tst
    # the next step: SOL is clear, so the first minute metric still open is total sleep (the simulated
    # plan has ended: the analysis says so, with the nights it would take)
    assert v.next_step.startswith("Next (total sleep): ")
    assert "more nights" in v.next_step and "10-minute change" in v.next_step


def test_next_step_nights_match_the_power_formula_and_shrink_with_more_nights() -> None:
    short = {r.metric: r for r in _results(9, {}, weeks=4)}["tst_min"]
    long = {r.metric: r for r in _results(9, {}, weeks=16)}["tst_min"]
    a, b = more_nights(short), more_nights(long)
    assert a is not None and b is not None
    assert short.model_se is not None
    n_now = short.n_mg + short.n_control
    expected = math.ceil(n_now * (2.8016 * short.model_se / 10.0) ** 2) - n_now
    assert abs(a - expected) <= 1
    # with SD 45 min a night, telling 10 min apart takes hundreds of nights: a plain, honest number
    assert a > 100
    assert b < a + n_now  # more nights so far -> fewer still to go in total


def test_too_few_nights_and_nothing_measurable() -> None:
    res = _results(1, {}, weeks=1)
    v = build_verdict("bob", [r for r in res if r.metric == "tst_min"], {}, source="computed", has_plan=False)
    assert "not enough nights yet" in v.headline or "no clear change" in v.headline
    v2 = build_verdict("bob", res, {m: Assessment("computed", m, "not_measurable") for m in ALL})
    assert v2.headline.startswith("For you, magnesium nights: nothing that can be measured yet; ")


def test_change_phrases() -> None:
    assert change_phrase("sol_min", -9.2) == "fell asleep 9.2 min faster"
    assert change_phrase("tst_min", 12.4) == "slept 12 min longer"
    assert change_phrase("waso_min", -3) == "3.0 min less awake in the night"
    assert change_phrase("ln_rmssd", math.log(1.05)) == "heart rate variability 5.0% higher"


def test_real_table_verdict_for_a_chest_strap() -> None:
    res = _results(6, {"tst_min": 30.0})
    from collector.effects.io import apply_validity

    out, assessments = apply_validity(res, "computed")
    v = build_verdict("alice", out, assessments, source="computed")
    table = load_table()
    for m in ALL:
        row = table.get("computed", m)
        assert row is not None
    cannot = [i.metric for i in v.items if i.state == "cannot_measure"]
    assert cannot == [m for m in IMPORTANCE if m in cannot]  # ranked among themselves too
    assert SOURCE_WORDS["computed"] == "a chest strap alone"


def test_next_step_without_a_plan_and_out_of_reach() -> None:
    from dataclasses import replace

    res = [replace(r, decision="keep_going", nights_more=500 if r.metric == "tst_min" else 20, clear=False)
           for r in _results(5, {})]
    assess = _assess({"sol_min": "no"})
    v = build_verdict("alice", res, assess, has_plan=False)
    assert v.next_step.startswith("Next: about 500 more nights to tell a 10-minute change in total sleep (80% power)")
    assert "out of reach" in v.next_step and "a randomised plan (magsleep plan --weeks 8)" in v.next_step
    near = build_verdict("alice", [replace(r, nights_more=20) for r in res], assess, has_plan=True)
    assert near.next_step == ("Next: about 20 more nights of the current plan to tell a 10-minute change in total "
                              "sleep (80% power).")
