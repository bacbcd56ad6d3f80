"""Night windows, the two-period rule, naps, lights from tags and the HR-based estimate."""

from __future__ import annotations

from datetime import date, datetime
from datetime import time as dtime
from zoneinfo import ZoneInfo

import numpy as np

from collector.nights.segment import (
    lights_from_tags,
    night_of,
    night_span,
    night_window,
    rest_bounds,
    sleep_periods,
)
from collector.nights.stages import NREM, UNKNOWN, WAKE
from collector.settings import PersonSettings
from tests.nights.test_metrics import hyp

NS = 1_000_000_000


def _ns(y, m, d, hh, mm, tz="Europe/Berlin"):
    return int(datetime(y, m, d, hh, mm, tzinfo=ZoneInfo(tz)).timestamp()) * NS


def test_window_default_and_custom():
    p = PersonSettings(name="a", timezone="Europe/Berlin")
    w = night_window(date(2026, 11, 20), p)
    assert w.start_ns == _ns(2026, 11, 20, 18, 0)
    assert w.end_ns == _ns(2026, 11, 21, 14, 0)
    night_worker = PersonSettings(name="b", timezone="Europe/Berlin", night_start=dtime(6), night_end=dtime(17))
    w2 = night_window(date(2026, 11, 20), night_worker)
    assert (w2.start_ns, w2.end_ns) == (_ns(2026, 11, 20, 6, 0), _ns(2026, 11, 20, 17, 0))


def test_window_across_dst_change():
    p = PersonSettings(name="a", timezone="Europe/Berlin")
    w = night_window(date(2026, 10, 24), p)  # clocks go back in the night to Oct 25
    assert (w.end_ns - w.start_ns) / 3600 / NS == 21


def test_night_of_and_naps_outside_window():
    p = PersonSettings(name="a", timezone="Europe/Berlin")
    assert night_of(_ns(2026, 11, 21, 2, 30), p) == date(2026, 11, 20)
    assert night_of(_ns(2026, 11, 20, 23, 0), p) == date(2026, 11, 20)
    assert night_of(_ns(2026, 11, 21, 13, 59), p) == date(2026, 11, 20)
    assert night_of(_ns(2026, 11, 21, 15, 30), p) is None  # afternoon nap: no night


def test_two_periods_close_together_are_one_night():
    codes = hyp((WAKE, 30), (NREM, 180), (WAKE, 90), (NREM, 200), (WAKE, 20))
    periods = sleep_periods(codes)
    assert len(periods) == 1
    assert night_span(codes) == (60, 60 + (180 + 90 + 200) * 2)


def test_far_apart_long_periods_both_count_short_nap_ignored():
    # evening nap of 40 min, 3 h awake, main sleep, 2.5 h awake, 90 min more sleep
    codes = hyp((NREM, 40), (WAKE, 180), (NREM, 300), (WAKE, 150), (NREM, 90), (WAKE, 10))
    periods = sleep_periods(codes)
    assert [round(p.sleep_min) for p in periods] == [40, 300, 90]
    span = night_span(codes)
    assert span is not None
    a, b = span
    assert a == (40 + 180) * 2  # the 40-min nap is not part of the night
    assert b == (40 + 180 + 300 + 150 + 90) * 2  # the 90-min second period is


def test_no_sleep_no_span():
    assert night_span(hyp((WAKE, 60), (UNKNOWN, 60))) is None


def test_unknown_gap_does_not_split_a_period():
    codes = hyp((NREM, 100), (UNKNOWN, 60), (NREM, 100))
    assert len(sleep_periods(codes)) == 1


def test_lights_from_tags_latest_wins_and_removal():
    rows = [
        {"time": 1, "tag": "lights_out", "value": True, "at": 100},
        {"time": 2, "tag": "lights_out", "value": True, "at": 150},
        {"time": 3, "tag": "lights_on", "value": True, "at": 900},
        {"time": 4, "tag": "lights_on", "value": False, "at": 900},
        {"time": 5, "tag": "alcohol", "value": True},
    ]
    assert lights_from_tags(rows) == (150, None)


def test_rest_bounds_from_hr():
    n = 200
    present = np.ones(n, bool)
    hr = np.full(n, 55.0)
    hr[:40] = 90.0  # up and about
    hr[40:60] = 60.0  # lying in bed, HR settling
    hr[180:] = 85.0  # up in the morning
    lo, hi = rest_bounds(70, 170, present, hr)
    assert 38 <= lo <= 44
    assert 170 <= hi <= 182
    # without HR: back until data stops, at most 90 min (180 epochs)
    present[:20] = False
    lo2, hi2 = rest_bounds(70, 170, present, None)
    assert (lo2, hi2) == (20, 200)
