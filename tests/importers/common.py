"""Shared pieces of the importer tests: settings on the test InfluxDB, simulated nights as app files."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from collector.importers.base import ImportContext
from collector.importers.run import ImportSummary, run_import
from collector.settings import InfluxSettings, PersonSettings, Settings, StorageSettings
from collector.sim.nights import Night, Study, plan_study
from collector.sim.params import Dosing, Faults, SimConfig
from collector.sim.person import PersonProfile

FIXTURES = Path(__file__).parent / "fixtures"
NS = 1_000_000_000
TZ = "Europe/Berlin"
#: The clock of every test: long after the fixtures' nights (tests pass at any hour).
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def settings(influx_server: Any, db: str, state: Path, tz: str = TZ) -> Settings:
    return Settings(
        influx=InfluxSettings(embedded=False, url=influx_server.url, database=db),
        storage=StorageSettings(state_dir=state),
        persons=[PersonSettings(name="alice", age=40, sex="female", timezone=tz)],
    )


def ctx(tz: str = TZ, **kw: Any) -> ImportContext:
    return ImportContext(person="alice", tz=ZoneInfo(tz), **kw)


def sim_night(last: date, *, seed: int = 3, tz: str = TZ) -> tuple[Study, Night]:
    """One clean simulated night (RR from a strap, no device stages) for the evening ``last``."""
    person = PersonProfile.sample("alice", seed, age=40, sex="female", timezone=tz)
    cfg = SimConfig(device_stages=False, motion=False, faults=Faults.none(), dosing=Dosing(design="blocks"))
    study = plan_study(person, 1, seed=seed, end=last, config=cfg)
    return study, study.night(0)


async def do_import(s: Settings, kind: str, path: Path | str, **kw: Any) -> ImportSummary:
    kw.setdefault("now", lambda: NOW)
    return await run_import(s, kind, str(path), **kw)


def count(influx_server: Any, db: str, q: str) -> int:
    rows = influx_server.rows(q, db)
    return int(sum(int(r.get("count") or 0) for r in rows))
