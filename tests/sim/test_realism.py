"""The simulator's hearts against real ones (shared/notes/realdata.md; docs/simulator.md, "Realism").

1. Per-stage heart statistics of simulated nights, measured with :mod:`collector.sim.realism`, fall in
   the real ranges: between the notes' slpdb and held-out values, widened by the tolerance that
   :func:`collector.sim.realism.accept_range` states (24 nights of 12 simulated people, fixed seed).
2. Production staging (``compare_record``: ``magsleep validate``'s path with the current defaults)
   agrees with the expert as well on simulated twins of the shared slpdb records (the same expert
   hypnogram, clock time, age and sex; simulated beats, six seeds) as on the records themselves:
   kappa wake/sleep and wake/NREM/REM within 0.1, and awakenings found (the simulator before this
   calibration: WASO recall 0.00 against 0.15-0.32 on real nights).
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from collector.sim import realism
from collector.sim.nights import plan_study
from collector.sim.person import PersonProfile
from collector.validation import stats
from collector.validation.compare import NightComparison, compare_record
from collector.validation.slpdb import read_slpdb

SLPDB = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "slpdb"
END = date(2026, 11, 20)
PEOPLE, NIGHTS, SEED = 12, 2, 0
TWIN_SEEDS = (0, 1, 2, 3, 4, 5)
MAX_KAPPA_GAP = 0.1


@pytest.fixture(scope="module")
def sim_table() -> dict[str, float]:
    rows = []
    for p in range(PEOPLE):
        study = plan_study(PersonProfile.sample(f"real{p}", SEED), NIGHTS, seed=SEED, end=END)
        for night in study.nights():
            t = night.beats_s
            rows.append(realism.night_stats(night.hypnogram.astype(np.int64), t[1:], np.diff(t) * 1000.0))
    return realism.summarise(rows)


@pytest.mark.parametrize("key", list(realism.STATS))
def test_per_stage_heart_statistic_inside_the_real_range(sim_table: dict[str, float], key: str) -> None:
    lo, hi = realism.accept_range(key)
    v = sim_table[key]
    label = realism.STATS[key][0]
    assert math.isfinite(v) and lo <= v <= hi, f"{label}: simulated {v:.3f}, real range {lo:.3f}..{hi:.3f}"


def test_the_ruler_measures_what_it_says() -> None:
    """A night built by hand: known HR per stage, RMSSD30 and LF/HF."""
    rng = np.random.default_rng(0)
    hyp = np.repeat(np.array([0, 1, 2, 1, 3, 0, 1], dtype=np.int64), 40)  # 20 min each, a WASO bout
    hr_of = {0: 70.0, 1: 60.0, 2: 58.0, 3: 63.0}
    t, nn = [0.0], []
    while t[-1] < hyp.size * 30 - 2:
        st = int(hyp[int(t[-1] // 30)])
        rr = 60.0 / hr_of[st] + 0.02 * math.sin(2 * math.pi * 0.1 * t[-1]) + 0.01 * rng.standard_normal()
        t.append(t[-1] + rr)
        nn.append(rr * 1000.0)
    ts, nns = np.array(t[1:]), np.array(nn)
    s = realism.night_stats(hyp, ts, nns)
    assert s.dhr_waso == pytest.approx(10.0, abs=0.5)
    assert s.dhr_wake_before == pytest.approx(10.0, abs=0.5)
    assert s.dhr_deep == pytest.approx(-2.0, abs=0.5)
    assert s.dhr_rem == pytest.approx(3.0, abs=0.5)
    assert s.hr_sleep == pytest.approx(60.0, abs=1.0)
    # white noise of SD 10 ms gives successive differences of SD 14.1 ms, the 0.1-Hz wave of amplitude
    # 20 ms (beats ~1 s apart) differences of amplitude 2 x 20 x sin(0.1 pi): RMS sqrt(14.1^2 + 8.7^2)
    assert s.rmssd_light == pytest.approx(16.6, rel=0.1)
    assert s.lfhf_light > 5
    assert s.auc_waso == pytest.approx(1.0)


def _agreement(nights: list[NightComparison]) -> stats.Agreement:
    return stats.agreement([(n.truth, n.computed) for n in nights])


@pytest.fixture(scope="module")
def twins() -> tuple[stats.Agreement, stats.Agreement]:
    heads = sorted(SLPDB.glob("*.hea.gz"))
    assert len(heads) == 12, f"the 12 shared slpdb records are expected in {SLPDB}"
    real: list[NightComparison] = []
    sim: list[NightComparison] = []
    for h in heads:
        rec = read_slpdb(h)
        stages = realism.slpdb_stages(h.with_name(h.name.replace(".hea.gz", ".an.gz")), rec.stages.size)
        real.append(compare_record(rec))
        sim.extend(compare_record(realism.twin_record(rec, stages, seed)) for seed in TWIN_SEEDS)
    return _agreement(real), _agreement(sim)


def test_staging_on_simulated_twins_agrees_like_on_the_real_records(
    twins: tuple[stats.Agreement, stats.Agreement],
) -> None:
    real, sim = twins
    assert real.kappa2 is not None and sim.kappa2 is not None
    assert real.kappa3 is not None and sim.kappa3 is not None
    assert abs(sim.kappa2 - real.kappa2) <= MAX_KAPPA_GAP, (sim.kappa2, real.kappa2)
    assert abs(sim.kappa3 - real.kappa3) <= MAX_KAPPA_GAP, (sim.kappa3, real.kappa3)
    # the awakenings of simulated nights are found about as often as real ones
    assert real.wake_recall_waso is not None and sim.wake_recall_waso is not None
    assert sim.wake_recall_waso >= 0.5 * real.wake_recall_waso > 0


def test_twin_keeps_the_record_and_replaces_the_heart() -> None:
    h = sorted(SLPDB.glob("*.hea.gz"))[0]
    rec = read_slpdb(h)
    stages = realism.slpdb_stages(h.with_name(h.name.replace(".hea.gz", ".an.gz")), rec.stages.size)
    assert set(np.unique(stages)) <= {-1, 0, 1, 2, 3}
    # the simulator's stages are the reader's, with N3 kept apart
    to_val = np.array([0, 4, 4, 3])  # wake, NREM, NREM, REM (collector.nights.stages codes)
    scored = stages >= 0
    assert np.array_equal(to_val[stages[scored]], rec.stages[scored])
    tw = realism.twin_record(rec, stages, 0)
    assert (tw.start, tw.age, tw.sex, tw.timezone) == (rec.start, rec.age, rec.sex, rec.timezone)
    assert np.array_equal(tw.stages, rec.stages)
    assert not np.array_equal(tw.rr_ms[:100], rec.rr_ms[:100])
    assert abs(tw.rr_end_s[-1] - rec.stages.size * 30) < 60
    assert np.array_equal(realism.twin_record(rec, stages, 0).rr_ms, tw.rr_ms)  # deterministic
