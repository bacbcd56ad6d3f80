"""Whole nights from the simulator (collector.sim) against its ground truth (pure, no InfluxDB).

Stated tolerances (docs/nights.md; measured on other seeds than these, 30 nights of three sim
persons, worst block of 5 nights in brackets):
- device stages: per night |TST error| <= 45 min, |SOL error| <= 45 min, |WASO error| <= 35 min;
- computed stages (HR only: wrn-gru-mesa with the night-relative wake model, the defaults since
  ALGO_VERSION 3), mean absolute error over the nights (tolerances and the measured values in
  brackets were set with the previous defaults; with the current ones, on this test's 5 nights and
  the simulator as committed in 8a69a35: TST 9, SOL 3, WASO 14 min tagged, lights out 1 min estimated).
  The simulator calibrated to real hearts (docs/simulator.md, "Realism": its wake is as hard to find
  as real wake) changes what is measured: with the current defaults, 30 nights of alice/bob/carol
  (seeds 5-7), computed minus true: TST -61 min, WASO +66 min (the rule calls 16% of sleep epochs
  wake, as on the slpdb records), so the tolerances follow the measured values:
  - lights out tagged: TST <= 80 min (measured 62, [74]), SOL <= 35 min (11, [27]),
    WASO <= 90 min (66, [82]);
  - lights out estimated (no tag, no device): lights out <= 10 min (2, [5]), TST <= 80 min (64, [75]),
    SOL <= 35 min (11, [29]), WASO <= 90 min (68, [82]);
- HR metrics at 2% artefacts: the cleaned beats' RMSSD over the true hypnogram within 10% of truth;
  RMSSD over the computed sleep within 15% of truth in the median night
  and 40% in every night (measured: median 10%, worst 28%: wake called sleep and REM called wake move
  it), mean sleeping HR within 2 bpm (worst 1.6).
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

import numpy as np
import pytest

from collector.nights.compute import NightInputs, compute_night
from collector.nights.metrics import heart_metrics
from collector.nights.staging import Subject
from collector.sim.params import Faults, SimConfig
from tests.nights.simdata import inputs, settings_for, study

N_NIGHTS = 5


@pytest.fixture(scope="module")
def sim():
    cfg = SimConfig(faults=Faults(artefact_rate=0.02, dropouts_per_night=2.0))
    person, st = study(N_NIGHTS, seed=3, config=cfg)
    nights = [st.night(i) for i in range(N_NIGHTS)]
    return person, settings_for(person), nights


@pytest.fixture(scope="module")
def computed(sim):
    person, ps, nights = sim
    return [_run(person, ps, inputs(n, ps, device_stages=False, tags=True)) for n in nights]


def _run(person, ps, inp: NightInputs):
    res = compute_night(inp, Subject(person.age, person.sex), ZoneInfo(ps.timezone))
    assert res is not None
    return res


def test_device_stages_preferred_and_accurate(sim):
    person, ps, nights = sim
    for n in nights:
        res = _run(person, ps, inputs(n, ps, device_stages=True))
        assert res.staging == "device"
        assert res.hypnogram is None  # device stages are not re-written as computed ones
        assert res.lights_source == "device"
        f, tr = res.fields, n.truth
        assert abs(f["tst_min"] - tr.tst_min) <= 45
        assert abs(f["sol_min"] - tr.sol_min) <= 45
        assert abs(f["waso_min"] - tr.waso_min) <= 35
        assert f["flagged"] is False


def test_computed_stages_within_stated_tolerance(sim, computed):
    _, _, nights = sim
    err = []
    for n, res in zip(nights, computed, strict=True):
        assert res.staging == "computed"
        assert res.lights_source == "tag"
        assert res.hypnogram is not None
        assert abs(res.lights_out_ns - n.lights_out_ns) < 30e9
        f, tr = res.fields, n.truth
        err.append([f["tst_min"] - tr.tst_min, f["sol_min"] - tr.sol_min, f["waso_min"] - tr.waso_min])
        # stage points: 30-s epochs covering lights out to lights on, with probabilities
        h = res.hypnogram
        assert h.epoch_s == 30
        assert len(h.codes) == round((res.lights_on_ns - res.lights_out_ns) / 30e9)
        assert np.isfinite(h.prob[h.codes >= 0]).all()
    mae = np.mean(np.abs(err), axis=0)
    assert mae[0] <= 80, mae  # measured 62 [74] (module docstring)
    assert mae[1] <= 35, mae  # 11 [27]
    assert mae[2] <= 90, mae  # 66 [82]


def test_heart_metrics_against_truth_at_2pct_artefacts(sim, computed):
    _, _, nights = sim
    rel: list[float] = []
    for n, res in zip(nights, computed, strict=True):
        f, tr = res.fields, n.truth
        assert tr.artefact_pct > 1.0  # the faults are really there
        # the clean-up alone: RMSSD of the cleaned beats over the true hypnogram, within 10% of truth
        assert res.beats is not None
        rel_t = res.beats.t_s + (res.beats.t0_ns - n.lights_out_ns) / 1e9
        hm = heart_metrics(n.hypnogram.astype(np.int64), rel_t, res.beats.nn_ms, res.beats.ok, res.beats.segment)
        assert hm.rmssd_ms is not None and abs(hm.rmssd_ms / tr.rmssd_ms - 1) < 0.10
        # RMSSD over the computed hypnogram's sleep vs truth over the true one
        assert abs(f["rmssd_ms"] / tr.rmssd_ms - 1) < 0.40  # worst measured 0.28 (module docstring)
        rel.append(f["rmssd_ms"] / tr.rmssd_ms - 1)
        assert abs(f["hr_mean_bpm"] - tr.hr_mean_bpm) < 2.0
        assert abs(f["ln_rmssd"] - np.log(f["rmssd_ms"])) < 1e-12
    assert np.median(np.abs(rel)) < 0.15, rel  # median measured 0.10


def test_lights_estimated_without_tags_or_device(sim):
    person, ps, nights = sim
    err = []
    for n in nights:
        res = _run(person, ps, inputs(n, ps, device_stages=False))
        assert res.lights_source == "estimate"
        assert res.staging == "computed"
        f, tr = res.fields, n.truth
        # the strap records from lights out here: the estimate must not stop inside lying awake
        err.append([(res.lights_out_ns - n.lights_out_ns) / 60e9, f["tst_min"] - tr.tst_min,
                    f["sol_min"] - tr.sol_min, f["waso_min"] - tr.waso_min])
        assert abs(res.lights_on_ns - n.lights_on_ns) / 60e9 < 30
    mae = np.mean(np.abs(err), axis=0)
    assert mae[0] <= 10, mae
    assert mae[1] <= 80, mae  # measured 64 [75] (module docstring)
    assert mae[2] <= 35, mae  # 11 [29]
    assert mae[3] <= 90, mae  # 68 [82]


def _drop(inp: NightInputs, share: float, seed: int = 0) -> NightInputs:
    """Remove RR and HR points in dropout intervals covering ``share`` of the night."""
    rng = np.random.default_rng(seed)
    t0, t1 = int(inp.rr_time_ns.min()), int(inp.rr_time_ns.max())
    dur = t1 - t0
    k = 6
    lengths = np.full(k, share * dur / k)
    starts = np.sort(rng.choice(np.arange(k * 2), k, replace=False)) * dur / (k * 2) + t0
    keep_rr = np.ones(inp.rr_time_ns.size, bool)
    keep_hr = np.ones(inp.hr_time_ns.size, bool)
    for s, ln in zip(starts, lengths, strict=True):
        keep_rr &= ~((inp.rr_time_ns >= s) & (inp.rr_time_ns < s + ln))
        keep_hr &= ~((inp.hr_time_ns >= s) & (inp.hr_time_ns < s + ln))
    return NightInputs(window=inp.window, rr_time_ns=inp.rr_time_ns[keep_rr], rr_ms=inp.rr_ms[keep_rr],
                       hr_time_ns=inp.hr_time_ns[keep_hr], hr_bpm=inp.hr_bpm[keep_hr],
                       stage_time_ns=inp.stage_time_ns, stage_code=inp.stage_code, stage_epoch_s=inp.stage_epoch_s,
                       lights_out_tag_ns=inp.lights_out_tag_ns, lights_on_tag_ns=inp.lights_on_tag_ns, sim=True)


@pytest.mark.parametrize("device", [False, True])
def test_thirty_percent_dropout_is_flagged_not_invented(sim, device):
    person, ps, nights = sim
    inp = _drop(inputs(nights[1], ps, device_stages=device, tags=True), 0.30)
    res = _run(person, ps, inp)
    assert res.flagged is True
    assert res.fields["flagged"] is True
    assert res.fields["coverage_pct"] < 80
    if not device:
        assert res.hypnogram is not None
        unknown = np.mean(res.hypnogram.codes == -1)
        assert 0.2 < unknown < 0.4  # no stages invented inside the gaps


def test_small_dropouts_are_not_flagged(sim):
    person, ps, nights = sim
    inp = _drop(inputs(nights[2], ps, device_stages=False, tags=True), 0.05)
    res = _run(person, ps, inp)
    assert res.flagged is False


def test_window_without_data_is_no_night(sim):
    _, ps, nights = sim
    inp = inputs(nights[0], ps)
    empty = NightInputs(window=inp.window)
    assert compute_night(empty, Subject(40, "female"), ZoneInfo("UTC")) is None


def _hr_only(inp: NightInputs, *, device: bool) -> NightInputs:
    empty_i = np.zeros(0, np.int64)
    return NightInputs(window=inp.window, hr_time_ns=inp.hr_time_ns, hr_bpm=inp.hr_bpm,
                       stage_time_ns=inp.stage_time_ns if device else empty_i,
                       stage_code=inp.stage_code if device else empty_i,
                       stage_epoch_s=inp.stage_epoch_s if device else empty_i, sim=True)


def test_heart_rate_without_rr(sim):
    person, ps, nights = sim
    n = nights[3]
    # a watch with HR samples and its own stages: device staging, HR from samples, no RMSSD
    res = _run(person, ps, _hr_only(inputs(n, ps, device_stages=True), device=True))
    assert res.staging == "device"
    assert abs(res.fields["hr_mean_bpm"] - n.truth.hr_mean_bpm) < 3
    assert "rmssd_ms" not in res.fields
    assert res.flagged is False
    # HR samples alone: no staging possible -> flagged, nothing invented
    res2 = _run(person, ps, _hr_only(inputs(n, ps), device=False))
    assert res2.staging == "none"
    assert res2.flagged is True
    assert res2.fields["tst_min"] == 0
    assert "sol_min" not in res2.fields


def test_a_watch_logging_only_not_worn_does_not_override_the_strap(sim):
    person, ps, nights = sim
    n = nights[2]
    inp = inputs(n, ps, device_stages=True)
    not_worn = NightInputs(
        window=inp.window, rr_time_ns=inp.rr_time_ns, rr_ms=inp.rr_ms, hr_time_ns=inp.hr_time_ns, hr_bpm=inp.hr_bpm,
        stage_time_ns=inp.stage_time_ns, stage_code=np.full_like(inp.stage_code, -2),
        stage_epoch_s=inp.stage_epoch_s, sim=True,
    )
    res = _run(person, ps, not_worn)
    assert res.staging == "computed"
    assert res.fields["tst_min"] > 0
