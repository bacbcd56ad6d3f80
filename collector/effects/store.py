"""Trial plans on disk: a small SQLite file under ``storage.state_dir`` (``plans.sqlite``).

The file is the source of truth for plans; ``trial_plan`` points in InfluxDB mirror it for the
dashboards. One plan per person is active at a time; replaced plans are kept, inactive.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import cast

import numpy as np

from collector.effects.planner import Design, PlanInfo, PlanSpec, draw
from collector.effects.tagging import night_time_ns
from collector.errors import StorageError, ValidationError
from collector.settings import Settings
from collector.storage.files import private_file
from collector.storage.lineprotocol import Point
from collector.storage.schema import TRIAL_PLAN

_SCHEMA = """
CREATE TABLE IF NOT EXISTS plan (
    plan_id TEXT PRIMARY KEY,
    person TEXT NOT NULL,
    design TEXT NOT NULL,
    start TEXT NOT NULL,
    weeks INTEGER NOT NULL,
    block_weeks INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    created_ns INTEGER NOT NULL,
    active INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS plan_night (
    plan_id TEXT NOT NULL REFERENCES plan(plan_id),
    night TEXT NOT NULL,
    magnesium INTEGER NOT NULL,
    PRIMARY KEY (plan_id, night)
);
CREATE INDEX IF NOT EXISTS plan_person ON plan(person, active);
"""


@dataclass(frozen=True, slots=True)
class StoredPlan:
    plan_id: str
    person: str
    spec: PlanSpec
    seed: int
    created_ns: int
    nights: dict[date, bool]

    def info(self) -> PlanInfo:
        return PlanInfo(self.spec, self.nights, self.plan_id)

    def points(self) -> list[Point]:
        """``trial_plan`` points, one per planned night, stamped 12:00 UTC of the evening."""
        return [
            Point(TRIAL_PLAN.name, {"person": self.person, "design": self.spec.design},
                  {"night": d.isoformat(), "magnesium": mg, "plan_id": self.plan_id}, night_time_ns(d))
            for d, mg in sorted(self.nights.items())
        ]


def new_plan(person: str, spec: PlanSpec, seed: int | None = None) -> StoredPlan:
    """Draw a plan (the seed is recorded so it can be re-drawn and audited)."""
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**31))  # type: ignore[operator]
    assignment = draw(spec, np.random.default_rng(seed))
    nights = {d: bool(a) for d, a in zip(spec.dates(), assignment, strict=True)}
    return StoredPlan(uuid.uuid4().hex[:12], person, spec, seed, time.time_ns(), nights)


def tonight(tz_now: datetime) -> date:
    """The evening a local time belongs to: before 06:00 it is still last night."""
    return (tz_now - timedelta(hours=6)).date()


class PlanStore:
    """SQLite-backed plans. Every call opens and closes its own connection."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def from_settings(cls, settings: Settings) -> PlanStore:
        return cls(settings.storage.path("plans.sqlite"))

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        try:
            private_file(self.path)  # 0600 in a 0700 state dir
            con = sqlite3.connect(self.path)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open the plan store {self.path}: {exc}; check "
                               "storage.state_dir") from exc
        try:
            con.executescript(_SCHEMA)
            with con:
                yield con
        except sqlite3.Error as exc:
            corrupt = type(exc) is sqlite3.DatabaseError  # "file is not a database", "malformed"
            advice = ("; it is left untouched: restore a copy, or move it aside (then 'magsleep plan' "
                      "starts a new plan)") if corrupt else ""
            raise StorageError(f"plan store {self.path}: {exc}{advice}") from exc
        finally:
            con.close()

    def save(self, plan: StoredPlan, *, replace: bool = False) -> StoredPlan | None:
        """Store ``plan`` as the person's active plan; returns the plan it replaced."""
        old = self.active(plan.person)
        if old is not None and not replace:
            raise ValidationError(
                f"{plan.person} already has an active plan ({old.plan_id}, {old.spec.design}, "
                f"from {old.spec.start}); pass --replace to start a new one"
            )
        with self._db() as con:
            con.execute("UPDATE plan SET active = 0 WHERE person = ?", (plan.person,))
            s = plan.spec
            con.execute(
                "INSERT INTO plan VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)",
                (plan.plan_id, plan.person, s.design, s.start.isoformat(), s.weeks, s.block_weeks,
                 plan.seed, plan.created_ns),
            )
            con.executemany(
                "INSERT INTO plan_night VALUES (?, ?, ?)",
                [(plan.plan_id, d.isoformat(), int(mg)) for d, mg in plan.nights.items()],
            )
        return old

    def active(self, person: str) -> StoredPlan | None:
        with self._db() as con:
            row = con.execute(
                "SELECT plan_id, person, design, start, weeks, block_weeks, seed, created_ns "
                "FROM plan WHERE person = ? AND active = 1 ORDER BY created_ns DESC LIMIT 1",
                (person,),
            ).fetchone()
            if row is None:
                return None
            nights = {
                date.fromisoformat(n): bool(m)
                for n, m in con.execute(
                    "SELECT night, magnesium FROM plan_night WHERE plan_id = ?", (row[0],)
                )
            }
        spec = PlanSpec(date.fromisoformat(row[3]), int(row[4]), cast(Design, row[2]), int(row[5]))
        return StoredPlan(row[0], row[1], spec, int(row[6]), int(row[7]), nights)
