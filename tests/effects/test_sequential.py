"""Anytime-valid intervals and the stopping rule: boundaries, constructed cases, daily looks."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from collector.effects.analysis import AnalysisOptions, EffectResult, compare
from collector.effects.metrics import METRICS
from collector.effects.sequential import (
    FUTILITY_POWER,
    PLAN_SHARE,
    Step,
    conditional_power,
    critical,
    family_alpha,
    next_step,
    nights_to_tell,
    obf_constant,
    t_critical,
    tell_target,
    z_boundary,
)
from collector.effects.tagging import night_time_ns
from collector.settings import InfluxSettings, Settings
from collector.storage.lineprotocol import Point
from collector.storage.pipeline import Pipeline
from tests.cli.console import Console
from tests.conftest import InfluxServer
from tests.effects.simpeople import simulate

TST = METRICS["tst_min"]


@pytest.mark.parametrize("alpha", [0.04, 0.02, 0.01])
def test_plan_constant_matches_the_reflection_series(alpha: float) -> None:
    # P(max_{t<=1} |W| >= c) = 4 * sum_k (-1)^(k+1) Phi(-(2k-1) c): images, not Feller's series
    c = obf_constant(alpha)
    images = 4 * sum((-1) ** (k + 1) * stats.norm.cdf(-(2 * k - 1) * c) for k in range(1, 6))
    assert images == pytest.approx(alpha, rel=1e-6)


def test_daily_looks_at_brownian_motion_cross_no_more_than_alpha() -> None:
    # the model the boundary is built for: the score is Brownian motion in its information
    rng = np.random.default_rng(20261205)
    paths, horizon = 20_000, 56
    s = np.cumsum(rng.normal(size=(paths, 2 * horizon)), axis=1)  # one unit of information a night
    n = np.arange(1, 2 * horizon + 1)
    z = np.abs(s) / np.sqrt(n)
    bound = z_boundary(n / horizon, 0.05)
    within = (z[:, 13:horizon] >= bound[13:horizon]).any(axis=1).mean()  # from night 14 to the end
    beyond = (z[:, 13:] >= bound[13:]).any(axis=1).mean()  # and on to twice the plan
    se = math.sqrt(0.05 * 0.95 / paths)
    assert within <= PLAN_SHARE * 0.05 + 3 * se
    assert beyond <= 0.05 + 3 * se
    # the price is small but real: the boundary at the plan's end is above the fixed 1.96
    assert 1.96 < float(z_boundary(1.0, 0.05)) < 2.4
    # one look as if it were the only one crosses far more often over the same looks
    assert (z[:, 13:horizon] >= 1.96).any(axis=1).mean() > 3 * within


def test_small_samples_widen_and_large_ones_tend_to_normal() -> None:
    z = float(z_boundary(0.5, 0.05))
    assert float(t_critical(z, 1e9)) == pytest.approx(z)
    qs = [float(t_critical(z, df)) for df in (2, 5, 20, 200)]
    assert qs == sorted(qs, reverse=True) and qs[-1] > z
    # a tiny df on an early look (the old overflow) gives a huge but finite or infinite value
    assert critical(6, 56, 0.3, 0.05) > 1e6


def test_bonferroni_over_the_primary_metrics_only() -> None:
    a = family_alpha(["sol_min", "tst_min", "waso_min"], 0.05)
    assert a == {"sol_min": 0.025, "tst_min": 0.025, "waso_min": 0.05}
    assert family_alpha(["tst_min"], 0.05) == {"tst_min": 0.05}


def test_ten_minute_target_for_minutes_metrics() -> None:
    assert tell_target(TST, None) == (10.0, "a 10-minute change")
    lr, words = tell_target(METRICS["sol_min"], 21.0)  # typical (x + 1) of 21: 20 min onset
    assert lr == pytest.approx(math.log(31 / 21)) and words == "a 10-minute change"
    assert tell_target(METRICS["se_pct"], None)[1] == "a change of 2 points"


def test_nights_to_tell_lands_on_the_first_night_narrow_enough() -> None:
    se, n, df, h = 14.0, 30, 26.0, 112
    more = nights_to_tell(se, n, df, h, 0.05, 10.0)
    assert more is not None and more > 0

    def half(m: int) -> float:  # a true 10-minute change is clear with 80% chance once this is <= 10
        return (critical(m, h, df + (m - n), 0.05) + float(stats.norm.ppf(0.8))) * se * math.sqrt(n / m)

    assert half(n + more) <= 10.0 < half(n + more - 1)
    assert nights_to_tell(100.0, 10, 6.0, 56, 0.05, 1.0) is None  # beyond 2000 nights


def _step(*, clear: bool, estimate: float, n: int, has_plan: bool) -> Step:
    return next_step(clear=clear, estimate=estimate, n=n, nights_left=56 - n if has_plan else None, se=10.0,
                     df=40.0, horizon=56, alpha=0.05, target=10.0, tell="a 10-minute change")


def test_stopping_rule_states() -> None:
    assert _step(clear=True, estimate=40.0, n=30, has_plan=True).decision == "stop_clear"
    ended = _step(clear=False, estimate=5.0, n=56, has_plan=True)
    assert ended.decision == "stop_futile" and "plan has ended" in ended.text
    # halfway with an estimate of exactly nothing: no chance of a clear answer by the end
    assert conditional_power(0.0, 0.6, 0.05) < FUTILITY_POWER
    futile = _step(clear=False, estimate=0.0, n=34, has_plan=True)
    assert futile.decision == "stop_futile" and "futility" in futile.text
    # halfway with a promising estimate: keep going
    going = _step(clear=False, estimate=20.0, n=34, has_plan=True)
    assert going.decision == "keep_going" and going.nights_more is not None
    assert "to tell a 10-minute change" in going.text
    # early on, a null-looking estimate is not yet futile
    early = _step(clear=False, estimate=0.0, n=20, has_plan=True)
    assert early.decision == "keep_going"
    # without a plan there is no planned end to be futile at
    assert _step(clear=False, estimate=0.0, n=56, has_plan=False).decision == "keep_going"


def _looks(effect: float, seed: int, weeks: int = 8) -> list[EffectResult]:
    p = simulate(np.random.default_rng(seed), "randomised", weeks, {"tst_min": effect} if effect else {},
                 metrics=("tst_min",))
    arm = {x.night: x.status == "magnesium" for x in p.nights}
    opts = AnalysisOptions(permutations=1)
    return [compare("a", TST, p.nights[:k], arm, "mg_vs_control", opts, plan=p.plan, randomise=False)
            for k in range(1, len(p.nights) + 1)]


def test_a_known_large_effect_becomes_clear_and_says_stop() -> None:
    looks = _looks(60.0, 7)  # +60 min, night-to-night SD 45
    shown = [r for r in looks if r.reported]
    assert shown and shown[0].n_mg + shown[0].n_control == 14  # a quarter of the 56-night plan
    assert all(not r.reported and r.decision == "keep_going" for r in looks[3:13])
    first = next(r for r in shown if r.clear)
    assert first.decision == "stop_clear" and "stop: the answer is clear" in first.summary
    assert first.ci_low is not None and first.ci_low > 0
    # clear earlier than the plan's end, and the interval still covers the truth at the end
    assert first.n_mg + first.n_control < 56
    end = looks[-1]
    assert end.ci_low is not None and end.ci_high is not None and end.ci_low <= 60.0 <= end.ci_high


def test_daily_looks_under_the_null_cross_no_more_than_the_bound_allows() -> None:
    # 24 people, daily looks from the first result to the end of an 8-week plan (43 looks each)
    people = [_looks(0.0, 1000 + i) for i in range(24)]
    anytime = sum(any(r.clear for r in looks) for looks in people)
    fixed = sum(any(r.reported and r.fixed_low is not None and r.fixed_high is not None
                    and (r.fixed_low > 0 or r.fixed_high < 0) for r in looks) for looks in people)
    # bound: 5% per person; P(4 or more of 24 | 0.05) = 0.03
    assert anytime <= 3
    # the fixed-sample interval looked at daily crosses about a quarter of the time (issue 21)
    assert fixed > anytime


@pytest.mark.slow
def test_fixed_through_the_console_script_and_the_new_fields_in_influxdb(
    influx_server: InfluxServer, influx_db: str, tmp_path: Path,
) -> None:
    start = date(2026, 9, 7)
    p = simulate(np.random.default_rng(4), "randomised", 5, {"tst_min": 50.0}, metrics=("tst_min",))
    # device-staged nights: passed through as they are by the validity table (issue 15)
    points = [Point("night", {"person": "alice", "dose": n.status, "staging": "device", "source": "device"},
                    {"night": (start + timedelta(days=i)).isoformat(), "tst_min": n.values["tst_min"]},
                    night_time_ns(start + timedelta(days=i)))
              for i, n in enumerate(p.nights)]

    async def write() -> None:
        settings = Settings(influx=InfluxSettings(embedded=False, url=influx_server.url, database=influx_db))
        async with Pipeline.from_settings(settings, name="test") as pipe:
            await pipe.put(points)
            await pipe.flush(timeout=30)

    asyncio.run(write())
    console = Console(tmp_path, {"influx": {"embedded": False, "url": influx_server.url, "database": influx_db},
                                 "persons": [{"name": "alice"}]})
    res = console.run("effects", "--metric", "tst_min", "--fixed", "--no-write", "--format", "json")
    assert res.returncode == 0, res.stderr
    (fixed,) = [r for r in json.loads(res.stdout)[0]["results"] if r["comparison"] == "mg_vs_control"]
    assert fixed["interval"] == "fixed" and fixed["decision"] == "single_look"
    assert fixed["n_mg"] + fixed["n_control"] == 35 and fixed["reported"]
    assert (fixed["ci_low"], fixed["ci_high"]) == (fixed["fixed_low"], fixed["fixed_high"])
    res = console.run("effects", "--metric", "tst_min")
    assert res.returncode == 0, res.stderr
    assert "fixed-sample" not in res.stdout
    rows = [r for r in influx_server.rows("SELECT * FROM effect", influx_db) if r["comparison"] == "mg_vs_control"]
    (row,) = rows
    assert row["interval"] == "anytime" and row["alpha"] == pytest.approx(0.05)
    assert row["ci_high"] - row["ci_low"] > fixed["ci_high"] - fixed["ci_low"]  # the price of looking daily
    assert row["fixed_low"] == pytest.approx(fixed["fixed_low"])
    assert row["clear"] is (row["ci_low"] > 0 or row["ci_high"] < 0)
    assert row["decision"] in ("stop_clear", "keep_going") and row["next_step"]
