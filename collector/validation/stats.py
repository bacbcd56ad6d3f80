"""Agreement statistics: confusion matrices, Cohen's kappa, Bland-Altman and regression of computed on true."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import stats as sps

from collector.nights.stages import NREM, REM, WAKE

I64 = NDArray[np.int64]
#: Rows / columns of the 3-stage confusion matrix.
LABELS = (WAKE, NREM, REM)
LABEL_NAMES = ("wake", "nrem", "rem")


def confusion(truth: I64, computed: I64) -> I64:
    """3x3 counts, rows = expert stage, columns = computed stage (wake, NREM, REM); other codes skipped."""
    t = np.asarray(truth, dtype=np.int64)
    c = np.asarray(computed, dtype=np.int64)
    out = np.zeros((3, 3), dtype=np.int64)
    for i, a in enumerate(LABELS):
        for j, b in enumerate(LABELS):
            out[i, j] = int(np.count_nonzero((t == a) & (c == b)))
    return out


def wake_sleep(cm: I64) -> I64:
    """The 2x2 wake/sleep matrix of a 3x3 wake/NREM/REM one."""
    m = np.asarray(cm, dtype=np.int64)
    return np.array([[m[0, 0], m[0, 1:].sum()], [m[1:, 0].sum(), m[1:, 1:].sum()]], dtype=np.int64)


def accuracy(cm: I64) -> float | None:
    n = int(np.sum(cm))
    return float(np.trace(cm)) / n if n else None


def kappa(cm: I64) -> float | None:
    """Cohen's kappa (po - pe) / (1 - pe) of a square confusion matrix; None when undefined (pe = 1 or empty)."""
    m = np.asarray(cm, dtype=np.float64)
    n = m.sum()
    if n == 0:
        return None
    po = np.trace(m) / n
    pe = float(np.sum(m.sum(axis=1) * m.sum(axis=0))) / (n * n)
    if pe >= 1.0:
        return None
    return float((po - pe) / (1.0 - pe))


def recall(cm: I64) -> list[float | None]:
    """Per row (expert stage): the share of its epochs the computed staging got right."""
    rows = np.asarray(cm).sum(axis=1)
    return [float(cm[i, i]) / float(rows[i]) if rows[i] else None for i in range(len(rows))]


@dataclass(frozen=True, slots=True)
class Agreement:
    """Pooled epoch agreement of a set of nights."""

    confusion: list[list[int]]
    epochs: int
    acc2: float | None
    kappa2: float | None
    acc3: float | None
    kappa3: float | None
    recall_wake: float | None
    recall_nrem: float | None
    recall_rem: float | None
    wake_recall_before_onset: float | None
    wake_recall_waso: float | None


def agreement(pairs: Sequence[tuple[I64, I64]]) -> Agreement:
    """Pooled over nights of (expert codes, computed codes) on the same epochs.

    Wake before onset: expert wake epochs before the expert's first sleep epoch; WASO: expert wake
    epochs from there on to the expert's last sleep epoch.
    """
    cm = np.zeros((3, 3), dtype=np.int64)
    pre = [0, 0]
    waso = [0, 0]
    for t, c in pairs:
        t = np.asarray(t, dtype=np.int64)
        c = np.asarray(c, dtype=np.int64)
        cm += confusion(t, c)
        sleep = np.isin(t, (NREM, REM))
        if not sleep.any():
            continue
        onset = int(np.argmax(sleep))
        final = int(t.size - np.argmax(sleep[::-1]))
        scored = np.isin(c, LABELS)
        for part, (a, b) in ((pre, (0, onset)), (waso, (onset, final))):
            w = (t[a:b] == WAKE) & scored[a:b]
            part[0] += int(np.count_nonzero(w & (c[a:b] == WAKE)))
            part[1] += int(np.count_nonzero(w))
    ws = wake_sleep(cm)
    rec = recall(cm)
    return Agreement(
        confusion=cm.tolist(), epochs=int(cm.sum()), acc2=accuracy(ws), kappa2=kappa(ws), acc3=accuracy(cm),
        kappa3=kappa(cm), recall_wake=rec[0], recall_nrem=rec[1], recall_rem=rec[2],
        wake_recall_before_onset=pre[0] / pre[1] if pre[1] else None,
        wake_recall_waso=waso[0] / waso[1] if waso[1] else None,
    )


@dataclass(frozen=True, slots=True)
class MetricStats:
    """Computed minus true over nights: bias, MAE, Bland-Altman 95% limits; OLS of computed on true."""

    n: int
    bias: float | None
    mae: float | None
    loa_low: float | None
    loa_high: float | None
    slope: float | None
    intercept: float | None
    r: float | None


def metric_stats(true: Sequence[float | None], computed: Sequence[float | None]) -> MetricStats:
    """Over the nights where both values exist. Limits need n >= 2; slope and r need n >= 3 and spread."""
    pairs = [(float(a), float(b)) for a, b in zip(true, computed, strict=True)
             if a is not None and b is not None and math.isfinite(a) and math.isfinite(b)]
    n = len(pairs)
    if n == 0:
        return MetricStats(0, None, None, None, None, None, None, None)
    x = np.array([p[0] for p in pairs])
    y = np.array([p[1] for p in pairs])
    d = y - x
    bias = float(np.mean(d))
    mae = float(np.mean(np.abs(d)))
    lo = hi = None
    if n >= 2:
        sd = float(np.std(d, ddof=1))
        lo, hi = bias - 1.96 * sd, bias + 1.96 * sd
    slope = intercept = r = None
    if n >= 3 and np.ptp(x) > 0:
        fit = sps.linregress(x, y)
        slope, intercept = float(fit.slope), float(fit.intercept)
        r = float(fit.rvalue) if np.ptp(y) > 0 else None
    return MetricStats(n, bias, mae, lo, hi, slope, intercept, r)
