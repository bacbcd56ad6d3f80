"""Sleep staging: device stages when present, else sleepecg features + the NumPy GRU classifier.

Features are sleepecg 0.6.0's (its feature groups, RR pre-processing and metadata columns, copied
here because importing sleepecg costs ~1.5 s; its feature matrix is reproduced, tested against
``sleepecg.extract_features``), with two additions:

- intervals across a dropout (between segments, see :mod:`collector.nights.artefacts`) are set to
  NaN so they are never read as one long beat;
- sleepecg raises ``ValueError: shape mismatch`` in the frequency-domain step when *no* analysis
  window is free of missing RR. The frequency-domain step therefore runs through
  :func:`_freq_features_safe`: sleepecg's code with the empty case handled and the windows with
  some missing RR (each its own periodogram) computed without scipy's per-call overhead; equal to
  sleepecg's output within 1e-12 relative (tested). The time-domain step is sleepecg's with the
  per-row medians/percentiles vectorised (bit-identical, tested).

Each 30-s epoch gets a quality flag (clean beats covering at least :data:`MIN_EPOCH_COVERAGE` of it).
Unusable epochs enter the classifier fully masked, as sleepecg masks unscored epochs in training,
and come out as ``unknown``: no stage is invented where there is no signal.

Optional motion: Cole-Kripke (1992) on ActiGraph counts, fused with the heart's stages and its
sleep probability by the rule in :mod:`collector.nights.activity` (:func:`fuse_motion`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import time as dtime
from functools import cache
from typing import Any, Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from collector.errors import AnalysisError
from collector.nights.activity import MotionScore, fuse_motion
from collector.nights.artefacts import Beats
from collector.nights.gru_classifier import GruClassifier, load_classifier, predict_many
from collector.nights.stages import EPOCH_S, NREM, REM, SLEEP, UNKNOWN, WAKE
from collector.nights.wake import WakeRule, decide, p_wake_classifier, p_wake_night_relative, wake_inputs

F64 = NDArray[np.float64]
F32 = NDArray[np.float32]
I64 = NDArray[np.int64]

#: An epoch is staged when clean (or corrected) beats cover at least this share of it.
MIN_EPOCH_COVERAGE = 0.5

# Classifier output class -> stage code (class 0 is sleepecg's UNDEFINED).
_CLASS_MAP = {
    "wake-rem-nrem": np.array([UNKNOWN, NREM, REM, WAKE]),
    "wake-sleep": np.array([UNKNOWN, SLEEP, WAKE]),
}



@dataclass(frozen=True, slots=True)
class Hypnogram:
    """Stages per fixed-length epoch from ``start_ns``; ``prob`` is NaN where there is none."""

    start_ns: int
    epoch_s: int
    codes: I64
    prob: F64
    source: Literal["device", "computed"]
    method: str

    @property
    def end_ns(self) -> int:
        return self.start_ns + len(self.codes) * self.epoch_s * 1_000_000_000

    def times_ns(self) -> I64:
        t: I64 = self.start_ns + np.arange(len(self.codes), dtype=np.int64) * (self.epoch_s * 1_000_000_000)
        return t

    def resample(self, epoch_s: int = EPOCH_S) -> Hypnogram:
        """The same hypnogram on shorter epochs (``self.epoch_s`` must be a multiple of ``epoch_s``)."""
        if self.epoch_s == epoch_s:
            return self
        if self.epoch_s % epoch_s:
            raise AnalysisError(f"cannot resample {self.epoch_s}-s epochs to {epoch_s} s")
        k = self.epoch_s // epoch_s
        return Hypnogram(self.start_ns, epoch_s, np.repeat(self.codes, k), np.repeat(self.prob, k),
                         self.source, self.method)

    def slice(self, start_ns: int, end_ns: int) -> Hypnogram:
        """Epochs starting in [start_ns, end_ns), padded with ``unknown`` where not covered."""
        step = self.epoch_s * 1_000_000_000
        n = max(0, -(-(end_ns - start_ns) // step))
        codes = np.full(n, UNKNOWN, dtype=np.int64)
        prob = np.full(n, np.nan)
        src = (start_ns - self.start_ns + np.arange(n) * step) // step
        ok = (src >= 0) & (src < len(self.codes))
        codes[ok] = self.codes[src[ok]]
        prob[ok] = self.prob[src[ok]]
        return Hypnogram(start_ns, self.epoch_s, codes, prob, self.source, self.method)


@dataclass(frozen=True, slots=True)
class Subject:
    """What sleepecg's metadata features need: age in years and sex."""

    age: int
    sex: Literal["female", "male"]

    @property
    def gender(self) -> int:
        return 1 if self.sex == "male" else 0  # sleepecg Gender: FEMALE 0, MALE 1


# --------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------


@cache
def _hann(m: int) -> tuple[F64, float]:
    """Periodic Hann window of length ``m`` and the sum of its squares (scipy's ``get_window``)."""
    from scipy.signal import get_window

    w = np.asarray(get_window("hann", m), dtype=np.float64)
    return w, float((w * w).sum())


def _periodogram_hann(x: F64, fs: float, nfft: int) -> F64:
    """``scipy.signal.periodogram(x, fs, window="hann", nfft=nfft)[1]`` without its per-call overhead.

    Same steps (constant detrend, periodic Hann, one-sided density); equal to scipy within 1e-12
    relative (tested), four to ten times faster on the short rows sleepecg feeds it one by one.
    """
    win, ss = _hann(x.size)
    spec = np.fft.rfft((x - np.mean(x)) * win, n=nfft)
    p: F64 = (spec.real**2 + spec.imag**2) * (1.0 / (fs * ss))
    if nfft % 2:
        p[1:] *= 2
    else:
        p[1:-1] *= 2
    return p


def _periodogram_rows(x: F64, fs: float) -> F64:
    """``scipy.signal.periodogram(x, fs)[1]`` of each row (boxcar window, nfft = row length).

    Same steps as scipy (constant detrend, one-sided density), without its short-time-FFT
    machinery, whose detrending alone took half a night's frequency-domain time; equal to scipy
    within 1e-12 relative (tested).
    """
    m = x.shape[1]
    spec = np.fft.rfft(x - x.mean(axis=1, keepdims=True), axis=1)
    p: F64 = (spec.real**2 + spec.imag**2) * (1.0 / (fs * m))
    if m % 2:
        p[:, 1:] *= 2
    else:
        p[:, 1:-1] *= 2
    return p


def _nanpsd_safe(x: F64, fs: float, max_nans: float) -> tuple[F64, F64]:
    """sleepecg's ``_nanpsd`` without its crash when no row is free of NaN (partial rows faster)."""
    nfft = x.shape[1]
    pxx = np.full((x.shape[0], nfft // 2 + 1), np.nan)
    nan_fraction = np.mean(np.isnan(x), axis=1)
    full = nan_fraction == 0
    f = np.fft.rfftfreq(nfft, 1 / fs).astype(np.float64)
    if np.any(full):
        pxx[full] = _periodogram_rows(x[full], fs)
    empty = nan_fraction == 1
    for i in np.where((nan_fraction <= max_nans) & ~(full | empty))[0]:
        valid = x[i][~np.isnan(x[i])]
        pxx[i] = _periodogram_hann(valid, fs, nfft)
    return f, pxx


def _freq_features_safe(
    rri: F64, rri_times: F64, stage_times: NDArray[Any], lookback: int, lookforward: int, fs: float, max_nans: float
) -> F64:
    """sleepecg's ``_hrv_frequencydomain_features`` with :func:`_nanpsd_safe`."""
    interp_times = np.arange(stage_times[0] - lookback, stop=stage_times[-1] + lookforward, step=1 / fs)
    rri_interp = np.interp(interp_times, rri_times, rri, left=np.nan, right=np.nan)  # interp1d(linear)
    window_size = int((lookback + lookforward) * fs)
    window_step = int(fs * (stage_times[1] - stage_times[0] if len(stage_times) > 1 else EPOCH_S))
    windows = sliding_window_view(rri_interp, window_size)[::window_step]
    freq, psd = _nanpsd_safe(windows, fs, max_nans)
    tp = freq <= 0.4
    vlf_m = (freq > 0.0033) & (freq <= 0.04)
    lf_m = (freq > 0.04) & (freq <= 0.15)
    hf_m = (freq > 0.15) & (freq <= 0.4)
    with np.errstate(invalid="ignore", divide="ignore"):
        total = np.trapezoid(psd[:, tp], freq[tp])
        vlf = np.trapezoid(psd[:, vlf_m], freq[vlf_m])
        lf = np.trapezoid(psd[:, lf_m], freq[lf_m])
        hf = np.trapezoid(psd[:, hf_m], freq[hf_m])
        out: F64 = np.vstack((total, vlf, lf, lf / (lf + hf) * 100, hf, hf / (lf + hf) * 100, lf / hf)).T
    return out


def _row_quantile(sorted_rows: F64, count: NDArray[np.int64], q: float) -> F64:
    """numpy's linear ``nanquantile`` per row of NaN-last sorted rows (same arithmetic)."""
    vi = (count - 1) * q
    prev = np.floor(vi)
    nxt = prev + 1
    above = vi >= count - 1
    prev_i = np.where(above, count - 1, prev).astype(np.intp)
    next_i = np.where(above, count - 1, nxt).astype(np.intp)
    prev_i = np.clip(prev_i, 0, None)
    next_i = np.clip(next_i, 0, None)
    rows = np.arange(sorted_rows.shape[0])
    a = sorted_rows[rows, prev_i]
    b = sorted_rows[rows, next_i]
    t = vi - prev
    diff = b - a
    out = a + diff * t
    out = np.where(t >= 0.5, b - diff * (1 - t), out)
    out = np.where(above, b, out)
    r: F64 = np.where(count > 0, out, np.nan)
    return r


def _time_features_fast(rri: F64, rri_times: F64, stage_times: NDArray[Any], lookback: int, lookforward: int) -> F64:
    """sleepecg's ``_hrv_timedomain_features`` with the per-row medians/percentiles vectorised.

    sleepecg computes them through ``np.nanpercentile``/``np.nanmedian``, which loop over rows in
    Python (two thirds of a night's staging time). Equal to sleepecg's output (tested).
    """
    # sleepecg's _split_into_windows + _create_ragged_array, by index ranges on the sorted times
    starts = np.searchsorted(rri_times, stage_times - lookback, side="left")
    ends = np.searchsorted(rri_times, stage_times + lookforward, side="left")
    lengths = np.maximum(ends - starts, 0)
    width = int(lengths.max()) if lengths.size else 0
    cols = np.arange(width)
    take = cols[np.newaxis, :] < lengths[:, np.newaxis]
    nn = np.full((stage_times.size, width), np.nan)
    nn[take] = rri[(starts[:, np.newaxis] + cols[np.newaxis, :])[take]]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_nn = np.nanmean(nn, axis=1)
        max_nn = np.nanmax(nn, axis=1)
        min_nn = np.nanmin(nn, axis=1)
        sdnn = np.nanstd(nn, axis=1, ddof=1)
        sd = np.diff(nn)
        rmssd = np.sqrt(np.nanmean(sd**2, axis=1))
        sdsd = np.nanstd(sd, axis=1, ddof=1)
        nn50 = np.nansum(np.abs(sd) > 0.05, axis=1)
        nn20 = np.nansum(np.abs(sd) > 0.02, axis=1)
        pnn50 = np.nanmean(np.abs(sd) > 0.05, axis=1)
        pnn20 = np.nanmean(np.abs(sd) > 0.02, axis=1)
        srt = np.sort(nn, axis=1)
        cnt = np.count_nonzero(np.isfinite(nn), axis=1)
        median_nn = _row_quantile(srt, cnt, 0.5)
        dev = np.sort(np.abs(nn - median_nn[:, np.newaxis]), axis=1)
        mad_nn = _row_quantile(dev, cnt, 0.5)
        iqr_nn = _row_quantile(srt, cnt, 0.75) - _row_quantile(srt, cnt, 0.25)
        cv_nn = sdnn / mean_nn
        cv_sd = sdsd / np.nanmean(sd, axis=1)
        mean_hr = 60 / mean_nn
        max_hr = 60 / min_nn
        min_hr = 60 / max_nn
        std_hr = np.nanstd(60 / nn, axis=1, ddof=1)
        sd1 = (sdsd**2 * 0.5) ** 0.5
        sd2 = (2 * sdnn**2 - sd1**2) ** 0.5
        s_area = np.pi * sd1 * sd2
        ratio = sd1 / sd2
        csi = sd2 / sd1
        cvi = np.log10(sd1 * sd2 * 16)
    out: F64 = np.vstack((mean_nn, max_nn, min_nn, max_nn - min_nn, sdnn, rmssd, sdsd, nn50, nn20, pnn50, pnn20,
                          median_nn, mad_nn, iqr_nn, cv_nn, cv_sd, mean_hr, max_hr, min_hr, std_hr, sd1, sd2,
                          s_area, ratio, csi, cvi)).T
    return out


#: sleepecg 0.6.0's feature groups (``sleepecg.feature_extraction._FEATURE_GROUPS``) that the shipped
#: classifiers use, in its column order. Kept here because importing sleepecg costs ~1.5 s (SciPy's
#: signal and integrate packages, its classification module) for three small helpers; a test
#: checks these against the installed sleepecg.
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "hrv-time": ("meanNN", "maxNN", "minNN", "rangeNN", "SDNN", "RMSSD", "SDSD", "NN50", "NN20", "pNN50", "pNN20",
                 "medianNN", "madNN", "iqrNN", "cvNN", "cvSD", "meanHR", "maxHR", "minHR", "stdHR", "SD1", "SD2",
                 "S", "SD1_SD2_ratio", "CSI", "CVI"),
    "hrv-frequency": ("total_power", "VLF", "LF", "LF_norm", "HF", "HF_norm", "LF_HF_ratio"),
    "metadata": ("recording_start_time", "age", "gender", "weight"),
}


def parse_feature_selection(requested: list[str]) -> tuple[list[str], list[str], list[int]]:
    """sleepecg's ``_parse_feature_selection``: (groups to compute, feature ids, their columns).

    Groups come in order of first request (sleepecg uses a set, so its order varies between
    processes; the selected columns, and so the features, are the same).
    """
    to_group = {f: g for g, ids in FEATURE_GROUPS.items() for f in ids}
    groups: list[str] = []
    ids: list[str] = []
    for r in requested:
        g = r if r in FEATURE_GROUPS else to_group.get(r)
        if g is None:
            raise AnalysisError(f"feature or group {r!r} is not supported by magsleep's staging")
        if g not in groups:
            groups.append(g)
        ids.extend(FEATURE_GROUPS.get(r, (r,)))
    all_cols = [f for g in groups for f in FEATURE_GROUPS[g]]
    return groups, ids, [all_cols.index(f) for f in ids]


def preprocess_rri(rri: F64, min_rri: float | None = None, max_rri: float | None = None) -> F64:
    """sleepecg's ``preprocess_rri``: a copy with intervals outside [min_rri, max_rri] (s) set to NaN."""
    out = np.array(rri, dtype=float)
    if min_rri is not None:
        out[out < min_rri] = np.nan
    if max_rri is not None:
        out[out > max_rri] = np.nan
    return out


def metadata_features(start_time: dtime, subject: Subject, n_epochs: int) -> F64:
    """sleepecg's ``_metadata_features``: start time (s after midnight), age, gender, weight (unknown)."""
    x = np.full((n_epochs, len(FEATURE_GROUPS["metadata"])), np.nan)
    x[:, 0] = start_time.hour * 3600 + start_time.minute * 60 + start_time.second
    x[:, 1] = subject.age
    x[:, 2] = subject.gender
    return x


def extract_features(
    heartbeat_times: F64,
    n_epochs: int,
    start_time: dtime,
    subject: Subject,
    params: dict[str, Any],
    *,
    breaks: NDArray[np.bool_] | None = None,
) -> F64:
    """sleepecg's feature matrix (n_epochs x features) for heartbeat times in s from the start.

    ``breaks[i]`` marks the interval ending at beat ``i + 1`` as a dropout (set to NaN).
    """
    groups, _ids, cols = parse_feature_selection(list(params["feature_selection"]))
    lookback, lookforward = int(params["lookback"]), int(params["lookforward"])
    fs = float(params.get("fs_rri_resample", 4))
    max_nans = float(params.get("max_nans", 0))
    stage_times = np.arange(n_epochs) * EPOCH_S
    rri = preprocess_rri(np.diff(heartbeat_times), min_rri=params.get("min_rri"), max_rri=params.get("max_rri"))
    if breaks is not None:
        rri[breaks] = np.nan
    rri_times = heartbeat_times[1:]
    blocks: list[F64] = []
    for g in groups:
        if g == "hrv-time":
            blocks.append(_time_features_fast(rri, rri_times, stage_times, lookback, lookforward))
        elif g == "hrv-frequency":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                blocks.append(_freq_features_safe(rri, rri_times, stage_times, lookback, lookforward, fs, max_nans))
        elif g == "metadata":
            blocks.append(metadata_features(start_time, subject, n_epochs))
        else:
            raise AnalysisError(f"feature group {g!r} is not supported by magsleep's staging")
    feats: F64 = np.hstack(blocks)[:, cols]
    return feats


# --------------------------------------------------------------------------------------------
# Quality, classification, motion
# --------------------------------------------------------------------------------------------


def epoch_coverage(beat_t: F64, nn_ms: F64, n_epochs: int, epoch_s: int = EPOCH_S) -> F64:
    """Share of each epoch covered by valid intervals (binned by the beat that ends them)."""
    ok = np.isfinite(nn_ms) & (beat_t >= 0)
    idx = (beat_t[ok] // epoch_s).astype(np.int64)
    inside = idx < n_epochs
    cov = np.bincount(idx[inside], weights=nn_ms[ok][inside] / 1000.0, minlength=n_epochs)[:n_epochs]
    r: F64 = np.minimum(cov / epoch_s, 1.0)
    return r


@dataclass(frozen=True, slots=True)
class StagingFeatures:
    """sleepecg features of every epoch of a span, computed once and classified per sub-span.

    Sub-spans reuse the rows (their edge epochs keep the beats just outside them as context) with
    the recording-start-time column set to the sub-span's own start, as sleepecg would.
    """

    start_ns: int
    classifier: str
    feats: F64 | None  # None when there is nothing to classify
    coverage: F64
    start_col: int

    @property
    def n(self) -> int:
        return int(self.coverage.size)


def staging_features(
    beats: Beats, start_ns: int, end_ns: int, subject: Subject, *, classifier: str = "wrn-gru-mesa"
) -> StagingFeatures:
    """Features and per-epoch coverage for [start_ns, end_ns) (start-time column filled per use)."""
    clf = load_classifier(classifier)
    params = clf.feature_extraction_params
    _, ids, _ = parse_feature_selection(list(params["feature_selection"]))
    col = ids.index("recording_start_time") if "recording_start_time" in ids else -1
    n = max(0, int((end_ns - start_ns) // (EPOCH_S * 1_000_000_000)))
    cov = np.zeros(n)
    feats = None
    if n > 0 and beats.t_s.size:
        rel = beats.t_s + (beats.t0_ns - start_ns) / 1e9
        inside = (rel >= 0) & (rel < n * EPOCH_S)
        t = rel[inside]
        nn = beats.nn_ms[inside]
        seg = beats.segment[inside]
        cov = epoch_coverage(t, nn, n)
        if t.size >= 3 and np.any(cov >= MIN_EPOCH_COVERAGE):
            breaks = (np.diff(seg) != 0) | ~np.isfinite(nn[1:])
            feats = extract_features(t, n, dtime(0), subject, params, breaks=breaks)
    return StagingFeatures(start_ns, classifier, feats, cov, col)


def _predict(
    sfs: list[StagingFeatures], lo: int, hi: int, start_time: dtime
) -> list[tuple[F32, NDArray[np.bool_]] | None]:
    """Per features: class probabilities of epochs [lo, hi) and which of them are usable (None:
    nothing usable). The classifiers run together (:func:`collector.nights.gru_classifier.predict_many`)."""
    jobs: list[tuple[GruClassifier, F64]] = []
    usables: list[NDArray[np.bool_] | None] = []
    for sf in sfs:
        usable = sf.coverage[lo:hi] >= MIN_EPOCH_COVERAGE if sf.feats is not None and hi > lo else None
        if usable is None or not np.any(usable):
            usables.append(None)
            continue
        assert sf.feats is not None
        clf = load_classifier(sf.classifier)
        feats = sf.feats[lo:hi].copy()
        if sf.start_col >= 0:
            feats[:, sf.start_col] = start_time.hour * 3600 + start_time.minute * 60 + start_time.second
        feats[~usable, :] = clf.mask_value
        jobs.append((clf, feats))
        usables.append(usable)
    probs = iter(predict_many(jobs))
    return [None if u is None else (next(probs), u) for u in usables]


def _p_wake(sf: StagingFeatures, lo: int, hi: int, p: F32, usable: NDArray[np.bool_], rule: WakeRule) -> F64:
    """P(wake) per epoch [lo, hi) by ``rule.wake_model`` (collector.nights.wake)."""
    if rule.wake_model == "classifier" or sf.feats is None:
        return p_wake_classifier(p)
    params = load_classifier(sf.classifier).feature_extraction_params
    _, ids, _ = parse_feature_selection(list(params["feature_selection"]))
    rows = sf.feats[lo:hi]
    x = wake_inputs(p, rows[:, ids.index("meanHR")], rows[:, ids.index("RMSSD")], usable)
    return p_wake_night_relative(x, rule.coef)


def classify(
    sf: StagingFeatures,
    lo: int,
    hi: int,
    start_time: dtime,
    *,
    wake_sf: StagingFeatures | None = None,
    motion: MotionScore | None = None,
    rule: WakeRule | None = None,
) -> Hypnogram:
    """Hypnogram of epochs [lo, hi) of ``sf``; ``start_time`` is the local clock time of epoch ``lo``.

    Without ``wake_sf``, a 3-stage model and a ``rule``: stages by :func:`collector.nights.wake.decide`
    (night-relative wake model, transition smoothing, REM threshold; the defaults). Without a rule:
    the model's most likely class.

    With ``wake_sf`` (features for the wake/sleep model over the same epochs) wake vs sleep comes
    from that model and NREM vs REM from ``sf``'s 3-stage model: an epoch is wake when the
    wake/sleep model says so, else REM or NREM, whichever the 3-stage model finds likelier; its
    probability is P(sleep) x P(stage) / (P(NREM) + P(REM)). ``motion`` (optional): Cole-Kripke
    per epoch [lo, hi), fused by :func:`collector.nights.activity.fuse_motion`.
    """
    n = max(0, hi - lo)
    codes = np.full(n, UNKNOWN, dtype=np.int64)
    prob = np.full(n, np.nan)
    p_sleep = np.full(n, np.nan)  # the heart's probability of sleep (motion fusion)
    clf = load_classifier(sf.classifier)
    method = sf.classifier
    with_wake = wake_sf is not None and clf.stages_mode == "wake-rem-nrem"
    preds = _predict([sf, wake_sf] if with_wake and wake_sf is not None else [sf], lo, hi, start_time)
    pred = preds[0]
    if pred is not None:
        p, usable = pred
        cls = p.argmax(axis=1)
        mapped = _CLASS_MAP[clf.stages_mode][cls]
        codes[usable] = mapped[usable]
        prob[usable] = p[usable, cls[usable]]
        with np.errstate(invalid="ignore", divide="ignore"):
            p_sleep[usable] = (1.0 - p[:, -1] / p[:, 1:].sum(axis=1))[usable]  # last class is wake
        if rule is not None and not with_wake and clf.stages_mode == "wake-rem-nrem":
            method += "+" + rule.label if rule.label else ""
            pw_rule = _p_wake(sf, lo, hi, p, usable, rule)
            codes, prob = decide(p, pw_rule, usable, rule)
            p_sleep = np.where(usable, 1.0 - pw_rule, np.nan)
        if wake_sf is not None and clf.stages_mode == "wake-rem-nrem":
            method += "+" + wake_sf.classifier
            wpred = preds[1]
            if wpred is not None:
                pw, wusable = wpred
                both = usable & wusable
                wcls = pw.argmax(axis=1)  # 0 undefined, 1 sleep, 2 wake
                rem = p[:, 2] > p[:, 1]
                p_stage = np.where(rem, p[:, 2], p[:, 1]) / np.maximum(p[:, 1] + p[:, 2], 1e-12)
                is_wake = wcls == 2
                is_sleep = wcls == 1
                c = np.where(is_wake, WAKE, np.where(rem, REM, NREM))
                pr = np.where(is_wake, pw[:, 2], pw[:, 1] * p_stage)
                sel = both & (is_wake | is_sleep)
                codes[sel] = c[sel]
                prob[sel] = pr[sel]
                with np.errstate(invalid="ignore", divide="ignore"):
                    p_sleep[both] = (pw[:, 1] / (pw[:, 1] + pw[:, 2]))[both]
                codes[both & ~(is_wake | is_sleep)] = UNKNOWN
                prob[both & ~(is_wake | is_sleep)] = np.nan
    if motion is not None and n > 0:
        method += "+cole-kripke"
        combined = fuse_motion(codes, p_sleep, motion)
        prob[combined != codes] = np.nan  # the HR probability no longer describes the stage
        codes = combined
    step = EPOCH_S * 1_000_000_000
    return Hypnogram(sf.start_ns + lo * step, EPOCH_S, codes, prob, "computed", method)


def stage_beats(
    beats: Beats,
    start_ns: int,
    end_ns: int,
    start_time: dtime,
    subject: Subject,
    *,
    classifier: str = "wrn-gru-mesa",
    wake_classifier: str | None = "ws-gru-mesa",
    motion: MotionScore | None = None,
    rule: WakeRule | None = None,
) -> tuple[Hypnogram, F64]:
    """Computed hypnogram for [start_ns, end_ns) and the per-epoch coverage (0-1).

    ``start_time`` is the local clock time of ``start_ns`` (a sleepecg feature);
    ``motion`` (optional): Cole-Kripke per epoch from ``start_ns``.
    """
    sf = staging_features(beats, start_ns, end_ns, subject, classifier=classifier)
    wsf = (staging_features(beats, start_ns, end_ns, subject, classifier=wake_classifier)
           if wake_classifier and load_classifier(classifier).stages_mode == "wake-rem-nrem" else None)
    h = classify(sf, 0, sf.n, start_time, wake_sf=wsf, motion=motion, rule=rule)
    return h, sf.coverage
