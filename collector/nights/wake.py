"""Wake vs sleep and NREM vs REM from the 3-stage classifier's probabilities, chosen on real nights.

sleepecg's ``wrn-gru-mesa`` gives per 30-s epoch P(NREM), P(REM), P(wake). On PSG-scored real
nights (slpdb, docs/validation.md) these additions beat taking its most likely class, each tested by
leave-one-subject-out agreement (bench/bench_wake.py refits them per fold):

1. **Night-relative wake model** (``wake_model = "night-relative"``): P(wake) from a logistic
   regression on the classifier's wake log-odds, log P(wake) / (P(NREM) + P(REM)), and two heart
   measures relative to the same night: the epoch's mean HR (sleepecg's ``meanHR`` over its 4.5-min
   window) minus the night's 10th percentile (a sleeping baseline), and ln RMSSD minus the night's
   median. Awakenings raise heart rate and lower RMSSD against the person's own night; absolute
   levels differ far more between people than between stages. Coefficients: :data:`WAKE_COEF`,
   fitted on the 12 slpdb records.
2. **Wake threshold**: wake when P(wake) >= ``wake_threshold`` (0.4).
3. **REM threshold**: a sleep epoch is REM when P(REM) / (P(NREM) + P(REM)) >= ``rem_threshold``
   (0.3; the published classifier calls 64% of true REM NREM, the argmax amounts to 0.5).
4. **Transition smoothing** (``smoothing = "hmm"``, an option, not the default): a two-state (sleep,
   wake) hidden Markov model decoded with Viterbi over the epochs with signal; the probability of
   staying in a state per epoch (:data:`STAY`) is the expert hypnograms' (slpdb), emissions are
   P(wake) divided by the decision threshold (without smoothing the rule is P(wake) >= threshold).
   It raised wake/sleep kappa with the threshold chosen for kappa alone, but made TST worse and
   the result far more sensitive to the threshold; chosen for kappa and TST together it lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from collector.nights.stages import NREM, REM, UNKNOWN, WAKE

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
B = NDArray[np.bool_]

#: Logistic regression of expert wake on (1, classifier wake log-odds, HR - night p10 [bpm],
#: ln RMSSD - night median), fitted on all 12 slpdb records (bench/bench_wake.py prints it).
WAKE_COEF: tuple[float, float, float, float] = (-1.206, 0.1837, 0.07554, -2.391)
#: Per-epoch probability of staying asleep / staying awake in the experts' slpdb hypnograms.
STAY: tuple[float, float] = (0.9490, 0.8870)
#: Floor for probabilities before taking logarithms.
_EPS = 1e-6


@dataclass(frozen=True, slots=True)
class WakeRule:
    """How an epoch's stage follows from the classifiers' probabilities (NightsSettings)."""

    wake_model: Literal["classifier", "night-relative"] = "night-relative"
    smoothing: Literal["none", "hmm"] = "none"
    wake_threshold: float = 0.4
    rem_threshold: float = 0.3
    coef: tuple[float, float, float, float] = WAKE_COEF
    stay: tuple[float, float] = STAY

    @property
    def label(self) -> str:
        """What the stored method name says about the rule ('' for the published argmax)."""
        parts = [] if self.wake_model == "classifier" else ["nightrel"]
        if self.smoothing == "hmm":
            parts.append("hmm")
        return "+".join(parts)


def wake_inputs(p: NDArray[np.floating], mean_hr: F64, rmssd: F64, usable: B) -> F64:
    """Per epoch: (classifier wake log-odds, HR - night's 10th percentile, ln RMSSD - night's median).

    ``p`` holds the 3-stage model's class probabilities (undefined, NREM, REM, wake); the night's
    baselines come from the usable epochs with finite values; others get 0 (the baseline itself).
    """
    q = np.asarray(p, dtype=np.float64)
    lw = np.log(q[:, 3] + _EPS) - np.log(q[:, 1] + q[:, 2] + _EPS)
    hr = np.asarray(mean_hr, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        lr = np.log(np.asarray(rmssd, dtype=np.float64))
    ok_hr = usable & np.isfinite(hr)
    ok_lr = usable & np.isfinite(lr)
    dhr = np.where(ok_hr, hr - (np.percentile(hr[ok_hr], 10) if ok_hr.any() else 0.0), 0.0)
    dlr = np.where(ok_lr, lr - (np.median(lr[ok_lr]) if ok_lr.any() else 0.0), 0.0)
    out: F64 = np.column_stack((lw, dhr, dlr))
    return out


def p_wake_night_relative(x: F64, coef: tuple[float, float, float, float] = WAKE_COEF) -> F64:
    """P(wake) of the night-relative model from :func:`wake_inputs` rows."""
    z = coef[0] + x @ np.asarray(coef[1:], dtype=np.float64)
    out: F64 = 1.0 / (1.0 + np.exp(-z))
    return out


def p_wake_classifier(p: NDArray[np.floating]) -> F64:
    """The 3-stage model's own P(wake) among its three stages."""
    q = np.asarray(p, dtype=np.float64)
    out: F64 = q[:, 3] / np.maximum(q[:, 1:].sum(axis=1), 1e-12)
    return out


def viterbi_wake(pw: F64, threshold: float, stay: tuple[float, float]) -> B:
    """Most likely sleep (False) / wake (True) path: emissions P(wake)/threshold vs P(sleep)/(1 - threshold)."""
    n = pw.size
    if n == 0:
        return np.zeros(0, dtype=bool)
    q = np.clip(pw, _EPS, 1 - _EPS)
    t = min(max(threshold, _EPS), 1 - _EPS)
    em = np.column_stack((np.log1p(-q) - np.log1p(-t), np.log(q) - np.log(t)))
    ss, ww = stay
    log_a = np.log(np.array([[ss, 1 - ss], [1 - ww, ww]]))
    back = np.zeros((n, 2), dtype=np.int8)
    score = em[0].copy()  # flat start
    for i in range(1, n):
        cand = score[:, None] + log_a  # from (rows) -> to (cols)
        back[i] = cand.argmax(axis=0)
        score = cand.max(axis=0) + em[i]
    path = np.zeros(n, dtype=np.int8)
    path[-1] = int(score.argmax())
    for i in range(n - 1, 0, -1):
        path[i - 1] = back[i, path[i]]
    out: B = path.astype(bool)
    return out


def decide(p: NDArray[np.floating], pw: F64, usable: B, rule: WakeRule) -> tuple[I64, F64]:
    """Stage codes and the probability of the chosen stage for each epoch (UNKNOWN/NaN where not usable).

    ``p``: the 3-stage model's probabilities (undefined, NREM, REM, wake); ``pw``: P(wake) to decide on.
    """
    n = pw.size
    codes = np.full(n, UNKNOWN, dtype=np.int64)
    prob = np.full(n, np.nan)
    idx = np.flatnonzero(usable & np.isfinite(pw))
    if idx.size == 0:
        return codes, prob
    q = np.asarray(p, dtype=np.float64)[idx]
    w = pw[idx]
    wake = viterbi_wake(w, rule.wake_threshold, rule.stay) if rule.smoothing == "hmm" else w >= rule.wake_threshold
    p_rem = q[:, 2] / np.maximum(q[:, 1] + q[:, 2], 1e-12)
    rem = p_rem >= rule.rem_threshold
    codes[idx] = np.where(wake, WAKE, np.where(rem, REM, NREM))
    prob[idx] = np.where(wake, w, (1.0 - w) * np.where(rem, p_rem, 1.0 - p_rem))
    return codes, prob


class RuleSettings(Protocol):
    """The [nights] settings the rule reads (collector.settings.NightsSettings)."""

    @property
    def wake_model(self) -> Literal["classifier", "night-relative"]: ...
    @property
    def smoothing(self) -> Literal["none", "hmm"]: ...
    @property
    def wake_threshold(self) -> float: ...
    @property
    def rem_threshold(self) -> float: ...


def rule_from_settings(nights: RuleSettings) -> WakeRule:
    """The rule the [nights] settings describe (production and ``magsleep validate`` build it here)."""
    return WakeRule(wake_model=nights.wake_model, smoothing=nights.smoothing,
                    wake_threshold=nights.wake_threshold, rem_threshold=nights.rem_threshold)
