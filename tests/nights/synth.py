"""Small synthetic RR series with known truth, for the nights tests."""

from __future__ import annotations

import numpy as np


def sleep_rr(n: int, seed: int = 0, mean_ms: float = 1000.0, rsa_ms: float = 40.0) -> np.ndarray:
    """``n`` RR intervals (ms, on the 1/1024 s grid) with respiratory sinus arrhythmia and noise."""
    rng = np.random.default_rng(seed)
    k = np.arange(n)
    rr = mean_ms + rsa_ms * np.sin(2 * np.pi * k / 4.3) + 30 * np.sin(2 * np.pi * k / 97) + rng.normal(0, 12, n)
    out: np.ndarray = np.rint(rr * 1.024) / 1.024
    return out


def rmssd_true(rr: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.diff(rr) ** 2)))


def add_artefacts(rr: np.ndarray, rate: float, seed: int = 0) -> np.ndarray:
    """Replace a share of beats with typical artefacts: ectopic pairs, missed and extra beats."""
    rng = np.random.default_rng(seed)
    out = list(rr)
    idx = sorted(rng.choice(np.arange(10, rr.size - 10), int(rate * rr.size), replace=False), reverse=True)
    for i in idx:
        kind = rng.integers(0, 3)
        if kind == 0:  # ectopic: short then compensatory long
            out[i], out[i + 1] = out[i] * 0.65, out[i + 1] * 1.35
        elif kind == 1:  # missed beat: two intervals merged
            out[i : i + 2] = [out[i] + out[i + 1]]
        else:  # extra detection: one interval split
            f = rng.uniform(0.3, 0.6)
            out[i : i + 1] = [out[i] * f, out[i] * (1 - f)]
    return np.rint(np.array(out) * 1.024) / 1.024
