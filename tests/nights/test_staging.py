"""Staging: the sleepecg crash case, unusable epochs (Cole-Kripke and the motion fusion: test_activity.py)."""

from __future__ import annotations

from datetime import time as dtime

import numpy as np
import pytest

from collector.nights.artefacts import clean_rr
from collector.nights.stages import NREM, REM, SLEEP, UNKNOWN, WAKE
from collector.nights.staging import Hypnogram, Subject, stage_beats
from tests.nights.synth import sleep_rr

T0 = 1_795_000_000 * 1_000_000_000


def _stamps(rr: np.ndarray, gaps_s: np.ndarray | None = None) -> np.ndarray:
    t = np.cumsum(rr) / 1000.0
    if gaps_s is not None:
        t = t + gaps_s
    return (T0 + t * 1e9).astype(np.int64)


def test_crash_case_is_staged_where_signal_exists():
    """One 2.5-s dropout every 100 s: sleepecg 0.6.0 raises 'shape mismatch'; we stage."""
    rr = sleep_rr(7200, seed=2)  # ~2 h
    t = np.cumsum(rr) / 1000.0
    extra = np.floor(t / 100.0) * 2.5  # the link drops for 2.5 s every 100 s
    b = clean_rr(_stamps(rr, extra), rr)
    assert b.n_gaps >= 60
    h, _ = stage_beats(b, T0, T0 + int(2 * 3600 * 1e9), dtime(23, 0), Subject(40, "female"))
    assert len(h.codes) == 240
    staged = h.codes != UNKNOWN
    assert staged.mean() > 0.9
    assert set(np.unique(h.codes[staged])) <= {WAKE, NREM, REM}
    assert np.all((h.prob[staged] > 0) & (h.prob[staged] <= 1))


def test_long_dropout_epochs_are_unknown():
    rr = sleep_rr(5400, seed=3)
    t = np.cumsum(rr) / 1000.0
    keep = ~((t > 1800) & (t < 3000))  # 20 min without data
    b = clean_rr(_stamps(rr)[keep], rr[keep])
    h, cov = stage_beats(b, T0, T0 + int(t[-1] * 1e9), dtime(23, 30), Subject(60, "male"))
    gap = slice(1800 // 30 + 1, 3000 // 30 - 1)
    assert np.all(h.codes[gap] == UNKNOWN)
    assert np.all(np.isnan(h.prob[gap]))
    assert np.all(cov[gap] == 0)
    assert np.mean(h.codes[:55] != UNKNOWN) > 0.95


def test_no_beats_gives_unknown_hypnogram():
    b = clean_rr(np.zeros(0, dtype=np.int64), np.zeros(0))
    h, _ = stage_beats(b, T0, T0 + 3600 * 10**9, dtime(22), Subject(30, "male"))
    assert np.all(h.codes == UNKNOWN)


def test_wake_sleep_only_classifier():
    rr = sleep_rr(3000, seed=4)
    b = clean_rr(_stamps(rr), rr)
    h, _ = stage_beats(b, T0, T0 + 40 * 60 * 10**9, dtime(23), Subject(30, "male"), classifier="ws-gru-mesa")
    assert set(np.unique(h.codes)) <= {WAKE, SLEEP, UNKNOWN}
    assert h.method == "ws-gru-mesa"


def test_hypnogram_resample_and_slice():
    h = Hypnogram(T0, 600, np.array([WAKE, NREM]), np.array([np.nan, 0.9]), "device", "band")
    r = h.resample(30)
    assert len(r.codes) == 40
    assert r.codes[19] == WAKE
    assert r.codes[20] == NREM
    s = r.slice(T0 - 60 * 10**9, T0 + 60 * 10**9)
    assert list(s.codes) == [UNKNOWN, UNKNOWN, WAKE, WAKE]
    with pytest.raises(Exception, match="cannot resample"):
        h.resample(7)
