"""One day parser for --since (and --until, --start, a night's DATE); --at is tests/doses/test_at.py."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from collector.cli.common import DAY_FORMS, parse_day, today_for
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
