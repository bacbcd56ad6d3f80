"""The night generator: reproducibility, healthy-adult ranges, cycle structure, planted effects."""

from __future__ import annotations

import math

import numpy as np
import pytest

from collector.errors import ValidationError
from collector.sim.hypnogram import DEEP, LIGHT, REM, WAKE, build_hypnogram
from collector.sim.nights import NightTruth, Study, dose_schedule, plan_study
from collector.sim.params import Dosing, Effects, Faults, SimConfig, Variability
from collector.sim.person import PersonProfile
from tests.sim.conftest import END, make_study


def _arr(truths: list[NightTruth], key: str) -> np.ndarray:
    return np.array([getattr(t, key) for t in truths], dtype=float)


# -- reproducibility -----------------------------------------------------------------------------


def test_same_seed_gives_identical_nights() -> None:
    a, b = make_study(5, seed=3), make_study(5, seed=3)
    assert a.plans == b.plans
    for i in (0, 4):
        na, nb = a.night(i), b.night(i)
        assert np.array_equal(na.hypnogram, nb.hypnogram)
        assert np.array_equal(na.beats_s, nb.beats_s)
        assert np.array_equal(na.detected_s, nb.detected_s)
        assert np.array_equal(na.dropouts_s, nb.dropouts_s)
        assert na.motion is not None and nb.motion is not None
        assert np.array_equal(na.motion, nb.motion)
        assert na.truth == nb.truth


def test_a_night_does_not_depend_on_which_nights_were_generated_before() -> None:
    s = make_study(6, seed=3)
    late_first = s.night(5)
    for i in range(5):
        s.night(i)
    assert np.array_equal(late_first.beats_s, s.night(5).beats_s)


def test_different_seed_or_person_gives_different_nights() -> None:
    a, b = make_study(3, seed=3), make_study(3, seed=4)
    assert a.plans[0].tst_min != b.plans[0].tst_min
    assert not np.array_equal(a.night(0).hypnogram, b.night(0).hypnogram)
    c = make_study(3, seed=3, name="bob")
    assert c.plans[0].lights_out_ns != a.plans[0].lights_out_ns
    assert PersonProfile.sample("x", 1) == PersonProfile.sample("x", 1)
    assert PersonProfile.sample("x", 1) != PersonProfile.sample("x", 2)


# -- healthy-adult ranges (science.md) ---------------------------------------------------------


def test_distributions_in_healthy_adult_ranges(null_truths: list[NightTruth]) -> None:
    tst, sol = _arr(null_truths, "tst_min"), _arr(null_truths, "sol_min")
    assert 390 <= np.median(tst) <= 510  # 6.5-8.5 h
    assert 35 <= tst.std() <= 80  # science.md: 45-77 min night-to-night, plus weekend shifts
    assert 8 <= np.median(sol) <= 35
    assert 80 <= np.mean(_arr(null_truths, "se_pct")) <= 97
    assert 10 <= np.mean(_arr(null_truths, "waso_min")) <= 60
    assert 10 <= np.mean(_arr(null_truths, "deep_pct")) <= 25
    assert 17 <= np.mean(_arr(null_truths, "rem_pct")) <= 27
    light_pct = 100 * _arr(null_truths, "light_min") / tst
    assert 45 <= np.mean(light_pct) <= 68
    rmssd = _arr(null_truths, "rmssd_ms")
    assert 20 <= np.median(rmssd) <= 90
    ln_sd = np.std(np.log(rmssd))
    assert 0.07 <= ln_sd <= 0.22  # science.md: nightly ln RMSSD varies 10-20%
    hr, hr5 = _arr(null_truths, "hr_mean_bpm"), _arr(null_truths, "hr_min5_bpm")
    assert 50 <= np.mean(hr) <= 85  # realdata.md: sleeping HR 71 +- 8 (slpdb), 65 +- 10 (held-out nights)
    assert np.all(hr5 < hr)
    assert np.all(_arr(null_truths, "awakenings") >= 0)


def test_truth_follows_the_persons_traits(null_truths: list[NightTruth]) -> None:
    person = PersonProfile.sample("alice", 7, age=35, sex="female")
    rmssd = np.median(_arr(null_truths, "rmssd_ms"))
    assert abs(math.log(rmssd / person.rmssd_ms)) < 0.15
    assert abs(np.mean(_arr(null_truths, "hr_mean_bpm")) - person.rhr_bpm) < 2.0


def test_weekend_nights_start_later_and_sleep_longer(null_truths: list[NightTruth]) -> None:
    we = np.array([t.weekend for t in null_truths])
    lo = _arr(null_truths, "lights_out")
    # time of day of lights out, in hours after 12:00 UTC (so 23:00 and 01:00 compare right)
    tod = ((lo / 1e9 - 12 * 3600) % 86400) / 3600
    assert tod[we].mean() > tod[~we].mean() + 0.2
    tst = _arr(null_truths, "tst_min")
    assert tst[we].mean() > tst[~we].mean()


def test_nightly_targets_have_the_configured_autocorrelation() -> None:
    for phi in (0.0, 0.3, 0.6):
        s = make_study(3000, seed=5, variability=Variability(ar1=phi), dosing=Dosing(design="none"))
        rhr = np.array([p.rhr_bpm for p in s.plans])
        r = np.corrcoef(rhr[1:], rhr[:-1])[0, 1]
        assert abs(r - phi) < 0.06, (phi, r)


# -- sleep architecture ----------------------------------------------------------------------------


def test_hypnogram_hits_its_targets_to_the_epoch() -> None:
    rng = np.random.default_rng(0)
    hyp = build_hypnogram(rng, sol_min=12.0, tst_min=420.0, waso_min=25.0, deep_min=75.0, rem_min=95.0,
                          final_wake_min=4.0)
    counts = np.bincount(hyp, minlength=4) / 2.0
    assert counts[DEEP] == 75.0 and counts[REM] == 95.0
    assert counts[LIGHT] + counts[DEEP] + counts[REM] == 420.0
    assert int(np.argmax(hyp != WAKE)) == 24  # SOL 12 min
    assert np.all(hyp[-8:] == WAKE) and hyp[-9] != WAKE  # final wake 4 min
    with pytest.raises(ValidationError, match="too little light"):
        build_hypnogram(rng, sol_min=5, tst_min=300, waso_min=10, deep_min=150, rem_min=150, final_wake_min=2)


def test_cycles_put_deep_sleep_early_and_rem_late() -> None:
    s = make_study(40, seed=9)
    deep_first = rem_last = rem_first = 0.0
    deep_all = rem_all = 0.0
    cycles = []
    for i in range(len(s)):
        h = s.night(i).hypnogram
        sleep = np.flatnonzero(h != WAKE)
        sp = h[sleep[0]:sleep[-1] + 1]
        third = len(sp) // 3
        deep_first += (sp[:third] == DEEP).sum()
        deep_all += (sp == DEEP).sum()
        rem_first += (sp[:third] == REM).sum()
        rem_last += (sp[-third:] == REM).sum()
        rem_all += (sp == REM).sum()
        # REM periods (runs separated by >= 15 min without REM) ~ one per 90-min cycle
        r = np.flatnonzero(sp == REM)
        periods = 1 + int((np.diff(r) > 30).sum()) if len(r) else 0
        cycles.append(len(sp) / 2 / max(periods, 1))
    assert deep_first / deep_all > 0.55
    assert rem_last / rem_all > 0.4
    assert rem_last > 2 * rem_first
    assert 70 <= np.median(cycles) <= 115


def test_heart_follows_the_stages() -> None:
    s = make_study(6, seed=2, faults=Faults.none())
    hr: dict[int, list[float]] = {k: [] for k in range(4)}
    rmssd: dict[int, list[float]] = {k: [] for k in range(4)}
    for i in range(len(s)):
        n = s.night(i)
        rr = n.rr_clean_ms
        ep = (n.beats_s[1:] // 30).astype(int)
        st = n.hypnogram[np.minimum(ep, len(n.hypnogram) - 1)]
        for k in range(4):
            m = st == k
            hr[k].append(np.mean(60000 / rr[m]))
            same = (st[1:] == k) & (st[:-1] == k)
            rmssd[k].append(np.sqrt(np.mean(np.diff(rr)[same] ** 2)))
    mhr = {k: np.mean(v) for k, v in hr.items()}
    mrm = {k: np.mean(v) for k, v in rmssd.items()}
    # real nights (realdata.md): deep sleep about as fast as light (dHR -0.1..+1.7), REM faster
    # (+2.3), wake faster still; RMSSD highest in light sleep, lowest awake
    assert abs(mhr[DEEP] - mhr[LIGHT]) < 2.0
    assert mhr[LIGHT] < mhr[REM] < mhr[WAKE]
    assert mhr[WAKE] > mhr[LIGHT] + 3  # HR rises on awakenings
    assert mrm[LIGHT] > mrm[DEEP] and mrm[LIGHT] > mrm[REM] > mrm[WAKE]


def test_respiratory_sinus_arrhythmia_at_the_breathing_rate() -> None:
    s = make_study(1, seed=2, faults=Faults.none())
    n = s.night(0)
    # deep-sleep stretch: resample RR at 4 Hz and find the spectral peak
    deep_ep = np.flatnonzero(n.hypnogram == DEEP)
    t0 = deep_ep[0] * 30.0
    m = (n.beats_s[1:] > t0) & (n.beats_s[1:] < t0 + 300)
    t, rr = n.beats_s[1:][m], n.rr_clean_ms[m]
    grid = np.arange(t[0], t[-1], 0.25)
    x = np.interp(grid, t, rr)
    x = (x - x.mean()) * np.hanning(len(x))
    f = np.fft.rfftfreq(len(x), 0.25)
    p = np.abs(np.fft.rfft(x)) ** 2
    band = (f > 0.15) & (f < 0.5)  # the HF band (LF: Mayer waves near 0.09 Hz)
    peak = f[band][np.argmax(p[band])]
    assert abs(peak - s.person.resp_rate_bpm / 60) < 0.04


def test_motion_and_device_stages_follow_the_hypnogram() -> None:
    s = make_study(5, seed=4)
    wake_act, sleep_act = [], []
    for i in range(len(s)):
        n = s.night(i)
        assert n.motion is not None and n.device_stages is not None
        wake_act.append(n.motion[n.hypnogram == WAKE].mean())
        sleep_act.append(n.motion[n.hypnogram != WAKE].mean())
        starts, status = n.device_stages
        assert set(np.unique(status)) <= {2, 3, 4}
        assert np.all(starts % (600 * 10**9) == 0)
        assert starts[0] <= n.lights_out_ns + 300 * 10**9 and starts[-1] >= n.lights_on_ns - 900 * 10**9
        # deep/light sleep blocks dominate the middle of the night
        mid = status[len(status) // 3: 2 * len(status) // 3]
        assert np.mean(mid != 2) > 0.7
    assert np.mean(wake_act) > 10 * np.mean(sleep_act)
    bare = make_study(2, seed=4, motion=False, device_stages=False).night(0)
    assert bare.motion is None and bare.device_stages is None


# -- faults --------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.005, 0.03])
def test_artefact_rate_as_configured(rate: float) -> None:
    s = make_study(8, seed=1, faults=Faults(artefact_rate=rate, ectopic_share=0.5))
    beats = ect = miss = 0
    for i in range(len(s)):
        n = s.night(i)
        beats += n.truth.n_beats
        ect += n.truth.n_ectopic
        miss += n.truth.n_missed
        assert len(n.detected_s) == n.truth.n_beats - n.truth.n_missed
        assert np.all(np.diff(n.detected_s) > 0)
    got = (ect + miss) / beats
    assert abs(got - rate) < 4 * math.sqrt(rate / beats) + 1e-4
    assert 0.4 < ect / (ect + miss) < 0.6


def test_dropouts_and_contact_losses_as_configured() -> None:
    f = Faults(dropouts_per_night=6.0, contact_losses_per_night=2.0, dropout_s=(5.0, 60.0),
               contact_loss_s=(60.0, 120.0))
    s = make_study(60, seed=6, faults=f)
    d = c = 0.0
    hours = 0.0
    for i in range(len(s)):
        n = s.night(i)
        hours += n.duration_s / 3600
        d += len(n.dropouts_s)
        c += len(n.contact_s)
        lengths = n.dropouts_s[:, 1] - n.dropouts_s[:, 0]
        assert np.all((lengths <= 60.0 + 1e-9) & ((lengths >= 5.0 - 1e-9) | (n.dropouts_s[:, 1] == n.duration_s)))
        assert n.truth.coverage_pct < 100.0 or (len(n.dropouts_s) == 0 and len(n.contact_s) == 0)
    assert abs(d / (hours / 8) - 6.0) < 1.0
    assert abs(c / (hours / 8) - 2.0) < 0.6
    clean = make_study(3, seed=6, faults=Faults.none()).night(0)
    assert clean.truth.coverage_pct == 100.0 and clean.truth.n_ectopic == clean.truth.n_missed == 0


# -- planted magnesium effects -----------------------------------------------------------------------


def test_planted_effect_is_exact_against_the_same_nights_without_it(paired_studies: tuple[Study, Study]) -> None:
    eff, null = paired_studies
    effects = Effects()
    assert [p.dose for p in eff.plans] == [p.dose for p in null.plans]
    for i in range(0, len(eff), 12):
        pe, pn = eff.plans[i], null.plans[i]
        if not pe.dose:
            assert pe == pn
            continue
        assert pe.tst_min == pytest.approx(pn.tst_min + effects.tst_min)
        factor = 1 + effects.sol_min / eff.person.sol_mean_min
        assert pe.sol_min == pytest.approx(max(pn.sol_min * factor, 0.5))
        assert math.log(pe.rmssd_ms / pn.rmssd_ms) == pytest.approx(effects.ln_rmssd)
        te, tn = eff.night(i).truth, null.night(i).truth
        assert te.tst_min - tn.tst_min == pytest.approx(effects.tst_min, abs=1.0)  # 30-s epochs


def _diff_and_se(truths: list[NightTruth], key: str) -> tuple[float, float]:
    v = _arr(truths, key)
    mg = np.array([t.dose == "magnesium" for t in truths])
    a, b = v[mg], v[~mg]
    return float(a.mean() - b.mean()), float(math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))


def test_planted_effect_visible_in_truth_and_absent_in_null(paired_studies: tuple[Study, Study],
                                                            null_truths: list[NightTruth]) -> None:
    eff_study, _ = paired_studies
    truths = [eff_study.night(i).truth for i in range(len(eff_study))]
    e = Effects()
    for key, planted in (("sol_min", e.sol_min), ("tst_min", e.tst_min), ("ln_rmssd", e.ln_rmssd),
                         ("deep_min", e.deep_min + 0.0), ("rem_min", e.rem_min)):
        d, se = _diff_and_se(truths, key)
        assert abs(d - planted) < 4 * se + 1.0, (key, d, planted, se)
    d, se = _diff_and_se(truths, "sol_min")
    assert d < -10  # clearly visible
    for key in ("sol_min", "tst_min", "ln_rmssd", "deep_min", "rem_min"):
        d, se = _diff_and_se(null_truths, key)
        assert abs(d) < 4 * se, (key, d, se)


# -- schedule and validation ----------------------------------------------------------------------------


def test_dose_schedules() -> None:
    r = dose_schedule(30, 1, "a", SimConfig(dosing=Dosing(design="randomised")))
    assert r.sum() == 15 and not (np.all(r[:15]) or np.all(r[15:]))
    assert not np.array_equal(r, dose_schedule(30, 2, "a", SimConfig()))
    b = dose_schedule(30, 1, "a", SimConfig(dosing=Dosing(design="blocks")))
    assert not b[:15].any() and b[15:].all()
    w = dose_schedule(28, 1, "a", SimConfig(dosing=Dosing(design="blocks", block_nights=7)))
    assert list(w) == [False] * 7 + [True] * 7 + [False] * 7 + [True] * 7
    assert not dose_schedule(10, 1, "a", SimConfig(dosing=Dosing(design="none"))).any()


def test_dose_time_and_lights_out_in_local_time() -> None:
    p = PersonProfile.sample("tz", 1, timezone="Europe/Berlin").with_(bedtime_h=23.0, bedtime_sd_min=0.0,
                                                                       weekend_shift_min=0.0)
    s = plan_study(p, 3, seed=1, end=END, config=SimConfig(dosing=Dosing(design="blocks", block_nights=1)))
    from datetime import datetime
    from zoneinfo import ZoneInfo
    lo = datetime.fromtimestamp(s.plans[1].lights_out_ns / 1e9, ZoneInfo("Europe/Berlin"))
    assert (lo.hour, lo.minute) == (23, 0)
    dose_t = s.dose_time_ns(s.plans[1])
    assert dose_t == s.plans[1].lights_out_ns - 3600 * 10**9
    assert s.dose_time_ns(s.plans[0]) is None


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: PersonProfile("x", age=0), "age"),
        (lambda: PersonProfile("x", deep_frac=0.4, rem_frac=0.3), "deep_frac"),
        (lambda: Faults(artefact_rate=0.5), "artefact_rate"),
        (lambda: Faults(dropout_s=(10.0, 1.0)), "dropout_s"),
        (lambda: Variability(ar1=1.0), "ar1"),
        (lambda: Dosing(design="weekly"), "design"),  # type: ignore[arg-type]
        (lambda: Effects.for_scenario("huge"), "scenario"),
        (lambda: plan_study(PersonProfile("x"), 0), "nights"),
    ],
)
def test_bad_parameters_say_what_to_fix(make: object, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        make()  # type: ignore[operator]


def test_person_from_settings_uses_configured_traits() -> None:
    from collector.settings import PersonSettings, Settings

    s = Settings(persons=[PersonSettings(name="al", age=70, sex="male", timezone="Europe/Berlin")])
    p, configured = PersonProfile.from_settings(s, "al", seed=3)
    assert configured and (p.age, p.sex, p.timezone) == (70, "male", "Europe/Berlin")
    young = PersonProfile.sample("al", 3, age=25, sex="male")
    assert p.deep_frac < young.deep_frac and p.waso_mean_min > young.waso_mean_min
    q, configured = PersonProfile.from_settings(s, "demo", seed=3)
    assert not configured and q.timezone == "UTC"


def test_config_from_choices() -> None:
    c = SimConfig.from_choices(scenario="null", design="blocks", block_nights=7, artefact_rate=0.02)
    assert c.effects.is_null() and c.dosing.block_nights == 7 and c.faults.artefact_rate == 0.02
    assert not SimConfig.from_choices().effects.is_null()
    with pytest.raises(ValidationError, match="unknown design"):
        SimConfig.from_choices(design="weekly")
