"""One day parser for --since (and --until, --start, a night's DATE), one moment parser for --at."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from collector.cli.common import DAY_FORMS, parse_at, parse_day, today_for
from collector.errors import ValidationError
from collector.settings import PersonSettings, Settings
from tests.cli.console import Console, flat

TODAY = date(2026, 3, 1)  # the day after a February (non-leap year): month ends are crossed


@pytest.mark.parametrize(("text", "expected"), [
    ("today", date(2026, 3, 1)),
    ("Today ", date(2026, 3, 1)),
    ("yesterday", date(2026, 2, 28)),
    ("0d", date(2026, 3, 1)),
    ("1d", date(2026, 2, 28)),
    ("7d", date(2026, 2, 22)),
    ("7D", date(2026, 2, 22)),
    ("60d", date(2025, 12, 31)),
    ("2026-11-20", date(2026, 11, 20)),
    ("2024-02-29", date(2024, 2, 29)),
])
def test_day_forms(text: str, expected: date) -> None:
    assert parse_day(text, TODAY) == expected


@pytest.mark.parametrize("text", ["", "7", "d", "-3d", "7 days", "last week", "2026-02-30", "20.11.2026",
                                  "tomorrow"])
def test_bad_day_says_what_to_give(text: str) -> None:
    with pytest.raises(ValidationError) as exc:
        parse_day(text, TODAY, "--until")
    assert str(exc.value) == f"--until {text!r}: give {DAY_FORMS}"


def test_today_is_where_the_person_lives() -> None:
    s = Settings(persons=[PersonSettings(name="kai", timezone="Pacific/Kiritimati"),
                          PersonSettings(name="lea", timezone="Pacific/Pago_Pago")])
    now = datetime(2026, 6, 15, 12, 30, tzinfo=UTC)  # 02:30 on the 16th at +14, 01:30 on the 15th at -11
    assert today_for(s, "kai", now) == date(2026, 6, 16)
    assert today_for(s, "lea", now) == date(2026, 6, 15)
    one = Settings(persons=[PersonSettings(name="kai", timezone="Pacific/Kiritimati")])
    assert today_for(one, None, now) == date(2026, 6, 16)  # the only person


BERLIN = ZoneInfo("Europe/Berlin")


def _berlin(y: int, mo: int, d: int, h: int, mi: int) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=BERLIN)


@pytest.mark.parametrize(("text", "now", "expected"), [
    ("21:30", _berlin(2026, 11, 20, 21, 35), _berlin(2026, 11, 20, 21, 30)),
    ("7:05", _berlin(2026, 11, 20, 21, 35), _berlin(2026, 11, 20, 7, 5)),
    ("21:45", _berlin(2026, 11, 20, 21, 35), _berlin(2026, 11, 20, 21, 45)),  # 10 min ahead: a slow clock
    ("21:46", _berlin(2026, 11, 20, 21, 35), _berlin(2026, 11, 19, 21, 46)),  # further ahead: yesterday's
    ("23:10", _berlin(2026, 11, 21, 0, 30), _berlin(2026, 11, 20, 23, 10)),  # typed after midnight
    ("23:10", datetime(2026, 11, 20, 23, 30, tzinfo=UTC), _berlin(2026, 11, 20, 23, 10)),  # now in another zone
    ("01:30", _berlin(2026, 3, 29, 4, 0), _berlin(2026, 3, 29, 1, 30)),  # the night the clocks go forward
    ("2026-11-20 22:10", _berlin(2026, 11, 25, 9, 0), _berlin(2026, 11, 20, 22, 10)),
    ("2026-11-20T22:10", _berlin(2026, 11, 25, 9, 0), _berlin(2026, 11, 20, 22, 10)),
    ("2026-11-20T22:10+00:00", _berlin(2026, 11, 25, 9, 0), datetime(2026, 11, 20, 22, 10, tzinfo=UTC)),
])
def test_at_forms(text: str, now: datetime, expected: datetime) -> None:
    got = parse_at(text, BERLIN, now)
    assert got == expected
    assert got.utcoffset() is not None
    assert got <= now + timedelta(minutes=10) or "-" in text  # a clock time is never far in the future


@pytest.mark.parametrize(("text", "phrase"), [("25:99", "hours 0-23 and minutes 0-59"), ("24:00", "hours 0-23"),
                                              ("yesterday-ish", "use HH:MM (e.g. 21:30) or 'YYYY-MM-DD HH:MM'"),
                                              ("2130", "use HH:MM")])
def test_bad_at_says_what_to_give(text: str, phrase: str) -> None:
    with pytest.raises(ValidationError) as exc:
        parse_at(text, BERLIN, _berlin(2026, 11, 20, 21, 35))
    assert str(exc.value).startswith(f"--at {text!r}: ")
    assert phrase in str(exc.value)


@pytest.mark.parametrize("argv", [
    ["dose", "list", "--since", "lastweek"],
    ["dose", "export", "--since", "lastweek"],
    ["night", "tags", "--since", "lastweek"],
    ["nights", "--since", "lastweek"],
    ["nights", "compute", "--since", "lastweek"],
    ["effects", "--since", "lastweek"],
])
def test_every_since_gives_the_same_advice(console: Console, argv: list[str]) -> None:
    res = console.run(*argv)
    assert res.returncode == 2, res.stdout + res.stderr
    assert f"--since 'lastweek': give {DAY_FORMS}" in flat(res.stderr)


def test_since_forms_through_the_console_script(console: Console) -> None:
    for argv in (["dose", "list", "--since", "7d"], ["dose", "list", "--since", "yesterday"],
                 ["dose", "list", "--since", "2026-11-01"], ["dose", "list", "--since", "2026-11-01 21:30"],
                 ["night", "tags", "--since", "today"], ["night", "tags", "--since", "30d"]):
        res = console.run(*argv)
        assert res.returncode == 0, (argv, res.stderr)
