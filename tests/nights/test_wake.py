"""The staging rule chosen on real nights (collector/nights/wake.py): inputs, Viterbi, decisions, wiring."""

from __future__ import annotations

import itertools
from datetime import time as dtime

import numpy as np
import pytest

from collector.nights.artefacts import clean_rr
from collector.nights.compute import NightOptions
from collector.nights.stages import NREM, REM, UNKNOWN, WAKE
from collector.nights.staging import Subject, stage_beats
from collector.nights.wake import (
    STAY,
    WakeRule,
    decide,
    p_wake_classifier,
    p_wake_night_relative,
    rule_from_settings,
    viterbi_wake,
    wake_inputs,
)
from collector.settings import NightsSettings
from tests.nights.synth import sleep_rr

T0 = 1_795_000_000 * 1_000_000_000


def _probs(pw: np.ndarray, prem: np.ndarray) -> np.ndarray:
    """3-stage class probabilities (undefined, NREM, REM, wake) with P(wake) and P(REM | sleep)."""
    return np.column_stack((np.zeros_like(pw), (1 - pw) * (1 - prem), (1 - pw) * prem, pw))


def _path_score(path: tuple[int, ...], pw: np.ndarray, t: float, stay: tuple[float, float]) -> float:
    a = np.log(np.array([[stay[0], 1 - stay[0]], [1 - stay[1], stay[1]]]))
    em = [np.log(1 - p) - np.log(1 - t) if s == 0 else np.log(p) - np.log(t) for s, p in zip(path, pw, strict=True)]
    return float(sum(em) + sum(a[i, j] for i, j in itertools.pairwise(path)))


@pytest.mark.parametrize("seed", range(4))
def test_viterbi_finds_the_best_path_of_all(seed: int) -> None:
    """Against brute force over every sleep/wake path of 9 epochs."""
    rng = np.random.default_rng(seed)
    pw = rng.uniform(0.02, 0.98, 9)
    got = tuple(int(x) for x in viterbi_wake(pw, 0.3, STAY))
    best = max(itertools.product((0, 1), repeat=9), key=lambda p: _path_score(p, pw, 0.3, STAY))
    assert _path_score(got, pw, 0.3, STAY) == pytest.approx(_path_score(best, pw, 0.3, STAY))
    assert got == best


def test_viterbi_without_transition_structure_is_the_threshold() -> None:
    pw = np.array([0.1, 0.29, 0.31, 0.9, 0.2, 0.5])
    assert viterbi_wake(pw, 0.3, (0.5, 0.5)).tolist() == (pw >= 0.3).tolist()
    # sticky states remove a single-epoch blip inside a sleep run, keep a sustained awakening
    pw2 = np.array([0.1] * 10 + [0.6] + [0.1] * 10 + [0.8] * 8 + [0.1] * 5)
    w = viterbi_wake(pw2, 0.3, STAY)
    assert not w[10]
    assert w[21:29].all()
    assert not w[:10].any() and not w[29:].any()
    assert viterbi_wake(np.zeros(0), 0.3, STAY).size == 0


def test_inputs_are_relative_to_the_night() -> None:
    n = 100
    hr = np.full(n, 60.0)
    hr[40:50] = 75.0
    rmssd = np.full(n, 0.040)
    rmssd[40:50] = 0.020
    usable = np.ones(n, dtype=bool)
    usable[0:5] = False
    hr[0:5] = 200.0  # unusable epochs never set the baseline
    p = _probs(np.full(n, 0.2), np.full(n, 0.1))
    x = wake_inputs(p, hr, rmssd, usable)
    assert x[:, 0] == pytest.approx(np.log(0.2 + 1e-6) - np.log(0.8 + 1e-6))
    assert x[60, 1] == pytest.approx(0.0)  # the 10th percentile of the usable epochs is 60 bpm
    assert x[45, 1] == pytest.approx(15.0)
    assert x[45, 2] == pytest.approx(np.log(0.5))
    assert np.all(x[0:5, 1:] == 0)
    # the same night 20 bpm higher and with half the RMSSD everywhere gives the same inputs
    y = wake_inputs(p, hr + 20, rmssd / 2, usable)
    assert np.allclose(x[5:], y[5:])
    pw = p_wake_night_relative(x)
    assert pw[45] > pw[60] + 0.3  # an HR rise with low RMSSD reads as wake
    assert np.all((pw > 0) & (pw < 1))


def test_decide_thresholds_and_unusable() -> None:
    pw = np.array([0.1, 0.29, 0.31, 0.9, 0.05, 0.05])
    prem = np.array([0.1, 0.8, 0.1, 0.1, 0.31, 0.29])
    usable = np.array([True, True, True, True, True, False])
    rule = WakeRule(smoothing="none", wake_threshold=0.3, rem_threshold=0.3)
    codes, prob = decide(_probs(pw, prem), pw, usable, rule)
    assert codes.tolist() == [NREM, REM, WAKE, WAKE, REM, UNKNOWN]
    assert prob[:5] == pytest.approx([0.9 * 0.9, 0.71 * 0.8, 0.31, 0.9, 0.95 * 0.31])
    assert np.isnan(prob[5])
    assert p_wake_classifier(_probs(pw, prem)) == pytest.approx(pw)


def test_settings_defaults_are_the_production_defaults() -> None:
    assert rule_from_settings(NightsSettings()) == WakeRule() == NightOptions().rule
    assert NightOptions().wake_classifier is None
    assert NightsSettings().wake_classifier == "none"
    r = rule_from_settings(NightsSettings(smoothing="hmm", wake_model="classifier", wake_threshold=0.5))
    assert (r.smoothing, r.wake_model, r.wake_threshold, r.label) == ("hmm", "classifier", 0.5, "hmm")


def test_a_night_with_an_awakening_by_heart_rate() -> None:
    """2 h of sleep with a 15-min stretch of faster, less variable beats: the night-relative rule calls
    more of it wake than the rest, and labels its method."""
    rr = np.concatenate((sleep_rr(3600, seed=5), sleep_rr(1100, seed=6, mean_ms=780, rsa_ms=8),
                         sleep_rr(3600, seed=7)))
    t = np.cumsum(rr) / 1000.0
    b = clean_rr((T0 + t * 1e9).astype(np.int64), rr)
    end = T0 + int(t[-1] * 1e9)
    start, stop = int(t[3599] // 30) + 1, int(t[3599 + 1100] // 30)
    for rule, method in ((WakeRule(), "wrn-gru-mesa+nightrel"),
                         (WakeRule(smoothing="hmm"), "wrn-gru-mesa+nightrel+hmm")):
        h, _ = stage_beats(b, T0, end, dtime(23, 0), Subject(45, "male"), wake_classifier=None, rule=rule)
        assert h.method == method
        inside = h.codes[start:stop]
        outside = np.concatenate((h.codes[5:start - 5], h.codes[stop + 5:-5]))
        assert np.mean(inside == WAKE) >= 0.8
        assert np.mean(outside == WAKE) <= 0.2
        staged = h.codes != UNKNOWN
        assert np.all((h.prob[staged] > 0) & (h.prob[staged] <= 1))
    # the published argmax (no rule) on the same night
    h0, _ = stage_beats(b, T0, end, dtime(23, 0), Subject(45, "male"), wake_classifier=None)
    assert h0.method == "wrn-gru-mesa"
