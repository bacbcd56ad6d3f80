"""Motion in real units: ActiGraph counts from acceleration (agcounts), Cole-Kripke, the fusion rule.

No acceleration recorded with polysomnography is available here, so the counts are checked against
the published behaviour of ActiGraph's filter (units in g, passband, dead band, saturation,
linearity) and the rule against scores computed by hand from the paper's formula.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import pytest

from collector.ble.profiles.activity import EpochCounts
from collector.errors import AnalysisError
from collector.nights.activity import (
    CK_WAKE_LR,
    FUSE_MAX_P_SLEEP,
    MotionScore,
    cole_kripke,
    cole_kripke_index,
    counts_per_second,
    epoch_counts,
    fuse_motion,
    minute_counts,
    motion_score,
    to_counts_grid,
    vector_magnitude,
)
from collector.nights.stages import NREM, REM, SLEEP, UNKNOWN, WAKE
from collector.settings import load_settings

NS = 1_000_000_000
T0 = 1_732_399_980 * NS  # a whole minute


def sine(rate_hz: float, seconds: float, freq_hz: float, amp_g: float, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gravity on Z plus a sine of ``amp_g`` on ``axis``: times (s) and n x 3 samples in g."""
    t = np.arange(round(seconds * rate_hz)) / rate_hz
    x = np.zeros((t.size, 3))
    x[:, 2] = 1.0
    x[:, axis] += amp_g * np.sin(2 * np.pi * freq_hz * t)
    return t, x


def sine_counts(freq_hz: float, amp_g: float, rate_hz: int = 30) -> np.ndarray:
    """Axis counts of the second minute of a two-minute sine (the first is the filter's run-in)."""
    _, x = sine(rate_hz, 120, freq_hz, amp_g)
    c: np.ndarray = counts_per_second(x, rate_hz)[60:].sum(axis=0)
    return c


# ---- counts: units and the filter's published behaviour -------------------------------------------


def test_gravity_and_stillness_give_zero_counts():
    _, x = sine(30, 120, 1.0, 0.0)
    x[:, 0] = 0.3  # a tilted sensor: constant components on every axis
    assert counts_per_second(x).sum() == 0
    rng = np.random.default_rng(1)
    x += rng.normal(0, 0.005, x.shape)  # 5 mg of sensor noise stays inside the dead band
    assert counts_per_second(x).sum() == 0


def test_counts_expect_g_not_milli_g():
    assert sine_counts(1.0, 0.001).sum() == 0  # 1 mg: a reading in mG taken as g would be 1 g
    c = sine_counts(1.0, 0.5)
    assert 5_000 < c[0] < 20_000 and c[1] == 0 and c[2] == 0  # only the moving axis counts


def test_passband_is_the_published_one():
    """ActiGraph's band-pass has its half-power points at 0.29 and 1.63 Hz (Brønd et al. 2017, Med Sci Sports
    Exerc 49:2351; Fridolfsson et al. 2019, Sensors 19:2186)."""
    peak = max(sine_counts(f, 0.5)[0] for f in (0.6, 0.75, 0.9, 1.0))
    assert sine_counts(0.29, 0.5)[0] / peak == pytest.approx(1 / math.sqrt(2), abs=0.05)
    assert sine_counts(1.63, 0.5)[0] / peak == pytest.approx(1 / math.sqrt(2), abs=0.05)
    assert sine_counts(0.05, 0.5)[0] < 0.01 * peak  # a slow tilt is not activity
    assert sine_counts(10.0, 0.5)[0] < 0.01 * peak  # nor is vibration


def test_counts_grow_linearly_and_saturate():
    c1, c2, c4 = (sine_counts(1.0, a)[0] for a in (0.25, 0.5, 1.0))
    assert c2 / c1 == pytest.approx(2.0, rel=0.06) and c4 / c2 == pytest.approx(2.0, rel=0.03)
    assert sine_counts(1.0, 16.0)[0] <= 128 * 10 * 60  # at most 128 per 1/10 s


def test_resampled_strap_rate_matches_a_native_rate():
    _, x30 = sine(30, 120, 0.8, 0.3)
    native = counts_per_second(x30)[60:].sum(axis=0)[0]
    t25, x25 = sine(25, 120, 0.8, 0.3)  # the Polar strap's 25 Hz, put on the 30 Hz grid
    resampled = counts_per_second(to_counts_grid(t25, x25, 0.0, 120))[60:].sum(axis=0)[0]
    assert resampled == pytest.approx(native, rel=0.01)
    _, x100 = sine(100, 120, 0.8, 0.3)
    assert counts_per_second(x100, 100)[60:].sum(axis=0)[0] == pytest.approx(native, rel=0.05)
    with pytest.raises(AnalysisError, match="resample first"):
        counts_per_second(x25, 25)


def test_streamed_epochs_equal_the_unbroken_signal():
    rng = np.random.default_rng(7)
    t, x = sine(25, 360, 0.8, 0.0)
    for start in (70, 130, 250):  # movement bursts across epoch boundaries
        m = (t >= start) & (t < start + 25)
        x[m, 0] += 0.3 * np.sin(2 * np.pi * 0.8 * t[m])
        x[m, 1] += rng.normal(0, 0.15, int(m.sum()))
    x += rng.normal(0, 0.002, x.shape)
    whole = counts_per_second(to_counts_grid(t, x, 0.0, 360))
    stream = EpochCounts({"person": "p"}, rate_hz=25)
    points = []
    for ti, (a, b, c) in zip(t, x, strict=True):
        points += stream.add(T0 + round(ti * NS), a, b, c)
    assert [p.time_ns for p in points] == [T0 + k * 60 * NS for k in range(5)]  # the sixth is still open
    for k, p in enumerate(points):
        expect = whole[60 * k:60 * (k + 1)].sum(axis=0)
        assert [p.fields["counts_x"], p.fields["counts_y"], p.fields["counts_z"]] == expect.tolist()
        assert p.fields["counts"] == pytest.approx(vector_magnitude(expect), abs=0.01)
        assert p.fields["epoch_s"] == 60
    assert points[0].fields["counts"] == 0 and float(points[1].fields["counts"]) > 1000
    # per-epoch helper with its run-in gives the same numbers
    assert epoch_counts(t, x, 120.0, 60).tolist() == whole[120:180].sum(axis=0).tolist()


def test_minute_counts_of_a_recording_equal_the_stream():
    t, x = sine(25, 300, 0.8, 0.0)
    m = (t >= 100) & (t < 200)
    x[m, 1] += 0.25 * np.sin(2 * np.pi * 0.8 * t[m])
    start_s = T0 // NS + 20  # a recording that starts 20 s into a minute
    starts, counts = minute_counts(start_s + t, x)
    assert starts.tolist() == [T0 // NS + 60 * k for k in range(1, 5)]  # whole minutes only
    stream = EpochCounts({"person": "p"}, rate_hz=25)
    points = []
    for ti, (a, b, c) in zip(t, x, strict=True):
        points += stream.add(T0 + 20 * NS + round(ti * NS), a, b, c)
    streamed = {p.time_ns // NS: [p.fields["counts_x"], p.fields["counts_y"], p.fields["counts_z"]] for p in points}
    for s0, c in zip(starts.tolist(), counts.tolist(), strict=True):
        assert c == streamed[s0]
    assert counts[:, 1].max() > 1000 and counts[:, 0].sum() == 0


def test_frames_give_the_same_points_as_single_samples():
    rng = np.random.default_rng(3)
    one, framed = EpochCounts({"person": "p"}, rate_hz=25), EpochCounts({"person": "p"}, rate_hz=25)
    a, b = [], []
    last = T0 + 7 * NS
    for _ in range(400):
        last += NS + int(rng.choice([0, -1_500_000_000, 30_000_000_000], p=[0.96, 0.02, 0.02]))  # overlaps, gaps
        xyz = [(float(v[0]), float(v[1]), float(v[2])) for v in rng.normal([0, 0, 1], 0.2, (25, 3))]
        for k, (x, y, z) in enumerate(xyz):
            a += one.add(last - (24 - k) * 40_000_000, x, y, z)
        b += framed.add_frame(last, 40_000_000, xyz)
    assert len(a) > 3 and [(p.time_ns, p.fields) for p in a] == [(p.time_ns, p.fields) for p in b]
    assert one.dropped_epochs == framed.dropped_epochs > 0


def test_stream_coverage_and_gaps():
    stream = EpochCounts({"person": "p"}, rate_hz=25)
    t, x = sine(25, 200, 1.0, 0.2)
    keep = (t < 40) | (t >= 55)  # 15 s lost in the first whole minute: 75% < 80%
    out = []
    for ti, (a, b, c) in zip(t[keep], x[keep], strict=True):
        out += stream.add(T0 + 30 * NS + round(ti * NS), a, b, c)  # starts half-way into a minute
    assert [p.time_ns for p in out] == [T0 + 120 * NS]  # the minute from 180 s is still open
    assert stream.dropped_epochs == 2  # the half minute at the start, the minute with the gap
    stream.reset()
    assert stream.dropped_epochs == 3  # the epoch in progress at the disconnect


def test_held_stream_closes_still_epochs():
    held = EpochCounts({"person": "p"}, hold=True)
    assert held.add(T0 + 10 * NS, 0.0, 0.0, 1.0) == []  # known from 10 s: the first minute is dropped
    assert held.advance(T0 + 60 * NS) == [] and held.dropped_epochs == 1
    out = []
    for k in range(120):  # the second minute: 0.4 g steps at 2 Hz, as a watch reports them
        out += held.add(T0 + 60 * NS + k * NS // 2, 0.4 * (k % 2), 0.0, 1.0)
    out += held.advance(T0 + 240 * NS)
    assert [p.time_ns for p in out] == [T0 + 60 * NS, T0 + 120 * NS, T0 + 180 * NS]
    assert int(out[0].fields["counts_x"]) > 1000 and out[0].fields["counts_z"] == 0
    # nothing moved: the filter's tail of the movement, then zero (not missing)
    assert float(out[1].fields["counts"]) < 0.01 * float(out[0].fields["counts"]) and out[2].fields["counts"] == 0


# ---- Cole-Kripke ----------------------------------------------------------------------------------


def test_cole_kripke_scores_computed_by_hand():
    """D = 0.001 (106 A-4 + 54 A-3 + 58 A-2 + 76 A-1 + 230 A0 + 74 A+1 + 67 A+2), A = min(counts/100, 300)."""
    counts = np.array([0, 100, 200, 0, 300, 0, 50_000, 0], dtype=float)  # A = 0 1 2 0 3 0 300(capped) 0
    by_hand = [
        0.001 * (230 * 0 + 74 * 1 + 67 * 2),  # 0.208
        0.001 * (76 * 0 + 230 * 1 + 74 * 2 + 67 * 0),  # 0.378
        0.001 * (58 * 0 + 76 * 1 + 230 * 2 + 74 * 0 + 67 * 3),  # 0.737
        0.001 * (54 * 0 + 58 * 1 + 76 * 2 + 230 * 0 + 74 * 3 + 67 * 0),  # 0.432
        0.001 * (106 * 0 + 54 * 1 + 58 * 2 + 76 * 0 + 230 * 3 + 74 * 0 + 67 * 300),  # 20.96
        0.001 * (106 * 1 + 54 * 2 + 58 * 0 + 76 * 3 + 230 * 0 + 74 * 300 + 67 * 0),  # 22.642
        0.001 * (106 * 2 + 54 * 0 + 58 * 3 + 76 * 0 + 230 * 300 + 74 * 0),  # 69.386
        0.001 * (106 * 0 + 54 * 3 + 58 * 0 + 76 * 300 + 230 * 0),  # 22.962
    ]
    assert cole_kripke_index(counts) == pytest.approx([0.208, 0.378, 0.737, 0.432, 20.96, 22.642, 69.386, 22.962])
    assert cole_kripke_index(counts) == pytest.approx(by_hand)
    assert cole_kripke(counts).tolist() == [False, False, False, False, True, True, True, True]


def test_cole_kripke_threshold_on_a_lone_minute():
    quiet = np.zeros(9)
    assert not cole_kripke(quiet).any()
    lone = quiet.copy()
    lone[4] = 435  # D = 0.001 x 230 x 4.35 = 1.0005
    assert cole_kripke(lone).tolist() == [False] * 4 + [True] + [False] * 4
    lone[4] = 434  # D = 0.9982
    assert not cole_kripke(lone).any()
    assert cole_kripke(np.array([0, 0, np.nan, 0.0])).tolist() == [False] * 4  # nothing recorded: no movement


def test_motion_score_uses_wall_clock_minutes():
    # counts of minutes 0..9 after T0; staging starts 30 s into minute 2
    t = T0 + np.arange(10, dtype=np.int64) * 60 * NS
    counts = np.zeros(10)
    counts[5] = 5_000  # D = 0.001 x 230 x 50 = 11.5 for minute 5 (and 74 x 50 for minute 4, ...)
    ms = motion_score(t, counts, T0 + 150 * NS, 8)  # 30-s epochs from 2:30 to 6:00
    assert ms is not None
    minute = [(150 + 30 * k) // 60 for k in range(8)]  # 2 3 3 4 4 5 5 6
    expect = cole_kripke(counts)[minute]
    assert ms.wake.tolist() == expect.tolist() and ms.have.all()
    assert ms.wake.tolist() == [False, True, True, True, True, True, True, True]  # 58 x 50 at 2 minutes back: < 1
    assert motion_score(t, counts, T0 + 3600 * NS, 4) is None  # no counts in the span


# ---- fusion ---------------------------------------------------------------------------------------


def test_fusion_threshold_from_the_published_figures():
    assert abs(CK_WAKE_LR - 0.35 / 0.12) < 1e-12
    assert abs(FUSE_MAX_P_SLEEP - 0.745) < 0.001
    odds = (1 - FUSE_MAX_P_SLEEP) / FUSE_MAX_P_SLEEP * CK_WAKE_LR
    assert odds == pytest.approx(1.0)  # at the threshold the posterior is even


def test_fusion_rule():
    codes = np.array([NREM, REM, NREM, WAKE, NREM, UNKNOWN, UNKNOWN, NREM, UNKNOWN, UNKNOWN])
    p_sleep = np.array([0.6, 0.7, 0.9, 0.2, 0.6, np.nan, np.nan, 0.95, np.nan, np.nan])
    wake = np.array([True, True, True, False, False, True, False, False, False, True])
    have = np.array([True, True, True, True, False, True, True, True, True, True])
    out = fuse_motion(codes, p_sleep, MotionScore(wake, have))
    assert out.tolist() == [
        WAKE,  # heart unsure (0.6 < 0.745) and Cole-Kripke wake
        WAKE,  # REM too
        NREM,  # heart sure of sleep (0.9): movement in sleep is not enough
        WAKE,  # heart wake stays wake (Cole-Kripke sleep never makes sleep)
        NREM,  # no counts for this minute: heart alone
        WAKE,  # no heart signal: Cole-Kripke's wake
        SLEEP,  # no heart signal, still, between heart sleep epochs: Cole-Kripke's sleep
        NREM,
        UNKNOWN,  # still after the last heart sleep: not called sleep
        WAKE,  # ... but its wake counts anywhere
    ]
    with pytest.raises(AnalysisError, match="one value per epoch"):
        fuse_motion(codes, p_sleep[:3], MotionScore(wake, have))


def test_motion_staging_changes_only_moving_epochs_to_wake():
    """Production path: compute_night with motion_staging on a simulated night with a burst of counts."""
    from zoneinfo import ZoneInfo

    from collector.nights.compute import NightOptions, compute_night
    from collector.nights.staging import Subject
    from collector.sim.params import SimConfig
    from tests.nights.simdata import inputs, settings_for, study

    person, st = study(1, seed=3, config=SimConfig(device_stages=False, motion=False))
    ps = settings_for(person)
    night = st.night(0)
    base = inputs(night, ps, device_stages=False, motion=False, tags=True)
    subject, tz = Subject(ps.age, ps.sex), ZoneInfo(ps.timezone)
    plain = compute_night(base, subject, tz, NightOptions(motion_staging=True))  # no counts: heart alone
    assert plain is not None and plain.hypnogram is not None
    hyp = plain.hypnogram
    first_min = -(-hyp.start_ns // (60 * NS))
    minutes = first_min + np.arange(int((hyp.end_ns - first_min * 60 * NS) // (60 * NS)))
    counts = np.zeros(minutes.size)
    burst = slice(120, 150)  # half an hour of restless movement two hours in
    counts[burst] = 2_000
    moving = dataclasses.replace(base, motion_time_ns=minutes * 60 * NS, motion_activity=counts,
                                 motion_epoch_s=np.full(minutes.size, 60, np.int64))
    fused = compute_night(moving, subject, tz, NightOptions(motion_staging=True))
    assert fused is not None and fused.hypnogram is not None
    assert fused.hypnogram.method.endswith("+cole-kripke") and not hyp.method.endswith("+cole-kripke")
    new, old = fused.hypnogram.codes, hyp.codes
    t = hyp.start_ns + np.arange(old.size) * 30 * NS
    lo = (first_min + burst.start - 2) * 60 * NS  # the rule looks 2 minutes ahead and 4 back
    hi = (first_min + burst.stop + 4) * 60 * NS
    near = (t >= lo) & (t < hi)
    to_wake = np.isin(old, (NREM, REM)) & (new == WAKE)
    assert to_wake.sum() > 0 and np.all(near[to_wake])  # heart sleep turned wake only by the movement
    changed = new != old
    # the only other changes: epochs without heart signal, which take Cole-Kripke's call (rule 2)
    assert np.all(to_wake[changed] | (old[changed] == UNKNOWN))
    assert np.all(np.where(near, WAKE, SLEEP)[changed & (old == UNKNOWN)] == new[changed & (old == UNKNOWN)])
    assert float(fused.fields["tst_min"]) < float(plain.fields["tst_min"])


# ---- settings -------------------------------------------------------------------------------------


def test_old_motion_scale_setting_is_ignored_with_a_warning(tmp_path, caplog):
    cfg = tmp_path / "magsleep.toml"
    cfg.write_text("[nights]\nmotion_staging = true\nmotion_scale = 0.03\n")
    with caplog.at_level(logging.WARNING):
        s = load_settings(cfg)
    assert s.nights.motion_staging is True and not hasattr(s.nights, "motion_scale")
    assert "nights.motion_scale is no longer used" in caplog.text and "delete the line" in caplog.text
