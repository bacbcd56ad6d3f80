"""The staging rule (collector/nights/wake.py) chosen and scored leave one subject out on real records.

For every record of the directory (default ../shared/data/slpdb) the production staging runs once
(the 3-stage classifier's probabilities over the expert span, as ``magsleep validate`` stages it:
lights out / on as tags). Then, for each held-out subject, everything tuned is fitted on the *other*
subjects only: the night-relative wake model's coefficients (logistic regression), the transition
probabilities (from their expert hypnograms) and the thresholds on P(wake) and P(REM | sleep)
(grid, best pooled kappa3); the held-out subject is staged with them. The pooled agreement of the
held-out subjects is the honest estimate; the rule fitted on all records gives the defaults
(WAKE_COEF, STAY, wake_threshold, rem_threshold), printed at the end.

Run: ``.venv/bin/python bench/bench_wake.py [DIR]``; results to bench/results/wake.md.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from collector.nights.artefacts import clean_rr  # noqa: E402
from collector.nights.compute import NightInputs, _local_time, _per_epoch_hr  # noqa: E402
from collector.nights.metrics import sleep_metrics  # noqa: E402
from collector.nights.stages import NREM, REM, UNKNOWN, WAKE  # noqa: E402
from collector.nights.staging import Subject, _predict, parse_feature_selection, staging_features  # noqa: E402
from collector.nights.wake import (  # noqa: E402
    WakeRule,
    decide,
    p_wake_classifier,
    p_wake_night_relative,
    wake_inputs,
)
from collector.settings import PersonSettings  # noqa: E402
from collector.validation import stats  # noqa: E402
from collector.validation.compare import EPOCH_NS, _ns, truth_span, window_for  # noqa: E402
from collector.validation.sources import find_sources, load  # noqa: E402

WAKE_GRID = tuple(round(x, 2) for x in np.arange(0.20, 0.651, 0.05))
REM_GRID = (0.2, 0.3, 0.4, 0.5)
KAPPA_SLACK = 0.02


@dataclass
class Night:
    record: str
    subject: str
    truth: np.ndarray
    p: np.ndarray  # 3-stage probabilities (undefined, NREM, REM, wake)
    usable: np.ndarray
    x: np.ndarray  # wake_inputs rows


def load_nights(directory: Path) -> list[Night]:
    out = []
    for src in find_sources(directory):
        rec = load(src)
        person = PersonSettings(name="bench", age=rec.age or 40, sex=rec.sex or "female", timezone=rec.timezone)
        start_ns = _ns(rec)
        win = window_for(rec, person)
        lo, hi = truth_span(rec)
        rr_t = start_ns + np.round(rec.rr_end_s * 1e9).astype(np.int64)
        beats = clean_rr(rr_t, np.asarray(rec.rr_ms, dtype=np.float64))
        n = int((win.end_ns - win.start_ns) // EPOCH_NS)
        present, _ = _per_epoch_hr(win, beats, NightInputs(window=win, rr_time_ns=rr_t, rr_ms=rec.rr_ms), n)
        elo = int((start_ns + lo * EPOCH_NS - win.start_ns) // EPOCH_NS)
        ehi = elo + (hi - lo)
        data = np.flatnonzero(present)
        slo, shi = min(elo, int(data[0])), max(ehi, int(data[-1]) + 1)
        sf = staging_features(beats, win.start_ns + slo * EPOCH_NS, win.start_ns + shi * EPOCH_NS,
                              Subject(person.age, person.sex))
        clock = _local_time(win.start_ns + elo * EPOCH_NS, ZoneInfo(rec.timezone))
        pred = _predict([sf], elo - slo, ehi - slo, clock)[0]
        assert pred is not None and sf.feats is not None
        p, usable = pred
        _, ids, _ = parse_feature_selection(["hrv-time", "hrv-frequency", "recording_start_time", "age", "gender"])
        rows = sf.feats[elo - slo:ehi - slo]
        truth = rec.stages[lo:hi]
        truth = np.concatenate((truth, np.full(ehi - elo - truth.size, UNKNOWN, dtype=np.int64)))
        out.append(Night(rec.name, rec.subject, truth, p.astype(np.float64), usable,
                         wake_inputs(p, rows[:, ids.index("meanHR")], rows[:, ids.index("RMSSD")], usable)))
    return out


def fit_logistic(x: np.ndarray, y: np.ndarray, ridge: float = 1e-3) -> tuple[float, float, float, float]:
    """Logistic regression (intercept + columns of x) by Newton's method, a tiny ridge for stability."""
    a = np.column_stack((np.ones(len(x)), x))
    b = np.zeros(a.shape[1])
    for _ in range(50):
        mu = 1 / (1 + np.exp(-(a @ b)))
        g = a.T @ (y - mu) - ridge * b
        h = (a * (mu * (1 - mu))[:, None]).T @ a + ridge * np.eye(a.shape[1])
        step = np.linalg.solve(h, g)
        b += step
        if np.max(np.abs(step)) < 1e-8:
            break
    return (float(b[0]), float(b[1]), float(b[2]), float(b[3]))


def fit_stay(nights: list[Night]) -> tuple[float, float]:
    counts = np.ones((2, 2))
    for n in nights:
        t = n.truth
        ok = (t[:-1] != UNKNOWN) & (t[1:] != UNKNOWN)
        a, b = (t[:-1] == WAKE).astype(int), (t[1:] == WAKE).astype(int)
        np.add.at(counts, (a[ok], b[ok]), 1)
    return (float(counts[0, 0] / counts[0].sum()), float(counts[1, 1] / counts[1].sum()))


def fit_coef(nights: list[Night]) -> tuple[float, float, float, float]:
    x = np.vstack([n.x[n.usable & (n.truth != UNKNOWN)] for n in nights])
    y = np.concatenate([(n.truth[n.usable & (n.truth != UNKNOWN)] == WAKE).astype(float) for n in nights])
    return fit_logistic(x, y)


@dataclass(frozen=True)
class Config:
    name: str
    wake_model: Literal["classifier", "night-relative", "argmax"]
    smoothing: Literal["none", "hmm"] = "none"
    tune_wake: bool = True
    tune_rem: bool = False
    #: "kappa3": the thresholds with the best pooled kappa3; "kappa3+tst": of those within
    #: KAPPA_SLACK of the best kappa3, the one with the smallest TST MAE (the goals weigh both).
    criterion: Literal["kappa3", "kappa3+tst"] = "kappa3"


def stage(n: Night, cfg: Config, rule: WakeRule) -> np.ndarray:
    if cfg.wake_model == "argmax":  # the published rule: the most likely of the model's classes
        codes: np.ndarray = np.array([UNKNOWN, NREM, REM, WAKE])[n.p.argmax(axis=1)]
        codes[~n.usable] = UNKNOWN
        return codes
    pw = p_wake_classifier(n.p) if cfg.wake_model == "classifier" else p_wake_night_relative(n.x, rule.coef)
    return decide(n.p, pw, n.usable, rule)[0]


def agreement(nights: list[Night], cfg: Config, rule: WakeRule) -> stats.Agreement:
    return stats.agreement([(n.truth, stage(n, cfg, rule)) for n in nights])


def fit(nights: list[Night], cfg: Config) -> WakeRule:
    """Everything ``cfg`` tunes, fitted on ``nights`` only."""
    rule = WakeRule(wake_model="classifier" if cfg.wake_model != "night-relative" else "night-relative",
                    smoothing=cfg.smoothing, wake_threshold=0.5, rem_threshold=0.5,
                    coef=fit_coef(nights) if cfg.wake_model == "night-relative" else (0.0, 0.0, 0.0, 0.0),
                    stay=fit_stay(nights))
    if cfg.wake_model == "argmax":
        return rule
    scored: list[tuple[float, float, float, float]] = []  # kappa3, TST MAE, wake and REM threshold
    for wt in WAKE_GRID if cfg.tune_wake else (0.5,):
        for rt in REM_GRID if cfg.tune_rem else (0.5,):
            r = replace(rule, wake_threshold=wt, rem_threshold=rt)
            k = agreement(nights, cfg, r).kappa3 or -1.0
            mae = float(np.mean([abs(tst_min(stage(n, cfg, r)) - tst_min(n.truth)) for n in nights]))
            scored.append((k, mae, wt, rt))
    top = max(x[0] for x in scored)
    if cfg.criterion == "kappa3":
        best = next(x for x in scored if x[0] == top)  # the first on the grid with the best kappa3
    else:
        best = min((x for x in scored if x[0] >= top - KAPPA_SLACK), key=lambda x: x[1])
    return replace(rule, wake_threshold=best[2], rem_threshold=best[3])


def tst_min(codes: np.ndarray) -> float:
    return float(np.isin(codes, (NREM, REM)).sum()) / 2


def main() -> None:
    directory = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data" / "slpdb"
    nights = load_nights(directory)
    subjects = sorted({n.subject for n in nights})
    configs = [
        Config("published argmax (`wake_model=classifier`, old rule)", "argmax", tune_wake=False),
        Config("classifier P(wake), threshold", "classifier"),
        Config("classifier P(wake), threshold, hmm", "classifier", "hmm"),
        Config("night-relative, threshold", "night-relative"),
        Config("night-relative, threshold, hmm", "night-relative", "hmm"),
        Config("night-relative, threshold, hmm, REM threshold", "night-relative", "hmm", tune_rem=True),
        Config("night-relative, threshold, REM threshold", "night-relative", tune_rem=True),
        Config("night-relative, threshold, hmm, REM threshold; thresholds by kappa3 and TST", "night-relative",
               "hmm", tune_rem=True, criterion="kappa3+tst"),
        Config("night-relative, threshold, REM threshold; thresholds by kappa3 and TST", "night-relative",
               tune_rem=True, criterion="kappa3+tst"),
    ]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=False).stdout.strip()
    lines = [
        "## The staging rule, leave one subject out (bench/bench_wake.py)",
        "",
        f"{len(nights)} records ({', '.join(n.record for n in nights)}; {len(subjects)} subjects), commit {commit}, "
        f"{datetime.now(UTC):%Y-%m-%d}. Per held-out subject, coefficients, transitions and thresholds "
        "are fitted on the other subjects only; pooled agreement of the held-out subjects. TST over the "
        "expert span (lights given), computed minus expert.",
        "",
        "| rule | acc2 | kappa2 | acc3 | kappa3 | wake recall before onset / WASO | REM recall | TST bias | TST MAE | "
        "TST / SOL / WASO slope | SOL MAE | WASO MAE | thresholds chosen (wake / REM) |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | --- |",
    ]
    for cfg in configs:
        pairs = []
        errs = []
        chosen = []
        met: dict[str, tuple[list[float | None], list[float | None]]] = {k: ([], []) for k in ("tst_min", "sol_min",
                                                                                               "waso_min")}
        for s in subjects:
            rule = fit([n for n in nights if n.subject != s], cfg)
            chosen.append(f"{rule.wake_threshold:g}/{rule.rem_threshold:g}")
            for n in nights:
                if n.subject == s:
                    c = stage(n, cfg, rule)
                    pairs.append((n.truth, c))
                    errs.append(tst_min(c) - tst_min(n.truth))
                    mt, mc = sleep_metrics(n.truth).as_dict(), sleep_metrics(c).as_dict()
                    for k, (tl, cl) in met.items():
                        tl.append(mt.get(k))
                        cl.append(mc.get(k))
        a = stats.agreement(pairs)
        picks = ", ".join(f"{k} x{chosen.count(k)}" for k in sorted(set(chosen)))
        ms = {k: stats.metric_stats(tl, cl) for k, (tl, cl) in met.items()}
        slopes = " / ".join("–" if m.slope is None else f"{m.slope:.2f}" for m in ms.values())
        lines.append(f"| {cfg.name} | {a.acc2:.2f} | {a.kappa2:.3f} | {a.acc3:.2f} | {a.kappa3:.3f} | "
                     f"{a.wake_recall_before_onset:.2f} / {a.wake_recall_waso:.2f} | {a.recall_rem:.2f} | "
                     f"{np.mean(errs):+.0f} | {np.mean(np.abs(errs)):.0f} | {slopes} | {ms['sol_min'].mae or 0:.0f} | "
                     f"{ms['waso_min'].mae or 0:.0f} | {picks if cfg.wake_model != 'argmax' else '-'} |")
        print(lines[-1], flush=True)
    final = fit(nights, configs[8])
    lines += ["", "Fitted on all records (the defaults): "
              f"WAKE_COEF = ({', '.join(f'{c:.4g}' for c in final.coef)}), "
              f"STAY = ({final.stay[0]:.4f}, {final.stay[1]:.4f}), wake_threshold = {final.wake_threshold:g}, "
              f"rem_threshold = {final.rem_threshold:g}.", ""]
    print("\n".join(lines))
    out = ROOT / "bench" / "results" / "wake.md"
    out.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
