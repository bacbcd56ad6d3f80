"""The HTTP API against the real InfluxDB: validation, idempotency, auth, propagation."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from collector.app.persons import Persons
from collector.doses.api import check_bind, create_app, token_ok
from collector.doses.openapi import OPENAPI_FILE, openapi_document, render
from collector.errors import ConfigError
from tests.doses.cases import Case, api_body, cases
from tests.doses.conftest import TOKEN, auth, make_settings, pipeline_of, service_of

Client = TestClient[web.Request, web.Application]
JSON = {"Content-Type": "application/json"}


def q_doses(influx_server: Any, db: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = influx_server.rows("SELECT * FROM supplement_dose", db)
    return rows


@pytest.mark.parametrize("case", cases(), ids=lambda c: c.name)
async def test_every_rule_gives_422_with_field_and_reason(client: Client, case: Case) -> None:
    resp = await client.post("/api/v1/doses", json=api_body(case), headers=auth())
    assert resp.status == 422
    body = await resp.json()
    fields = {d["field"]: d["reason"] for d in body["detail"]}
    assert case.field in fields, body
    assert case.phrase in fields[case.field]
    assert await service_of(client).list_doses() == []


async def test_within_ten_minutes_ahead_is_accepted(client: Client) -> None:
    at = datetime.now(UTC) + timedelta(minutes=5)
    resp = await client.post("/api/v1/doses", json={"person": "alice", "amount_mg": 300,
                                                    "taken_at": at.isoformat()}, headers=auth())
    assert resp.status == 201, await resp.text()


async def test_log_computes_elemental_and_writes_influx(
    client: Client, influx_server: Any, influx_db: str
) -> None:
    dose_id = str(uuid.uuid4())
    local = datetime.combine((datetime.now(UTC) - timedelta(days=4)).date(), time(22, 10))
    expected = local.replace(tzinfo=ZoneInfo("Europe/Berlin"))
    body = {"id": dose_id, "person": "alice", "form": "glycinate", "amount_mg": 1500,
            "taken_at": local.isoformat(), "note": "with tea"}
    resp = await client.post("/api/v1/doses", json=body, headers=auth())
    assert resp.status == 201
    out = await resp.json()
    d = out["dose"]
    assert d["elemental_computed"] is True
    assert d["elemental_mg"] == pytest.approx(1500 * 0.14096, rel=1e-3)
    assert d["taken_at"] == expected.isoformat()  # naive -> the person's zone
    assert d["source"] == "api"
    assert out["warnings"] == []
    await pipeline_of(client).flush(timeout=20)
    rows = q_doses(influx_server, influx_db)
    assert len(rows) == 1
    r = rows[0]
    assert r["dose_id"] == dose_id and r["person"] == "alice" and r["form"] == "glycinate"
    assert r["amount_mg"] == 1500.0 and r["note"] == "with tea"
    assert r["time"] == int(expected.timestamp()) * 10**9


async def test_daily_warning_passes_level(client: Client) -> None:
    at = (datetime.now(UTC) - timedelta(minutes=30)).isoformat()
    r1 = await client.post("/api/v1/doses", json={"person": "alice", "amount_mg": 200,
                                                  "elemental_mg": 200, "taken_at": at},
                           headers=auth())
    assert (await r1.json())["warnings"] == []
    r2 = await client.post("/api/v1/doses", json={"person": "alice", "amount_mg": 400,
                                                  "form": "citrate", "elemental_mg": 160,
                                                  "taken_at": at}, headers=auth())
    assert r2.status == 201
    warnings = (await r2.json())["warnings"]
    assert len(warnings) == 1
    assert "is now 360 mg, above the daily level of 350 mg" in warnings[0]
    # another person's day is separate
    r3 = await client.post("/api/v1/doses", json={"person": "bob", "amount_mg": 300,
                                                  "elemental_mg": 300, "taken_at": at},
                           headers=auth())
    assert (await r3.json())["warnings"] == []


async def test_same_post_twice_stores_one_dose(client: Client) -> None:
    body = {"id": str(uuid.uuid4()), "person": "alice", "amount_mg": 300}
    r1 = await client.post("/api/v1/doses", json=body, headers=auth())
    r2 = await client.post("/api/v1/doses", json=body, headers=auth())
    assert (r1.status, r2.status) == (201, 200)
    assert (await r1.json())["dose"] == (await r2.json())["dose"]
    assert len(await service_of(client).list_doses()) == 1
    # the same id with a different dose is a conflict, not a silent overwrite
    r3 = await client.post("/api/v1/doses", json={**body, "amount_mg": 600}, headers=auth())
    assert r3.status == 409
    assert "already used by a different dose" in (await r3.json())["error"]


async def test_patch_and_delete_propagate_to_influx(
    client: Client, influx_server: Any, influx_db: str
) -> None:
    dose_id = str(uuid.uuid4())
    at = datetime.now(UTC) - timedelta(hours=1)
    r = await client.post("/api/v1/doses", json={"id": dose_id, "person": "alice",
                                                 "form": "citrate", "amount_mg": 1000,
                                                 "taken_at": at.isoformat()}, headers=auth())
    assert r.status == 201
    new_at = at - timedelta(minutes=20)
    r = await client.patch(f"/api/v1/doses/{dose_id}", headers=auth(),
                           json={"form": "oxide", "amount_mg": 500, "taken_at": new_at.isoformat()})
    assert r.status == 200, await r.text()
    d = (await r.json())["dose"]
    assert d["form"] == "oxide" and d["elemental_mg"] == pytest.approx(301.5, rel=1e-3)
    await pipeline_of(client).flush(timeout=20)
    rows = q_doses(influx_server, influx_db)
    assert [(x["form"], x["amount_mg"], x["dose_id"]) for x in rows] == [("oxide", 500.0, dose_id)]
    assert rows[0]["time"] // 1000 == int(new_at.timestamp() * 1e6)
    r = await client.get(f"/api/v1/doses/{dose_id}", headers=auth())
    assert (await r.json())["amount_mg"] == 500
    r = await client.delete(f"/api/v1/doses/{dose_id}", headers=auth())
    assert r.status == 200
    await pipeline_of(client).flush(timeout=20)
    assert q_doses(influx_server, influx_db) == []
    assert (await client.get(f"/api/v1/doses/{dose_id}", headers=auth())).status == 404
    assert (await client.delete(f"/api/v1/doses/{dose_id}", headers=auth())).status == 404
    # a late retry of the original POST must not bring the undone dose back
    r = await client.post("/api/v1/doses", json={"id": dose_id, "person": "alice",
                                                 "amount_mg": 1000}, headers=auth())
    assert r.status == 409


async def test_patch_rules_apply(client: Client) -> None:
    r = await client.post("/api/v1/doses", json={"person": "alice", "amount_mg": 300},
                          headers=auth())
    dose_id = (await r.json())["dose"]["id"]
    r = await client.patch(f"/api/v1/doses/{dose_id}", json={"amount_mg": 5000, "form": "oxide"},
                           headers=auth())
    assert r.status == 422
    assert "above the ceiling" in json.dumps(await r.json())
    r = await client.patch(f"/api/v1/doses/{dose_id}", json={"person": None}, headers=auth())
    assert r.status == 422
    assert (await r.json())["detail"][0]["field"] == "person"
    r = await client.patch(f"/api/v1/doses/{dose_id}", json={"colour": "red"}, headers=auth())
    assert r.status == 422
    assert (await r.json())["detail"][0] == {"field": "colour", "reason": "unknown field; remove it"}
    r = await client.patch("/api/v1/doses/not-a-uuid", json={}, headers=auth())
    assert r.status == 422


async def test_list_filters(client: Client) -> None:
    now = datetime.now(UTC)
    for person, hours in (("alice", 1), ("alice", 30), ("bob", 2)):
        r = await client.post("/api/v1/doses", headers=auth(), json={
            "person": person, "amount_mg": 100, "taken_at": (now - timedelta(hours=hours)).isoformat()})
        assert r.status == 201
    r = await client.get("/api/v1/doses", params={"person": "alice"}, headers=auth())
    assert len((await r.json())["doses"]) == 2
    since = (now - timedelta(hours=5)).isoformat()
    r = await client.get("/api/v1/doses", params={"since": since}, headers=auth())
    assert {d["person"] for d in (await r.json())["doses"]} == {"alice", "bob"}
    assert len((await r.json())["doses"]) == 2
    r = await client.get("/api/v1/doses", params={"limit": "0"}, headers=auth())
    assert r.status == 422
    assert (await r.json())["detail"][0]["field"] == "limit"
    r = await client.get("/api/v1/doses", params={"since": "yesterday"}, headers=auth())
    assert r.status == 422


async def test_persons(client: Client) -> None:
    r = await client.get("/api/v1/persons", headers=auth())
    body = await r.json()
    assert [p["name"] for p in body["persons"]] == ["alice", "bob"]
    assert body["persons"][0]["timezone"] == "Europe/Berlin"
    assert "glycinate" in body["forms"] and body["default_form"] == "glycinate"


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": "Bearer "}, {"Authorization": f"Bearer {TOKEN}x"},
], ids=["none", "wrong", "basic", "empty", "longer"])
async def test_unauthenticated_and_wrong_token_rejected(client: Client, headers: dict[str, str]) -> None:
    for method, path in (("GET", "/api/v1/doses"), ("POST", "/api/v1/doses"),
                         ("GET", "/api/v1/persons"),
                         ("DELETE", f"/api/v1/doses/{uuid.uuid4()}"),
                         ("PATCH", f"/api/v1/doses/{uuid.uuid4()}")):
        r = await client.request(method, path, headers=headers, json={"amount_mg": 300, "person": "alice"})
        assert r.status == 401, (method, path)
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert "Bearer" in (await r.json())["error"]
    assert await service_of(client).list_doses() == []
    # health and the OpenAPI document are public; the token works
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/api/v1/openapi.json")).status == 200
    assert (await client.get("/api/v1/doses", headers=auth())).status == 200


def test_token_compare() -> None:
    toks = [b"one-token", b"two-token"]
    assert token_ok("Bearer two-token", toks) and token_ok("bearer one-token", toks)
    assert not token_ok("Bearer three", toks) and not token_ok(None, toks)
    assert not token_ok("Bearer ", [b""])


def test_refuses_non_loopback_without_token(tmp_path: Any) -> None:
    s = make_settings(tmp_path, "http://127.0.0.1:1", "x", tokens=[])
    for host in ("127.0.0.1", "::1", "localhost"):
        check_bind(host, s)
    for host in ("0.0.0.0", "192.168.1.20", "::"):
        with pytest.raises(ConfigError, match="without a token"):
            check_bind(host, s)
    check_bind("0.0.0.0", make_settings(tmp_path, "http://127.0.0.1:1", "x"))
    assert s.api.host == "127.0.0.1"


async def test_no_token_configured_allows_loopback_use(tmp_path: Any, influx_server: Any,
                                                      influx_db: str) -> None:
    s = make_settings(tmp_path, influx_server.url, influx_db, tokens=[])
    async with TestClient(TestServer(create_app(s), host="127.0.0.1")) as c:
        r = await c.post("/api/v1/doses", json={"person": "bob", "amount_mg": 100})
        assert r.status == 201


async def test_body_size_limit(client: Client) -> None:
    big = {"person": "alice", "amount_mg": 300, "note": "x" * 70_000}
    r = await client.post("/api/v1/doses", json=big, headers=auth())
    assert r.status == 413
    assert "api.max_body_bytes" in (await r.json())["error"]
    r = await client.post("/api/v1/doses", data=b"{" * 70_000, headers={**auth(), **JSON})
    assert r.status == 413


async def test_bad_json_is_422(client: Client) -> None:
    r = await client.post("/api/v1/doses", data=b"{not json", headers={**auth(), **JSON})
    assert r.status == 422
    r = await client.post("/api/v1/doses", data=b"", headers={**auth(), **JSON})
    assert r.status == 422
    r = await client.post("/api/v1/doses", data=b'{"amount_mg": 300}', headers=auth())
    assert r.status == 415  # not declared JSON (tests/security has the cross-site cases)


async def test_cors_off_by_default_and_on_for_listed_origins(
    client: Client, tmp_path: Any, influx_server: Any, influx_db: str
) -> None:
    h = {**auth(), "Origin": "https://evil.example"}
    r = await client.get("/api/v1/doses", headers=h)
    assert "Access-Control-Allow-Origin" not in r.headers
    r = await client.options("/api/v1/doses", headers=h)
    assert r.status == 405
    s = make_settings(tmp_path, influx_server.url, influx_db,
                      cors_origins=["https://phone.example"])
    async with TestClient(TestServer(create_app(s), host="127.0.0.1")) as c:
        ok = {**auth(), "Origin": "https://phone.example"}
        r = await c.get("/api/v1/doses", headers=ok)
        assert r.headers["Access-Control-Allow-Origin"] == "https://phone.example"
        r = await c.options("/api/v1/doses", headers={"Origin": "https://phone.example"})
        assert r.status == 204
        r = await c.get("/api/v1/doses", headers=h)
        assert "Access-Control-Allow-Origin" not in r.headers


async def test_openapi_served_equals_committed_file(client: Client) -> None:
    assert OPENAPI_FILE.read_text(encoding="utf-8") == render(), (
        "collector/doses/openapi.json is stale: run `python -m collector.doses.openapi`")
    r = await client.get("/api/v1/openapi.json")
    assert await r.json() == json.loads(OPENAPI_FILE.read_text(encoding="utf-8"))
    assert openapi_document()["openapi"] == "3.1.0"


async def test_phone_page_is_served(client: Client) -> None:
    r = await client.get("/", allow_redirects=False)
    assert r.status == 302 and r.headers["Location"] == "/app/"
    r = await client.get("/app/")
    assert r.status == 200 and "Took it" in await r.text()
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    assert (await client.get("/app/app.js")).status == 200
    assert (await client.get("/app/../api.py")).status == 404


async def test_extra_persons_from_registry(tmp_path: Any, influx_server: Any, influx_db: str) -> None:
    s = make_settings(tmp_path, influx_server.url, influx_db)
    app = create_app(s, persons=Persons(s, registry=lambda: ["carol"]))
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        r = await c.post("/api/v1/doses", json={"person": "carol", "amount_mg": 100}, headers=auth())
        assert r.status == 201
        assert (await r.json())["dose"]["taken_at"].endswith("Z")


async def test_concurrent_posts_store_each_id_once(
    client: Client, influx_server: Any, influx_db: str
) -> None:
    """500 concurrent POSTs of 250 distinct ids, all at the same instant -> 250 doses."""
    at = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0).isoformat()
    ids = [str(uuid.uuid4()) for _ in range(250)]
    bodies = [{"id": i, "person": "alice", "amount_mg": 100, "taken_at": at} for i in ids * 2]

    async def post(b: dict[str, Any]) -> int:
        r = await client.post("/api/v1/doses", json=b, headers=auth())
        await r.read()
        return r.status

    statuses = await asyncio.gather(*(post(b) for b in bodies))
    assert sorted(set(statuses)) == [200, 201]
    assert statuses.count(201) == 250 and statuses.count(200) == 250
    stored = await service_of(client).list_doses(limit=10_000)
    assert sorted(str(d.id) for d in stored) == sorted(ids)
    await pipeline_of(client).flush(timeout=60)
    rows = influx_server.rows("SELECT dose_id FROM supplement_dose", influx_db)
    assert sorted(r["dose_id"] for r in rows) == sorted(ids)


async def test_influx_down_dose_kept_and_delivered_later(
    client: Client, influx_server: Any, influx_db: str
) -> None:
    influx_server.stop()
    try:
        r = await client.post("/api/v1/doses", json={"person": "alice", "amount_mg": 300},
                              headers=auth())
        assert r.status == 201
        dose_id = (await r.json())["dose"]["id"]
        assert [str(d.id) for d in await service_of(client).list_doses()] == [dose_id]
        assert pipeline_of(client).pending()[1] == 1  # in the durable outbox
    finally:
        influx_server.start()
    await pipeline_of(client).flush(timeout=60)
    rows = q_doses(influx_server, influx_db)
    assert [x["dose_id"] for x in rows] == [dose_id]


def test_settings_defaults_match_issue() -> None:
    from collector.settings import Settings as S

    s = S()
    assert s.api.host == "127.0.0.1" and s.api.cors_origins == []
    assert s.doses.ceiling_elemental_mg == 2000 and s.doses.daily_warning_elemental_mg == 350
    assert all(isinstance(t, SecretStr) for t in make_settings(Path("/tmp"), "http://x:1", "d").api.tokens)


async def test_person_from_device_registry(settings: Any) -> None:
    from collector.ble.registry import DeviceRegistry, RegisteredDevice

    path = DeviceRegistry.path_for(settings)
    DeviceRegistry(path, [RegisteredDevice(address="AA:BB:CC:DD:EE:01", alias="h10-erin",
                                           person="erin")]).save()
    async with TestClient(TestServer(create_app(settings, persons=Persons(settings)), host="127.0.0.1")) as c:
        r = await c.post("/api/v1/doses", json={"person": "erin", "amount_mg": 100}, headers=auth())
        assert r.status == 201, await r.text()
        r = await c.get("/api/v1/persons", headers=auth())
        assert [p["name"] for p in (await r.json())["persons"]] == ["alice", "bob", "erin"]
        path.write_text("{broken", encoding="utf-8")  # a broken registry never blocks logging
        r = await c.post("/api/v1/doses", json={"person": "alice", "amount_mg": 100}, headers=auth())
        assert r.status == 201
        r = await c.post("/api/v1/doses", json={"person": "erin", "amount_mg": 100}, headers=auth())
        assert r.status == 422


@pytest.mark.parametrize(("body", "field", "reason"), [
    ({"person": "alice", "amount_mg": "lots"}, "amount_mg",
     "must be a JSON number of mg, e.g. 300"),
    ({"person": "alice", "amount_mg": 1, "taken_at": "tonight"}, "taken_at",
     "must be a date and time like 2026-11-20T22:10:00+01:00"),
    ({"person": "alice", "amount_mg": 1, "id": "x"}, "id", "must be a UUID"),
    ({"person": "alice", "amount_mg": 1, "note": "n" * 501}, "note", "at most 500 characters"),
    ({"person": "alice", "amount_mg": 1, "supplement": "Mg!"}, "supplement", "e.g. magnesium"),
    ({"person": "alice"}, "amount_mg", "is required"),
    ([1, 2], "(body)", "must be a JSON object"),
])
async def test_type_errors_say_what_to_fix(client: Client, body: Any, field: str, reason: str) -> None:
    r = await client.post("/api/v1/doses", json=body, headers=auth())
    assert r.status == 422
    detail = {d["field"]: d["reason"] for d in (await r.json())["detail"]}
    assert reason in detail[field], detail


async def test_journal_failure_is_503_with_advice(client: Client) -> None:
    svc = service_of(client)
    db = svc.journal._db
    svc.journal._db = __import__("sqlite3").connect(":memory:")  # no tables: every call fails
    try:
        r = await client.post("/api/v1/doses", json={"person": "alice", "amount_mg": 100},
                              headers=auth())
        assert r.status == 503
        assert "check free disk space and permissions" in (await r.json())["error"]
    finally:
        svc.journal._db.close()
        svc.journal._db = db


# -- tonight's plan and the morning card (issue 13 #3) -------------------------------------------

BERLIN = ZoneInfo("Europe/Berlin")
# a fixed evening: 21:30 in Berlin on Friday 20 November 2026 (the night of the 20th)
EVENING = datetime(2026, 11, 20, 21, 30, tzinfo=BERLIN)


def _plan(person: str, nights: dict[str, bool]) -> Any:
    from collector.effects.planner import PlanSpec
    from collector.effects.store import StoredPlan

    planned = {date.fromisoformat(d): mg for d, mg in nights.items()}
    return StoredPlan(f"plan-{person}", person, PlanSpec(min(planned), 1, "randomised"), 1, 0,
                      planned)


async def _fixed_client(settings: Any, at: datetime) -> Client:
    return TestClient(TestServer(create_app(settings, now=lambda: at), host="127.0.0.1"))


async def test_plan_today_assignment_and_deviations(settings: Any) -> None:
    from collector.effects.store import PlanStore

    store = PlanStore.from_settings(settings)
    store.save(_plan("alice", {"2026-11-18": True, "2026-11-19": True, "2026-11-20": False,
                               "2026-11-21": True}))
    store.save(_plan("bob", {"2026-11-19": False, "2026-11-20": True}))
    async with await _fixed_client(settings, EVENING) as c:
        # alice: a dose two evenings ago; none last night (planned magnesium)
        r = await c.post("/api/v1/doses", headers=auth(), json={
            "person": "alice", "amount_mg": 300, "form": "glycinate",
            "taken_at": "2026-11-18T22:00:00+01:00"})
        assert r.status == 201
        r = await c.get("/api/v1/plan/today", params={"person": "alice"}, headers=auth())
        assert r.status == 200, await r.text()
        body = await r.json()
        assert body["text"] == "Tonight: no magnesium"
        assert body["plan_id"] == "plan-alice"
        assert body["tonight"] == {"night": "2026-11-20", "planned": "control", "doses": 0,
                                   "deviation": None}
        assert body["last_night"] == {
            "night": "2026-11-19", "planned": "magnesium", "doses": 0,
            "deviation": "no magnesium logged on a magnesium night of the plan"}
        assert body["usual_dose"] == {"amount_mg": 300.0, "form": "glycinate"}
        # a dose tonight, a control night: a deviation at once
        r = await c.post("/api/v1/doses", headers=auth(), json={"person": "alice",
                                                               "amount_mg": 300})
        assert r.status == 201
        body = await (await c.get("/api/v1/plan/today", params={"person": "alice"},
                                  headers=auth())).json()
        assert body["tonight"]["doses"] == 1
        assert body["tonight"]["deviation"] == (
            "magnesium logged on a control night of the plan; undo it if it was a mistake")
        # bob: tonight is a magnesium night, his usual dose is his last one
        await c.post("/api/v1/doses", headers=auth(), json={
            "person": "bob", "amount_mg": 400, "form": "citrate",
            "taken_at": "2026-11-10T21:00:00-05:00"})
        body = await (await c.get("/api/v1/plan/today", params={"person": "bob"},
                                  headers=auth())).json()
        assert body["text"] == "Tonight: magnesium, 400 mg citrate"
        assert body["tonight"]["deviation"] is None  # the evening is not over
        assert body["last_night"] == {"night": "2026-11-19", "planned": "control", "doses": 0,
                                      "deviation": None}
        r = await c.get("/api/v1/plan/today", headers=auth())
        assert r.status == 422 and (await r.json())["detail"][0]["field"] == "person"
        r = await c.get("/api/v1/plan/today", params={"person": "carol"}, headers=auth())
        assert r.status == 422
        assert (await c.get("/api/v1/plan/today", params={"person": "bob"})).status == 401
    # after midnight it is still the night of the 20th; the 21st is alice's last planned night
    async with await _fixed_client(settings, datetime(2026, 11, 21, 1, 15, tzinfo=BERLIN)) as c:
        body = await (await c.get("/api/v1/plan/today", params={"person": "alice"},
                                  headers=auth())).json()
        assert body["tonight"]["night"] == "2026-11-20" and body["tonight"]["doses"] == 1
    async with await _fixed_client(settings, datetime(2026, 11, 23, 20, 0, tzinfo=BERLIN)) as c:
        body = await (await c.get("/api/v1/plan/today", params={"person": "alice"},
                                  headers=auth())).json()
        assert body["text"] == "Tonight: not in the plan (it ended on Sat 21 Nov)."
        assert body["tonight"] is None and body["last_night"] is None


async def test_plan_today_without_a_plan(settings: Any) -> None:
    async with await _fixed_client(settings, EVENING) as c:
        body = await (await c.get("/api/v1/plan/today", params={"person": "bob"},
                                  headers=auth())).json()
        assert body["plan_id"] is None and body["tonight"] is None
        assert body["text"] == "No trial plan for bob (magsleep plan --weeks 8 makes one)."


def _night_point(person: str, night: str, *, provisional: bool = False, flagged: bool = False,
                 source: str | None = None, **values: float) -> Any:
    from collector.effects.tagging import night_time_ns
    from collector.storage.lineprotocol import Point

    tags = {"person": person, "dose": "unknown", "staging": "computed"}
    if source:
        tags["source"] = source
    fields: dict[str, Any] = {"night": night, **{k: float(v) for k, v in values.items()}}
    if provisional:
        fields["provisional"] = True
    if flagged:
        fields["flagged"] = True
    return Point("night", tags, fields, night_time_ns(date.fromisoformat(night)))


async def test_morning_card_against_own_baseline(settings: Any, influx_server: Any) -> None:
    points = [
        _night_point("alice", f"2026-11-{d}", tst_min=tst, sol_min=sol, waso_min=30 + d,
                     se_pct=88.0, hr_mean_bpm=55.0, rmssd_ms=40.0 + d)
        for d, tst, sol in ((14, 400, 20), (15, 410, 10), (16, 420, 30), (17, 430, 15))
    ]
    points.append(_night_point("alice", "2026-11-18", flagged=True, tst_min=100.0))  # left out
    points.append(_night_point("alice", "2026-11-19", provisional=True, tst_min=455.5,
                               sol_min=8.0, se_pct=93.0, hr_mean_bpm=52.0, rmssd_ms=47.0))
    points.append(_night_point("alice", "2026-11-19", source="sim", tst_min=999.0))  # not this
    async with await _fixed_client(settings, EVENING) as c:
        pipe = pipeline_of(c)
        await pipe.put(points)
        await pipe.flush(timeout=20)
        r = await c.get("/api/v1/nights/last", params={"person": "alice"}, headers=auth())
        assert r.status == 200, await r.text()
        card = await r.json()
        assert (card["night"], card["provisional"], card["flagged"]) == ("2026-11-19", True, False)
        assert card["baseline_nights"] == 4
        assert card["text"] == "Night of Thu 19 Nov (provisional: it may still change)"
        m = {x["name"]: x for x in card["metrics"]}
        assert list(m) == ["tst_min", "sol_min", "waso_min", "se_pct", "hr_mean_bpm", "rmssd_ms"]
        assert (m["tst_min"]["value"], m["tst_min"]["baseline"]) == (455.5, 415.0)
        assert (m["sol_min"]["value"], m["sol_min"]["baseline"], m["sol_min"]["better"]) == (
            8.0, 17.5, "lower")
        assert (m["waso_min"]["value"], m["waso_min"]["baseline"]) == (None, 45.5)
        assert m["rmssd_ms"]["baseline"] == 55.5
        r = await c.get("/api/v1/nights/last", params={"person": "bob"}, headers=auth())
        card = await r.json()
        assert card["night"] is None and card["metrics"] == []
        assert card["text"] == "No night for bob yet: nights appear once computed."
        influx_server.stop()
        try:
            r = await c.get("/api/v1/nights/last", params={"person": "alice"}, headers=auth())
            assert r.status == 503
            assert "cannot reach InfluxDB" in (await r.json())["error"]
        finally:
            influx_server.start()
