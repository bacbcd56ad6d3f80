"""A night is ready soon after the person gets up, whatever the hour, time zone or DST change.

Each case writes one simulated night into the real InfluxDB and then runs ``compute_all`` hour by
hour across the night's whole window (with one state file, as ``magsleep run`` would): inputs later
than the injected "now" are not read, exactly as if they had not arrived yet.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pytest

from collector.doses.entities import LightsEvent
from collector.doses.points import lights_tag_point
from collector.nights.run import compute_all
from collector.nights.segment import night_window
from collector.nights.state import NightState, state_path
from collector.settings import InfluxSettings, NightsSettings, PersonSettings, Settings, StorageSettings
from collector.sim.backfill import backfill
from collector.sim.hypnogram import WAKE
from collector.sim.nights import Night, Study, plan_study
from collector.sim.params import SimConfig
from collector.sim.person import PersonProfile
from collector.storage.pipeline import Pipeline

NS = 1_000_000_000
HOUR = 3600 * NS
CLOSE_AFTER_MIN = 30.0
METRICS = ("tst_min", "sol_min", "waso_min", "se_pct", "lights_out", "lights_on", "hr_mean_bpm", "rmssd_ms")


def _settings(influx_server: Any, db: str, tmp: Any, person: PersonProfile) -> Settings:
    return Settings(
        influx=InfluxSettings(embedded=False, url=influx_server.url, database=db),
        storage=StorageSettings(state_dir=tmp),
        persons=[PersonSettings(name=person.name, age=person.age, sex=person.sex, timezone=person.timezone)],
        nights=NightsSettings(close_after_min=CLOSE_AFTER_MIN),
    )


def _study(tz: str, evening: date) -> Study:
    person = PersonProfile.sample("zoe", 5, age=40, sex="female", timezone=tz)
    return plan_study(person, 1, seed=5, end=evening, config=SimConfig(device_stages=False, motion=False))


def _rows(influx_server: Any, db: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = influx_server.rows("SELECT * FROM night GROUP BY *", db)
    return rows


def _last_sleep_ns(night: Night) -> int:
    asleep = np.flatnonzero(night.hypnogram != WAKE)
    return night.lights_out_ns + (int(asleep[-1]) + 1) * 30 * NS


# far east and far west of UTC, and the nights of both DST changes (Europe: spring; America: autumn)
CASES = [
    ("Pacific/Kiritimati", date(2026, 6, 10)),  # UTC+14
    ("Pacific/Pago_Pago", date(2026, 6, 10)),  # UTC-11
    ("Europe/Madrid", date(2026, 3, 28)),  # clocks go forward at 02:00 that night
    ("America/New_York", date(2026, 10, 31)),  # clocks go back at 02:00 that night
]


@pytest.mark.parametrize(("tz", "evening"), CASES, ids=[c[0] for c in CASES])
async def test_hour_sweep_night_closes_after_getting_up(tz, evening, influx_server, influx_db, tmp_path) -> None:
    study = _study(tz, evening)
    settings = _settings(influx_server, influx_db, tmp_path, study.person)
    await backfill(settings, study)
    night = study.night(0)
    win = night_window(evening, settings.persons[0])
    up = _last_sleep_ns(night) + round(CLOSE_AFTER_MIN * 60 * NS)
    seen: list[tuple[int, dict[str, Any] | None]] = []
    now = win.start_ns + 17 * 60 * NS  # an odd minute past each hour
    while now < win.end_ns + 2 * HOUR:
        await compute_all(settings, now_ns=now)
        rows = _rows(influx_server, influx_db)
        assert len(rows) <= 1
        seen.append((now, rows[0] if rows else None))
        now += HOUR
    for t, row in seen:
        if t < night.lights_out_ns:
            assert row is None, "no night before the person went to bed"
        if t >= up + HOUR and t < win.end_ns:  # up for over an hour: shown, provisional
            assert row is not None and row["provisional"] is True, (t, row)
        if t >= win.end_ns:
            assert row is not None and row["provisional"] is False
    first = next(t for t, row in seen if row is not None)
    assert first >= night.lights_out_ns + 2 * HOUR, "closed in the middle of the night"
    # once shown, never gone; and the numbers of the provisional night are the final night's
    shown = [row for t, row in seen if t >= first]
    assert all(row is not None for row in shown)
    final = shown[-1]
    assert final is not None
    after_up = [row for t, row in seen if up + HOUR <= t < win.end_ns]
    assert after_up, "the sweep covered the morning"
    for row in after_up:
        assert row is not None
        for k in METRICS:
            assert row[k] == pytest.approx(final[k], rel=1e-9, abs=1e-9), k
    # the same as computing it once, long after, with a fresh state
    state_path(settings).unlink()
    influx_server.query('DROP MEASUREMENT "night"', influx_db, method="POST")
    await compute_all(settings, now_ns=win.end_ns + 5 * 24 * HOUR)
    again = _rows(influx_server, influx_db)
    assert len(again) == 1 and again[0]["provisional"] is False
    for k in METRICS:
        assert again[0][k] == pytest.approx(final[k], rel=1e-9, abs=1e-9), k


async def test_lights_on_tag_closes_the_night_at_once(influx_server, influx_db, tmp_path) -> None:
    study = _study("Europe/Berlin", date(2026, 11, 20))
    settings = _settings(influx_server, influx_db, tmp_path, study.person)
    await backfill(settings, study)
    night = study.night(0)
    win = night_window(night.plan.night, settings.persons[0])
    # 10 minutes after lights out: too little signal and sleep (if any) too recent to close by the data
    t = night.lights_out_ns + 10 * 60 * NS
    s = (await compute_all(settings, now_ns=t))[0]
    assert (s.computed, s.pending) == (0, 1)
    assert _rows(influx_server, influx_db) == []
    # she gets up again and taps "Lights on" (a minute ago): the night closes at the next run
    at = t - 60 * NS
    async with Pipeline.from_settings(settings, name="test") as pipe:
        await pipe.put([lights_tag_point("zoe", night.plan.night, LightsEvent.lights_on, at)])
        await pipe.flush(timeout=30)
    s = (await compute_all(settings, now_ns=t))[0]
    assert (s.computed, s.provisional, s.pending) == (1, 1, 0)
    row = _rows(influx_server, influx_db)[0]
    assert row["provisional"] is True
    epoch = 30 * NS
    assert row["lights_on"] == win.start_ns + -(-(at - win.start_ns) // epoch) * epoch


async def test_quiet_wearable_closes_without_new_data(influx_server, influx_db, tmp_path) -> None:
    """The strap comes off after waking: no new point, yet the night closes once enough time passed."""
    study = _study("UTC", date(2026, 11, 20))
    settings = _settings(influx_server, influx_db, tmp_path, study.person)
    await backfill(settings, study)
    night = study.night(0)
    # the strap stops in the middle of 45 minutes of unbroken (true) sleep, 3 or more hours in: what
    # the staging makes of the last minutes decides when it closes, but it is not over at once
    asleep = night.hypnogram != WAKE
    run = np.convolve(asleep.astype(int), np.ones(90, dtype=int), "valid") == 90  # 90 epochs all asleep
    i = 360 + int(np.argmax(run[360:])) + 90
    data_end = night.lights_out_ns + i * 30 * NS
    for m in ("rr", "heart_rate"):
        influx_server.query(f'DELETE FROM "{m}" WHERE time > {data_end}', influx_db, method="POST")
    s = (await compute_all(settings, now_ns=data_end + 60 * NS))[0]
    assert (s.computed, s.pending) == (0, 1)
    state = NightState(state_path(settings))
    ready_at = state.get("zoe")[night.plan.night.isoformat()].ready_at_ns
    state.close()
    assert data_end + 60 * NS < ready_at <= data_end + round(CLOSE_AFTER_MIN * 60 * NS) + 30 * NS  # (epoch grid)
    s = (await compute_all(settings, now_ns=ready_at - NS))[0]  # nothing new, not yet time
    assert (s.computed, s.pending, s.unchanged) == (0, 1, 0)
    s = (await compute_all(settings, now_ns=ready_at))[0]
    assert (s.computed, s.provisional) == (1, 1)
    s = (await compute_all(settings, now_ns=ready_at + HOUR))[0]
    assert (s.computed, s.unchanged) == (0, 1)  # written once; the same data is not recomputed
    # the window ends: written once more, no longer provisional
    end = night_window(night.plan.night, settings.persons[0]).end_ns
    s = (await compute_all(settings, now_ns=end + 60 * NS))[0]
    assert (s.computed, s.provisional) == (1, 0)
    assert _rows(influx_server, influx_db)[0]["provisional"] is False


def test_closes_at_rules() -> None:
    """Lights on, sleep end + close_after, or (no sleep found in 30+ min of signal) signal end + close_after."""
    from collector.nights.compute import NightInputs, NightResult, closes_at
    from collector.nights.segment import NightWindow

    win = NightWindow(date(2026, 11, 20), 0, 20 * HOUR)
    after = 30 * 60 * NS

    def res(sleep_end: int | None, span: tuple[int, int] | None) -> NightResult:
        return NightResult("2026-11-20", 0, 0, "estimate", "computed", None, {}, False, None, sleep_end, span)

    plain = NightInputs(window=win)
    tagged = NightInputs(window=win, lights_on_tag_ns=7 * HOUR)
    assert closes_at(res(None, None), plain, after) is None  # nothing yet
    assert closes_at(res(6 * HOUR, (0, 8 * HOUR)), plain, after) == 6 * HOUR + after
    assert closes_at(res(6 * HOUR, (0, 8 * HOUR)), tagged, after) == 6 * HOUR + after  # the earlier one
    assert closes_at(res(None, None), tagged, after) == 7 * HOUR
    # staging found no sleep: an hour of signal then the strap came off -> closes after it ended
    assert closes_at(res(None, (HOUR, 2 * HOUR)), plain, after) == 2 * HOUR + after
    # but not for a few minutes of signal (a strap tried on in the evening)
    assert closes_at(res(None, (HOUR, HOUR + 10 * 60 * NS)), plain, after) is None
