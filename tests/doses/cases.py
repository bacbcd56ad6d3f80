"""Validation cases shared by the CLI and API tests: every rule once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

BERLIN = ZoneInfo("Europe/Berlin")


def _local(dt: datetime) -> str:
    return dt.astimezone(BERLIN).strftime("%Y-%m-%d %H:%M")


@dataclass(frozen=True)
class Case:
    name: str
    body: dict[str, Any]  # API body (person alice unless given)
    cli: list[str]  # arguments after `dose add`
    field: str
    phrase: str  # part of the reason that says what to fix


def cases() -> list[Case]:
    now = datetime.now(UTC)
    future = now + timedelta(hours=2)
    old = now - timedelta(days=400)
    return [
        Case("zero amount", {"amount_mg": 0}, ["0", "-p", "alice"], "amount_mg",
             "must be more than 0"),
        Case("negative amount", {"amount_mg": -5}, ["-p", "alice", "--", "-5"], "amount_mg",
             "must be more than 0"),
        Case("above ceiling (computed)", {"amount_mg": 4000, "form": "oxide"},
             ["4000", "--form", "oxide", "-p", "alice"], "amount_mg",
             "above the ceiling of 2000 mg"),
        Case("above ceiling (given)", {"amount_mg": 9000, "form": "citrate", "elemental_mg": 2500},
             ["9000", "--form", "citrate", "--elemental", "2500", "-p", "alice"], "elemental_mg",
             "above the ceiling of 2000 mg"),
        Case("elemental above amount", {"amount_mg": 100, "elemental_mg": 150},
             ["100", "--elemental", "150", "-p", "alice"], "elemental_mg",
             "cannot exceed the amount of the compound"),
        Case("in the future", {"amount_mg": 300, "taken_at": future.isoformat()},
             ["300", "--at", _local(future), "-p", "alice"], "taken_at",
             "more than 10 minutes in the future"),
        Case("over a year back", {"amount_mg": 300, "taken_at": old.isoformat()},
             ["300", "--at", _local(old), "-p", "alice"], "taken_at",
             "more than a year back"),
        Case("unknown form", {"amount_mg": 300, "form": "carbonatex"},
             ["300", "--form", "carbonatex", "-p", "alice"], "form",
             "unknown form 'carbonatex'; use one of: glycinate, bisglycinate, citrate, oxide, "
             "threonate, malate, taurate, chloride, sulfate, other"),
        Case("unknown person", {"amount_mg": 300, "person": "carol"},
             ["300", "-p", "carol"], "person",
             "unknown person 'carol'; use one of: alice, bob"),
        Case("person missing with two configured", {"amount_mg": 300, "person": None},
             ["300"], "person", "is required when more than one person is configured"),
        Case("other form without elemental", {"amount_mg": 300, "form": "other"},
             ["300", "--form", "other", "-p", "alice"], "elemental_mg",
             "give the elemental magnesium from the label"),
    ]


def api_body(c: Case) -> dict[str, Any]:
    body = {"person": "alice", **c.body}
    if body.get("person") is None:
        body.pop("person")
    return body
