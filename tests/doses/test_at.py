"""The one ``--at`` parser (collector.doses.rules.parse_at) and its agreement with what a dose accepts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from collector.doses.entities import DoseCreate, DoseValidationError
from collector.doses.rules import AT_AHEAD, FUTURE_TOLERANCE, Rules, build_dose, parse_at
from collector.errors import ValidationError
from collector.settings import PersonSettings, Settings, StorageSettings

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


def test_a_clock_time_read_as_today_is_a_time_a_dose_accepts(tmp_path: Path) -> None:
    """The parser's tolerance ahead is the rule's: at its edge the dose is accepted, one minute later
    the clock time is yesterday's (and so accepted too), never refused as in the future."""
    assert AT_AHEAD == FUTURE_TOLERANCE
    now = _berlin(2026, 11, 20, 21, 35)
    rules = Rules(Settings(storage=StorageSettings(state_dir=tmp_path),
                           persons=[PersonSettings(name="alice", timezone="Europe/Berlin")]), now=lambda: now)
    edge = rules.at("21:45", None)
    assert edge == _berlin(2026, 11, 20, 21, 45)
    assert build_dose(DoseCreate(amount_mg=300, taken_at=edge), rules).taken_at == edge
    assert rules.at("21:46", "alice") == _berlin(2026, 11, 19, 21, 46)
    with pytest.raises(DoseValidationError, match="more than 10 minutes in the future"):
        build_dose(DoseCreate(amount_mg=300, taken_at=edge + timedelta(minutes=1)), rules)
