"""One night from raw arrays to a hypnogram, metrics and points (pure: no I/O).

Epochs are 30 s on a grid anchored at the start of the night's window, so recomputing a night
after lights out moved by a minute rewrites the same sleep_stage points instead of a shifted set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime
from datetime import time as dtime
from functools import cache
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from collector.effects.tagging import night_time_ns
from collector.nights.activity import motion_score
from collector.nights.artefacts import Beats, clean_rr
from collector.nights.gru_classifier import load_classifier
from collector.nights.metrics import MIN_COVERAGE_PCT, HeartMetrics, heart_metrics, hr_from_samples, sleep_metrics
from collector.nights.segment import (
    NS,
    LightsSource,
    NightWindow,
    night_span,
    rest_bounds,
)
from collector.nights.stages import EPOCH_S, SLEEP_CODES, STAGE_NAMES, UNKNOWN
from collector.nights.staging import (
    MIN_EPOCH_COVERAGE,
    Hypnogram,
    StagingFeatures,
    Subject,
    classify,
    epoch_coverage,
    staging_features,
)
from collector.nights.wake import WakeRule
from collector.storage.lineprotocol import FieldValue, Point
from collector.storage.schema import NIGHT, SLEEP_STAGE

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
EPOCH_NS = EPOCH_S * NS
#: Nights with less time in bed than this are not nights (flagged).
MIN_TIB_MIN = 60.0
STAGING_PREFIX = "magsleep-"
#: A night without any sleep found closes after its signal ended only if there was this much of it.
MIN_SIGNAL_TO_CLOSE_NS = 30 * 60 * NS


@dataclass(frozen=True, slots=True)
class NightInputs:
    """Everything stored for one person inside one night window."""

    window: NightWindow
    rr_time_ns: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    rr_ms: F64 = field(default_factory=lambda: np.zeros(0))
    hr_time_ns: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    hr_bpm: F64 = field(default_factory=lambda: np.zeros(0))
    motion_time_ns: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    #: ActiGraph counts (vector magnitude) per stored epoch (``motion.counts``, collector/nights/activity.py)
    motion_activity: F64 = field(default_factory=lambda: np.zeros(0))
    motion_epoch_s: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    stage_time_ns: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    stage_code: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    stage_epoch_s: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    stage_device: str = ""
    lights_out_tag_ns: int | None = None
    lights_on_tag_ns: int | None = None
    sim: bool = False


@dataclass(frozen=True, slots=True)
class NightOptions:
    classifier: str = "wrn-gru-mesa"
    #: A separate wake/sleep model overriding the 3-stage model's wake (None: ``rule`` decides; the default).
    wake_classifier: str | None = None
    motion_staging: bool = False
    min_coverage_pct: float = MIN_COVERAGE_PCT
    #: How stages follow from the 3-stage model's probabilities (collector/nights/wake.py).
    rule: WakeRule = field(default_factory=WakeRule)


@dataclass(frozen=True, slots=True)
class NightResult:
    night: str
    lights_out_ns: int
    lights_on_ns: int
    lights_source: LightsSource
    staging: Literal["device", "computed", "none"]
    hypnogram: Hypnogram | None  # computed stages to store (None for device staging)
    fields: dict[str, FieldValue]
    flagged: bool
    beats: Beats | None = None
    #: End of the last sleep epoch (None without sleep): when the person got up, for closing open nights.
    sleep_end_ns: int | None = None
    #: First and end of the last epoch with any signal (heart or device stages), None without.
    signal_span_ns: tuple[int, int] | None = None


def _grid(window: NightWindow) -> int:
    return int((window.end_ns - window.start_ns) // EPOCH_NS)


def _to_epoch(window: NightWindow, t_ns: I64) -> I64:
    r: I64 = (t_ns - window.start_ns) // EPOCH_NS
    return r


def device_hypnogram(inp: NightInputs) -> Hypnogram | None:
    """The device's stages on the window grid (None when the device gave none)."""
    if inp.stage_time_ns.size == 0:
        return None
    w = inp.window
    n = _grid(w)
    codes = np.full(n, UNKNOWN, dtype=np.int64)
    order = np.argsort(inp.stage_time_ns, kind="stable")
    for t, c, e in zip(inp.stage_time_ns[order].tolist(), inp.stage_code[order].tolist(),
                       inp.stage_epoch_s[order].tolist(), strict=True):
        a = max(0, (t - w.start_ns) // EPOCH_NS)
        b = min(n, -(-(t + max(int(e), EPOCH_S) * NS - w.start_ns) // EPOCH_NS))
        if a < b:
            codes[a:b] = int(c)
    if not np.any(codes >= 0):  # only "unknown" / "not worn" (a watch on its charger): no device staging
        return None
    return Hypnogram(w.start_ns, EPOCH_S, codes, np.full(n, np.nan), "device", inp.stage_device or "device")


def _local_time(t_ns: int, tz: ZoneInfo) -> dtime:
    return datetime.fromtimestamp(t_ns // NS, tz).time()


def _per_epoch_hr(window: NightWindow, beats: Beats, inp: NightInputs, n: int) -> tuple[NDArray[np.bool_], F64]:
    """Epochs with usable heart signal, and their mean HR (NaN where none)."""
    present = np.zeros(n, dtype=bool)
    hr = np.full(n, np.nan)
    if beats.t_s.size:
        rel = beats.t_s + (beats.t0_ns - window.start_ns) / 1e9
        cov = epoch_coverage(rel, beats.nn_ms, n)
        present |= cov >= MIN_EPOCH_COVERAGE
        ok = np.isfinite(beats.nn_ms) & (rel >= 0)
        idx = (rel[ok] // EPOCH_S).astype(np.int64)
        m = idx < n
        s = np.bincount(idx[m], weights=beats.nn_ms[ok][m], minlength=n)[:n]
        c = np.bincount(idx[m], minlength=n)[:n]
        with np.errstate(invalid="ignore", divide="ignore"):
            hr = np.where(c > 0, 60000.0 * c / s, np.nan)
    elif inp.hr_time_ns.size:
        idx = _to_epoch(window, inp.hr_time_ns)
        ok = (idx >= 0) & (idx < n) & (inp.hr_bpm > 0)
        s = np.bincount(idx[ok], weights=inp.hr_bpm[ok], minlength=n)[:n]
        c = np.bincount(idx[ok], minlength=n)[:n]
        present = c > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            hr = np.where(c > 0, s / c, np.nan)
    return present, hr


@cache
def one_blas_thread() -> None:
    """Limit BLAS (OpenBLAS of NumPy and SciPy) to one thread in this process, once.

    A night's matrices are small and the GRU runs them in a long loop of time steps: a second BLAS
    thread only waits for work, and two worker processes with two threads each oversubscribe a
    2-core machine. Measured on simulated nights: 510 -> 317 ms of CPU per night.
    """
    threadpool_limits(limits=1, user_api="blas")


def compute_night(
    inp: NightInputs, subject: Subject, tz: ZoneInfo, opts: NightOptions | None = None
) -> NightResult | None:
    """Lights, hypnogram, metrics and flags of one night; None when the window holds no signal.

    Sets this process's BLAS to one thread (:func:`one_blas_thread`).
    """
    one_blas_thread()
    opts = opts or NightOptions()
    w = inp.window
    n = _grid(w)
    beats = clean_rr(inp.rr_time_ns, inp.rr_ms)
    present, hr = _per_epoch_hr(w, beats, inp, n)
    dev = device_hypnogram(inp)
    has_heart = bool(np.any(present))
    if not has_heart and dev is None:
        return None

    sf: StagingFeatures | None = None
    wsf: StagingFeatures | None = None
    sf_lo = 0
    use_wake = bool(opts.wake_classifier) and load_classifier(opts.classifier).stages_mode == "wake-rem-nrem"

    def stage(lo: int, hi: int) -> Hypnogram:
        # Features once over the data span; each classification reuses the rows it covers.
        nonlocal sf, wsf, sf_lo
        if sf is None or lo < sf_lo or hi > sf_lo + sf.n:
            data = np.flatnonzero(present)
            sf_lo = min(lo, int(data[0])) if data.size else lo
            sf_hi = max(hi, int(data[-1]) + 1) if data.size else hi
            a_ns, b_ns = w.start_ns + sf_lo * EPOCH_NS, w.start_ns + sf_hi * EPOCH_NS
            sf = staging_features(beats, a_ns, b_ns, subject, classifier=opts.classifier)
            if use_wake and opts.wake_classifier:
                wsf = staging_features(beats, a_ns, b_ns, subject, classifier=opts.wake_classifier)
        start_ns = w.start_ns + lo * EPOCH_NS
        mo = motion_score(inp.motion_time_ns, inp.motion_activity, start_ns, hi - lo) if opts.motion_staging else None
        return classify(sf, lo - sf_lo, hi - sf_lo, _local_time(start_ns, tz), wake_sf=wsf, motion=mo,
                        rule=opts.rule)

    tag_lo = tag_hi = None
    if inp.lights_out_tag_ns is not None:
        tag_lo = int(np.clip((inp.lights_out_tag_ns - w.start_ns) // EPOCH_NS, 0, n))
    if inp.lights_on_tag_ns is not None:
        tag_hi = int(np.clip(-(-(inp.lights_on_tag_ns - w.start_ns) // EPOCH_NS), 0, n))
    staging: Literal["device", "computed", "none"]
    full: Hypnogram | None = None  # stages over the window (for finding sleep)
    if dev is not None:
        staging = "device"
        full = dev
        lights_src: LightsSource = "device"
        present_for_lights = dev.codes != UNKNOWN
        hr_for_lights = None
    elif beats.t_s.size:
        staging = "computed"
        lights_src = "estimate"
        present_for_lights = present
        hr_for_lights = hr
        if tag_lo is None or tag_hi is None:
            data = np.flatnonzero(present)
            full = stage(int(data[0]), int(data[-1]) + 1).slice(w.start_ns, w.end_ns)
    else:
        staging = "none"
        lights_src = "estimate"
        present_for_lights = present
        hr_for_lights = hr

    sig = present | (dev.codes != UNKNOWN) if dev is not None else present
    sig_idx = np.flatnonzero(sig)
    signal_span = ((w.start_ns + int(sig_idx[0]) * EPOCH_NS, w.start_ns + (int(sig_idx[-1]) + 1) * EPOCH_NS)
                   if sig_idx.size else None)
    lo = hi = None
    if full is not None:
        span = night_span(full.codes)
        if span is not None:
            lo, hi = rest_bounds(span[0], span[1], present_for_lights, hr_for_lights)
    if lo is None or hi is None:
        data = np.flatnonzero(present_for_lights)
        lo, hi = int(data[0]), int(data[-1]) + 1
        lights_src = "estimate"
    if tag_lo is not None:
        lo, lights_src = tag_lo, "tag"
    if tag_hi is not None:
        hi = tag_hi  # lights_source names where lights *out* came from (SOL depends on it)
    if hi <= lo:
        hi = min(n, lo + 1)

    lo_ns, hi_ns = w.start_ns + lo * EPOCH_NS, w.start_ns + hi * EPOCH_NS
    stored: Hypnogram | None = None
    if staging == "device":
        assert dev is not None
        hyp = dev.slice(lo_ns, hi_ns)
    elif staging == "computed":
        hyp = stage(lo, hi)
        stored = hyp
    else:
        hyp = Hypnogram(lo_ns, EPOCH_S, np.full(hi - lo, UNKNOWN, dtype=np.int64), np.full(hi - lo, np.nan),
                        "computed", "none")

    sm = sleep_metrics(hyp.codes)
    asleep = np.flatnonzero(np.isin(hyp.codes, SLEEP_CODES))
    sleep_end_ns = hyp.start_ns + (int(asleep[-1]) + 1) * hyp.epoch_s * NS if asleep.size else None
    rel = beats.t_s + (beats.t0_ns - lo_ns) / 1e9 if beats.t_s.size else beats.t_s
    if beats.t_s.size:
        hm = heart_metrics(hyp.codes, rel, beats.nn_ms, beats.ok, beats.segment)
    elif inp.hr_time_ns.size:
        mean, low = hr_from_samples(hyp.codes, (inp.hr_time_ns - lo_ns) / 1e9, inp.hr_bpm)
        hm = HeartMetrics(mean, low, None, None, 0)
    else:
        hm = HeartMetrics(None, None, None, None, 0)
    known = hyp.codes != UNKNOWN
    usable = known & present[lo:hi] if has_heart else known
    coverage = 100.0 * float(np.count_nonzero(usable)) / max(1, hi - lo)
    flagged = coverage < opts.min_coverage_pct or sm.tib_min < MIN_TIB_MIN or staging == "none"

    fields: dict[str, FieldValue] = {
        "night": w.night.isoformat(),
        "lights_out": lo_ns,
        "lights_on": hi_ns,
        "lights_source": lights_src,
        "coverage_pct": coverage,
        "flagged": flagged,
    }
    for k, v in sm.as_dict().items():
        if k == "coverage_pct" or v is None:
            continue
        fields[k] = v if k == "awakenings" else float(v)
    for k2, v2 in (("hr_mean_bpm", hm.hr_mean_bpm), ("hr_min5_bpm", hm.hr_min5_bpm),
                   ("rmssd_ms", hm.rmssd_ms), ("ln_rmssd", hm.ln_rmssd)):
        if v2 is not None and math.isfinite(v2):
            fields[k2] = float(v2)
    return NightResult(
        night=w.night.isoformat(),
        lights_out_ns=lo_ns,
        lights_on_ns=hi_ns,
        lights_source=lights_src,
        staging=staging,
        hypnogram=stored,
        fields=fields,
        flagged=flagged,
        beats=beats,
        sleep_end_ns=sleep_end_ns,
        signal_span_ns=signal_span,
    )


def closes_at(res: NightResult, inp: NightInputs, close_after_ns: int) -> int | None:
    """When a night still inside its window counts as over (None: not yet knowable).

    The earlier of a lights-on tag and ``close_after_ns`` after the last sleep epoch: by then the
    person has been awake, or the wearable quiet, for that long after sleeping. When the staging
    found no sleep at all in at least :data:`MIN_SIGNAL_TO_CLOSE_NS` of signal (it misses some real
    nights whole), ``close_after_ns`` after the signal ended (the wearable was taken off). More data
    (sleep again, the strap back in range) is taken in when it arrives: the night is recomputed, so
    an early close is a provisional answer, never a lost night.
    """
    out: int | None = None
    if res.sleep_end_ns is not None:
        out = res.sleep_end_ns + close_after_ns
    elif res.signal_span_ns is not None and res.signal_span_ns[1] - res.signal_span_ns[0] >= MIN_SIGNAL_TO_CLOSE_NS:
        out = res.signal_span_ns[1] + close_after_ns
    if inp.lights_on_tag_ns is not None:
        out = inp.lights_on_tag_ns if out is None else min(out, inp.lights_on_tag_ns)
    return out


@dataclass(frozen=True, slots=True)
class DoseInfo:
    status: Literal["magnesium", "control", "unknown"] = "unknown"
    elemental_mg: float = 0.0
    form: str = ""


def night_point(person: str, res: NightResult, dose: DoseInfo, *, sim: bool = False,
                provisional: bool = False) -> Point:
    fields = dict(res.fields)
    fields["provisional"] = provisional
    if dose.status == "magnesium":
        fields["elemental_mg"] = float(dose.elemental_mg)
        fields["form"] = dose.form
    elif dose.status == "control":
        fields["elemental_mg"] = 0.0
        fields["form"] = ""
    tags = {"person": person, "dose": dose.status, "staging": res.staging, "source": "sim" if sim else "computed"}
    return Point(NIGHT.name, tags, fields, night_time_ns(date.fromisoformat(res.night)))


def stage_tags(person: str, hyp: Hypnogram, *, sim: bool = False) -> dict[str, str]:
    return {"person": person, "source": "sim" if sim else "computed",
            "device": STAGING_PREFIX + hyp.method.split("+")[0]}


def stage_points(person: str, hyp: Hypnogram, *, sim: bool = False) -> list[Point]:
    """sleep_stage points (30-s epochs, stage + probability) of a computed hypnogram."""
    tags = stage_tags(person, hyp, sim=sim)
    out: list[Point] = []
    for t, c, p in zip(hyp.times_ns().tolist(), hyp.codes.tolist(), hyp.prob.tolist(), strict=True):
        f: dict[str, FieldValue] = {"stage": STAGE_NAMES[int(c)], "stage_code": int(c), "epoch_s": hyp.epoch_s}
        if math.isfinite(p):
            f["probability"] = float(p)
        out.append(Point(SLEEP_STAGE.name, tags, f, int(t)))
    return out
