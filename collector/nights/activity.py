"""Motion in real units: ActiGraph activity counts from raw acceleration, and Cole-Kripke on them.

**Counts.** Raw acceleration in g (three axes) becomes ActiGraph activity counts with ActiGraph's
own published implementation, PyPI ``agcounts`` (Neishabouri et al. 2022, "Quantification of
acceleration as activity counts in ActiGraph wearable", Sci Rep, doi:10.1038/s41598-022-16003-x):
the firmware's band-pass filter (half power at 0.29 and 1.63 Hz, the band reported in the
literature, e.g. Brønd et al. 2017, Med Sci Sports Exerc 49:2351, Fridolfsson et al. 2019, Sensors
19:2186; measured in the tests), a dead band below 4 units and saturation at 128 per 1/30 s, summed
per epoch. ``agcounts`` takes
30-100 Hz; a tracker's samples are first put on a 30 Hz grid here: linearly interpolated for a
stream at a steady rate (the Polar strap's 25 Hz; the counts' band lies far below its 12.5 Hz
Nyquist limit), or held for a stream that only reports changes (InfiniTime: each value stands
until the next one). Counts are additive over whole seconds,
so counts per second summed over an epoch are exactly the epoch's counts.

Per epoch the three axis counts and their vector magnitude ``sqrt(x² + y² + z²)`` (ActiLife's
"vector magnitude") are kept. Magsleep's trackers sit on the chest (H10) or the wrist (PineTime) in
any orientation, so the rule below reads the vector magnitude, not ActiGraph's axis 1.

**Wake rule.** Cole, Kripke, Gruen, Mullaney & Gillin 1992 (Sleep 15:461-469), the 1-minute version
in the form ActiGraph adapted to its counts (ActiLife 6 user's manual; as in the R package
actigraph.sleepr)::

    A_i = min(counts of minute i / 100, 300)
    D   = 0.001 x (106 A-4 + 54 A-3 + 58 A-2 + 76 A-1 + 230 A0 + 74 A+1 + 67 A+2)
    wake when D >= 1

(minutes outside the recording count as 0). No acceleration recorded together with
polysomnography is available to this project: the rule is implemented as published and tested
against hand-computed scores, not re-fitted.

**Fusion with heart staging** (:func:`fuse_motion`, used when ``nights.motion_staging`` is on):

1. An epoch that the heart classifier calls sleep becomes wake when Cole-Kripke scores its minute
   wake *and* the heart's sleep probability is below :data:`FUSE_MAX_P_SLEEP` (0.745). That is the
   naive-Bayes combination: the heart's odds of wake times Cole-Kripke's likelihood ratio for a wake
   score, taken at the cautious end of what Quante et al. 2018 (Nat Sci Sleep 10:13-20, ActiGraph
   GT3X+ on the wrist vs PSG) measured: sleep sensitivity 0.88-0.96, wake specificity 0.35-0.64, so
   LR = 0.35 / (1 - 0.88) = 2.9; posterior P(wake) > 0.5 exactly when P(sleep) < LR / (1 + LR).
2. An epoch without usable heart signal but with counts takes Cole-Kripke's wake; its sleep only
   between the first and the last heart-staged sleep epoch (stage ``sleep``): a still minute before
   sleep onset or after the final awakening is quiet wakefulness as often as sleep (actigraphy's known
   weakness: wake specificity 0.35-0.64), and would set sleep onset by itself.
3. Motion never turns the heart's wake into sleep, for the same reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from importlib import import_module

import numpy as np
from numpy.typing import NDArray

from collector.errors import AnalysisError
from collector.nights.stages import EPOCH_S, SLEEP, SLEEP_CODES, UNKNOWN, WAKE

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
B = NDArray[np.bool_]
NS = 1_000_000_000

#: The rate counts are computed at (agcounts' native rate: no resampling of its own).
COUNTS_RATE_HZ = 30
#: Rates agcounts accepts directly.
AGCOUNTS_RATES = frozenset({30, 40, 50, 60, 70, 80, 90, 100, 32, 64, 128, 256})

#: Cole et al. 1992, 1-min epochs, as ActiLife applies it to ActiGraph counts.
COLE_KRIPKE_WEIGHTS = (106.0, 54.0, 58.0, 76.0, 230.0, 74.0, 67.0)  # A-4 .. A+2
COLE_KRIPKE_P = 0.001
COLE_KRIPKE_DIVISOR = 100.0
COLE_KRIPKE_CAP = 300.0
COLE_KRIPKE_BEFORE, COLE_KRIPKE_AFTER = 4, 2

#: Likelihood ratio of a Cole-Kripke wake score, cautious end of Quante et al. 2018 (module docstring).
CK_WAKE_LR = 0.35 / (1.0 - 0.88)
#: A heart sleep epoch with a Cole-Kripke wake minute becomes wake below this sleep probability.
FUSE_MAX_P_SLEEP = CK_WAKE_LR / (1.0 + CK_WAKE_LR)

# agcounts logs every step at INFO ("Filtering Data", ...): once per epoch per device in the daemon.
logging.getLogger("agcounts").setLevel(logging.WARNING)


@cache
def load_counts() -> None:
    """Import agcounts (and SciPy's signal package under it: 1-5 s) once; profiles run it in a thread
    when a tracker connects, so the first epoch never blocks the event loop."""
    import_module("agcounts.extract")


def counts_per_second(xyz_g: F64, rate_hz: int = COUNTS_RATE_HZ) -> I64:
    """ActiGraph counts per second and axis (n_seconds x 3) of acceleration in g at ``rate_hz``.

    The filter starts in its steady state for the first sample; whole seconds only (a partial last
    second is dropped).
    """
    from agcounts.extract import get_counts  # type: ignore[import-untyped]  # SciPy: only where counted

    if rate_hz not in AGCOUNTS_RATES:
        raise AnalysisError(f"activity counts need 30-100 Hz (or 32/64/128/256 Hz), got {rate_hz} Hz: resample first")
    x = np.asarray(xyz_g, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 3:
        raise AnalysisError(f"acceleration must be n x 3 (x, y, z in g), got shape {x.shape}")
    n_s = x.shape[0] // rate_hz
    if n_s == 0:
        return np.zeros((0, 3), dtype=np.int64)
    counts = np.asarray(get_counts(x[: n_s * rate_hz], freq=rate_hz, epoch=1), dtype=np.int64)
    return counts[:n_s]


def to_counts_grid(t_s: F64, xyz_g: F64, start_s: float, n_seconds: int, *, hold: bool = False) -> F64:
    """Samples at times ``t_s`` (s, ascending) on the 30 Hz grid ``start_s + k / 30``, k < 30 n_seconds.

    ``hold``: each value stands until the next (change-only streams), else linear interpolation.
    Before the first and after the last sample the edge value is held.
    """
    grid = start_s + np.arange(n_seconds * COUNTS_RATE_HZ) / COUNTS_RATE_HZ
    t = np.asarray(t_s, dtype=np.float64)
    x = np.asarray(xyz_g, dtype=np.float64)
    if hold:
        idx = np.clip(np.searchsorted(t, grid, side="right") - 1, 0, t.size - 1)
        out: F64 = x[idx]
        return out
    return np.column_stack([np.interp(grid, t, x[:, k]) for k in range(3)])


def epoch_counts(t_s: F64, xyz_g: F64, epoch_start_s: float, epoch_s: int, *, warmup_s: int = 10,
                 hold: bool = False) -> I64:
    """Axis counts (3,) of the epoch [epoch_start_s, +epoch_s) from samples around it.

    The filter runs over ``warmup_s`` seconds before the epoch first (whatever samples are there),
    so a stream cut into epochs gives the counts of the whole signal (tested).
    """
    grid = to_counts_grid(t_s, xyz_g, epoch_start_s - warmup_s, warmup_s + epoch_s, hold=hold)
    per_s = counts_per_second(grid)
    out: I64 = per_s[warmup_s:].sum(axis=0)
    return out


def minute_counts(t_s: F64, xyz_g: F64, *, hold: bool = False) -> tuple[I64, I64]:
    """A whole recording of acceleration (times in s since 1970, n x 3 in g) as ActiGraph counts per
    wall-clock minute: (minute start times in s, axis counts n_min x 3). For importers and PSG
    recordings that carry raw acceleration; whole minutes covered by the samples only.
    """
    t = np.asarray(t_s, dtype=np.float64)
    if t.size < 2:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 3), dtype=np.int64)
    first = int(np.ceil(t[0] / 60.0)) * 60
    n_min = (int(np.floor(t[-1] / 60.0)) * 60 - first) // 60
    if n_min <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 3), dtype=np.int64)
    run_in = min(10, int(first - t[0]))
    grid = to_counts_grid(t, xyz_g, float(first - run_in), run_in + 60 * n_min, hold=hold)
    per_s = counts_per_second(grid)[run_in:]
    counts: I64 = per_s.reshape(n_min, 60, 3).sum(axis=1)
    starts: I64 = first + 60 * np.arange(n_min, dtype=np.int64)
    return starts, counts


def vector_magnitude(axis_counts: I64 | F64) -> F64:
    """ActiLife's vector magnitude of axis counts (last dimension x, y, z)."""
    a = np.asarray(axis_counts, dtype=np.float64)
    out: F64 = np.sqrt((a * a).sum(axis=-1))
    return out


def cole_kripke_index(counts_per_min: F64) -> F64:
    """Cole-Kripke's D per minute from counts per minute (NaN counts as 0: no movement recorded)."""
    a = np.minimum(np.nan_to_num(np.asarray(counts_per_min, dtype=np.float64)) / COLE_KRIPKE_DIVISOR,
                   COLE_KRIPKE_CAP)
    n = a.size
    pad = np.pad(a, (COLE_KRIPKE_BEFORE, COLE_KRIPKE_AFTER))
    d = np.zeros(n)
    for k, w in enumerate(COLE_KRIPKE_WEIGHTS):  # k = 0 is A-4
        d += w * pad[k : k + n]
    out: F64 = COLE_KRIPKE_P * d
    return out


def cole_kripke(counts_per_min: F64) -> B:
    """Wake (True) per minute: Cole-Kripke's D >= 1."""
    wake: B = cole_kripke_index(counts_per_min) >= 1.0
    return wake


@dataclass(frozen=True, slots=True)
class MotionScore:
    """Cole-Kripke per staging epoch: ``wake`` of the epoch's minute, ``have`` where counts exist."""

    wake: B
    have: B


def counts_per_minute(time_ns: I64, counts: F64, first_min: int, n_min: int) -> F64:
    """Counts summed per wall-clock minute ``first_min + i`` (minutes since 1970; NaN: none recorded).

    Stored epochs are 60 s on whole minutes; shorter epochs (a generic sensor's) are summed.
    """
    out = np.full(n_min, np.nan)
    t = np.asarray(time_ns, dtype=np.int64)
    c = np.asarray(counts, dtype=np.float64)
    idx = t // (60 * NS) - first_min
    ok = (idx >= 0) & (idx < n_min) & np.isfinite(c)
    if np.any(ok):
        sums = np.bincount(idx[ok], weights=c[ok], minlength=n_min)
        have = np.bincount(idx[ok], minlength=n_min) > 0
        out[have] = sums[have]
    return out


def motion_score(time_ns: I64, counts: F64, start_ns: int, n_epochs: int, epoch_s: int = EPOCH_S) -> MotionScore | None:
    """Cole-Kripke for each staging epoch from ``start_ns`` (None when no counts fall in the span).

    Minutes are wall-clock minutes; the rule also sees the 4 minutes before and 2 after the span.
    """
    if np.asarray(time_ns).size == 0 or n_epochs <= 0:
        return None
    ep_start = start_ns + np.arange(n_epochs, dtype=np.int64) * epoch_s * NS
    ep_min = ep_start // (60 * NS)
    first = int(ep_min[0]) - COLE_KRIPKE_BEFORE
    n_min = int(ep_min[-1]) - first + 1 + COLE_KRIPKE_AFTER
    per_min = counts_per_minute(time_ns, counts, first, n_min)
    rel = ep_min - first
    have = np.isfinite(per_min)[rel]
    if not np.any(have):
        return None
    wake = cole_kripke(per_min)[rel]
    return MotionScore(wake=wake, have=have)


def fuse_motion(codes: I64, p_sleep: F64, motion: MotionScore) -> I64:
    """Heart stage codes combined with Cole-Kripke by the rule in the module docstring."""
    out = np.asarray(codes, dtype=np.int64).copy()
    n = out.size
    if motion.wake.size != n or motion.have.size != n or np.asarray(p_sleep).size != n:
        raise AnalysisError(f"motion fusion needs one value per epoch ({n})")
    wake, have = motion.wake, motion.have
    is_sleep = np.isin(out, SLEEP_CODES)
    p = np.asarray(p_sleep, dtype=np.float64)
    unsure = ~(p >= FUSE_MAX_P_SLEEP)  # NaN (no probability) counts as unsure
    out[is_sleep & have & wake & unsure] = WAKE
    no_hr = out == UNKNOWN
    out[no_hr & have & wake] = WAKE
    hr_sleep = np.flatnonzero(is_sleep)
    inside = np.zeros(n, dtype=bool)
    if hr_sleep.size:
        inside[hr_sleep[0] : hr_sleep[-1] + 1] = True
    out[no_hr & have & ~wake & inside] = SLEEP
    return out
