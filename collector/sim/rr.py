"""Beat-to-beat heart timing for one night, consistent with the hypnogram, and what goes wrong.

The model, all vectorised on a 1-Hz grid and per beat:

- heart rate = the night's sleeping HR + a stage offset (deep lower, REM higher, wake much higher,
  with a per-bout size) + a slow decline over the night, smoothed with a 15-s time constant (the
  HR rise on awakening is a ramp, not a step) + slow AR(1) fluctuations (strongest in REM and
  wake) + short phasic surges in REM;
- beats are placed where the integral of heart rate crosses whole numbers;
- beat times are then perturbed by respiratory sinus arrhythmia (a breathing-rate sinusoid whose
  amplitude follows a stage-dependent RMSSD target, regular in deep sleep and irregular in REM)
  and white jitter; perturbing times rather than intervals keeps the beats aligned with the
  hypnogram over the whole night.

Faults: ectopic beats (premature, with a compensatory pause), missed beats (two intervals
merged), BLE dropouts (nothing arrives) and contact loss (the strap reports no contact, no RR).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.fft import next_fast_len
from scipy.signal import lfilter

from collector.sim.hypnogram import DEEP, EPOCH_S, LIGHT, REM, WAKE
from collector.sim.params import Faults

F64 = NDArray[np.float64]

# Calibrated to real polysomnography nights (shared/notes/realdata.md, docs/simulator.md "Heart").
# heart-rate offsets from light sleep, bpm (real: wake +4..+8, N3 -0.1..+1.7, REM +2.3)
_HR_OFFSET = {WAKE: 5.5, LIGHT: 0.0, DEEP: 0.5, REM: 2.3}
# RMSSD relative to light sleep (real W 0.64-0.87, N3 0.73-0.98, REM 0.74-0.78)
_RMSSD_FACTOR = {WAKE: 0.55, LIGHT: 1.0, DEEP: 0.9, REM: 0.68}
# LF power relative to HF power (real LF/HF: W 3.6-4.5, light 1.9-3.1, N3 1.0-2.8, REM 3.2-4.0)
_LF_HF = {WAKE: 4.0, LIGHT: 1.9, DEEP: 1.3, REM: 3.2}
# SD (bpm) of slow (very-low-frequency) heart-rate wandering by stage
_VLF_SD = {WAKE: 2.0, LIGHT: 2.5, DEEP: 1.6, REM: 4.0}
# arousals: brief heart-rate surges per hour of each stage (none in wake itself)
_AROUSALS_PER_H = {WAKE: 0.0, LIGHT: 10.0, DEEP: 3.0, REM: 8.0}
# relative SD of the breathing rate: regular in deep sleep, irregular in REM and wake
_RESP_SD = {WAKE: 0.2, LIGHT: 0.06, DEEP: 0.03, REM: 0.15}
_HR_TAU_S = 15.0
_VLF_TAU_S = 40.0
_DRIFT_TAU_S = 1200.0
_DRIFT_SD = 3.25
_LF_HZ = (0.09, 0.025)  # centre and SD of the Mayer-wave (baroreflex) band
_TONE_TAU_S = 300.0
_TONE_SD = 0.4
# share of RMSSD variance from breathing (the rest is white jitter): awake, breathing is irregular and
# the sinus arrhythmia weaker
_RSA_SHARE = {WAKE: 0.7, LIGHT: 0.95, DEEP: 0.95, REM: 0.8}


def _lut(table: dict[int, float]) -> F64:
    return np.array([table[s] for s in (WAKE, LIGHT, DEEP, REM)], dtype=np.float64)


def _smooth(x: F64, tau_s: float) -> F64:
    """First-order low-pass on a 1-Hz signal, starting at its first value."""
    a = math.exp(-1.0 / tau_s)
    y, _ = lfilter([1.0 - a], [1.0, -a], x, zi=[a * x[0]])
    return np.asarray(y, dtype=np.float64)


def _ar1(rng: np.random.Generator, n: int, tau_s: float) -> F64:
    """Unit-variance AR(1) noise on a 1-Hz grid with time constant ``tau_s``."""
    a = math.exp(-1.0 / tau_s)
    e = rng.standard_normal(n)
    e[0] /= math.sqrt(1 - a * a)  # start from the stationary distribution
    y, _ = lfilter([math.sqrt(1 - a * a)], [1.0, -a], e, zi=[0.0])
    return np.asarray(y, dtype=np.float64)


# an arousal surge: rises in ~3 s, fades with a 12-s time constant:
# (1 - exp(-t/3)) exp(-t/12) = exp(-t/12) - exp(-t/2.4), peak 1 at t = 3 ln 5 s
_SURGE_RISE_S, _SURGE_FALL_S = 3.0, 12.0
_SURGE_FAST_S = 1.0 / (1.0 / _SURGE_RISE_S + 1.0 / _SURGE_FALL_S)
_SURGE_PEAK = 0.8 * 0.2 ** (_SURGE_RISE_S / _SURGE_FALL_S)


def _surges(impulses: F64) -> F64:
    """Impulses (bpm) on a 1-Hz grid turned into arousal surges of that height."""
    out = np.zeros_like(impulses)
    for tau, sign in ((_SURGE_FALL_S, 1.0), (_SURGE_FAST_S, -1.0)):
        a = math.exp(-1.0 / tau)
        y, _ = lfilter([1.0], [1.0, -a], impulses, zi=[0.0])
        out += sign * y
    return np.asarray(out / _SURGE_PEAK, dtype=np.float64)


def _narrowband(rng: np.random.Generator, n: int, centre_hz: float, sd_hz: float) -> F64:
    """Unit-variance Gaussian noise on a 1-Hz grid with a Gaussian spectrum around ``centre_hz``."""
    m = next_fast_len(n, real=True)
    spec = np.fft.rfft(rng.standard_normal(m))
    fr = np.fft.rfftfreq(m, 1.0)
    spec *= np.exp(-0.5 * ((fr - centre_hz) / sd_hz) ** 2)
    y = np.fft.irfft(spec, m)[:n]
    sd = float(y.std())
    return np.asarray(y / sd if sd > 0 else y, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class Beats:
    """Clean beats of one night: R-peak times in seconds from lights out."""

    times_s: F64
    hr_grid_bpm: F64  # the 1-Hz heart-rate drive (for inspection)


def generate_beats(
    rng: np.random.Generator,
    hyp: NDArray[np.int8],
    *,
    rhr_bpm: float,
    rmssd_ms: float,
    resp_rate_bpm: float,
) -> Beats:
    """Clean R-peak times for the hypnogram; mean sleeping HR ~ ``rhr_bpm``, nightly RMSSD ~ ``rmssd_ms``."""
    n_ep = len(hyp)
    dur = n_ep * EPOCH_S
    st = np.repeat(hyp.astype(np.int64), EPOCH_S)  # stage per second
    sleep_s = st != WAKE
    t = np.arange(dur, dtype=np.float64)

    # heart-rate drive
    ep_off = _lut(_HR_OFFSET)[hyp.astype(np.int64)]
    wake = hyp == WAKE
    surges = np.zeros(dur)
    if wake.any():
        # each wake bout gets its own size of HR rise and starts with an arousal surge
        onset = wake & np.concatenate(([True], ~wake[:-1]))
        starts = np.flatnonzero(onset)
        bout_id = np.cumsum(onset) - 1
        extra = rng.uniform(-5.0, 5.0, len(starts))
        ep_off = ep_off + np.where(wake, extra[np.clip(bout_id, 0, len(starts) - 1)], 0.0)
        first_sleep = int(np.argmax(~wake)) if (~wake).any() else n_ep
        ep_off[:first_sleep] -= 2.5  # lying awake waiting for sleep: a little calmer than awakenings
        np.add.at(surges, starts * EPOCH_S + rng.integers(0, EPOCH_S, len(starts)),
                  rng.uniform(4.0, 14.0, len(starts)))
    # arousals inside sleep: a surge of a few to 15 bpm (Poisson per stage)
    rate = _lut(_AROUSALS_PER_H)[st] / 3600.0
    k = rng.random(dur) < rate
    surges[k] += rng.uniform(3.0, 12.0, int(k.sum()))
    hr = np.repeat(ep_off, EPOCH_S) + 5.0 * np.exp(-t / (3.0 * 3600.0))
    hr = _smooth(hr, _HR_TAU_S)
    hr += _surges(surges)
    hr += _ar1(rng, dur, _VLF_TAU_S) * _smooth(_lut(_VLF_SD)[st], 30.0)
    # slow drift of the night's heart rate over tens of minutes (real nights are not stationary)
    hr += _ar1(rng, dur, _DRIFT_TAU_S) * _DRIFT_SD
    # phasic REM surges: a few bpm for ~10 s, about one per minute of REM
    rem_s = np.flatnonzero(st == REM)
    if len(rem_s):
        k_rem = rng.poisson(len(rem_s) / 60.0)
        if k_rem:
            imp = np.zeros(dur)
            np.add.at(imp, rng.choice(rem_s, size=k_rem), rng.uniform(3.0, 8.0, k_rem))
            kern = np.exp(-0.5 * (np.arange(-15, 16) / 5.0) ** 2)
            hr += np.convolve(imp, kern, mode="same")
    mean_sleep = float(hr[sleep_s].mean()) if sleep_s.any() else float(hr.mean())
    hr += rhr_bpm - mean_sleep
    hr = np.clip(hr, 30.0, 180.0)

    # variability targets on the grid (RMSSD, s) and the RSA amplitude they need
    fac = _lut(_RMSSD_FACTOR)[hyp.astype(np.int64)]
    med = float(np.median(fac[hyp != WAKE])) if (hyp != WAKE).any() else 1.0
    s_grid = _smooth(np.repeat(rmssd_ms * fac / med, EPOCH_S), 30.0) / 1000.0
    # vagal tone and breathing depth wander over minutes (real RMSSD and HF spread 3x wider over a
    # night than a fixed stage target gives): a slow log-normal factor, mean 1
    s_grid *= np.exp(_ar1(rng, dur, _TONE_TAU_S) * _TONE_SD - _TONE_SD**2 / 2)
    f = resp_rate_bpm / 60.0 * (1.0 + _ar1(rng, dur, 10.0) * _lut(_RESP_SD)[st])
    f = np.clip(f, 0.1, 0.6)
    sin_grid = np.maximum(np.abs(np.sin(np.pi * f * 60.0 / hr)), 0.2)
    share = _smooth(_lut(_RSA_SHARE)[st], 30.0)
    amp_grid = s_grid * np.sqrt(share) / (math.sqrt(2.0) * sin_grid)  # RR modulation amplitude, s

    # Mayer waves (LF): narrow-band noise near 0.09 Hz whose RR power is LF/HF x the RSA's
    lf_sd_s = np.sqrt(_smooth(_lut(_LF_HF)[st], 60.0)) * amp_grid / math.sqrt(2.0)
    lf_sd_s *= np.exp(_ar1(rng, dur, _TONE_TAU_S) * _TONE_SD - _TONE_SD**2 / 2)
    hr += _narrowband(rng, dur, *_LF_HZ) * lf_sd_s * hr * hr / 60.0
    hr = np.clip(hr, 30.0, 180.0)

    # beats where the integral of HR crosses whole numbers
    edges_beats = np.concatenate(([0.0], np.cumsum(hr / 60.0)))
    edges_t = np.arange(dur + 1, dtype=np.float64)
    ks = np.arange(1, int(edges_beats[-1])) - rng.uniform(0.0, 1.0)
    ks = ks[ks > 0]
    tb = np.interp(ks, edges_beats, edges_t)
    rr_b = np.diff(tb, prepend=tb[0] - 60.0 / hr[0])

    # respiratory sinus arrhythmia: breathing phase on the grid, amplitude per beat
    idx = np.minimum(tb.astype(np.int64), dur - 1)
    s_b = s_grid[idx]
    phase = 2 * np.pi * np.cumsum(f)
    ph_b = np.interp(tb, t, phase)
    f_b = f[idx]
    sin_term = np.maximum(np.abs(np.sin(np.pi * f_b * rr_b)), 0.2)
    share_b = share[idx]
    amp_rr = s_b * np.sqrt(share_b) / (math.sqrt(2.0) * sin_term)
    x = amp_rr / (2.0 * sin_term) * np.cos(ph_b)
    x += rng.standard_normal(len(tb)) * s_b * np.sqrt((1 - share_b) / 6.0)
    x = np.clip(x, -0.3 * rr_b, 0.3 * rr_b)  # never reorder beats
    times = tb + x
    times = times[(times > 0) & (times < dur)]
    times = np.maximum.accumulate(times)
    return Beats(times_s=times, hr_grid_bpm=hr)


@dataclass(frozen=True, slots=True)
class Artefacts:
    """Beats as a strap detects them (ectopic shifted, missed removed) and the counts."""

    times_s: F64
    n_ectopic: int
    n_missed: int


def add_artefacts(rng: np.random.Generator, times_s: F64, faults: Faults) -> Artefacts:
    """Shift ``ectopic_share`` of the artefact beats earlier (premature) and drop the rest (missed)."""
    n = len(times_s)
    if n < 3 or faults.artefact_rate <= 0:
        return Artefacts(times_s.copy(), 0, 0)
    k = int(rng.binomial(n - 2, faults.artefact_rate))
    pick = np.sort(rng.choice(np.arange(1, n - 1), size=k, replace=False))
    ectopic = rng.random(k) < faults.ectopic_share
    out = times_s.copy()
    e = pick[ectopic]
    # a premature beat arrives 20-45% of an interval early; the next beat keeps its time
    out[e] -= (times_s[e] - times_s[e - 1]) * rng.uniform(0.2, 0.45, len(e))
    keep = np.ones(n, dtype=bool)
    keep[pick[~ectopic]] = False
    return Artefacts(out[keep], int(ectopic.sum()), int((~ectopic).sum()))


def fault_intervals(
    rng: np.random.Generator, hyp: NDArray[np.int8], faults: Faults
) -> tuple[F64, F64]:
    """(dropouts, contact losses) as arrays of [start_s, end_s) rows, seconds from lights out."""
    dur = len(hyp) * EPOCH_S
    scale = dur / (8 * 3600.0)

    def lengths(k: int, lo: float, hi: float) -> F64:
        return np.exp(rng.uniform(math.log(lo), math.log(hi), k))

    k = int(rng.poisson(faults.dropouts_per_night * scale))
    starts = rng.uniform(0, dur, k)
    drops = np.column_stack((starts, np.minimum(starts + lengths(k, *faults.dropout_s), dur)))

    k = int(rng.poisson(faults.contact_losses_per_night * scale))
    wake_ep = np.flatnonzero(hyp == WAKE)
    near_wake = rng.random(k) < 0.7
    cs = np.where(
        near_wake & (len(wake_ep) > 0),
        (rng.choice(wake_ep, size=k) if len(wake_ep) else np.zeros(k)) * EPOCH_S + rng.uniform(0, EPOCH_S, k),
        rng.uniform(0, dur, k),
    )
    contact = np.column_stack((cs, np.minimum(cs + lengths(k, *faults.contact_loss_s), dur)))
    return drops[np.argsort(drops[:, 0])], contact[np.argsort(contact[:, 0])]


def in_intervals(t: F64, iv: F64) -> NDArray[np.bool_]:
    """Which times fall in any [start, end) row of ``iv`` (rows may overlap)."""
    if len(iv) == 0:
        return np.zeros(len(t), dtype=bool)
    # merge overlapping rows, then one searchsorted
    order = np.argsort(iv[:, 0])
    s, e = iv[order, 0], np.maximum.accumulate(iv[order, 1])
    new = np.concatenate(([True], s[1:] > e[:-1]))
    grp = np.cumsum(new) - 1
    ms = s[new]
    me = np.zeros(len(ms))
    np.maximum.at(me, grp, e)
    j = np.searchsorted(ms, t, side="right") - 1
    return (j >= 0) & (t < me[np.maximum(j, 0)])


def covered_fraction(dur_s: float, *ivs: F64) -> float:
    """Share of [0, dur_s) not covered by any of the interval sets (1-s resolution)."""
    grid = np.arange(int(dur_s), dtype=np.float64) + 0.5
    bad = np.zeros(len(grid), dtype=bool)
    for iv in ivs:
        bad |= in_intervals(grid, iv)
    return float(1.0 - bad.mean()) if len(grid) else 1.0
