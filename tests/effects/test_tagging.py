"""Which nights are magnesium nights."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.effects.tagging import Dose, NightKey, tag_nights

H = 3_600_000_000_000


def ns(y: int, mo: int, d: int, h: int, mi: int = 0) -> int:
    return int(datetime(y, mo, d, h, mi, tzinfo=UTC).timestamp()) * 1_000_000_000


def night(d: int, lo_h: int = 23) -> NightKey:
    return NightKey(date(2026, 11, d), ns(2026, 11, d, lo_h), ns(2026, 11, d + 1, 7))


@pytest.mark.parametrize(
    ("dose_at", "expected"),
    [
        (ns(2026, 11, 20, 22), "magnesium"),  # 1 h before
        (ns(2026, 11, 20, 19), "magnesium"),  # exactly 4 h before: inside
        (ns(2026, 11, 20, 23), "magnesium"),  # at lights out: inside (0 h)
        (ns(2026, 11, 20, 18, 59), "off_window"),  # 4 h 1 min before
        (ns(2026, 11, 21, 2), "off_window"),  # during the night
        (ns(2026, 11, 20, 8), "control"),  # morning dose, 15 h before: another day's business
    ],
)
def test_window_edges(dose_at: int, expected: str) -> None:
    (out,) = tag_nights([night(20)], [Dose(dose_at, 200.0, "citrate")])
    assert out.status == expected
    if expected == "magnesium":
        assert out.elemental_mg == 200.0
        assert out.form == "citrate"


def test_window_is_configurable_and_doses_add_up() -> None:
    doses = [Dose(ns(2026, 11, 20, 21), 100.0, "glycinate"), Dose(ns(2026, 11, 20, 22), 50.0, "citrate")]
    (out,) = tag_nights([night(20)], doses, window_h=(0.5, 1.5))
    assert out.status == "magnesium"
    assert out.elemental_mg == 50.0  # only the 22:00 dose is 0.5-1.5 h before 23:00
    (out,) = tag_nights([night(20)], doses)
    assert out.elemental_mg == 150.0
    assert out.form == "citrate+glycinate"


def test_no_dose_tag_confirms_control_and_other_supplements_are_ignored() -> None:
    nights = [night(20), night(21)]
    doses = [Dose(ns(2026, 11, 21, 22), 100.0, "", supplement="melatonin")]
    out = tag_nights(nights, doses, {date(2026, 11, 20): ["no_dose", "alcohol"]})
    assert [n.status for n in out] == ["control", "control"]
    assert out[0].confirmed_control
    assert not out[1].confirmed_control
    assert out[0].covariates["alcohol"]
    assert not out[1].covariates["alcohol"]


def test_dose_wins_over_a_conflicting_no_dose_tag() -> None:
    (out,) = tag_nights([night(20)], [Dose(ns(2026, 11, 20, 22), 100.0)], {date(2026, 11, 20): ["no_dose"]})
    assert out.status == "magnesium"
    assert out.conflict


def test_washout_excludes_the_nights_after_magnesium() -> None:
    nights = [night(d) for d in range(10, 16)]
    doses = [Dose(ns(2026, 11, 11, 22), 100.0)]
    out = tag_nights(nights, doses, washout_nights=2)
    assert [n.status for n in out] == ["control", "magnesium", "washout", "washout", "control", "control"]


def test_missing_lights_out_uses_the_default_in_local_time_or_is_unknown() -> None:
    key = NightKey(date(2026, 11, 20))
    berlin = ZoneInfo("Europe/Berlin")  # UTC+1 in November
    dose = Dose(ns(2026, 11, 20, 21), 100.0)  # 22:00 local
    (out,) = tag_nights([key], [dose])
    assert out.status == "unknown"
    (out,) = tag_nights([key], [dose], default_lights_out=time(23, 30), tz=berlin)
    assert out.status == "magnesium"
    (out,) = tag_nights([key], [dose], default_lights_out=time(0, 30), tz=berlin)
    assert out.status == "magnesium"  # 00:30 belongs to the evening before: 2.5 h after the dose
    (out,) = tag_nights([key], [], {date(2026, 11, 20): ["no_dose"]})
    assert out.status == "control"


@settings(max_examples=60, deadline=None)
@given(offsets_min=st.lists(st.integers(-20 * 60, 10 * 60), max_size=6), seed=st.integers(0, 10))
def test_status_follows_the_window_rule_whatever_the_dose_order(offsets_min: list[int], seed: int) -> None:
    key = night(20)
    assert key.lights_out_ns is not None
    doses = [Dose(key.lights_out_ns - m * 60_000_000_000, 100.0) for m in offsets_min]
    shuffled = list(doses)
    random.Random(seed).shuffle(shuffled)
    (a,) = tag_nights([key], doses)
    (b,) = tag_nights([key], shuffled)
    assert a == b
    in_window = [m for m in offsets_min if 0 <= m <= 240]
    assert (a.status == "magnesium") == bool(in_window)
    if in_window:
        assert a.elemental_mg == 100.0 * len(in_window)
