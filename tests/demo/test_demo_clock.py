"""The demo's nights at any hour: the last live night is always the latest one that is over.

A sweep over the hours of days around both DST changes and far east / west of UTC, without running
the demo itself (the end-to-end run in test_demo.py uses one injected "now").
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from collector.app.demo import PERSONS, READY_SLACK_MIN, DemoOptions, _plan_studies, live_data_end_ns, studies
from collector.settings import PersonSettings, Settings

NS = 1_000_000_000
HOUR = 3600 * NS


def _settings(tz_a: str, tz_b: str) -> Settings:
    return Settings(persons=[PersonSettings(name=p.name, age=p.age, sex=p.sex, timezone=tz)
                             for p, tz in zip(PERSONS, (tz_a, tz_b), strict=True)])


ZONES = [
    ("Europe/Madrid", "Europe/London"),  # the demo's own persons
    ("Pacific/Kiritimati", "Pacific/Pago_Pago"),  # UTC+14 and UTC-11
    ("America/New_York", "Australia/Sydney"),
]
DAYS = [date(2026, 3, 28), date(2026, 10, 31), date(2026, 6, 10)]  # EU spring-forward, US fall-back, summer


@pytest.mark.parametrize("live_hours", [1.0, None], ids=["first-hour", "whole-nights"])
@pytest.mark.parametrize(("tz_a", "tz_b"), ZONES, ids=[z[0] for z in ZONES])
def test_last_live_night_is_the_latest_night_over_at_every_hour(tz_a, tz_b, live_hours) -> None:
    settings = _settings(tz_a, tz_b)
    close_ns = round((settings.nights.close_after_min + READY_SLACK_MIN) * 60 * NS)
    for day in DAYS:
        start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * NS
        for h in range(0, 48):
            now = start + h * HOUR + 23 * 60 * NS
            opts = DemoOptions(directory=Path("unused"), nights=3, live_nights=2, seed=3, live_hours=live_hours,
                               now_ns=now)
            got = studies(settings, opts)
            ends = {name: s.plans[-1].night for name, s in got.items()}
            assert len(set(ends.values())) == 1  # one calendar for everybody
            for s in got.values():
                assert len(s) == 5
                over = live_data_end_ns(s, len(s) - 1, live_hours) + close_ns
                assert over <= now, (day, h)  # its data has ended and it has closed
                assert now - over < 2 * 24 * HOUR, (day, h)  # and it is recent
            # the next evening is not over yet for somebody: nothing later could have been played
            nxt = _plan_studies(settings, opts, next(iter(ends.values())) + timedelta(days=1))
            assert any(live_data_end_ns(s, len(s) - 1, live_hours) + close_ns > now for s in nxt.values())


def test_at_eight_in_the_morning_the_last_night_is_last_night() -> None:
    settings = _settings("Europe/Madrid", "Europe/London")
    from zoneinfo import ZoneInfo

    for day in DAYS:
        eight = datetime(day.year, day.month, day.day, 8, 0, tzinfo=ZoneInfo("Europe/London"))
        opts = DemoOptions(directory=Path("unused"), nights=3, live_nights=2, live_hours=1.0,
                           now_ns=int(eight.timestamp()) * NS)
        got = studies(settings, opts)
        assert {s.plans[-1].night for s in got.values()} == {day - timedelta(days=1)}


def test_lights_on_without_beats_is_the_generated_nights() -> None:
    settings = _settings("Europe/Madrid", "Europe/London")
    opts = DemoOptions(directory=Path("unused"), nights=2, live_nights=1, now_ns=1_790_000_000 * NS)
    for s in studies(settings, opts).values():
        assert [s.lights_on_ns(i) for i in range(len(s))] == [n.lights_on_ns for n in s.nights()]
