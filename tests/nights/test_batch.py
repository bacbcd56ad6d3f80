"""Nights read and written in chunks give exactly the points of nights computed one by one.

Against the real InfluxDB: simulated nights of every kind of input the nights run reads (RR with
device stages and motion, RR alone for computed staging, heart-rate samples with device stages,
heart-rate samples alone), computed once in chunks (three nights a chunk, so chunk boundaries and
the read-ahead are crossed) and once a night per run, from an empty state each time.
"""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest

from collector.nights import run
from collector.nights.segment import NS, night_window
from collector.settings import InfluxSettings, PersonSettings, Settings, StorageSettings
from collector.sim.backfill import backfill
from collector.sim.nights import plan_study
from collector.sim.params import SimConfig
from collector.sim.person import PersonProfile
from tests.conftest import InfluxServer
from tests.nights.simdata import END

COMPUTED = "device =~ /^magsleep-/"


def _computed(server: InfluxServer, db: str) -> tuple[dict[tuple[Any, ...], dict[str, Any]], list[dict[str, Any]]]:
    nights = {(r["_tags"]["person"], r["night"]): r for r in server.rows("SELECT * FROM night GROUP BY *", db)}
    stages = server.rows(f"SELECT * FROM sleep_stage WHERE {COMPUTED} GROUP BY *", db)
    return nights, stages


def _forget(server: InfluxServer, db: str) -> None:
    server.query("DROP SERIES FROM night", db, method="POST")
    server.query(f"DROP SERIES FROM sleep_stage WHERE {COMPUTED}", db, method="POST")


async def test_chunked_nights_equal_nights_one_by_one(influx_server: InfluxServer, influx_db: str, tmp_path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    sam = PersonProfile.sample("sam", 4, age=45, sex="male")
    kim = PersonProfile.sample("kim", 7, age=38, sex="female")
    sam_study = plan_study(sam, 5, seed=5, end=END, config=SimConfig())  # RR, HR, motion, device stages
    kim_study = plan_study(kim, 2, seed=6, end=END, config=SimConfig(device_stages=False, motion=False))
    persons = [PersonSettings(name=p.name, age=p.age, sex=p.sex, timezone=p.timezone) for p in (sam, kim)]

    def settings(state: str) -> Settings:
        return Settings(influx=InfluxSettings(embedded=False, url=influx_server.url, database=influx_db),
                        storage=StorageSettings(state_dir=tmp_path / state), persons=persons)

    base = settings("load")
    await backfill(base, sam_study)
    await backfill(base, kim_study)
    # sam's 3rd night: heart-rate samples and device stages, no RR; the 4th: heart-rate samples only
    for k, what in ((2, ("rr",)), (3, ("rr", "sleep_stage"))):
        win = night_window(sam_study.plans[k].night, persons[0])
        for m in what:
            influx_server.query(f"DELETE FROM {m} WHERE person = 'sam' AND time >= {win.start_ns} AND "
                                f"time < {win.end_ns}", influx_db, method="POST")
    # heart rate in the afternoon between two windows belongs to no night
    gap = night_window(sam_study.plans[3].night, persons[0]).start_ns - 90 * 60 * NS
    lines = "\n".join(f"heart_rate,device=h10-sam,person=sam,source=device bpm=90i {gap + k * 60 * NS}"
                      for k in range(60))
    req = urllib.request.Request(f"{influx_server.url}/write?db={influx_db}&precision=ns", data=lines.encode(),
                                 method="POST")
    with urllib.request.urlopen(req, timeout=30):
        pass
    now = max(s.plans[-1].lights_out_ns for s in (sam_study, kim_study)) + 24 * 3600 * NS
    first = min(s.plans[0].night for s in (sam_study, kim_study))

    monkeypatch.setattr(run, "CHUNK_NIGHTS", 3)
    (tmp_path / "batch").mkdir()
    batch = await run.compute_all(settings("batch"), since=first, now_ns=now)
    assert [s.computed for s in batch] == [5, 2]
    chunked = _computed(influx_server, influx_db)

    _forget(influx_server, influx_db)
    assert _computed(influx_server, influx_db) == ({}, [])
    for study, p in ((sam_study, "sam"), (kim_study, "kim")):
        for plan in study.plans:
            state = f"one-{p}-{plan.night}"
            (tmp_path / state).mkdir()
            s = await run.compute_all(settings(state), person=p, since=plan.night, until=plan.night, now_ns=now)
            assert s[0].nights == [plan.night.isoformat()]
    one_by_one = _computed(influx_server, influx_db)

    assert chunked == one_by_one
    nights, stages = chunked
    assert len(nights) == 7
    staging = {k: r["_tags"]["staging"] for k, r in nights.items()}
    assert sorted(staging.values()) == ["computed", "computed", "device", "device", "device", "device", "none"]
    assert staging[("sam", sam_study.plans[3].night.isoformat())] == "none"  # heart-rate samples only
    assert staging[("sam", sam_study.plans[2].night.isoformat())] == "device"
    assert {r["_tags"]["person"] for r in stages} == {"kim"}
    assert len(stages) == sum(round(r["tib_min"] * 2) for (p, _), r in nights.items() if p == "kim")
