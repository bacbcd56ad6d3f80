"""Agreement statistics against textbook formulas on tiny hand-made inputs."""

from __future__ import annotations

import numpy as np
import pytest

from collector.nights.stages import NREM, REM, UNKNOWN, WAKE
from collector.validation import stats


def test_kappa_two_by_two_textbook() -> None:
    # po = (20 + 15) / 50 = 0.7; pe = (25*30 + 25*20) / 50^2 = 0.5; kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4
    cm = np.array([[20, 5], [10, 15]])
    assert stats.kappa(cm) == pytest.approx(0.4)
    assert stats.accuracy(cm) == pytest.approx(0.7)


def test_kappa_three_by_three_textbook() -> None:
    cm = np.array([[10, 2, 1], [3, 30, 2], [0, 4, 8]])
    n = 60
    po = (10 + 30 + 8) / n
    rows, cols = [13, 35, 12], [13, 36, 11]
    pe = sum(r * c for r, c in zip(rows, cols, strict=True)) / n**2
    assert stats.kappa(cm) == pytest.approx((po - pe) / (1 - pe))
    # wake/sleep collapse: wake row/col kept, NREM+REM merged
    assert stats.wake_sleep(cm).tolist() == [[10, 3], [3, 44]]


def test_kappa_undefined_and_perfect() -> None:
    assert stats.kappa(np.zeros((3, 3), dtype=np.int64)) is None
    assert stats.kappa(np.array([[5, 0], [0, 0]])) is None  # one class only: pe = 1
    assert stats.kappa(np.array([[5, 0], [0, 7]])) == pytest.approx(1.0)


def test_confusion_skips_unknown_and_counts_rows_expert() -> None:
    truth = np.array([WAKE, WAKE, NREM, NREM, REM, UNKNOWN, NREM])
    comp = np.array([WAKE, NREM, NREM, REM, REM, WAKE, UNKNOWN])
    assert stats.confusion(truth, comp).tolist() == [[1, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_agreement_splits_wake_before_onset_and_waso() -> None:
    truth = np.array([WAKE, WAKE, NREM, WAKE, WAKE, NREM, REM, WAKE])
    comp = np.array([WAKE, NREM, NREM, WAKE, NREM, NREM, NREM, WAKE])
    a = stats.agreement([(truth, comp)])
    assert a.epochs == 8
    assert a.wake_recall_before_onset == pytest.approx(0.5)  # epochs 0-1: one right
    assert a.wake_recall_waso == pytest.approx(0.5)  # epochs 3-4 (7 is after the final awakening)
    assert a.recall_rem == 0.0
    assert a.confusion == [[3, 2, 0], [0, 2, 0], [0, 1, 0]]


def test_metric_stats_bland_altman_and_ols() -> None:
    true = [400.0, 350.0, None, 420.0, 300.0]
    comp = [410.0, 340.0, 380.0, 450.0, 330.0]
    s = stats.metric_stats(true, comp)
    x = np.array([400.0, 350.0, 420.0, 300.0])
    y = np.array([410.0, 340.0, 450.0, 330.0])
    d = y - x
    assert s.n == 4
    assert s.bias == pytest.approx(d.mean())
    assert s.mae == pytest.approx(np.abs(d).mean())
    assert s.loa_low == pytest.approx(d.mean() - 1.96 * d.std(ddof=1))
    assert s.loa_high == pytest.approx(d.mean() + 1.96 * d.std(ddof=1))
    slope, intercept = np.polyfit(x, y, 1)
    assert s.slope == pytest.approx(slope)
    assert s.intercept == pytest.approx(intercept)
    assert s.r == pytest.approx(np.corrcoef(x, y)[0, 1])


def test_metric_stats_small_n() -> None:
    s = stats.metric_stats([1.0], [2.0])
    assert (s.n, s.bias, s.loa_low, s.slope) == (1, 1.0, None, None)
    assert stats.metric_stats([None], [1.0]).n == 0
