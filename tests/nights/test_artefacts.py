"""RR clean-up: equivalence with neurokit2's Kubios method, gaps never bridged, RMSSD recovery."""

from __future__ import annotations

import neurokit2 as nk  # type: ignore[import-untyped]
import numpy as np
import pytest

from collector.nights.artefacts import MIN_SEGMENT_BEATS, clean_rr, fix_peaks
from tests.nights.synth import add_artefacts, rmssd_true, sleep_rr


def _peaks_with_artefacts(seed: int, rate: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = 3000
    rr = 1000 + 50 * np.sin(np.arange(n) / 4) + rng.normal(0, 20, n)
    rr = np.rint(rr * 1.024).astype(np.int64)
    for i in rng.choice(np.arange(5, n - 5), int(n * rate), replace=False):
        kind = rng.integers(0, 4)
        if kind == 0:
            rr[i] //= 2
        elif kind == 1:
            rr[i] *= 2
        elif kind == 2:
            rr[i], rr[i + 1] = int(rr[i] * 0.7), int(rr[i + 1] * 1.3)
        else:
            rr[i] = int(rr[i] * 1.4)
    return np.concatenate(([0], np.cumsum(rr)))


@pytest.mark.parametrize(("seed", "rate"), [(1, 0.005), (2, 0.02), (3, 0.05), (4, 0.0), (5, 0.1), (6, 0.03), (7, 0.15),
                                           (8, 0.01), (9, 0.07)])
def test_identical_to_neurokit2_kubios(seed, rate):
    peaks = _peaks_with_artefacts(seed, rate)
    mine, n_found = fix_peaks(peaks, 1024)
    _, ref = nk.signal_fixpeaks(peaks, sampling_rate=1024, method="Kubios", iterative=True)
    np.testing.assert_array_equal(mine, np.asarray(ref))
    if rate >= 0.02:
        assert n_found > 0


def _stamps(rr_ms: np.ndarray, t0: int = 1_700_000_000_000_000_000) -> np.ndarray:
    return (t0 + np.cumsum(rr_ms) * 1e6).astype(np.int64)


def test_dropout_is_not_bridged():
    rr = sleep_rr(1200, seed=3)
    stamps = _stamps(rr)
    cut = slice(500, 560)  # a 60-beat BLE dropout: points missing, time moves on
    keep = np.ones(rr.size, bool)
    keep[cut] = False
    b = clean_rr(stamps[keep], rr[keep])
    assert b.n_gaps == 1
    assert len(np.unique(b.segment)) == 2
    # no interval spans the gap, no beat invented inside it
    gap_start = (stamps[499] - b.t0_ns) / 1e9
    gap_end = (stamps[560] - b.t0_ns) / 1e9
    assert not np.any((b.t_s > gap_start + 0.01) & (b.t_s < gap_end - rr[560] / 1000 - 0.01))
    assert np.nanmax(b.nn_ms) < 1500
    # intervals minus the one across the gap, plus one start beat per segment
    assert b.t_s.size == keep.sum() - 1 + 2


def test_multi_beat_interval_splits_segment():
    rr = sleep_rr(800, seed=4)
    rr2 = np.concatenate((rr[:400], [rr[400:404].sum()], rr[404:]))  # three beats missed
    b = clean_rr(_stamps(rr2), rr2)
    assert b.n_gaps == 1
    assert np.nanmax(b.nn_ms) < 1500


def test_single_missed_beat_is_corrected_not_split():
    rr = sleep_rr(800, seed=5)
    rr2 = np.concatenate((rr[:400], [rr[400] + rr[401]], rr[402:]))
    b = clean_rr(_stamps(rr2), rr2)
    assert b.n_gaps == 0
    assert b.n_artefacts >= 1
    assert np.nanmax(b.nn_ms) < 1.5 * np.median(rr)
    assert b.t_s.size == rr.size + 1  # the missed beat is back


def test_short_segments_are_dropped():
    rr = sleep_rr(200, seed=6)
    stamps = _stamps(rr)
    keep = np.ones(rr.size, bool)
    keep[100:110] = False
    keep[110 + MIN_SEGMENT_BEATS - 4 : 140] = False  # a 12-beat island between two dropouts
    b = clean_rr(stamps[keep], rr[keep])
    assert len(np.unique(b.segment)) == 2


@pytest.mark.parametrize("rate", [0.005, 0.02])
def test_rmssd_recovered_within_10pct(rate):
    rr = sleep_rr(6000, seed=11)
    truth = rmssd_true(rr)
    bad = add_artefacts(rr, rate, seed=12)
    b = clean_rr(_stamps(bad), bad)
    d = np.diff(b.nn_ms)
    ok = b.ok[1:] & b.ok[:-1] & (b.segment[1:] == b.segment[:-1])
    est = float(np.sqrt(np.mean(d[ok] ** 2)))
    raw = float(np.sqrt(np.mean(np.diff(bad) ** 2)))
    assert raw > 1.3 * truth  # the artefacts matter
    assert abs(est - truth) / truth < 0.10


def test_mismatched_input_is_a_clear_error():
    from collector.errors import AnalysisError

    with pytest.raises(AnalysisError, match="pair up"):
        clean_rr(np.arange(3, dtype=np.int64), np.ones(2))


def test_empty_input():
    b = clean_rr(np.zeros(0, dtype=np.int64), np.zeros(0))
    assert b.t_s.size == 0
    assert b.artefact_rate == 0.0


def test_extra_detection_with_very_short_interval_is_merged_without_time_shift():
    rr = sleep_rr(800, seed=8)
    split = np.concatenate((rr[:400], [150.0, rr[400] - 150.0], rr[401:]))
    stamps = _stamps(split)
    b = clean_rr(stamps, split)
    assert b.n_gaps == 0
    assert b.n_artefacts >= 1
    assert np.nanmin(b.nn_ms) > 500
    # beat times stay aligned with the stamps (nothing dropped from the cumulative sum)
    assert abs(b.t_s[-1] - (stamps[-1] - b.t0_ns) / 1e9) < 0.01


@pytest.mark.parametrize("w", [11, 91, 31])
@pytest.mark.parametrize("n", [0, 1, 5, 45, 90, 91, 92, 183, 2000])
def test_rolling_stats_identical_to_pandas(w, n):
    """Quartiles and medians of centred windows (truncated at the ends) equal pandas' to the bit."""
    import pandas as pd  # type: ignore[import-untyped]

    from collector.nights.artefacts import rolling_stats

    rng = np.random.default_rng(w * 10_000 + n)
    for x in (np.abs(rng.normal(size=n)),
              rng.integers(0, 5, n).astype(np.float64) / 1024):  # many ties, as RR on a 1/1024 s grid
        r = pd.Series(x).rolling(w, center=True, min_periods=1)
        got = rolling_stats(x, w, (0.25, 0.75, 0.5))
        for q, g in zip((0.25, 0.75, 0.5), got, strict=True):
            np.testing.assert_array_equal(g, r.quantile(q).to_numpy())
        np.testing.assert_array_equal(rolling_stats(x, w, median=True)[0], r.median().to_numpy())


def test_rolling_stats_needs_a_centred_window():
    from collector.errors import AnalysisError
    from collector.nights.artefacts import rolling_stats

    with pytest.raises(AnalysisError, match="must be odd"):
        rolling_stats(np.ones(10), 12, (0.25,))


def test_identical_to_neurokit2_on_a_simulated_night():
    """The simulator's ectopic, missed and extra beats (3%), 6,000 beats of one night."""
    from collector.sim.hrm import notification_arrays
    from collector.sim.params import Faults, SimConfig
    from tests.nights.simdata import study

    _, st = study(1, seed=12, config=SimConfig(faults=Faults(artefact_rate=0.03, dropouts_per_night=0.0)))
    rr = np.asarray(notification_arrays(st.night(0)).rr_ms, dtype=np.float64)[:6000]
    peaks = np.concatenate(([0], np.cumsum(np.rint(rr * 1.024)))).astype(np.int64)
    mine, n_found = fix_peaks(peaks, 1024)
    _, ref = nk.signal_fixpeaks(peaks, sampling_rate=1024, method="Kubios", iterative=True)
    np.testing.assert_array_equal(mine, np.asarray(ref))
    assert n_found > 60
