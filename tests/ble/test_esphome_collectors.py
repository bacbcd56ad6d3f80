"""Several collectors, one store: two collectors' pipelines (own state dirs and outboxes) write one
person's night into one InfluxDB; the night is then computed once, as from one collector."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from collector.ble.session import PointBuffer
from collector.nights.run import compute_all
from collector.settings import InfluxSettings, NightsSettings, PersonSettings, Settings, StorageSettings
from collector.sim.backfill import night_points
from collector.sim.nights import plan_study
from collector.sim.params import SimConfig
from collector.sim.person import PersonProfile
from collector.storage.lineprotocol import Point
from collector.storage.pipeline import Pipeline
from tests.nights.simdata import END

NS = 1_000_000_000
OVERLAP_NS = 20 * 60 * NS


def settings_for(influx_server, db: str, state_dir: Path, person: PersonProfile) -> Settings:
    return Settings(influx=InfluxSettings(embedded=False, url=influx_server.url, database=db),
                    storage=StorageSettings(state_dir=state_dir),
                    persons=[PersonSettings(name=person.name, age=45, sex="male", timezone=person.timezone)],
                    nights=NightsSettings(compute_every_min=0))  # collectors never compute; one machine does


async def collect(settings: Settings, points: list[Point]) -> None:
    """What one collector's daemon does with its points: its own outbox, then InfluxDB."""
    async with Pipeline.from_settings(settings, name="ble") as pipe:
        for i in range(0, len(points), 5000):
            await pipe.put(points[i:i + 5000])
            await asyncio.sleep(0)  # interleave the two collectors' writes


async def test_two_collectors_one_person_one_store_one_night(influx_server, influx_db, tmp_path):
    person = PersonProfile.sample("sam", 4, age=45, sex="male")
    study = plan_study(person, 1, seed=4, end=END, config=SimConfig(device_stages=False, motion=False))
    night = study.night(0)
    points = [p for p in night_points(night, study, doses=False) if p.measurement in ("heart_rate", "rr")]
    mid = sorted(p.time_ns for p in points)[len(points) // 2]
    # The strap is served by the bedroom collector until 20 min after the middle of the night and by
    # the living-room one from 20 min before: in that overlap both deliver the same points (same
    # series, same time), as two collectors do with device-stamped data or an outbox sent twice.
    bedroom = [p for p in points if p.time_ns < mid + OVERLAP_NS]
    living = [p for p in points if p.time_ns >= mid - OVERLAP_NS]
    both = len(bedroom) + len(living) - len(points)
    assert both > 1000

    solo_db = f"{influx_db}_solo"
    influx_server.create_database(solo_db)
    try:
        merged = [settings_for(influx_server, influx_db, tmp_path / name, person) for name in ("bedroom", "living")]
        solo = settings_for(influx_server, solo_db, tmp_path / "solo", person)
        await asyncio.gather(collect(merged[0], bedroom), collect(merged[1], living), collect(solo, points))

        for db in (influx_db, solo_db):
            rr = influx_server.rows("SELECT count(rr_ms) FROM rr", db)[0]["count"]
            hr = influx_server.rows("SELECT count(bpm) FROM heart_rate", db)[0]["count"]
            assert (rr, hr) == (sum(p.measurement == "rr" for p in points),
                                sum(p.measurement == "heart_rate" for p in points))  # stored once each

        now = night.plan.lights_out_ns + 24 * 3600 * NS
        # nights compute runs once, on the machine the user chose (its own state dir)
        computer = settings_for(influx_server, influx_db, tmp_path / "computer", person)
        solo_run = settings_for(influx_server, solo_db, tmp_path / "solo-computer", person)
        assert (await compute_all(computer, since=night.plan.night, now_ns=now))[0].computed == 1
        assert (await compute_all(solo_run, since=night.plan.night, now_ns=now))[0].computed == 1
    finally:
        got = influx_server.rows("SELECT * FROM night GROUP BY *", influx_db)
        want = influx_server.rows("SELECT * FROM night GROUP BY *", solo_db)
        influx_server.drop_database(solo_db)
    assert len(got) == 1 and len(want) == 1
    assert got[0]["tst_min"] > 0 and got[0]["coverage_pct"] >= 80
    assert got == want  # merged from two collectors: the same night as from one


class _SlowSink:
    """A sink whose first put is still committing when the daemon stops the forwarder."""

    def __init__(self) -> None:
        self.points: list[Point] = []
        self.entered = asyncio.Event()
        self.calls = 0

    async def put(self, points) -> None:
        self.calls += 1
        if self.calls == 1:
            self.entered.set()
            await asyncio.sleep(3600)  # cancelled here
        self.points.extend(points)


async def test_points_in_flight_when_stopping_are_drained_not_lost():
    # Found by bench/bench_esphome.py (3 collectors): a batch being handed to storage when the
    # daemon stopped was dropped. Now drain() sends it.
    sink = _SlowSink()
    buffer = PointBuffer(sink, batch_s=0.0)
    forwarder = asyncio.create_task(buffer.run())
    points = [Point("heart_rate", {"person": "sam", "device": "h10"}, {"bpm": 60 + i}, i) for i in range(9)]
    buffer.add(points)
    await asyncio.wait_for(sink.entered.wait(), 5)
    forwarder.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await forwarder
    await buffer.drain()
    assert sink.points == points and buffer.forwarded == 9
