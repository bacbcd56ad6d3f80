"""Metric definitions on hand-made hypnograms (30-s epochs: 2 per minute)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from collector.nights.metrics import heart_metrics, hr_from_samples, sleep_metrics
from collector.nights.stages import DEEP, LIGHT, NREM, REM, SLEEP, UNKNOWN, WAKE


def hyp(*parts: tuple[int, float]) -> np.ndarray:
    """(code, minutes) runs -> 30-s epoch codes."""
    return np.concatenate([np.full(round(mins * 2), code, dtype=np.int64) for code, mins in parts])


def test_no_sleep():
    m = sleep_metrics(hyp((WAKE, 60)))
    assert m.tib_min == 60
    assert m.tst_min == 0
    assert m.se_pct == 0
    assert m.sol_min is None
    assert m.lps_min is None
    assert m.waso_min is None
    assert m.awakenings is None
    assert m.wake_min == 60


def test_sleep_from_lights_out():
    m = sleep_metrics(hyp((LIGHT, 30), (DEEP, 60), (REM, 30)))
    assert m.sol_min == 0
    assert m.lps_min == 0
    assert m.tst_min == 120
    assert m.se_pct == 100
    assert m.waso_min == 0
    assert m.awakenings == 0
    assert (m.light_min, m.deep_min, m.rem_min, m.nrem_min) == (30, 60, 30, 90)
    assert m.deep_pct == 50
    assert m.rem_pct == 25


def test_awake_at_end_is_not_waso():
    m = sleep_metrics(hyp((WAKE, 15), (NREM, 200), (WAKE, 10), (REM, 40), (WAKE, 35)))
    assert m.tib_min == 300
    assert m.sol_min == 15
    assert m.tst_min == 240
    assert m.waso_min == 10  # the 35 min after the final awakening are not WASO
    assert m.wake_min == 60
    assert m.awakenings == 1
    assert m.se_pct == pytest.approx(80)
    # 3-stage staging: no light/deep split
    assert m.light_min is None
    assert m.deep_min is None
    assert m.deep_pct is None
    assert m.nrem_min == 200
    assert m.rem_pct == pytest.approx(100 * 40 / 240)


def test_two_sleep_periods_in_one_night():
    m = sleep_metrics(hyp((WAKE, 20), (NREM, 150), (WAKE, 90), (NREM, 180), (WAKE, 5)))
    assert m.sol_min == 20
    assert m.tst_min == 330
    assert m.waso_min == 90  # the gap between the periods is wake after sleep onset
    assert m.awakenings == 1


def test_short_wake_bouts_are_not_awakenings_and_lps():
    # 1.5-min wake bouts (below the 2-min minimum) and a fragmented start
    m = sleep_metrics(hyp((WAKE, 5), (LIGHT, 3), (WAKE, 2), (LIGHT, 5), (WAKE, 1.5), (LIGHT, 30),
                          (WAKE, 1.5), (DEEP, 30), (WAKE, 2), (LIGHT, 10)))
    assert m.sol_min == 5
    assert m.lps_min == 5 + 3 + 2 + 5 + 1.5  # first run of >= 10 min sleep
    assert m.awakenings == 2  # the 2-min bouts count, the 1.5-min ones do not
    assert m.waso_min == 2 + 1.5 + 1.5 + 2


def test_unknown_epochs_lower_coverage_not_sleep():
    m = sleep_metrics(hyp((WAKE, 10), (NREM, 60), (UNKNOWN, 30), (NREM, 100)))
    assert m.tib_min == 200
    assert m.tst_min == 160
    assert m.waso_min == 0
    assert m.coverage_pct == pytest.approx(85)


def test_wake_sleep_only_staging():
    m = sleep_metrics(hyp((WAKE, 10), (SLEEP, 100)))
    assert m.tst_min == 100
    assert m.rem_min is None
    assert m.nrem_min is None


def test_empty_hypnogram():
    m = sleep_metrics(np.zeros(0, dtype=np.int64))
    assert m.tib_min == 0
    assert m.se_pct == 0
    assert m.coverage_pct == 0


def _beats(codes: np.ndarray, hr_sleep: float, hr_wake: float, rmssd: float, seed: int = 0):
    """Beats whose NN alternate +-rmssd/2 around the mean (RMSSD exactly ``rmssd``)."""
    rng = np.random.default_rng(seed)
    t, ts, nns = 0.0, [], []
    sign = 1.0
    end = codes.size * 30
    while t < end:
        e = int(t // 30)
        asleep = codes[min(e, codes.size - 1)] != WAKE
        base = 60000.0 / (hr_sleep if asleep else hr_wake)
        nn = base + sign * rmssd / 2 if asleep else base + rng.normal(0, 5)
        sign = -sign
        t += nn / 1000
        ts.append(t)
        nns.append(nn)
    nn_arr = np.array(nns)
    return np.array(ts), nn_arr, np.ones(nn_arr.size, bool), np.zeros(nn_arr.size, np.int64)


def test_heart_metrics_from_beats():
    codes = hyp((WAKE, 20), (NREM, 120), (WAKE, 10))
    t, nn, ok, seg = _beats(codes, 55, 75, 40)
    h = heart_metrics(codes, t, nn, ok, seg)
    assert h.hr_mean_bpm == pytest.approx(55, rel=0.01)
    assert h.hr_min5_bpm == pytest.approx(55, rel=0.01)
    # wake-sleep transitions straddle windows -> blocks only inside sleep
    assert h.rmssd_windows == 24
    assert h.rmssd_ms == pytest.approx(40, rel=0.02)
    assert h.rmssd_ms is not None
    assert h.ln_rmssd == pytest.approx(math.log(h.rmssd_ms))


def test_rmssd_ignores_corrected_and_cross_segment_pairs():
    codes = hyp((NREM, 60))
    t, nn, ok, seg = _beats(codes, 60, 60, 30)
    nn2 = nn.copy()
    nn2[100:110] = 3 * nn[100:110]  # "corrected" intervals, marked not ok
    ok[100:110] = False
    seg[2000:] = 1
    nn2[2000] = 2000.0  # across a segment boundary
    h = heart_metrics(codes, t, nn2, ok, seg)
    assert h.rmssd_ms == pytest.approx(30, rel=0.02)


def test_heart_metrics_without_sleep_or_beats():
    codes = hyp((WAKE, 30))
    t, nn, ok, seg = _beats(codes, 55, 75, 40)
    h = heart_metrics(codes, t, nn, ok, seg)
    assert h.hr_mean_bpm is None
    assert h.rmssd_ms is None
    e = np.zeros(0)
    assert heart_metrics(hyp((NREM, 30)), e, e, e.astype(bool), e.astype(np.int64)).rmssd_windows == 0


def test_lowest_5min_hr_finds_the_dip():
    codes = hyp((NREM, 120))
    t, nn, ok, seg = _beats(codes, 60, 60, 20)
    dip = (t > 3000) & (t < 3400)
    nn[dip] = 60000 / 48
    h = heart_metrics(codes, t, nn, ok, seg)
    assert h.hr_min5_bpm == pytest.approx(48, rel=0.01)
    assert h.hr_mean_bpm is not None
    assert 48 < h.hr_mean_bpm < 60


def test_hr_from_samples():
    codes = hyp((WAKE, 10), (NREM, 60))
    t = np.arange(0, 70 * 60, 1.0)
    bpm = np.where(t < 600, 80.0, 58.0)
    bpm[(t > 2000) & (t < 2400)] = 50.0
    mean, low = hr_from_samples(codes, t, bpm)
    assert mean is not None
    assert 55 < mean < 58
    assert low == pytest.approx(50)
