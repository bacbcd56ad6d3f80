"""RR clean-up: beat times from stored RR points, dropout gaps, Lipponen & Tarvainen 2019 correction.

The correction is a line-by-line port of neurokit2 0.2.13 ``signal_fixpeaks(method="Kubios")``
(Lipponen & Tarvainen 2019, J Med Eng Technol 43:173-181), vectorised where neurokit2 loops, and
tested for identical output against neurokit2 itself (tests/nights/test_artefacts.py). neurokit2
pulls in pandas/scikit-learn/matplotlib, so it stays a dev-only dependency.

The correction only ever runs inside *segments* of contiguous beats. A dropout (BLE link lost, strap
off) leaves a gap between stored intervals; an interval of several missed beats looks like one
huge RR. Both end a segment: the method would otherwise "correct" a multi-beat gap by inventing
one or two beats across it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
from numpy.typing import NDArray

from collector.errors import AnalysisError

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
B = NDArray[np.bool_]

#: An interval is a gap (segment boundary) when the stored time stamps advance by more than the
#: interval itself plus this much: BLE notifications arrive about once a second, so stamps jitter
#: by up to ~1 s, and a real dropout lasts seconds to hours.
GAP_TOLERANCE_S = 2.0
#: An interval longer than this many local medians is several missed beats: a gap, not an artefact.
#: One missed beat (about 2 medians) is left to the correction, which splits it in two.
MULTI_BEAT_FACTOR = 2.6
#: Never a single heartbeat (20 bpm).
MAX_RR_MS = 3000.0
#: Shorter intervals are never clean (200 bpm); before correction they stay in (an extra beat splits
#: one interval in two, which the correction merges again).
MIN_RR_MS = 300.0
#: Non-positive or absurdly short values are dropped as sensor glitches before anything else.
GLITCH_RR_MS = 20.0
#: Segments with fewer beats are too short to correct or analyse and are discarded.
MIN_SEGMENT_BEATS = 16
#: Resolution of the peak grid used for the correction (Polar and the BLE HRS profile: 1/1024 s).
PEAK_RATE_HZ = 1024


# --------------------------------------------------------------------------------------------
# Lipponen & Tarvainen 2019, as in neurokit2 (peaks are integer sample indices)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Artefacts:
    """Indices (into the peaks array the detection ran on) of each artefact class."""

    ectopic: list[int]
    missed: list[int]
    extra: list[int]
    longshort: list[int]

    def count(self) -> int:
        return len(self.ectopic) + len(self.missed) + len(self.extra) + len(self.longshort)


def _window_stats(x: F64, w: int, rows: I64, qs: tuple[float, ...], median: bool) -> list[F64]:
    """pandas ``rolling(w, center=True, min_periods=1)`` quantiles (linear) or median at ``rows``.

    Same arithmetic as pandas' skiplist code: quantile ``vlow + (vhigh - vlow) * frac`` (exact
    index: ``vlow``), median of an even count ``(a + b) / 2``. ``w`` must be odd.
    """
    h = w // 2
    n = x.size
    offs = np.arange(-h, h + 1)
    idx = rows[:, np.newaxis] + offs[np.newaxis, :]
    inside = (idx >= 0) & (idx < n)
    win = np.where(inside, x[np.clip(idx, 0, n - 1)], np.inf)
    win.sort(axis=1)
    nobs = inside.sum(axis=1)
    r = np.arange(rows.size)
    out: list[F64] = []
    if median:
        mid = nobs // 2
        odd = win[r, mid]
        even = (win[r, mid] + win[r, np.maximum(mid - 1, 0)]) / 2
        out.append(np.where(nobs % 2 == 1, odd, even))
        return out
    for q in qs:
        iwf = q * (nobs - 1)
        ii = iwf.astype(np.int64)
        vlow = win[r, ii]
        vhigh = win[r, np.minimum(ii + 1, nobs - 1)]
        out.append(np.where(iwf == ii, vlow, vlow + (vhigh - vlow) * (iwf - ii)))
    return out


class _Rolling:
    """One rolling statistic that is recomputed only where its input changed.

    The artefact search runs again after every correction (neurokit2's ``iterative``); between
    runs only the windows around moved, inserted or deleted beats change. ``m[i]`` maps position
    ``i`` of the new input to the old one; a window whose values are all equal and contiguous in
    the old input keeps its old result, every other window is computed with :func:`_window_stats`.
    The first run uses pandas itself.
    """

    def __init__(self, w: int, qs: tuple[float, ...] = (), *, median: bool = False) -> None:
        self.w, self.qs, self.median = w, qs, median
        self.x: F64 | None = None
        self.res: list[F64] = []

    def __call__(self, x: F64, m: I64 | None) -> list[F64]:
        if self.x is None or m is None:
            roll = pd.Series(x).rolling(self.w, center=True, min_periods=1)
            res = [roll.median().to_numpy()] if self.median else [roll.quantile(q).to_numpy() for q in self.qs]
        else:
            res = self._update(x, m)
        self.x, self.res = x, res
        return res

    def _update(self, x: F64, m: I64) -> list[F64]:
        assert self.x is not None
        old, n, h = self.x, x.size, self.w // 2
        mapped = m >= 0
        eq = mapped & (x == old[np.where(mapped, m, 0)])
        shift = m - np.arange(n)
        brk = np.zeros(n, dtype=np.int64)
        brk[1:] = shift[1:] != shift[:-1]
        c_bad = np.concatenate(([0], np.cumsum(~eq)))
        c_brk = np.concatenate(([0], np.cumsum(brk)))
        i = np.arange(n)
        a, b = i - h, i + h
        interior = (a >= 0) & (b < n)
        aa, bb = np.clip(a, 0, n), np.clip(b + 1, 0, n)
        clean = interior & (c_bad[bb] - c_bad[aa] == 0) & (c_brk[bb] - c_brk[np.minimum(aa + 1, n)] == 0)
        dirty = np.flatnonzero(~clean)
        fresh = _window_stats(x, self.w, dirty, self.qs, self.median)
        out = []
        for k, prev in enumerate(self.res):
            r = np.empty(n)
            r[clean] = prev[m[clean]]
            r[dirty] = fresh[k]
            out.append(r)
        return out


@dataclass
class _SearchCache:
    """Rolling statistics of the previous artefact search (see :class:`_Rolling`)."""

    peaks: I64 | None = None
    th1: _Rolling | None = None
    med: _Rolling | None = None
    th2: _Rolling | None = None


def _mapping(old: I64 | None, new: I64) -> I64 | None:
    """Index of each new peak in the old peaks array (-1 when it is not there)."""
    if old is None:
        return None
    j = np.searchsorted(old, new)
    jc = np.minimum(j, old.size - 1)
    m: I64 = np.where(old[jc] == new, jc, -1).astype(np.int64)
    return m


def _threshold(abs_signal_stats: list[F64], alpha: float) -> F64:
    q1, q3 = abs_signal_stats
    th: F64 = alpha * ((q3 - q1) / 2)
    return th


def find_artefacts(
    peaks: I64,
    sampling_rate: float,
    *,
    c1: float = 0.13,
    c2: float = 0.17,
    alpha: float = 5.2,
    window_width: int = 91,
    medfilt_order: int = 11,
    cache: _SearchCache | None = None,
) -> Artefacts:
    """Classify beats as ectopic, missed, extra or long/short (Lipponen & Tarvainen 2019, Fig. 1).

    ``cache`` (from the previous search on the same segment) lets the rolling statistics be
    updated only where the peaks changed; results are identical either way.
    """
    if cache is None:
        cache = _SearchCache()
    if cache.th1 is None or cache.med is None or cache.th2 is None:
        cache.th1 = _Rolling(window_width, (0.25, 0.75))
        cache.med = _Rolling(medfilt_order, median=True)
        cache.th2 = _Rolling(window_width, (0.25, 0.75))
    m = _mapping(cache.peaks, peaks)
    cache.peaks = peaks
    rr = np.ediff1d(peaks, to_begin=0) / sampling_rate
    if len(rr) > 1:
        rr[0] = np.mean(rr[1:])
    elif len(rr) == 1:
        rr[0] = 1.0
    drrs = np.ediff1d(rr, to_begin=0)
    if len(drrs) > 1:
        drrs[0] = np.mean(drrs[1:])
    elif len(drrs) == 1:
        drrs[0] = 0.0
    th1 = _threshold(cache.th1(np.abs(drrs), m), alpha)
    np.divide(drrs, th1, out=drrs, where=th1 != 0)
    drrs[th1 == 0] = np.nan

    pad = np.pad(drrs, 2, "reflect")
    n = drrs.size
    prev, nxt, nxt2 = pad[1 : n + 1], pad[3 : n + 3], pad[4 : n + 4]
    with np.errstate(invalid="ignore"):
        s12 = np.where(drrs > 0, np.maximum(prev, nxt), np.where(drrs < 0, np.minimum(prev, nxt), 0.0))
        s22 = np.where(drrs >= 0, np.minimum(nxt, nxt2), np.where(drrs < 0, np.maximum(nxt, nxt2), 0.0))

    medrr = cache.med(rr, m)[0]
    mrrs = rr - medrr
    mrrs[mrrs < 0] = mrrs[mrrs < 0] * 2
    th2 = _threshold(cache.th2(np.abs(mrrs), m), alpha)
    np.divide(mrrs, th2, out=mrrs, where=th2 != 0)
    mrrs[th2 == 0] = np.nan

    extra: list[int] = []
    missed: list[int] = []
    ectopic: list[int] = []
    longshort: list[int] = []
    # neurokit2 walks every beat; only beats with |dRR| > 1 (or NaN) do anything, so jump to them.
    with np.errstate(invalid="ignore"):
        candidates = np.flatnonzero(~(np.abs(drrs) <= 1))
    i = 0
    while i < rr.size - 2:
        k = int(np.searchsorted(candidates, i))
        if k >= candidates.size:
            break
        i = int(candidates[k])
        if i >= rr.size - 2:
            break
        d = drrs[i]
        if (d > 1 and s12[i] < (-c1 * d - c2)) or (d < -1 and s12[i] > (-c1 * d + c2)):
            ectopic.append(i)
            i += 1
            continue
        if not (abs(d) > 1 or abs(mrrs[i]) > 3):
            i += 1
            continue
        ls_candidates = [i]
        if abs(drrs[i + 1]) < abs(drrs[i + 2]):
            ls_candidates.append(i + 1)
        for j in ls_candidates:
            eq3 = drrs[j] > 1 and s22[j] < -1
            eq4 = abs(mrrs[j]) > 3
            eq5 = drrs[j] < -1 and s22[j] > 1
            if not (eq3 or eq4 or eq5):
                i += 1
                continue
            eq6 = abs(rr[j] / 2 - medrr[j]) < th2[j]
            eq7 = abs(rr[j] + rr[j + 1] - medrr[j]) < th2[j]
            if eq5 and eq7:
                extra.append(j)
                i += 1
                continue
            if eq3 and eq6:
                missed.append(j)
                i += 1
                continue
            longshort.append(j)
            i += 1
    return Artefacts(ectopic=ectopic, missed=missed, extra=extra, longshort=longshort)


def _update_indices(source: list[int], update: list[int], step: int) -> list[int]:
    if not update:
        return update
    for s in source:
        update = [u + step if u > s else u for u in update]
    return [int(x) for x in np.unique(update)]


def _correct_misaligned(idcs: list[int], peaks: I64) -> I64:
    a = np.array(idcs)
    a = a[(a > 1) & (a < len(peaks) - 1)]
    prev_p = peaks[a - 1]
    next_p = peaks[a + 1]
    interp = prev_p + (next_p - prev_p) / 2
    out = np.concatenate((np.delete(peaks, a), interp)).astype(np.int64)
    out.sort(kind="mergesort")
    return out


def correct_artefacts(art: Artefacts, peaks: I64) -> I64:
    """Delete extra beats, insert missed ones, move ectopic and long/short ones to the midpoint."""
    missed, ectopic, longshort = art.missed, art.ectopic, art.longshort
    if art.extra:
        peaks = np.delete(peaks, art.extra)
        missed = _update_indices(art.extra, missed, -1)
        ectopic = _update_indices(art.extra, ectopic, -1)
        longshort = _update_indices(art.extra, longshort, -1)
    if missed:
        m = np.array(missed)
        m = m[(m > 1) & (m < len(peaks))]
        prev_p = peaks[m - 1]
        added = prev_p + (peaks[m] - prev_p) / 2
        peaks = np.insert(peaks, m, added)
        ectopic = _update_indices(missed, ectopic, 1)
        longshort = _update_indices(missed, longshort, 1)
    if ectopic:
        peaks = _correct_misaligned(ectopic, peaks)
    if longshort:
        peaks = _correct_misaligned(longshort, peaks)
    return peaks


def fix_peaks(peaks: I64, sampling_rate: float, *, iterative: bool = True) -> tuple[I64, int]:
    """Corrected peaks and the number of artefacts found (neurokit2 ``signal_fixpeaks`` "Kubios")."""
    cache = _SearchCache()
    art = find_artefacts(peaks, sampling_rate, cache=cache)
    clean = correct_artefacts(art, peaks)
    n_first = n_cur = art.count()
    if iterative:
        while True:
            new = find_artefacts(clean, sampling_rate, cache=cache)
            n_prev, n_cur = n_cur, new.count()
            if n_cur >= n_prev:
                break
            clean = correct_artefacts(new, clean)
    return clean, n_first


# --------------------------------------------------------------------------------------------
# Stored RR points -> clean beats
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Beats:
    """Heartbeat times after clean-up.

    ``t_s`` are beat times in seconds since ``t0_ns`` (UTC ns), sorted. ``nn_ms[i]`` is the interval
    ending at beat ``i`` (NaN for the first beat of a segment); ``ok[i]`` says that interval is clean
    (both beats as measured, neither moved nor inserted). ``segment[i]`` numbers contiguous runs.
    """

    t0_ns: int
    t_s: F64
    nn_ms: F64
    ok: B
    segment: I64
    n_input: int
    n_artefacts: int
    n_gaps: int

    @property
    def artefact_rate(self) -> float:
        return self.n_artefacts / self.n_input if self.n_input else 0.0

    def valid_intervals(self) -> B:
        """Intervals usable for heart rate (corrected ones included, gaps excluded)."""
        return np.isfinite(self.nn_ms)


def _segments(stamps_s: F64, rr_ms: F64) -> I64:
    """Segment id per interval: a new segment starts at every dropout or multi-beat gap."""
    n = rr_ms.size
    med = pd.Series(rr_ms).rolling(31, center=True, min_periods=1).median().to_numpy()
    dt = np.diff(stamps_s, prepend=stamps_s[0] - rr_ms[0] / 1000.0)
    gap = (dt - rr_ms / 1000.0 > GAP_TOLERANCE_S) | (rr_ms > MAX_RR_MS) | (rr_ms > MULTI_BEAT_FACTOR * med)
    seg = np.cumsum(gap).astype(np.int64)
    # An interval flagged as a gap is itself not a beat-to-beat interval: drop it by giving it
    # segment -1; the beat that ends it starts the next segment (its own interval unknown).
    seg[gap] = -1
    return seg if n else np.zeros(0, dtype=np.int64)


def clean_rr(stamps_ns: I64, rr_ms: F64, *, correct: bool = True) -> Beats:
    """Beats from stored RR points (stamped at the end of each beat), corrected per segment.

    Within a segment the beat times are the cumulative sum of the intervals (exact spacing),
    anchored to the median offset from the stored stamps (which jitter with notification timing).
    """
    if stamps_ns.shape != rr_ms.shape:
        raise AnalysisError(f"{stamps_ns.size} time stamps for {rr_ms.size} RR intervals: they must pair up")
    order = np.argsort(stamps_ns, kind="stable")
    stamps_ns = stamps_ns[order]
    rr = np.asarray(rr_ms, dtype=np.float64)[order]
    n_input = int(rr.size)
    keep = np.isfinite(rr) & (rr >= GLITCH_RR_MS)
    stamps_ns, rr = stamps_ns[keep], rr[keep]
    n_glitch = n_input - int(rr.size)
    empty = np.zeros(0)
    t0 = int(stamps_ns[0]) if stamps_ns.size else 0
    if rr.size == 0:
        return Beats(t0, empty, empty, np.zeros(0, bool), np.zeros(0, np.int64), n_input, n_glitch, 0)
    stamps_s = (stamps_ns - t0) / 1e9
    seg = _segments(stamps_s, rr)
    n_gaps = int(np.count_nonzero(seg < 0))

    ts: list[F64] = []
    nns: list[F64] = []
    oks: list[B] = []
    segs: list[I64] = []
    n_art = n_glitch
    sid = 0
    for s in np.unique(seg[seg >= 0]):
        idx = np.flatnonzero(seg == s)
        if idx.size < MIN_SEGMENT_BEATS:
            continue
        r = rr[idx]
        # Peaks on the 1/1024 s grid: beat 0 of the segment starts one interval before the first stamp.
        peaks = np.concatenate(([0], np.cumsum(np.rint(r * PEAK_RATE_HZ / 1000.0)))).astype(np.int64)
        offset = float(np.median(stamps_s[idx] - peaks[1:] / PEAK_RATE_HZ))
        if correct:
            fixed, n_found = fix_peaks(peaks, PEAK_RATE_HZ)
            n_art += n_found
        else:
            fixed = peaks
        t = fixed / PEAK_RATE_HZ + offset
        nn = np.diff(fixed, prepend=np.int64(-1)).astype(np.float64) * (1000.0 / PEAK_RATE_HZ)
        nn[0] = np.nan
        orig = np.isin(fixed, peaks)
        ok = orig & np.concatenate(([False], orig[:-1]))
        # An interval kept but flagged would have been moved; still, reject implausible leftovers.
        ok &= (nn >= MIN_RR_MS) & (nn <= MAX_RR_MS)
        ts.append(t)
        nns.append(nn)
        oks.append(ok)
        segs.append(np.full(t.size, sid, dtype=np.int64))
        sid += 1
    if not ts:
        return Beats(t0, empty, empty, np.zeros(0, bool), np.zeros(0, np.int64), n_input, n_art, n_gaps)
    t_all = np.concatenate(ts)
    o = np.argsort(t_all, kind="stable")
    return Beats(
        t0_ns=t0,
        t_s=t_all[o],
        nn_ms=np.concatenate(nns)[o],
        ok=np.concatenate(oks)[o],
        segment=np.concatenate(segs)[o],
        n_input=n_input,
        n_artefacts=n_art,
        n_gaps=n_gaps,
    )
