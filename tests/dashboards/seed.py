"""Points following collector/storage/schema.py, for checking dashboard and report queries.

Alice has 14 nights (even nights magnesium, odd nights control), the last one with device and
computed stages, heart rate, RR intervals and a dose; effects, a trial plan and device status.
Bob has one night and a device, so person filters can be checked.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from collector.settings import InfluxSettings, PersonSettings, Settings, StorageSettings
from collector.storage.lineprotocol import Point
from collector.storage.pipeline import Pipeline
from collector.storage.schema import validate_point

S = 1_000_000_000
FIRST_NIGHT = date(2026, 11, 1)
N_NIGHTS = 14
DEVICE = "h10-alice"
BOB_DEVICE = "pinetime-bob"
EFFECTS = {  # metric -> (estimate, ci_low, ci_high, prob_benefit)
    "sol_min": (-6.5, -11.0, -2.0, 0.97),
    "tst_min": (12.0, -3.0, 27.0, 0.88),
    "waso_min": (-3.0, -8.0, 2.0, 0.85),
    "deep_pct": (1.5, -0.5, 3.5, 0.91),
}
BEFORE_AFTER = {"sol_min": (-4.0, -9.0, 1.0, 0.9)}
VERDICT = "For you, magnesium nights: fell asleep 6.5 min faster (clear), total sleep no clear change."
NEXT_STEP = "Next: about 40 more nights of the current plan to tell a 10-minute change in total sleep."


def ns(dt: datetime) -> int:
    return int(dt.timestamp()) * S


def night_stamp(d: date) -> int:
    return ns(datetime(d.year, d.month, d.day, 12, tzinfo=UTC))


@dataclass
class Seed:
    points: list[Point] = field(default_factory=list)
    nights: list[date] = field(default_factory=list)
    tst: dict[date, float] = field(default_factory=dict)
    stages_device: list[int] = field(default_factory=list)
    stages_computed: list[int] = field(default_factory=list)
    last_lights_out_ns: int = 0
    last_lights_on_ns: int = 0
    dose_times_ns: list[int] = field(default_factory=list)
    hr_bpm: int = 55
    rr_ms: tuple[float, float] = (1000.0, 1040.0)

    @property
    def last_night(self) -> date:
        return self.nights[-1]


def build_seed() -> Seed:
    s = Seed()
    add = s.points.append
    for i in range(N_NIGHTS):
        d = FIRST_NIGHT + timedelta(days=i)
        s.nights.append(d)
        mg = i % 2 == 0
        lights_out = datetime(d.year, d.month, d.day, 22, 30, tzinfo=UTC)
        lights_on = lights_out + timedelta(hours=8)
        tst = 400.0 + i
        s.tst[d] = tst
        add(Point("night", {"person": "alice", "dose": "magnesium" if mg else "control", "staging": "computed"}, {
            "night": d.isoformat(), "lights_out": ns(lights_out), "lights_on": ns(lights_on),
            "tib_min": 480.0, "tst_min": tst, "sol_min": 10.0 + (0 if mg else 6), "waso_min": 30.0,
            "se_pct": tst / 4.8, "awakenings": 3, "deep_pct": 18.0, "rem_pct": 22.0, "hr_mean_bpm": 55.0,
            "rmssd_ms": 40.0, "coverage_pct": 95.0 - i, "flagged": False, "elemental_mg": 200.0 if mg else 0.0,
            "form": "glycinate" if mg else "",
        }, night_stamp(d)))
        add(Point("trial_plan", {"person": "alice", "design": "randomised"},
                  {"night": d.isoformat(), "magnesium": mg, "plan_id": "p1"}, night_stamp(d)))
        if mg:
            t = ns(lights_out - timedelta(hours=1))
            s.dose_times_ns.append(t)
            add(Point("supplement_dose", {"person": "alice", "supplement": "magnesium", "form": "glycinate",
                                          "source": "cli"},
                      {"dose_id": f"dose-{i}", "amount_mg": 1400.0, "elemental_mg": 200.0, "note": ""}, t))
        s.last_lights_out_ns, s.last_lights_on_ns = ns(lights_out), ns(lights_on)
    add(Point("night_tag", {"person": "alice", "tag": "alcohol"}, {"night": s.nights[3].isoformat(), "value": True},
              night_stamp(s.nights[3])))
    # The last night in detail: 30-s stages (device: a simple cycle; computed: shifted by one).
    cycle = [0, 1, 1, 2, 2, 1, 3, 3]
    for k in range(8 * 120):
        t = s.last_lights_out_ns + k * 30 * S
        dev = cycle[(k // 20) % len(cycle)]
        comp = cycle[(k // 20 + 1) % len(cycle)]
        s.stages_device.append(dev)
        s.stages_computed.append(comp)
        add(Point("sleep_stage", {"person": "alice", "source": "device", "device": DEVICE},
                  {"stage": "x", "stage_code": dev, "epoch_s": 30}, t))
        add(Point("sleep_stage", {"person": "alice", "source": "computed", "device": "sleepecg"},
                  {"stage": "x", "stage_code": comp, "epoch_s": 30, "probability": 0.8}, t))
    for k in range(0, 8 * 3600, 5):
        t = s.last_lights_out_ns + k * S
        add(Point("heart_rate", {"person": "alice", "device": DEVICE, "source": "device"},
                  {"bpm": s.hr_bpm, "contact": True}, t))
        add(Point("rr", {"person": "alice", "device": DEVICE, "source": "device"},
                  {"rr_ms": s.rr_ms[(k // 5) % 2]}, t))
    last = s.last_night
    now_ns = ns(datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1, hours=8))
    for j, (state, batt) in enumerate([("connecting", 90), ("connected", 88), ("backoff", 80), ("connected", 79)]):
        add(Point("device_status", {"person": "alice", "device": DEVICE}, {
            "state": state, "connected": state == "connected", "reconnects": j // 2, "battery_pct": batt,
            "rssi_dbm": -60, "notify_rate": 1.0, "model": "H10", "firmware": "5.0"}, now_ns - (4 - j) * 3600 * S))
    for metric, (est, lo, hi, pb) in EFFECTS.items():
        add(Point("effect", {"person": "alice", "metric": metric, "comparison": "mg_vs_control"}, {
            "estimate": est, "ci_low": lo, "ci_high": hi, "prob_benefit": pb, "n_mg": 7, "n_control": 7,
            "nights_needed": 20, "reported": True, "unit": "min", "summary": f"{metric} summary", "p_adj": 0.04,
        }, now_ns))
    add(Point("effect_verdict", {"person": "alice", "comparison": "mg_vs_control"}, {
        "headline": VERDICT, "next_step": NEXT_STEP, "source": "computed", "order": ",".join(EFFECTS)}, now_ns))
    for metric, (est, lo, hi, pb) in BEFORE_AFTER.items():
        add(Point("effect", {"person": "alice", "metric": metric, "comparison": "before_after"}, {
            "estimate": est, "ci_low": lo, "ci_high": hi, "prob_benefit": pb, "n_mg": 7, "n_control": 7}, now_ns))
    # Bob: one night, a device, a dose and an effect, all of which alice's panels must not show.
    d = s.last_night
    add(Point("night", {"person": "bob", "dose": "magnesium", "staging": "device"},
              {"night": d.isoformat(), "tst_min": 999.0, "coverage_pct": 50.0}, night_stamp(d)))
    add(Point("device_status", {"person": "bob", "device": BOB_DEVICE}, {"state": "connected", "battery_pct": 5},
              now_ns))
    add(Point("heart_rate", {"person": "bob", "device": BOB_DEVICE, "source": "device"}, {"bpm": 99},
              s.last_lights_out_ns))
    add(Point("effect", {"person": "bob", "metric": "sol_min", "comparison": "mg_vs_control"},
              {"estimate": 99.0, "ci_low": 98.0, "ci_high": 100.0}, now_ns))
    add(Point("supplement_dose", {"person": "bob", "supplement": "magnesium", "form": "citrate", "source": "cli"},
              {"dose_id": "bob-1", "elemental_mg": 150.0}, s.last_lights_out_ns))
    for p in s.points:
        validate_point(p)
    return s


def settings_for(url: str, database: str, state_dir: Path) -> Settings:
    return Settings(
        influx=InfluxSettings(embedded=False, url=url, database=database),
        storage=StorageSettings(state_dir=state_dir),
        persons=[PersonSettings(name="alice"), PersonSettings(name="bob")],
    )


def write(settings: Settings, seed: Seed) -> None:
    async def run() -> None:
        async with Pipeline.from_settings(settings) as pipe:
            await pipe.put(seed.points)
            await pipe.flush(timeout=60)

    asyncio.run(run())
