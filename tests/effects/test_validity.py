"""The validity table and the effects that use it: gating, attenuation, sources not pooled."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from datetime import timedelta

import numpy as np
import pytest

from collector.effects.analysis import AnalysisOptions, EffectResult, analyse_person, compare
from collector.effects.io import PersonData, choose_source
from collector.effects.metrics import METRICS
from collector.effects.validity import (
    FLOOR,
    Assessment,
    ValidityTable,
    assess,
    build_table,
    calibrate,
    fieller,
    load_table,
    parse_table,
)
from collector.nights.run import ALGO_VERSION, night_options
from collector.settings import NightsSettings
from tests.effects.simpeople import START, simulate

OPTS = AnalysisOptions(permutations=1, seed=7)


def test_shipped_table_matches_the_current_staging() -> None:
    t = load_table()
    prov = t.provenance
    assert prov["algo_version"] == ALGO_VERSION, (
        "collector/effects/validity.json was made for another ALGO_VERSION: staging changed, regenerate it with "
        "scripts/make-validity")
    assert prov["options"] == json.loads(json.dumps(asdict(night_options(NightsSettings())))), (
        "the default staging options changed since collector/effects/validity.json was made: regenerate it "
        "with scripts/make-validity")
    assert prov["nights"] >= 10 and len(prov["records"]) >= 10
    assert "/work/" not in json.dumps(prov)  # no machine paths in shipped data
    for m in ("tst_min", "sol_min", "waso_min", "rem_min", "ln_rmssd", "hr_mean_bpm"):
        row = t.get("computed", m)
        assert row is not None and row.kind == "measured" and row.slope is not None and row.slope_se is not None
        assert row.slope_low is not None and row.slope_high is not None
        assert row.slope_low < row.slope < row.slope_high
    for m in METRICS:  # every metric has a row for every source the effects code meets
        for source in ("computed", "device"):
            assert t.get(source, m) is not None, (source, m)
    dev = t.get("device", "rem_min")
    assert dev is not None and "Miller" in dev.note  # published accuracy, cited


def _table(slope: float, se: float, metric: str = "tst_min", n: int = 40) -> ValidityTable:
    t = 2.0244  # t(0.975, 38)
    row = {"kind": "measured", "n": n, "slope": slope, "slope_se": se, "slope_low": slope - t * se,
           "slope_high": slope + t * se, "slope_df": n - 2}
    return parse_table({"provenance": {}, "floor": FLOOR, "sources": {"computed": {metric: row}}})


def _result(metric: str = "tst_min", seed: int = 3, effect: float = 20.0) -> EffectResult:
    p = simulate(np.random.default_rng(seed), "randomised", weeks=8, effects={metric: effect}, metrics=(metric,))
    r = next(x for x in analyse_person("alice", p.nights, OPTS, metrics=[metric], plan=p.plan)
         if x.comparison == "mg_vs_control")
    assert r.reported
    return r


def test_slope_zero_is_never_reported() -> None:
    for metric in ("tst_min", "sol_min"):
        r = _result(metric, effect=40.0 if metric == "tst_min" else math.log(0.5))
        a = assess(_table(0.0, 0.01, metric), "computed", metric)
        assert a.status == "not_measurable" and not a.measurable
        out = calibrate(r, a)
        assert not out.reported
        assert out.estimate is None and out.ci_low is None and out.p is None and out.prob_benefit is None
        assert out.fixed_low is None and out.anytime_high is None and not out.clear and out.next_step == ""
        assert "cannot be measured with a chest strap alone" in out.summary
        assert "to measure it:" in out.summary
    # a slope interval reaching below the floor is withheld too, even with a good point estimate
    a = assess(_table(0.6, 0.2), "computed", "tst_min")
    assert a.status == "not_measurable" and "below the floor" in a.reason


def test_slope_half_doubles_the_interval_and_the_estimate() -> None:
    r = _result("tst_min", effect=20.0)
    assert r.ci_low is not None and r.ci_high is not None and r.estimate is not None
    a = assess(_table(0.5, 1e-4), "computed", "tst_min")
    assert a.status == "calibrated"
    out = calibrate(r, a)
    assert out.reported and out.estimate is not None and out.ci_low is not None and out.ci_high is not None
    width, width0 = out.ci_high - out.ci_low, r.ci_high - r.ci_low
    assert width / width0 == pytest.approx(2.0, rel=0.01)
    assert out.estimate == pytest.approx(2 * r.estimate, rel=1e-6)
    assert out.p == r.p  # the test of "no effect" does not change
    assert "corrected for the measurement" in out.summary and "50%" in out.summary
    # an uncertain slope widens it further (the slope's uncertainty propagated)
    big = _result("tst_min", effect=90.0)
    assert big.ci_low is not None and big.ci_high is not None
    width = 2 * (big.ci_high - big.ci_low)
    wide = calibrate(big, assess(_table(0.5, 0.05), "computed", "tst_min"))
    assert wide.ci_low is not None and wide.ci_high is not None
    assert wide.ci_high - wide.ci_low > 1.05 * width
    # log-scale metrics: the ratio's interval on the log scale doubles too
    s = _result("sol_min", effect=math.log(0.6))
    cs = calibrate(s, assess(_table(0.5, 1e-4, "sol_min"), "computed", "sol_min"))
    assert s.ratio_low and s.ratio_high and cs.ratio_low and cs.ratio_high
    assert math.log(cs.ratio_high / cs.ratio_low) / math.log(s.ratio_high / s.ratio_low) == pytest.approx(2, rel=0.01)
    assert cs.estimate is not None and s.estimate is not None and cs.estimate < s.estimate < 0


def test_slope_one_changes_nothing_and_unchecked_sources_pass_through() -> None:
    r = _result("tst_min")
    out = calibrate(r, assess(_table(1.0, 1e-6), "computed", "tst_min"))
    assert out.ci_low == pytest.approx(r.ci_low, rel=1e-4) and out.ci_high == pytest.approx(r.ci_high, rel=1e-4)
    dev = load_table()
    a = assess(dev, "device", "rem_min")
    assert a.status == "unchecked"
    out = calibrate(r, a)
    assert (out.estimate, out.ci_low, out.ci_high, out.p) == (r.estimate, r.ci_low, r.ci_high, r.p)
    assert out.summary.startswith(r.summary.rstrip(".")) and "Miller et al. 2022" in out.summary


def test_fieller_is_unbounded_when_the_slope_is_not_clear_of_zero() -> None:
    assert fieller(1.0, 0.5, 0.1, 0.1, 1.96) is None
    lo, hi = fieller(1.0, 0.5, 0.5, 1e-9, 1.96) or (0.0, 0.0)
    assert lo == pytest.approx(2 * (1.0 - 1.96 * 0.5)) and hi == pytest.approx(2 * (1.0 + 1.96 * 0.5))


def test_calibrated_intervals_cover_the_true_effect_on_attenuated_measurements() -> None:
    """Nights measured with slope 0.5 (plus measurement noise): the corrected CI covers the true effect."""
    rng = np.random.default_rng(11)
    true_effect, s = 60.0, 0.5
    tab = _table(s, 0.03)
    a = assess(tab, "computed", "tst_min")
    hits = raw_hits = 0
    people = 120
    spec = METRICS["tst_min"]
    for _ in range(people):
        p = simulate(rng, "randomised", weeks=8, effects={"tst_min": true_effect}, metrics=("tst_min",))
        nights = [replace(n, values={"tst_min": 400 + s * (n.values["tst_min"] - 400) + rng.normal(0, 15)})
                  for n in p.nights]
        arm = {n.night: n.status == "magnesium" for n in nights}
        r = compare("x", spec, nights, arm, "mg_vs_control", OPTS, randomise=False)
        c = calibrate(r, a)
        assert c.ci_low is not None and c.ci_high is not None and r.ci_low is not None and r.ci_high is not None
        hits += c.ci_low <= true_effect <= c.ci_high
        raw_hits += r.ci_low <= true_effect <= r.ci_high
    # binomial SE at 0.95 with 120 people is 0.02: 0.90 is 2.5 SE below
    assert hits / people >= 0.90
    assert raw_hits / people < hits / people - 0.15  # uncorrected, the attenuated effect misses the truth


def test_build_table_from_validate_output() -> None:
    rng = np.random.default_rng(5)
    true = rng.uniform(100, 400, 20)
    nights = []
    for i, x in enumerate(true):
        comp = {"tst_min": 0.8 * x + 30 + rng.normal(0, 5), "sol_min": 10.0, "waso_min": None}
        nights.append({"record": f"r{i}", "subject": f"s{i // 2}", "flagged": False,
                       "true": {"tst_min": float(x), "sol_min": float(i)}, "computed_metrics": comp})
    metrics = {k: {"bias": 1.0, "mae": 1.0, "loa_low": -1.0, "loa_high": 1.0, "slope": 0.8}
               for k in ("tst_min", "sol_min", "waso_min", "se_pct", "rem_min", "awakenings", "rmssd_ms",
                         "hr_mean_bpm")}
    doc = build_table({"variants": [{"name": "default", "nights": nights, "metrics": metrics}]}, date="2026-01-01",
                      algo_version=7, options={"classifier": "x"}, data="d", command="c")
    t = parse_table(json.loads(json.dumps(doc)))
    tst = t.get("computed", "tst_min")
    assert tst is not None and tst.slope is not None and tst.slope_low is not None
    assert tst.slope == pytest.approx(0.8, abs=0.03) and tst.n == 20 and tst.slope_low > 0.7
    sol = t.get("computed", "sol_min")  # computed constant whatever the truth: slope 0, not measurable
    assert sol is not None and sol.slope == pytest.approx(0.0, abs=1e-9)
    assert assess(t, "computed", "sol_min").status == "not_measurable"
    assert assess(t, "computed", "waso_min").status == "not_measurable"  # no pairs at all
    assert t.provenance["algo_version"] == 7 and t.provenance["subjects"] == 10


def test_nights_of_different_sources_are_not_pooled() -> None:
    p = simulate(np.random.default_rng(2), "randomised", weeks=4, metrics=("tst_min",))
    staging = {n.night: ("device" if i % 4 == 0 else "computed") for i, n in enumerate(p.nights)}
    data = PersonData("alice", p.nights, staging=staging)
    kept, choice = choose_source(data)
    assert choice.source == "computed"
    assert choice.left_out == {"device": 7}
    assert len(kept) == 21 and all(staging[n.night] == "computed" for n in kept)
    assert "7 staged by device left out" in choice.describe()
    only = PersonData("alice", p.nights, staging={n.night: "computed" for n in p.nights})
    assert choose_source(only)[1].describe() == ""
    # the verdict point says so, and fits the schema
    from collector.effects.io import verdict_point
    from collector.effects.verdict import build_verdict
    from collector.storage.schema import validate_point

    pt = verdict_point(build_verdict("alice", [], {}), 0, choice.describe())
    validate_point(pt)
    assert pt.fields["sources_note"] == choice.describe() and pt.fields["source"] == "computed"
    assert "sources_note" not in verdict_point(build_verdict("alice", [], {}), 0).fields
    assert START + timedelta(days=27) == p.nights[-1].night


def test_assessment_of_a_missing_source_is_unchecked() -> None:
    a = assess(load_table(), "unknown-source", "tst_min")
    assert isinstance(a, Assessment) and a.status == "unchecked" and a.measurable


def test_an_interval_not_symmetric_about_the_estimate_keeps_its_shape_and_its_side_of_zero() -> None:
    from collector.effects.validity import corrected_interval

    # an anytime interval intersected with an earlier one: the estimate is not at its centre
    b, se, ci = -1.335, 0.62, (-3.566, -0.109)
    lo, hi = corrected_interval(b, se, ci, 0.95, 0.1) or (0.0, 0.0)
    assert hi < 0  # still clear of no effect, as the analysis decided on the uncorrected interval
    assert lo < ci[0] / 0.95 < ci[1] / 0.95 < hi < 0  # and a little wider than dividing by the slope
    # symmetric case: the same as one Fieller interval
    sym = corrected_interval(1.0, 0.5, (1.0 - 0.98, 1.0 + 0.98), 0.5, 1e-9)
    assert sym == pytest.approx(fieller(1.0, 0.5, 0.5, 1e-9 / 1.96, 1.96))


def test_a_very_wide_early_interval_does_not_overflow() -> None:
    r = _result("sol_min", effect=math.log(0.6))
    assert r.ratio_low is not None and r.ratio_high is not None and r.model_estimate is not None
    wide = replace(r, model_se=1.0, ratio_low=math.exp(r.model_estimate - 300.0),
                   ratio_high=math.exp(r.model_estimate + 300.0))
    out = calibrate(wide, assess(_table(0.35, 0.001, "sol_min"), "computed", "sol_min"))
    assert out.reported and out.ci_high == math.inf and out.ratio_high == math.inf
