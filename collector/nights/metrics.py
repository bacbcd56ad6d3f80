"""Nightly metrics as pure functions of a hypnogram (stage codes from lights out to lights on) and beats.

Definitions (AASM style; docs/nights.md is the readable form):

- TIB: lights out to lights on. Epochs are 30 s; every epoch counts for TIB whatever its stage.
- Sleep epochs: light, deep, rem, nrem, sleep. Wake epochs: wake. Unknown / not worn: neither.
- SOL: lights out to the start of the first sleep epoch. LPS: lights out to the start of the first
  10 minutes of uninterrupted sleep. Both undefined (None) without sleep / persistent sleep.
- Final awakening: the end of the last sleep epoch. WASO: wake minutes from sleep onset to the
  final awakening. Wake after the final awakening is not WASO (it is in ``wake_min``).
- Awakenings: wake bouts of at least :data:`MIN_AWAKENING_S` between onset and final awakening.
- TST: minutes of sleep epochs; SE = TST / TIB x 100. Stage minutes count the codes; NREM = light +
  deep + unsplit NREM; shares are % of TST. Fields a staging cannot give are None (3-stage: no
  light/deep; 2-stage: no REM either).
- Coverage: % of TIB epochs with a known stage. A night is flagged below :data:`MIN_COVERAGE_PCT`.
- Mean sleeping HR: 60000 / mean NN over beats ending in sleep epochs. Lowest 5-min HR: the lowest
  such value over 5-min windows (sliding by one epoch) fully asleep and covered by beats.
- RMSSD: per 5-min block of consecutive sleep epochs, root mean square of successive differences
  of clean NN (neither interval corrected, same segment); blocks with fewer than half their
  expected differences are skipped; nightly value = median over blocks; ln RMSSD = ln of that.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from collector.nights.stages import DEEP, LIGHT, NREM, REM, SLEEP_CODES, WAKE

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

MIN_AWAKENING_S = 120
PERSISTENT_SLEEP_S = 600
WINDOW_S = 300
#: Below this share of TIB with a known stage, a night's metrics are not trustworthy.
MIN_COVERAGE_PCT = 80.0
#: A 5-min window needs beats covering this share of it for the HR / RMSSD values.
MIN_WINDOW_COVERAGE = 0.5

Resolution = Literal[4, 3, 2]


@dataclass(frozen=True, slots=True)
class SleepMetrics:
    tib_min: float
    sol_min: float | None
    lps_min: float | None
    tst_min: float
    waso_min: float | None
    se_pct: float
    awakenings: int | None
    wake_min: float
    light_min: float | None
    deep_min: float | None
    rem_min: float | None
    nrem_min: float | None
    deep_pct: float | None
    rem_pct: float | None
    coverage_pct: float
    onset_index: int | None
    final_index: int | None  # index one past the last sleep epoch

    def as_dict(self) -> dict[str, float | int | None]:
        d = asdict(self)
        d.pop("onset_index")
        d.pop("final_index")
        return d


def _runs(mask: NDArray[np.bool_]) -> list[tuple[int, int]]:
    """(start, stop) of each run of True."""
    if mask.size == 0:
        return []
    d = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    starts = np.flatnonzero(d == 1)
    stops = np.flatnonzero(d == -1)
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


def resolution_of(codes: I64) -> Resolution:
    """4 when light/deep appear, 3 when NREM/REM appear, else 2 (wake/sleep)."""
    if np.any(np.isin(codes, (LIGHT, DEEP))):
        return 4
    if np.any(np.isin(codes, (NREM, REM))):
        return 3
    return 2


def sleep_metrics(
    codes: I64,
    epoch_s: int = 30,
    *,
    resolution: Resolution | None = None,
    min_awakening_s: int = MIN_AWAKENING_S,
    persistent_s: int = PERSISTENT_SLEEP_S,
) -> SleepMetrics:
    """Sleep metrics of a hypnogram spanning lights out to lights on."""
    codes = np.asarray(codes, dtype=np.int64)
    res = resolution if resolution is not None else resolution_of(codes)
    m = epoch_s / 60.0
    n = codes.size
    sleep = np.isin(codes, SLEEP_CODES)
    wake = codes == WAKE
    known = sleep | wake
    tib = n * m
    tst = float(np.count_nonzero(sleep)) * m
    coverage = 100.0 * np.count_nonzero(known) / n if n else 0.0
    onset: int | None = None
    final: int | None = None
    if tst > 0:
        onset = int(np.argmax(sleep))
        final = int(n - np.argmax(sleep[::-1]))
        sol: float | None = onset * m
        need = max(1, persistent_s // epoch_s)
        lps: float | None = None
        for a, b in _runs(sleep):
            if b - a >= need:
                lps = a * m
                break
        inner_wake = wake[onset:final]
        waso: float | None = float(np.count_nonzero(inner_wake)) * m
        min_len = max(1, -(-min_awakening_s // epoch_s))
        awakenings: int | None = sum(1 for a, b in _runs(inner_wake) if b - a >= min_len)
    else:
        sol = lps = waso = None
        awakenings = None

    def minutes(*c: int) -> float:
        return float(np.count_nonzero(np.isin(codes, c))) * m

    light = minutes(LIGHT) if res == 4 else None
    deep = minutes(DEEP) if res == 4 else None
    rem = minutes(REM) if res >= 3 else None
    nrem = minutes(LIGHT, DEEP, NREM) if res >= 3 else None

    def pct(x: float | None) -> float | None:
        return None if x is None or tst == 0 else 100.0 * x / tst

    return SleepMetrics(
        tib_min=tib,
        sol_min=sol,
        lps_min=lps,
        tst_min=tst,
        waso_min=waso,
        se_pct=100.0 * tst / tib if tib else 0.0,
        awakenings=awakenings,
        wake_min=float(np.count_nonzero(wake)) * m,
        light_min=light,
        deep_min=deep,
        rem_min=rem,
        nrem_min=nrem,
        deep_pct=pct(deep),
        rem_pct=pct(rem),
        coverage_pct=coverage,
        onset_index=onset,
        final_index=final,
    )


@dataclass(frozen=True, slots=True)
class HeartMetrics:
    hr_mean_bpm: float | None
    hr_min5_bpm: float | None
    rmssd_ms: float | None
    ln_rmssd: float | None
    rmssd_windows: int


def heart_metrics(
    codes: I64,
    beat_t: F64,
    nn_ms: F64,
    ok: NDArray[np.bool_],
    segment: I64,
    epoch_s: int = 30,
) -> HeartMetrics:
    """HR and RMSSD while asleep. ``beat_t`` in s from the hypnogram start (lights out)."""
    codes = np.asarray(codes, dtype=np.int64)
    n = codes.size
    sleep = np.isin(codes, SLEEP_CODES)
    idx = np.floor(beat_t / epoch_s).astype(np.int64)
    inside = (idx >= 0) & (idx < n) & np.isfinite(nn_ms)
    asleep_beat = np.zeros(beat_t.size, dtype=bool)
    asleep_beat[inside] = sleep[idx[inside]]
    if not np.any(asleep_beat):
        return HeartMetrics(None, None, None, None, 0)
    hr_mean = 60000.0 / float(np.mean(nn_ms[asleep_beat]))

    # Per-epoch sums for sliding 5-min windows.
    w = WINDOW_S // epoch_s
    sel = inside & asleep_beat
    nn_sum = np.bincount(idx[sel], weights=nn_ms[sel], minlength=n)
    nn_cnt = np.bincount(idx[sel], minlength=n).astype(np.float64)
    hr_min5: float | None = None
    if n >= w:
        k = np.ones(w)
        s_sum = np.convolve(nn_sum, k, "valid")
        s_cnt = np.convolve(nn_cnt, k, "valid")
        all_sleep = np.convolve(sleep.astype(np.float64), k, "valid") >= w - 0.5
        covered = s_sum / 1000.0 >= MIN_WINDOW_COVERAGE * WINDOW_S
        good = all_sleep & covered & (s_cnt > 0)
        if np.any(good):
            hr_min5 = float(np.min(60000.0 * s_cnt[good] / s_sum[good]))

    # RMSSD per 5-min block of consecutive sleep epochs.
    d = np.diff(nn_ms)
    pair_ok = ok[1:] & ok[:-1] & (segment[1:] == segment[:-1]) & asleep_beat[1:]
    pair_epoch = idx[1:]
    values: list[float] = []
    for a, b in _runs(sleep):
        for start in range(a, b - w + 1, w):
            sel_p = pair_ok & (pair_epoch >= start) & (pair_epoch < start + w)
            cnt = int(np.count_nonzero(sel_p))
            expected = WINDOW_S * hr_mean / 60.0
            if cnt < MIN_WINDOW_COVERAGE * expected:
                continue
            values.append(float(np.sqrt(np.mean(d[sel_p] ** 2))))
    if not values:
        return HeartMetrics(hr_mean, hr_min5, None, None, 0)
    rmssd = float(np.median(values))
    return HeartMetrics(hr_mean, hr_min5, rmssd, math.log(rmssd) if rmssd > 0 else None, len(values))


def hr_from_samples(codes: I64, t_s: F64, bpm: F64, epoch_s: int = 30) -> tuple[float | None, float | None]:
    """Mean sleeping HR and lowest 5-min mean from heart-rate samples (devices without RR)."""
    codes = np.asarray(codes, dtype=np.int64)
    n = codes.size
    sleep = np.isin(codes, SLEEP_CODES)
    idx = np.floor(t_s / epoch_s).astype(np.int64)
    inside = (idx >= 0) & (idx < n) & np.isfinite(bpm) & (bpm > 0)
    sel = np.zeros(t_s.size, dtype=bool)
    sel[inside] = sleep[idx[inside]]
    if not np.any(sel):
        return None, None
    mean = float(np.mean(bpm[sel]))
    w = WINDOW_S // epoch_s
    if n < w:
        return mean, None
    s = np.convolve(np.bincount(idx[sel], weights=bpm[sel], minlength=n), np.ones(w), "valid")
    c = np.convolve(np.bincount(idx[sel], minlength=n).astype(np.float64), np.ones(w), "valid")
    epochs_with = np.convolve((np.bincount(idx[sel], minlength=n) > 0).astype(np.float64), np.ones(w), "valid")
    good = (epochs_with >= MIN_WINDOW_COVERAGE * w) & (np.convolve(sleep.astype(np.float64), np.ones(w), "valid")
                                                         >= w - 0.5)
    if not np.any(good):
        return mean, None
    return mean, float(np.min(s[good] / c[good]))
