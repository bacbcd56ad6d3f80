"""Seeded, reproducible virtual nights with a planted magnesium effect and their ground truth.

Usage::

    person = PersonProfile.sample("demo", seed=1)
    study = plan_study(person, nights=90, end=date(2026, 11, 23), seed=1)   # cheap: nightly targets
    night = study.night(0)              # full night: hypnogram, beats, faults, motion, truth
    night.truth.as_dict()               # TST, SOL, WASO, SE, stage minutes, RMSSD, RHR, ...

Every night has its own random stream (seed, person, night index), so any night can be
generated alone, in any order, and is identical every time. The nightly targets (lights out,
latency, sleep time, stage minutes, HRV, HR) come from per-quantity AR(1) series around the
person's traits, with weekend shifts; on dose nights the planted effects are added to the values
the night would have had without a dose, so the difference is exact in expectation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from collector.errors import ValidationError
from collector.sim.hypnogram import DEEP, EPOCH_S, LIGHT, REM, WAKE, build_hypnogram
from collector.sim.params import SimConfig
from collector.sim.person import PersonProfile, name_key
from collector.sim.rr import add_artefacts, covered_fraction, fault_intervals, generate_beats

F64 = NDArray[np.float64]
NS = 1_000_000_000

# seed-stream ids (the person's own traits use 0, see PersonProfile.sample)
_STREAM_NIGHTLY, _STREAM_SCHEDULE, _STREAM_NIGHT = 1, 2, 3


@dataclass(frozen=True, slots=True)
class NightPlan:
    """The targets of one night, drawn before any beat is generated."""

    index: int
    night: date  # the evening's date
    weekend: bool  # Friday or Saturday evening
    dose: bool
    lights_out_ns: int
    sol_min: float
    tst_min: float
    waso_min: float
    deep_min: float
    rem_min: float
    final_wake_min: float
    rhr_bpm: float
    rmssd_ms: float
    resp_rate_bpm: float


@dataclass(frozen=True, slots=True)
class NightTruth:
    """Ground truth of one night, named like the ``night`` measurement's fields."""

    night: str
    dose: str  # magnesium | control
    weekend: bool
    lights_out: int
    lights_on: int
    tib_min: float
    sol_min: float
    lps_min: float
    tst_min: float
    waso_min: float
    se_pct: float
    awakenings: int
    wake_min: float
    light_min: float
    deep_min: float
    rem_min: float
    nrem_min: float
    deep_pct: float
    rem_pct: float
    hr_mean_bpm: float
    hr_min5_bpm: float
    rmssd_ms: float
    ln_rmssd: float
    coverage_pct: float
    n_beats: int
    n_ectopic: int
    n_missed: int
    artefact_pct: float
    n_dropouts: int
    n_contact_losses: int
    elemental_mg: float
    hypnogram: str = field(repr=False)  # one digit per 30-s epoch: 0 wake, 1 light, 2 deep, 3 REM

    def as_dict(self, *, hypnogram: bool = True) -> dict[str, Any]:
        d = asdict(self)
        if not hypnogram:
            del d["hypnogram"]
        return d


@dataclass(frozen=True, slots=True)
class Night:
    """One generated night. Times in seconds are relative to lights out."""

    plan: NightPlan
    hypnogram: NDArray[np.int8]
    beats_s: F64  # clean R-peak times
    detected_s: F64  # R peaks as the strap detects them (ectopic shifted, missed dropped)
    dropouts_s: F64  # [start, end) rows: BLE link down, nothing arrives
    contact_s: F64  # [start, end) rows: strap without skin contact
    motion: F64 | None  # activity counts per 30-s epoch
    device_stages: tuple[NDArray[np.int64], NDArray[np.int8]] | None  # (block start ns, sleeplog status)
    truth: NightTruth

    @property
    def lights_out_ns(self) -> int:
        return self.plan.lights_out_ns

    @property
    def lights_on_ns(self) -> int:
        return self.plan.lights_out_ns + len(self.hypnogram) * EPOCH_S * NS

    @property
    def duration_s(self) -> float:
        return float(len(self.hypnogram) * EPOCH_S)

    @property
    def rr_clean_ms(self) -> F64:
        """Clean RR intervals (ms), each ending at ``beats_s[1:]``."""
        return np.diff(self.beats_s) * 1000.0


def _ar1_series(rng: np.random.Generator, n: int, phi: float, k: int) -> F64:
    """``k`` independent stationary unit-variance AR(1) series of length ``n`` (shape k x n)."""
    e = rng.standard_normal((k, n))
    z = np.empty((k, n))
    if n:
        z[:, 0] = e[:, 0]
    s = math.sqrt(1 - phi * phi)
    for i in range(1, n):
        z[:, i] = phi * z[:, i - 1] + s * e[:, i]
    return z


def _lognormal(mean: float, sd: float, z: F64) -> F64:
    if sd <= 0:
        return np.full_like(z, mean)
    s2 = math.log(1 + (sd / mean) ** 2)
    return np.asarray(np.exp(math.log(mean) - s2 / 2 + math.sqrt(s2) * z), dtype=np.float64)


def dose_schedule(n: int, seed: int, person: str, config: SimConfig) -> NDArray[np.bool_]:
    """Which of ``n`` nights get a dose, per the design (reproducible from seed and person)."""
    d = config.dosing
    if d.design == "none" or n == 0:
        return np.zeros(n, dtype=bool)
    if d.design == "blocks":
        if d.block_nights is None:
            return np.arange(n) >= n // 2
        return np.asarray((np.arange(n) // d.block_nights) % 2 == 1, dtype=bool)
    rng = np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(name_key(person), _STREAM_SCHEDULE)))
    sched = np.zeros(n, dtype=bool)
    sched[: n // 2] = True
    rng.shuffle(sched)
    return sched


def local_to_ns(night: date, hours_after_midnight: float, tz: ZoneInfo) -> int:
    """UTC ns of ``hours_after_midnight`` hours after local midnight starting ``night``."""
    midnight = datetime(night.year, night.month, night.day, tzinfo=tz).astimezone(UTC)
    return int(midnight.timestamp()) * NS + round(hours_after_midnight * 3600 * NS)


@dataclass(frozen=True, slots=True)
class Study:
    """A person's simulated nights: the plans (cheap) and full nights on demand."""

    person: PersonProfile
    seed: int
    config: SimConfig
    plans: tuple[NightPlan, ...]

    def __len__(self) -> int:
        return len(self.plans)

    def night(self, index: int) -> Night:
        """Generate night ``index`` in full (identical every time)."""
        return generate_night(self.plans[index], self.person, self.config, self.seed)

    def lights_on_ns(self, index: int) -> int:
        """When night ``index`` ends (:attr:`Night.lights_on_ns`) without generating its beats."""
        plan = self.plans[index]
        return plan.lights_out_ns + len(night_hypnogram(plan, self.person, self.config, self.seed)) * EPOCH_S * NS

    def nights(self, indices: Iterable[int] | None = None) -> Iterator[Night]:
        for i in range(len(self.plans)) if indices is None else indices:
            yield self.night(i)

    def dose_time_ns(self, plan: NightPlan) -> int | None:
        """When the dose of a night was taken (None for control nights)."""
        if not plan.dose:
            return None
        return plan.lights_out_ns - round(self.config.dosing.minutes_before_lights_out * 60) * NS

    def describe(self) -> dict[str, Any]:
        """Person, seed, config and schedule (what the truth JSON carries besides nights)."""
        return {
            "person": self.person.as_dict(),
            "seed": self.seed,
            "config": self.config.as_dict(),
            "schedule": [{"night": p.night.isoformat(), "dose": p.dose} for p in self.plans],
        }


def plan_study(
    person: PersonProfile,
    nights: int,
    *,
    seed: int = 0,
    end: date | None = None,
    start: date | None = None,
    config: SimConfig | None = None,
) -> Study:
    """Nightly targets for ``nights`` consecutive evenings (``end`` = the last evening, default yesterday UTC)."""
    if nights < 1 or nights > 20_000:
        raise ValidationError(f"nights must be 1-20000, got {nights}")
    cfg = config or SimConfig()
    if start is None:
        if end is None:
            end = datetime.now(UTC).date() - timedelta(days=1)
        start = end - timedelta(days=nights - 1)
    tz = ZoneInfo(person.timezone)
    v, eff = cfg.variability, cfg.effects
    rng = np.random.default_rng(
        np.random.SeedSequence(entropy=seed, spawn_key=(name_key(person.name), _STREAM_NIGHTLY))
    )
    z = _ar1_series(rng, nights, v.ar1, 8)
    z_bed, z_tst, z_sol, z_waso, z_deep, z_rem, z_hrv, z_hr = z
    final_wake = 1.0 + rng.exponential(max(v.final_wake_mean_min - 1.0, 0.1), nights)
    dates = [start + timedelta(days=i) for i in range(nights)]
    weekend = np.array([d.weekday() in (4, 5) for d in dates])
    dose = dose_schedule(nights, seed, person.name, cfg)

    bed_h = person.bedtime_h + (weekend * person.weekend_shift_min + z_bed * person.bedtime_sd_min) / 60.0
    tst = np.clip(person.tst_mean_min + weekend * person.weekend_tst_min + z_tst * v.tst_sd_min, 180, 660)
    sol = np.clip(_lognormal(person.sol_mean_min, v.sol_sd_min, z_sol), 1.0, 150.0)
    waso = np.clip(_lognormal(person.waso_mean_min, person.waso_mean_min * v.waso_cv, z_waso), 0.0, 180.0)
    deep_f = np.clip(person.deep_frac + z_deep * v.deep_frac_sd, 0.03, 0.35)
    rem_f = np.clip(person.rem_frac + z_rem * v.rem_frac_sd, 0.08, 0.35)
    deep = deep_f * tst
    rem = rem_f * tst
    ln_rmssd = math.log(person.rmssd_ms) + z_hrv * v.ln_rmssd_sd
    rhr = person.rhr_bpm + z_hr * v.rhr_sd_bpm

    # planted effects on dose nights, added to the night's own control values
    sol_factor = max(0.05, 1.0 + eff.sol_min / person.sol_mean_min)
    sol = np.where(dose, np.maximum(sol * sol_factor, 0.5), sol)
    tst = np.where(dose, tst + eff.tst_min, tst)
    deep = np.where(dose, np.maximum(deep + eff.deep_min, 0.0), deep)
    rem = np.where(dose, np.maximum(rem + eff.rem_min, 0.0), rem)
    waso = np.where(dose, np.maximum(waso + eff.waso_min, 0.0), waso)
    ln_rmssd = np.where(dose, ln_rmssd + eff.ln_rmssd, ln_rmssd)
    rhr = np.where(dose, rhr + eff.rhr_bpm, rhr)
    # keep at least 25% light sleep
    scale = np.minimum(1.0, 0.75 * tst / np.maximum(deep + rem, 1e-9))
    deep, rem = deep * scale, rem * scale

    plans = tuple(
        NightPlan(
            index=i,
            night=dates[i],
            weekend=bool(weekend[i]),
            dose=bool(dose[i]),
            lights_out_ns=local_to_ns(dates[i], float(bed_h[i]), tz),
            sol_min=float(sol[i]),
            tst_min=float(tst[i]),
            waso_min=float(waso[i]),
            deep_min=float(deep[i]),
            rem_min=float(rem[i]),
            final_wake_min=float(final_wake[i]),
            rhr_bpm=float(rhr[i]),
            rmssd_ms=float(math.exp(ln_rmssd[i])),
            resp_rate_bpm=person.resp_rate_bpm,
        )
        for i in range(nights)
    )
    return Study(person=person, seed=seed, config=cfg, plans=plans)


def _night_rng(seed: int, person: str, index: int) -> np.random.Generator:
    return np.random.default_rng(
        np.random.SeedSequence(entropy=seed, spawn_key=(name_key(person), _STREAM_NIGHT, index))
    )


def simulate_motion(rng: np.random.Generator, hyp: NDArray[np.int8]) -> F64:
    """Activity counts per 30-s epoch: high awake, small bursts in light sleep and at stage changes."""
    n = len(hyp)
    act = np.zeros(n)
    wake = hyp == WAKE
    first_sleep = int(np.argmax(~wake)) if (~wake).any() else n
    last_sleep = n - 1 - int(np.argmax(~wake[::-1])) if (~wake).any() else -1
    quiet_wake = np.zeros(n, dtype=bool)
    quiet_wake[:first_sleep] = True  # lying in bed waiting for sleep moves less
    act[wake] = rng.gamma(2.0, 40.0, int(wake.sum()))
    act[quiet_wake] = rng.gamma(1.5, 15.0, int(quiet_wake.sum())) * (rng.random(int(quiet_wake.sum())) < 0.7)
    act[last_sleep + 1:] = rng.gamma(2.5, 50.0, n - last_sleep - 1)
    for stage, p, scale in ((LIGHT, 0.15, 8.0), (DEEP, 0.02, 2.0), (REM, 0.08, 3.0)):
        m = hyp == stage
        k = int(m.sum())
        act[m] = rng.gamma(1.5, scale, k) * (rng.random(k) < p)
    change = np.concatenate(([False], hyp[1:] != hyp[:-1])) & (hyp != WAKE)
    act[change] += rng.gamma(2.0, 6.0, int(change.sum()))
    return np.round(act, 1)


# Bangle.js sleeplog status codes (ble.md): 2 awake, 3 light, 4 deep
SLEEPLOG_AWAKE, SLEEPLOG_LIGHT, SLEEPLOG_DEEP = 2, 3, 4
_BLOCK_NS = 600 * NS
_AWAKE_SUM = 600.0  # activity counts per 10 min above which the block is "awake"
_DEEP_SUM = 12.0  # ... below which it is "deep" (movement-based: REM often lands here too)


def device_stages(motion: F64, lights_out_ns: int) -> tuple[NDArray[np.int64], NDArray[np.int8]]:
    """Movement-based 10-min stages like Bangle.js sleeplog (blocks aligned to 10 wall-clock minutes)."""
    n = len(motion)
    ep_start = lights_out_ns + np.arange(n, dtype=np.int64) * EPOCH_S * NS
    block = ep_start // _BLOCK_NS
    b0 = int(block[0])
    rel = (block - b0).astype(np.int64)
    sums = np.bincount(rel, weights=motion)
    counts = np.bincount(rel)
    keep = counts >= 10  # at least half a block inside time in bed
    per20 = sums / np.maximum(counts, 1) * 20.0
    status = np.where(per20 > _AWAKE_SUM, SLEEPLOG_AWAKE, np.where(per20 < _DEEP_SUM, SLEEPLOG_DEEP, SLEEPLOG_LIGHT))
    starts = (b0 + np.arange(len(sums), dtype=np.int64)) * _BLOCK_NS
    return starts[keep], status[keep].astype(np.int8)


def compute_truth(
    plan: NightPlan,
    hyp: NDArray[np.int8],
    beats_s: F64,
    *,
    n_ectopic: int,
    n_missed: int,
    dropouts_s: F64,
    contact_s: F64,
    elemental_mg: float,
) -> NightTruth:
    """Nightly metrics from the hypnogram and the clean beats (AASM-style definitions, science.md)."""
    n = len(hyp)
    ep_min = EPOCH_S / 60.0
    sleep = hyp != WAKE
    counts = np.bincount(hyp.astype(np.int64), minlength=4)
    tst = float(sleep.sum() * ep_min)
    if sleep.any():
        onset = int(np.argmax(sleep))
        last = n - 1 - int(np.argmax(sleep[::-1]))
    else:
        onset, last = n, n - 1
    # latency to persistent sleep: first run of 20 sleep epochs (10 min)
    run = np.convolve(sleep.astype(np.int64), np.ones(20, dtype=np.int64), mode="valid")
    lps_idx = int(np.argmax(run == 20)) if (run == 20).any() else onset
    waso_mask = np.zeros(n, dtype=bool)
    waso_mask[onset:last + 1] = ~sleep[onset:last + 1]
    # awakenings: wake bouts >= 2 min (4 epochs) between onset and final awakening
    wm = waso_mask.astype(np.int64)
    edges = np.diff(np.concatenate(([0], wm, [0])))
    bout_len = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    tib = n * ep_min

    # HR and RMSSD from clean RR in 5-min windows that are entirely sleep
    rr = np.diff(beats_s) * 1000.0
    te = beats_s[1:]
    ep = np.minimum((te // EPOCH_S).astype(np.int64), n - 1)
    asleep_beat = sleep[ep]
    hr_inst = 60000.0 / rr
    hr_mean = float(hr_inst[asleep_beat].mean()) if asleep_beat.any() else math.nan
    n_win = n // 10
    win_sleep = sleep[: n_win * 10].reshape(n_win, 10).all(axis=1) if n_win else np.zeros(0, dtype=bool)
    w = (te // 300).astype(np.int64)
    ok = w < n_win
    ok[ok] &= win_sleep[w[ok]]
    rmssd = math.nan
    hr_min5 = math.nan
    if ok.sum() > 2:
        d2 = np.diff(rr) ** 2
        same = (w[1:] == w[:-1]) & ok[1:]
        ssum = np.bincount(w[1:][same], weights=d2[same], minlength=n_win)
        scnt = np.bincount(w[1:][same], minlength=n_win)
        valid = scnt >= 30
        if valid.any():
            rmssd = float(np.median(np.sqrt(ssum[valid] / scnt[valid])))
        hsum = np.bincount(w[ok], weights=hr_inst[ok], minlength=n_win)
        hcnt = np.bincount(w[ok], minlength=n_win)
        hv = hcnt >= 30
        if hv.any():
            hr_min5 = float((hsum[hv] / hcnt[hv]).min())
    n_beats = len(beats_s)
    return NightTruth(
        night=plan.night.isoformat(),
        dose="magnesium" if plan.dose else "control",
        weekend=plan.weekend,
        lights_out=plan.lights_out_ns,
        lights_on=plan.lights_out_ns + n * EPOCH_S * NS,
        tib_min=tib,
        sol_min=onset * ep_min,
        lps_min=lps_idx * ep_min,
        tst_min=tst,
        waso_min=float(waso_mask.sum() * ep_min),
        se_pct=100.0 * tst / tib if tib else 0.0,
        awakenings=int((bout_len >= 4).sum()),
        wake_min=float(counts[WAKE] * ep_min),
        light_min=float(counts[LIGHT] * ep_min),
        deep_min=float(counts[DEEP] * ep_min),
        rem_min=float(counts[REM] * ep_min),
        nrem_min=float((counts[LIGHT] + counts[DEEP]) * ep_min),
        deep_pct=100.0 * counts[DEEP] * ep_min / tst if tst else 0.0,
        rem_pct=100.0 * counts[REM] * ep_min / tst if tst else 0.0,
        hr_mean_bpm=hr_mean,
        hr_min5_bpm=hr_min5,
        rmssd_ms=rmssd,
        ln_rmssd=math.log(rmssd) if rmssd > 0 else math.nan,
        coverage_pct=100.0 * covered_fraction(n * EPOCH_S, dropouts_s, contact_s),
        n_beats=n_beats,
        n_ectopic=n_ectopic,
        n_missed=n_missed,
        artefact_pct=100.0 * (n_ectopic + n_missed) / n_beats if n_beats else 0.0,
        n_dropouts=len(dropouts_s),
        n_contact_losses=len(contact_s),
        elemental_mg=elemental_mg,
        hypnogram="".join("0123"[int(s)] for s in hyp),
    )


def _hypnogram(rng: np.random.Generator, plan: NightPlan, config: SimConfig) -> NDArray[np.int8]:
    return build_hypnogram(
        rng,
        sol_min=plan.sol_min,
        tst_min=plan.tst_min,
        waso_min=plan.waso_min,
        deep_min=plan.deep_min,
        rem_min=plan.rem_min,
        final_wake_min=plan.final_wake_min,
        cycle_min=config.cycle_min,
    )


def night_hypnogram(plan: NightPlan, person: PersonProfile, config: SimConfig, seed: int) -> NDArray[np.int8]:
    """The hypnogram of :func:`generate_night` alone (the first thing drawn for a night: cheap)."""
    return _hypnogram(_night_rng(seed, person.name, plan.index), plan, config)


def generate_night(plan: NightPlan, person: PersonProfile, config: SimConfig, seed: int) -> Night:
    """The full night for ``plan``: hypnogram, beats, faults, motion, device stages and truth."""
    rng = _night_rng(seed, person.name, plan.index)
    hyp = _hypnogram(rng, plan, config)
    beats = generate_beats(rng, hyp, rhr_bpm=plan.rhr_bpm, rmssd_ms=plan.rmssd_ms,
                           resp_rate_bpm=plan.resp_rate_bpm)
    art = add_artefacts(rng, beats.times_s, config.faults)
    drops, contact = fault_intervals(rng, hyp, config.faults)
    motion = simulate_motion(rng, hyp) if config.motion or config.device_stages else None
    stages = device_stages(motion, plan.lights_out_ns) if config.device_stages and motion is not None else None
    truth = compute_truth(
        plan, hyp, beats.times_s,
        n_ectopic=art.n_ectopic, n_missed=art.n_missed,
        dropouts_s=drops, contact_s=contact,
        elemental_mg=config.dosing.elemental_mg if plan.dose else 0.0,
    )
    return Night(
        plan=plan,
        hypnogram=hyp,
        beats_s=beats.times_s,
        detected_s=art.times_s,
        dropouts_s=drops,
        contact_s=contact,
        motion=motion if config.motion else None,
        device_stages=stages,
        truth=truth,
    )
