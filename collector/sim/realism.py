"""Per-stage heart statistics of staged nights, measured the way shared/notes/realdata.md measures real ones.

The same functions measure simulated nights (their ground-truth hypnogram and beats) and real
polysomnography records (expert stages and ECG beats), so the simulator is compared with reality
by one ruler. Definitions (all medians unless said otherwise):

- epoch HR: 60,000 / mean NN of the valid intervals ending in a 30-s epoch (at least half of the
  epoch covered); sleeping HR of a night: median epoch HR over its sleep epochs, then mean and SD
  over nights;
- dHR: a night's median epoch HR in a stage minus its median in light sleep (wake before sleep
  onset, wake after onset (WASO), deep = N3, REM), then the median over nights;
- RMSSD30: RMSSD of the clean successive differences inside one 30-s epoch (at least 10), the
  night's median per stage, its ratio to light sleep per night, then medians over nights;
- LF, HF: 5-min windows of 10 consecutive epochs of one stage (non-overlapping within each run),
  NN linearly resampled at 4 Hz, linear trend removed, Hann periodogram, power in 0.04-0.15 Hz
  (LF) and 0.15-0.4 Hz (HF) in ms^2; per night the median over its windows of a stage, then the
  median over nights;
- AUC: how well epoch HR tells WASO epochs from sleep epochs within a night (Mann-Whitney,
  0.5 = not at all), median over nights with at least 4 WASO epochs.

:data:`REAL` holds the real tables of the notes (slpdb and the held-out whole nights) and
:data:`ACCEPT` the range each simulated statistic must fall in (tests/sim/test_realism.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray
from scipy.signal import detrend, periodogram
from scipy.stats import mannwhitneyu

from collector.sim.hypnogram import DEEP, EPOCH_S, LIGHT, REM, WAKE
from collector.sim.nights import Night
from collector.sim.params import Faults
from collector.sim.person import PersonProfile, name_key
from collector.sim.rr import add_artefacts, generate_beats
from collector.validation.records import Record

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
B = NDArray[np.bool_]

FS_HZ = 4.0
WINDOW_EPOCHS = 10  # 5 min
LF_BAND = (0.04, 0.15)
HF_BAND = (0.15, 0.40)
MIN_PAIRS_30S = 10
MIN_WASO_EPOCHS = 4


@dataclass(frozen=True, slots=True)
class NightStats:
    """Per-stage heart statistics of one night (NaN where the night has too little of a stage)."""

    hr_sleep: float
    dhr_wake_before: float
    dhr_waso: float
    dhr_deep: float
    dhr_rem: float
    rmssd_light: float
    rmssd_ratio_wake: float
    rmssd_ratio_deep: float
    rmssd_ratio_rem: float
    lf_light: float
    hf_light: float
    lfhf_wake: float
    lfhf_light: float
    lfhf_deep: float
    lfhf_rem: float
    auc_waso: float


def _epoch_hr(n: int, t_s: F64, nn_ms: F64) -> F64:
    ok = np.isfinite(nn_ms) & (t_s >= 0)
    idx = (t_s[ok] // EPOCH_S).astype(np.int64)
    m = idx < n
    s = np.bincount(idx[m], weights=nn_ms[ok][m], minlength=n)[:n]
    c = np.bincount(idx[m], minlength=n)[:n]
    with np.errstate(invalid="ignore", divide="ignore"):
        hr = np.where(s >= 500.0 * EPOCH_S, 60000.0 * c / s, np.nan)
    out: F64 = hr
    return out


def _epoch_rmssd(n: int, t_s: F64, nn_ms: F64, ok: B) -> F64:
    d2 = np.diff(nn_ms) ** 2
    good = ok[1:] & ok[:-1] & np.isfinite(d2)
    idx = (t_s[1:] // EPOCH_S).astype(np.int64)
    same = good & (idx == (t_s[:-1] // EPOCH_S).astype(np.int64)) & (idx >= 0) & (idx < n)
    s = np.bincount(idx[same], weights=d2[same], minlength=n)[:n]
    c = np.bincount(idx[same], minlength=n)[:n]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(c >= MIN_PAIRS_30S, np.sqrt(s / np.maximum(c, 1)), np.nan)
    out: F64 = r
    return out


def runs(mask: B) -> list[tuple[int, int]]:
    m = np.concatenate(([0], mask.astype(np.int8), [0]))
    d = np.diff(m)
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True))


def _band(f: F64, p: F64, lo: float, hi: float) -> F64:
    m = (f > lo) & (f <= hi)
    return np.asarray(np.trapezoid(p[:, m], f[m], axis=1), dtype=np.float64)


def window_powers(stages: I64, t_s: F64, nn_ms: F64, stage: int) -> list[tuple[float, float]]:
    """(LF, HF) in ms^2 of every 5-min single-stage window of ``stage`` with complete NN."""
    valid = np.isfinite(nn_ms)
    tv, nv = t_s[valid], nn_ms[valid]
    if tv.size < 10:
        return []
    rows: list[F64] = []
    for a, b in runs(stages == stage):
        for s in range(a, b - WINDOW_EPOCHS + 1, WINDOW_EPOCHS):
            t0, t1 = s * EPOCH_S, (s + WINDOW_EPOCHS) * EPOCH_S
            i0, i1 = np.searchsorted(tv, [t0, t1])
            if i1 - i0 < 0.8 * (t1 - t0) / 2.0 or i0 == 0 or i1 >= tv.size:
                continue  # under 24 bpm of valid beats, or the window is not surrounded by beats
            seg = tv[i0 - 1:i1 + 1]
            if np.max(np.diff(seg)) > 3.0:
                continue  # a gap longer than 3 s inside the window
            rows.append(np.interp(np.arange(t0, t1, 1.0 / FS_HZ), seg, nv[i0 - 1:i1 + 1]))
    if not rows:
        return []
    f, p = periodogram(detrend(np.vstack(rows), axis=1), FS_HZ, window="hann", axis=1)
    lf, hf = _band(f, p, *LF_BAND), _band(f, p, *HF_BAND)
    return list(zip(lf.tolist(), hf.tolist(), strict=True))


def _med(x: F64 | list[float]) -> float:
    a = np.asarray(x, dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(np.median(a)) if a.size else math.nan


def night_stats(stages: I64, t_s: F64, nn_ms: F64, ok: B | None = None) -> NightStats:
    """Statistics of one night: ``stages`` per 30-s epoch from time 0 (simulator codes, anything else
    unscored); ``t_s`` beat times (s from the first epoch), ``nn_ms[i]`` the interval ending at beat
    ``i`` (NaN where unknown), ``ok[i]`` that interval clean (default: finite)."""
    stages = np.asarray(stages, dtype=np.int64)
    n = stages.size
    ok = np.isfinite(nn_ms) if ok is None else ok & np.isfinite(nn_ms)
    hr = _epoch_hr(n, t_s, nn_ms)
    rm = _epoch_rmssd(n, t_s, nn_ms, ok)
    sleep = np.isin(stages, (LIGHT, DEEP, REM))
    first = int(np.argmax(sleep)) if sleep.any() else n
    last = n - 1 - int(np.argmax(sleep[::-1])) if sleep.any() else -1
    idx = np.arange(n)
    wake = stages == WAKE
    before = wake & (idx < first)
    waso = wake & (idx > first) & (idx < last)
    light = stages == LIGHT
    hr_light = _med(hr[light])

    def d(mask: B) -> float:
        return _med(hr[mask]) - hr_light

    rm_light = _med(rm[light])

    def ratio(mask: B) -> float:
        return _med(rm[mask]) / rm_light if rm_light > 0 else math.nan

    pw = {s: window_powers(stages, t_s, nn_ms, s) for s in (WAKE, LIGHT, DEEP, REM)}

    def lfhf(s: int) -> float:
        return _med([lf / hf for lf, hf in pw[s] if hf > 0])

    auc = math.nan
    hw, hs = hr[waso], hr[sleep]
    hw, hs = hw[np.isfinite(hw)], hs[np.isfinite(hs)]
    if hw.size >= MIN_WASO_EPOCHS and hs.size:
        auc = float(mannwhitneyu(hw, hs).statistic) / (hw.size * hs.size)
    return NightStats(
        hr_sleep=_med(hr[sleep]),
        dhr_wake_before=d(before), dhr_waso=d(waso), dhr_deep=d(stages == DEEP), dhr_rem=d(stages == REM),
        rmssd_light=rm_light, rmssd_ratio_wake=ratio(wake), rmssd_ratio_deep=ratio(stages == DEEP),
        rmssd_ratio_rem=ratio(stages == REM),
        lf_light=_med([p[0] for p in pw[LIGHT]]), hf_light=_med([p[1] for p in pw[LIGHT]]),
        lfhf_wake=lfhf(WAKE), lfhf_light=lfhf(LIGHT), lfhf_deep=lfhf(DEEP), lfhf_rem=lfhf(REM),
        auc_waso=auc,
    )


#: Statistic name -> (label, unit) in the notes' table order.
STATS: dict[str, tuple[str, str]] = {
    "hr_sleep": ("sleeping HR, mean over nights", "bpm"),
    "hr_sleep_sd": ("sleeping HR, SD over nights", "bpm"),
    "dhr_wake_before": ("dHR wake before onset", "bpm"),
    "dhr_waso": ("dHR WASO", "bpm"),
    "dhr_deep": ("dHR N3", "bpm"),
    "dhr_rem": ("dHR REM", "bpm"),
    "rmssd_light": ("RMSSD30 in light sleep", "ms"),
    "rmssd_ratio_wake": ("RMSSD30 ratio W/light", ""),
    "rmssd_ratio_deep": ("RMSSD30 ratio N3/light", ""),
    "rmssd_ratio_rem": ("RMSSD30 ratio REM/light", ""),
    "lf_light": ("LF power in light sleep", "ms^2"),
    "hf_light": ("HF power in light sleep", "ms^2"),
    "lfhf_wake": ("LF/HF wake", ""),
    "lfhf_light": ("LF/HF light", ""),
    "lfhf_deep": ("LF/HF N3", ""),
    "lfhf_rem": ("LF/HF REM", ""),
    "auc_waso": ("AUC of epoch HR, WASO vs sleep", ""),
}

#: The real tables (shared/notes/realdata.md): statistic -> (slpdb, held-out whole nights).
REAL: dict[str, tuple[float, float]] = {
    "hr_sleep": (71.0, 65.0),
    "hr_sleep_sd": (8.0, 10.0),
    "dhr_wake_before": (6.1, 4.9),
    "dhr_waso": (3.9, 7.6),
    "dhr_deep": (1.7, -0.1),
    "dhr_rem": (2.3, 2.4),
    "rmssd_light": (35.0, 24.0),
    "rmssd_ratio_wake": (0.64, 0.87),
    "rmssd_ratio_deep": (0.73, 0.98),
    "rmssd_ratio_rem": (0.74, 0.78),
    "lf_light": (1792.0, 339.0),
    "hf_light": (488.0, 166.0),
    "lfhf_wake": (4.5, 3.6),
    "lfhf_light": (3.1, 1.9),
    "lfhf_deep": (2.8, 1.0),
    "lfhf_rem": (3.2, 4.0),
    "auc_waso": (0.63, 0.75),
}


def accept_range(key: str) -> tuple[float, float]:
    """Where a simulated statistic counts as real: between the two real values, widened by a tolerance.

    Tolerance: 25% of the larger magnitude for levels and ratios, a factor 1.25 either way for the
    LF and HF powers, 1.5 bpm for heart-rate differences and the sleeping-HR spread, 0.05 for the
    AUC. The held-out HF and RMSSD are from beats rebuilt from 4-Hz heart rate, which lowers them
    (HF ~40%, RMSSD ~22%): their ends are those of the real beats (held-out / 0.6 and / 0.78).
    """
    a, b = REAL[key]
    if key == "rmssd_light":
        b = b / 0.78
    if key == "hf_light":
        b = b / 0.6
    lo, hi = min(a, b), max(a, b)
    if key in ("lf_light", "hf_light"):
        return lo / 1.25, hi * 1.25
    if key.startswith("dhr") or key == "hr_sleep_sd":
        return lo - 1.5, hi + 1.5
    if key == "auc_waso":
        return lo - 0.05, hi + 0.05
    tol = 0.25 * max(abs(lo), abs(hi))
    return lo - tol, hi + tol


def summarise(nights: Sequence[NightStats]) -> dict[str, float]:
    """The table over nights: medians, and the sleeping HR as mean and SD over nights."""
    out: dict[str, float] = {}
    rows = [asdict(n) for n in nights]
    for key in STATS:
        if key == "hr_sleep_sd":
            v = np.array([r["hr_sleep"] for r in rows], dtype=np.float64)
            v = v[np.isfinite(v)]
            out[key] = float(np.std(v, ddof=1)) if v.size > 1 else math.nan
        elif key == "hr_sleep":
            v = np.array([r["hr_sleep"] for r in rows], dtype=np.float64)
            out[key] = float(np.nanmean(v)) if np.isfinite(v).any() else math.nan
        else:
            out[key] = _med([r[key] for r in rows])
    return out


def outside(table: dict[str, float]) -> dict[str, Any]:
    """The statistics of ``table`` outside their accepted range: key -> (value, (low, high))."""
    bad: dict[str, Any] = {}
    for key in STATS:
        lo, hi = accept_range(key)
        v = table.get(key, math.nan)
        if not (math.isfinite(v) and lo <= v <= hi):
            bad[key] = (v, (lo, hi))
    return bad


def as_record(night: Night, person: PersonProfile) -> Record:
    """A simulated night as a PSG-labelled record for :mod:`collector.validation` (``magsleep validate``'s path).

    RR intervals as the strap delivers them (artefacts, dropouts, contact loss), stamped when the
    beat was detected; the true hypnogram with light and deep sleep as NREM; lights out and on known.
    """
    from collector.nights import stages as ns
    from collector.sim.hrm import notification_arrays

    a = notification_arrays(night)
    to_code = np.array([ns.WAKE, ns.NREM, ns.NREM, ns.REM], dtype=np.int64)
    tz = ZoneInfo(person.timezone)
    start = datetime.fromtimestamp(night.lights_out_ns / 1e9, tz)
    return Record(
        name=f"sim-{person.name}-{night.plan.night.isoformat()}", subject=f"sim-{person.name}", age=person.age,
        sex=person.sex, timezone=person.timezone, start=start, stages=to_code[night.hypnogram.astype(np.int64)],
        rr_end_s=np.asarray(a.rr_end_s, dtype=np.float64), rr_ms=a.rr_ms, lights_out_s=0.0,
        lights_on_s=night.duration_s, source="sim",
    )


#: slpdb stage letters -> simulator codes (Rechtschaffen & Kales: S1-S2 light, S3-S4 deep; MT and unscored -1).
SLPDB_STAGES = {"W": WAKE, "1": LIGHT, "2": LIGHT, "3": DEEP, "4": DEEP, "R": REM}


def slpdb_stages(an_path: Path, n_epochs: int) -> I64:
    """The expert stages of an slpdb record in simulator codes (deep sleep kept apart from light sleep).

    :mod:`collector.validation.slpdb` reads wake/NREM/REM; a twin night needs N3 for its heart model.
    """
    from collector.validation.records import parse_clock, read_lines

    codes = np.full(n_epochs, -1, dtype=np.int64)
    for i, line in enumerate(read_lines(an_path)):
        if not line.strip() or (i == 0 and line.lstrip().startswith("Elapsed")):
            continue
        k = round(parse_clock(line.split()[0]) / EPOCH_S)
        aux = line.split("\t")[-1].split()
        if 0 <= k < n_epochs and aux:
            codes[k] = SLPDB_STAGES.get(aux[0], -1)
    return codes


def twin_record(rec: Record, stages: I64, seed: int, faults: Faults | None = None) -> Record:
    """A simulated twin of a real record: the same expert hypnogram, clock time, age and sex, with
    simulated beats (a person drawn from ``seed``; unscored epochs are simulated as wake).

    Staging the twin and the record the same way compares the simulator's heart with the real one
    with everything else held equal (hypnogram, night position, metadata).
    """
    rng = np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(name_key(rec.name), 7)))
    person = PersonProfile.sample(rec.subject, seed, age=rec.age or 45, sex=rec.sex or "male")
    hyp = np.where(stages >= 0, stages, WAKE).astype(np.int8)
    beats = generate_beats(rng, hyp, rhr_bpm=person.rhr_bpm, rmssd_ms=person.rmssd_ms,
                           resp_rate_bpm=person.resp_rate_bpm)
    t = add_artefacts(rng, beats.times_s, faults or Faults()).times_s
    return replace(rec, name=f"{rec.name}-twin", rr_end_s=t[1:], rr_ms=np.diff(t) * 1000.0,
                   hr_t_s=np.zeros(0), hr_bpm=np.zeros(0), source="sim")
