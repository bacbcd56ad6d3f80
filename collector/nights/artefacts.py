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
from numpy.typing import NDArray
from scipy.ndimage import rank_filter

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


def rolling_stats(x: F64, w: int, qs: tuple[float, ...] = (), *, median: bool = False) -> list[F64]:
    """pandas ``Series(x).rolling(w, center=True, min_periods=1)`` quantiles (linear) or median.

    Bit-identical to pandas (tested) and about ten times faster: where the window is whole, each
    order statistic comes from SciPy's 1-D rank filter (a sorted sliding window in C), combined
    with pandas' interpolation arithmetic; the ``w // 2`` truncated windows at either end are
    sorted directly (:func:`_window_stats`). ``x`` must be free of NaN (RR-derived series are).
    """
    n = x.size
    if w % 2 == 0 or w < 1:
        raise AnalysisError(f"rolling window of {w} beats: it must be odd (a centred window)")
    if n == 0:
        return [np.zeros(0) for _ in ((0.5,) if median else qs)]
    h = w // 2
    edges = np.flatnonzero((np.arange(n) < h) | (np.arange(n) >= n - h)).astype(np.int64)
    edge_vals = _window_stats(x, w, edges, qs, median)
    ranks: dict[int, F64] = {}

    def rank(k: int) -> F64:
        if k not in ranks:
            ranks[k] = rank_filter(x, k, size=w, mode="nearest")
        return ranks[k]

    out: list[F64] = []
    if median:
        res = rank(h).copy()
        res[edges] = edge_vals[0]
        return [res]
    for q, ev in zip(qs, edge_vals, strict=True):
        iwf = q * (w - 1)
        ii = int(iwf)
        if iwf == ii:
            res = rank(ii).copy()
        else:
            lo, hi = rank(ii), rank(min(ii + 1, w - 1))
            res = lo + (hi - lo) * (iwf - ii)
        res[edges] = ev
        out.append(res)
    return out


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
) -> Artefacts:
    """Classify beats as ectopic, missed, extra or long/short (Lipponen & Tarvainen 2019, Fig. 1)."""
    quartiles = (0.25, 0.75)
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
    th1 = _threshold(rolling_stats(np.abs(drrs), window_width, quartiles), alpha)
    np.divide(drrs, th1, out=drrs, where=th1 != 0)
    drrs[th1 == 0] = np.nan

    pad = np.pad(drrs, 2, "reflect")
    n = drrs.size
    prev, nxt, nxt2 = pad[1 : n + 1], pad[3 : n + 3], pad[4 : n + 4]
    with np.errstate(invalid="ignore"):
        s12 = np.where(drrs > 0, np.maximum(prev, nxt), np.where(drrs < 0, np.minimum(prev, nxt), 0.0))
        s22 = np.where(drrs >= 0, np.minimum(nxt, nxt2), np.where(drrs < 0, np.maximum(nxt, nxt2), 0.0))

    medrr = rolling_stats(rr, medfilt_order, median=True)[0]
    mrrs = rr - medrr
    mrrs[mrrs < 0] = mrrs[mrrs < 0] * 2
    th2 = _threshold(rolling_stats(np.abs(mrrs), window_width, quartiles), alpha)
    np.divide(mrrs, th2, out=mrrs, where=th2 != 0)
    mrrs[th2 == 0] = np.nan

    extra: list[int] = []
    missed: list[int] = []
    ectopic: list[int] = []
    longshort: list[int] = []
    # neurokit2 walks every beat; only beats with |dRR| > 1 (or NaN) do anything, so visit just those,
    # with their values (and their two successors') gathered once into Python floats.
    with np.errstate(invalid="ignore"):
        cand = np.flatnonzero(~(np.abs(drrs) <= 1))
    cand = cand[cand < rr.size - 2]
    if cand.size == 0:
        return Artefacts(ectopic=ectopic, missed=missed, extra=extra, longshort=longshort)
    c1_, c2_ = cand + 1, cand + 2
    d_ = (drrs[cand].tolist(), drrs[c1_].tolist(), drrs[c2_].tolist())
    s12_ = s12[cand].tolist()
    s22_ = (s22[cand].tolist(), s22[c1_].tolist())
    m_ = (mrrs[cand].tolist(), mrrs[c1_].tolist())
    rr_ = (rr[cand].tolist(), rr[c1_].tolist(), rr[c2_].tolist())
    med_ = (medrr[cand].tolist(), medrr[c1_].tolist())
    th_ = (th2[cand].tolist(), th2[c1_].tolist())
    i = 0
    for k, ci in enumerate(cand.tolist()):
        if ci < i:
            continue  # stepped over by a long/short pair
        i = ci
        d = d_[0][k]
        if (d > 1 and s12_[k] < (-c1 * d - c2)) or (d < -1 and s12_[k] > (-c1 * d + c2)):
            ectopic.append(i)
            i += 1
            continue
        if not (abs(d) > 1 or abs(m_[0][k]) > 3):
            i += 1
            continue
        offsets = (0, 1) if abs(d_[1][k]) < abs(d_[2][k]) else (0,)
        for o in offsets:
            j = ci + o
            dj, sj, mj = d_[o][k], s22_[o][k], m_[o][k]
            eq3 = dj > 1 and sj < -1
            eq4 = abs(mj) > 3
            eq5 = dj < -1 and sj > 1
            if not (eq3 or eq4 or eq5):
                i += 1
                continue
            rj, medj, thj = rr_[o][k], med_[o][k], th_[o][k]
            eq6 = abs(rj / 2 - medj) < thj
            eq7 = abs(rj + rr_[o + 1][k] - medj) < thj
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
    art = find_artefacts(peaks, sampling_rate)
    clean = correct_artefacts(art, peaks)
    n_first = n_cur = art.count()
    if iterative:
        while True:
            new = find_artefacts(clean, sampling_rate)
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
    med = rolling_stats(rr_ms, 31, median=True)[0]
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
