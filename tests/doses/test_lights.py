"""Lights out / lights on through the dose API and CLI, against the real InfluxDB.

A lights out posted to the API becomes the ``night_tag`` point the nights computation reads;
it survives InfluxDB being down; re-posting is idempotent; removal writes ``value=false``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from collector.doses.api import create_app
from collector.doses.entities import DoseValidationError, LightsEvent
from collector.doses.lights import night_for, person_settings
from collector.doses.points import lights_tag_point, to_ns
from collector.nights.run import compute_all
from collector.nights.segment import lights_from_tags, night_window
from collector.nights.stages import EPOCH_S
from collector.settings import ApiSettings, InfluxSettings, PersonSettings, Settings, StorageSettings
from collector.sim.backfill import backfill
from collector.sim.nights import Study, plan_study
from collector.sim.params import Dosing, SimConfig
from collector.sim.person import PersonProfile
from collector.storage.lineprotocol import Point
from tests.doses.conftest import TOKEN, auth, make_settings, pipeline_of, service_of
from tests.doses.test_cli import cli

Client = TestClient[web.Request, web.Application]
NS = 1_000_000_000
EPOCH_NS = EPOCH_S * NS
BERLIN = ZoneInfo("Europe/Berlin")


def tag_rows(influx_server: Any, db: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = influx_server.rows("SELECT * FROM night_tag GROUP BY *", db)
    return rows


def last_evening(hh: int, mm: int, days_back: int = 1, tz: ZoneInfo = BERLIN) -> datetime:
    """hh:mm local time ``days_back`` days ago (an evening time: inside that night's window)."""
    day = datetime.now(tz).date() - timedelta(days=days_back)
    return datetime.combine(day, time(hh, mm), tzinfo=tz)


# -- the nights computation uses what the API recorded ---------------------------------------


@pytest.fixture
def sim(influx_server: Any, influx_db: str, tmp_path: Path) -> tuple[Settings, Study]:
    person = PersonProfile.sample("sam", 4, age=45, sex="male")
    cfg = SimConfig(device_stages=False, motion=False, dosing=Dosing(design="none"))
    end = datetime.now(UTC).date() - timedelta(days=3)  # within the year the journal accepts
    study = plan_study(person, 1, seed=4, end=end, config=cfg)
    settings = Settings(
        influx=InfluxSettings(embedded=False, url=influx_server.url, database=influx_db),
        storage=StorageSettings(state_dir=tmp_path / "state", flush_interval_s=0.05,
                                max_retry_backoff_s=0.5),
        persons=[PersonSettings(name="sam", age=45, sex="male", timezone=person.timezone)],
        api=ApiSettings(tokens=[SecretStr(TOKEN)]),
    )
    return settings, study


@pytest.fixture
async def sim_client(sim: tuple[Settings, Study]) -> AsyncIterator[Client]:
    async with TestClient(TestServer(create_app(sim[0]), host="127.0.0.1")) as c:
        yield c


async def test_api_lights_drive_the_nights_computation(
    sim: tuple[Settings, Study], sim_client: Client, influx_server: Any, influx_db: str
) -> None:
    settings, study = sim
    plan = study.plans[0]
    await backfill(settings, study)
    now_ns = plan.lights_out_ns + 24 * 3600 * NS
    first = (await compute_all(settings, since=plan.night, now_ns=now_ns))[0]
    assert first.computed == 1

    tz = ZoneInfo(settings.persons[0].timezone)
    out_at = datetime.fromtimestamp(plan.lights_out_ns // NS - 617, tz)  # off the 30-s grid
    on_at = datetime.fromtimestamp(plan.lights_out_ns // NS + 7 * 3600 + 1817, tz)
    r = await sim_client.post("/api/v1/lights", headers=auth(),
                              json={"event": "lights_out", "at": out_at.isoformat()})
    assert r.status == 201, await r.text()
    body = await r.json()
    assert (body["person"], body["night"], body["event"]) == ("sam", plan.night.isoformat(), "lights_out")
    assert datetime.fromisoformat(body["at"]) == out_at
    r = await sim_client.post("/api/v1/lights", headers=auth(),
                              json={"person": "sam", "event": "lights_on", "at": on_at.isoformat()})
    assert r.status == 201, await r.text()
    await pipeline_of(sim_client).flush(timeout=60)

    # exactly the points the CLI writes (one per night and tag, at 12:00 UTC of the night)
    ps = person_settings(settings, "sam")
    rows = tag_rows(influx_server, influx_db)
    want = {p.tags["tag"]: p for p in (lights_point(ps, "lights_out", out_at), lights_point(ps, "lights_on", on_at))}
    assert {r["_tags"]["tag"] for r in rows} == set(want)
    for row in rows:
        p = want[row["_tags"]["tag"]]
        assert row["_tags"] == dict(p.tags)
        assert (row["time"], row["night"], row["value"], row["at"]) == (
            p.time_ns, p.fields["night"], True, p.fields["at"])
    assert want["lights_out"].fields["at"] == to_ns(out_at)

    second = (await compute_all(settings, since=plan.night, now_ns=now_ns))[0]
    assert (second.computed, second.unchanged) == (1, 0)
    (night,) = influx_server.rows("SELECT * FROM night", influx_db)
    start = night_window(plan.night, ps).start_ns
    assert night["lights_source"] == "tag"
    assert night["lights_out"] == start + (to_ns(out_at) - start) // EPOCH_NS * EPOCH_NS
    assert night["lights_on"] == start - (-(to_ns(on_at) - start) // EPOCH_NS) * EPOCH_NS
    assert night["lights_out"] != to_ns(out_at)  # the test's time really was off the grid

    # removing lights out: the value=false point hides it, the night falls back to the estimate
    r = await sim_client.delete(f"/api/v1/lights/{plan.night.isoformat()}/lights_out", headers=auth())
    assert r.status == 200, await r.text()
    await pipeline_of(sim_client).flush(timeout=60)
    third = (await compute_all(settings, since=plan.night, now_ns=now_ns))[0]
    assert third.computed == 1
    (night,) = influx_server.rows("SELECT * FROM night", influx_db)
    assert night["lights_source"] == "estimate"
    assert night["lights_on"] == start - (-(to_ns(on_at) - start) // EPOCH_NS) * EPOCH_NS


# -- the API ---------------------------------------------------------------------------------


async def test_repost_is_idempotent_and_rerecording_overwrites(
    client: Client, influx_server: Any, influx_db: str
) -> None:
    at = last_evening(23, 10)
    body = {"person": "alice", "event": "lights_out", "at": at.isoformat()}
    first = await client.post("/api/v1/lights", json=body, headers=auth())
    assert first.status == 201
    again = await client.post("/api/v1/lights", json=body, headers=auth())
    assert again.status == 200
    assert await again.json() == await first.json()
    svc = service_of(client)
    assert len(await svc.list_lights()) == 1
    await pipeline_of(client).flush(timeout=60)
    (row,) = tag_rows(influx_server, influx_db)
    assert (row["at"], row["value"], row["night"]) == (to_ns(at), True, at.date().isoformat())

    later = at + timedelta(minutes=25)
    r = await client.post("/api/v1/lights", json={**body, "at": later.isoformat()}, headers=auth())
    assert r.status == 201
    (stored,) = await svc.list_lights()
    assert stored.at == later
    await pipeline_of(client).flush(timeout=60)
    (row,) = tag_rows(influx_server, influx_db)  # the same point, overwritten
    assert row["at"] == to_ns(later)

    r = await client.get("/api/v1/lights?person=alice&since=" + at.date().isoformat(), headers=auth())
    assert r.status == 200
    (listed,) = (await r.json())["lights"]
    assert (listed["event"], listed["source"], datetime.fromisoformat(listed["at"])) == (
        "lights_out", "api", later)
    r = await client.get("/api/v1/lights?person=bob", headers=auth())
    assert (await r.json())["lights"] == []
    r = await client.get("/api/v1/lights?since=" + (at.date() + timedelta(days=1)).isoformat(),
                         headers=auth())
    assert (await r.json())["lights"] == []


async def test_remove_writes_value_false(client: Client, influx_server: Any, influx_db: str) -> None:
    out_at, on_at = last_evening(22, 45, 2), last_evening(23, 59, 2) + timedelta(hours=7)
    for event, at in (("lights_out", out_at), ("lights_on", on_at)):
        r = await client.post("/api/v1/lights", headers=auth(),
                              json={"person": "alice", "event": event, "at": at.isoformat()})
        assert r.status == 201, await r.text()
    night = out_at.date().isoformat()
    r = await client.delete(f"/api/v1/lights/{night}/lights_out?person=alice", headers=auth())
    assert r.status == 200
    assert (await r.json())["event"] == "lights_out"
    assert [x.event for x in await service_of(client).list_lights()] == [LightsEvent.lights_on]
    await pipeline_of(client).flush(timeout=60)
    rows = tag_rows(influx_server, influx_db)
    by_tag = {r["_tags"]["tag"]: r for r in rows}
    assert by_tag["lights_out"]["value"] is False
    assert by_tag["lights_on"]["value"] is True
    assert lights_from_tags([{**r, "tag": r["_tags"]["tag"]} for r in rows]) == (None, to_ns(on_at))

    r = await client.delete(f"/api/v1/lights/{night}/lights_out?person=alice", headers=auth())
    assert r.status == 404
    assert "no lights out recorded" in (await r.json())["error"]
    # recorded again after removal: the same point, true again
    r = await client.post("/api/v1/lights", headers=auth(),
                          json={"person": "alice", "event": "lights_out", "at": out_at.isoformat()})
    assert r.status == 201
    await pipeline_of(client).flush(timeout=60)
    by_tag = {r["_tags"]["tag"]: r for r in tag_rows(influx_server, influx_db)}
    assert (by_tag["lights_out"]["value"], by_tag["lights_out"]["at"]) == (True, to_ns(out_at))


def _problem(body: dict[str, Any], field: str) -> str:
    fields = {d["field"]: d["reason"] for d in body["detail"]}
    assert field in fields, body
    return str(fields[field])


@pytest.mark.parametrize(("body", "field", "phrase"), [
    ({"person": "alice", "event": "lights_out", "at": "AT16"}, "at", "outside alice's night window (18:00-14:00)"),
    ({"person": "alice", "event": "lights_out", "at": "FUTURE"}, "at", "more than 10 minutes in the future"),
    ({"person": "alice", "event": "lights_out", "at": "OLD"}, "at", "more than a year back"),
    ({"person": "alice", "event": "lights_out", "at": "2026-11-20T23:10:00"}, "at", "needs a UTC offset"),
    ({"person": "alice", "event": "dark"}, "event", "lights_out"),
    ({"person": "alice"}, "event", "is required"),
    ({"event": "lights_out"}, "person", "is required when more than one person"),
    ({"person": "carol", "event": "lights_out"}, "person", "unknown person 'carol'"),
    ({"person": "alice", "event": "lights_out", "when": "now"}, "when", "unknown field"),
])
async def test_bad_input_is_422_with_field_and_reason(
    client: Client, body: dict[str, Any], field: str, phrase: str
) -> None:
    stand_in = {"AT16": last_evening(16, 0).isoformat(),
                "FUTURE": (datetime.now(UTC) + timedelta(hours=2)).isoformat(),
                "OLD": (datetime.now(UTC) - timedelta(days=400)).isoformat()}
    if "at" in body:
        body = {**body, "at": stand_in.get(body["at"], body["at"])}
    r = await client.post("/api/v1/lights", json=body, headers=auth())
    assert r.status == 422
    out = await r.json()
    assert phrase in _problem(out, field), out
    assert await service_of(client).list_lights() == []


async def test_lights_on_must_follow_lights_out(client: Client) -> None:
    out_at = last_evening(23, 30)
    r = await client.post("/api/v1/lights", headers=auth(),
                          json={"person": "alice", "event": "lights_out", "at": out_at.isoformat()})
    assert r.status == 201
    r = await client.post("/api/v1/lights", headers=auth(), json={
        "person": "alice", "event": "lights_on", "at": (out_at - timedelta(minutes=30)).isoformat()})
    assert r.status == 422
    assert "would not be after lights out at 23:30" in _problem(await r.json(), "at")


async def test_delete_and_list_validate_their_parameters(client: Client) -> None:
    r = await client.delete("/api/v1/lights/20.11.2026/dark?person=alice", headers=auth())
    assert r.status == 422
    out = await r.json()
    assert "YYYY-MM-DD" in _problem(out, "night") and "lights_out" in _problem(out, "event")
    r = await client.delete("/api/v1/lights/2026-11-20/lights_out", headers=auth())
    assert r.status == 422 and "person" in {d["field"] for d in (await r.json())["detail"]}
    r = await client.get("/api/v1/lights?since=yesterday", headers=auth())
    assert r.status == 422 and "since" in {d["field"] for d in (await r.json())["detail"]}
    r = await client.get("/api/v1/lights?limit=0", headers=auth())
    assert r.status == 422


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
async def test_lights_need_the_token(client: Client, headers: dict[str, str]) -> None:
    for method, path in (("POST", "/api/v1/lights"), ("GET", "/api/v1/lights"),
                         ("DELETE", "/api/v1/lights/2026-11-20/lights_out")):
        r = await client.request(method, path, headers=headers, json={"event": "lights_out"})
        assert r.status == 401, (method, path)
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert await service_of(client).list_lights() == []


async def test_cors_preflight_for_lights(tmp_path: Path, influx_server: Any, influx_db: str) -> None:
    s = make_settings(tmp_path, influx_server.url, influx_db, cors_origins=["https://phone.example"])
    async with TestClient(TestServer(create_app(s), host="127.0.0.1")) as c:
        for path in ("/api/v1/lights", "/api/v1/lights/2026-11-20/lights_on"):
            r = await c.options(path, headers={"Origin": "https://phone.example"})
            assert r.status == 204
            assert "DELETE" in r.headers["Access-Control-Allow-Methods"]
            r = await c.options(path, headers={"Origin": "https://evil.example"})
            assert r.status == 403


async def test_influx_down_lights_kept_and_delivered_later(
    client: Client, influx_server: Any, influx_db: str
) -> None:
    at = last_evening(23, 5)
    influx_server.stop()
    try:
        r = await client.post("/api/v1/lights", headers=auth(),
                              json={"person": "alice", "event": "lights_out", "at": at.isoformat()})
        assert r.status == 201
        assert [x.at for x in await service_of(client).list_lights()] == [at]
        assert pipeline_of(client).pending()[1] == 1  # in the durable outbox
    finally:
        influx_server.start()
    await pipeline_of(client).flush(timeout=60)
    (row,) = tag_rows(influx_server, influx_db)
    assert (row["_tags"]["tag"], row["at"], row["value"]) == ("lights_out", to_ns(at), True)


# -- the CLI goes the same way ---------------------------------------------------------------


def test_cli_lights_journaled_while_influx_is_down(
    config_file: Path, settings: Settings, influx_server: Any, influx_db: str
) -> None:
    influx_server.stop()
    try:
        code, out = cli(config_file, "night", "lights-out", "--at", "23:20", "-p", "alice")
        assert code == 0, out
        assert "lights out at 23:20" in out
        assert "safe in the dose journal" in out
    finally:
        influx_server.start()
    code, out = cli(config_file, "night", "lights-on", "--at", "06:40", "-p", "alice")
    assert code == 0, out  # the next command also sends what the first one queued
    assert "lights on at 06:40" in out and "safe in the dose journal" not in out
    rows = {r["_tags"]["tag"]: r for r in tag_rows(influx_server, influx_db)}
    assert set(rows) == {"lights_out", "lights_on"}
    out_at = datetime.fromtimestamp(rows["lights_out"]["at"] / NS, BERLIN)
    assert out_at.strftime("%H:%M") == "23:20"
    assert rows["lights_out"]["night"] == out_at.date().isoformat()
    code, out = cli(config_file, "night", "lights-out", "--at", "16:00", "-p", "alice")
    assert code == 2 and "night window" in out
    code, out = cli(config_file, "night", "lights-out")
    assert code == 2 and "person" in out


def lights_point(ps: PersonSettings, tag: str, at: datetime) -> Point:
    """The point the journal queues for lights out/on at ``at`` (its night from the person's window)."""
    return lights_tag_point(ps.name, night_for(ps, at), LightsEvent(tag), to_ns(at))


def test_lights_point_refuses_times_between_windows() -> None:
    ps = PersonSettings(name="alice", timezone="Europe/Berlin")
    with pytest.raises(DoseValidationError, match=r"outside alice's night window \(18:00-14:00\)"):
        lights_point(ps, "lights_out", datetime(2026, 11, 20, 16, 0, tzinfo=BERLIN))
    p = lights_point(ps, "lights_on", datetime(2026, 11, 21, 7, 0, tzinfo=BERLIN))
    assert p.fields["night"] == date(2026, 11, 20).isoformat()
    assert p.time_ns == to_ns(datetime(2026, 11, 20, 12, tzinfo=UTC))
