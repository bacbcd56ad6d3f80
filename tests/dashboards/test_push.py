"""`magsleep dashboards push` against a local HTTP server that plays Grafana and checks each request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from collector.dashboards import build_all
from collector.dashboards.push import DATASOURCE_UID, DOSE_TAG, GrafanaPushError, PushOptions, push_all
from tests.dashboards.conftest import Seeded

TOKEN = "glsa_test_token"


@dataclass
class FakeGrafana:
    """Just enough of Grafana's HTTP API, in memory; every request is checked and logged."""

    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    log: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.check])
        r = app.router
        r.add_get("/api/datasources/uid/{uid}", self.get_ds)
        r.add_post("/api/datasources", self.create_ds)
        r.add_put("/api/datasources/uid/{uid}", self.update_ds)
        r.add_get("/api/folders/{uid}", self.get_folder)
        r.add_post("/api/folders", self.create_folder)
        r.add_put("/api/folders/{uid}", self.update_folder)
        r.add_get("/api/dashboards/uid/{uid}", self.get_dash)
        r.add_post("/api/dashboards/db", self.post_dash)
        r.add_get("/api/annotations", self.find_annotations)
        r.add_post("/api/annotations", self.add_annotation)
        return app

    @web.middleware
    async def check(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.log.append((request.method, request.path))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"message": "Unauthorized"}, status=401)
        if request.method in ("POST", "PUT") and request.content_type != "application/json":
            self.problems.append(f"{request.method} {request.path}: content type {request.content_type}")
        resp: web.StreamResponse = await handler(request)
        return resp

    async def get_ds(self, request: web.Request) -> web.Response:
        ds = self.datasources.get(request.match_info["uid"])
        return web.json_response(ds) if ds else web.json_response({"message": "not found"}, status=404)

    def _check_ds(self, body: dict[str, Any]) -> None:
        if body.get("type") != "influxdb" or body.get("jsonData", {}).get("version") != "InfluxQL":
            self.problems.append(f"data source is not InfluxQL: {body}")
        if not body.get("url", "").startswith("http"):
            self.problems.append("data source without URL")

    async def create_ds(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._check_ds(body)
        if body["uid"] in self.datasources:
            return web.json_response({"message": "data source with the same uid already exists"}, status=409)
        self.datasources[body["uid"]] = body
        return web.json_response({"id": 1, "message": "Datasource added", "datasource": body})

    async def update_ds(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._check_ds(body)
        if request.match_info["uid"] not in self.datasources:
            return web.json_response({"message": "not found"}, status=404)
        self.datasources[request.match_info["uid"]] = body
        return web.json_response({"message": "Datasource updated"})

    async def get_folder(self, request: web.Request) -> web.Response:
        f = self.folders.get(request.match_info["uid"])
        return web.json_response(f) if f else web.json_response({"message": "folder not found"}, status=404)

    async def create_folder(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body["uid"] in self.folders:
            return web.json_response({"message": "a folder with the same uid already exists"}, status=409)
        self.folders[body["uid"]] = {"uid": body["uid"], "title": body["title"]}
        return web.json_response(self.folders[body["uid"]])

    async def update_folder(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.folders[request.match_info["uid"]]["title"] = body["title"]
        return web.json_response(self.folders[request.match_info["uid"]])

    async def get_dash(self, request: web.Request) -> web.Response:
        d = self.dashboards.get(request.match_info["uid"])
        return web.json_response(d) if d else web.json_response({"message": "Dashboard not found"}, status=404)

    async def post_dash(self, request: web.Request) -> web.Response:
        body = await request.json()
        d = body["dashboard"]
        if body.get("folderUid") not in self.folders:
            return web.json_response({"message": "folder not found"}, status=400)
        if body.get("overwrite") is not True and d["uid"] in self.dashboards:
            return web.json_response({"message": "version-mismatch"}, status=412)
        if d.get("id") is not None:
            self.problems.append("dashboard id must be null so Grafana matches by uid")
        version = self.dashboards.get(d["uid"], {}).get("dashboard", {}).get("version", 0) + 1
        url = f"/d/{d['uid']}/x"
        self.dashboards[d["uid"]] = {
            "dashboard": {**d, "id": 7, "version": version},
            "meta": {"folderUid": body["folderUid"], "url": url},
        }
        return web.json_response({"uid": d["uid"], "url": url, "version": version, "status": "success"})

    async def find_annotations(self, request: web.Request) -> web.Response:
        uid = request.query.get("dashboardUID")
        tags = set(request.query.getall("tags", []))
        found = [a for a in self.annotations if a.get("dashboardUID") == uid and tags <= set(a["tags"])]
        return web.json_response(found)

    async def add_annotation(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not isinstance(body.get("time"), int) or body["time"] < 10**12:
            self.problems.append(f"annotation time must be epoch ms: {body.get('time')}")
        self.annotations.append(body)
        return web.json_response({"id": len(self.annotations), "message": "Annotation added"})


@pytest.fixture
async def grafana() -> AsyncIterator[tuple[FakeGrafana, str]]:
    fake = FakeGrafana()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield fake, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def test_push_creates_then_is_idempotent(grafana: tuple[FakeGrafana, str]) -> None:
    fake, url = grafana
    opts = PushOptions(url=url, token=TOKEN, folder="Sleep", influx_url="http://influxdb:8086",
                       influx_version=2, influx_token="influx-secret", influx_database="magsleep")
    first = await push_all(opts)
    assert fake.problems == []
    assert first.datasource_action == "created"
    ds = fake.datasources[DATASOURCE_UID]
    assert ds["secureJsonData"]["httpHeaderValue1"] == "Token influx-secret"
    assert ds["jsonData"]["dbName"] == "magsleep"
    assert fake.folders == {"sleep": {"uid": "sleep", "title": "Sleep"}}
    built = build_all()
    assert set(fake.dashboards) == {d["uid"] for d in built.values()}
    for d in built.values():
        stored = fake.dashboards[d["uid"]]
        assert {k: v for k, v in stored["dashboard"].items() if k not in ("id", "version")} == d
        assert stored["meta"]["folderUid"] == "sleep"
    assert set(first.dashboards.values()) == {f"/d/{d['uid']}/x" for d in built.values()}

    fake.log.clear()
    second = await push_all(opts)
    assert second.datasource_action == "updated"
    assert sorted(second.unchanged) == sorted(d["uid"] for d in built.values())
    assert ("POST", "/api/dashboards/db") not in fake.log  # nothing re-uploaded
    assert ("POST", "/api/folders") not in fake.log
    assert all(v["dashboard"]["version"] == 1 for v in fake.dashboards.values())

    # a dashboard changed in Grafana is put back; the others stay untouched
    fake.dashboards["magsleep-night"]["dashboard"]["title"] = "edited by hand"
    third = await push_all(opts)
    assert "magsleep-night" not in third.unchanged
    assert fake.dashboards["magsleep-night"]["dashboard"]["title"] == built["night.json"]["title"]
    assert fake.dashboards["magsleep-night"]["dashboard"]["version"] == 2
    assert fake.dashboards["magsleep-overview"]["dashboard"]["version"] == 1


async def test_push_v1_datasource_with_password(grafana: tuple[FakeGrafana, str]) -> None:
    fake, url = grafana
    await push_all(PushOptions(url=url, token=TOKEN, influx_version=1, influx_user="u", influx_password="p"))
    ds = fake.datasources[DATASOURCE_UID]
    assert ds["user"] == "u" and ds["secureJsonData"] == {"password": "p"}
    assert "httpHeaderName1" not in ds["jsonData"]


async def test_push_with_a_wrong_token_says_what_to_fix(grafana: tuple[FakeGrafana, str]) -> None:
    fake, url = grafana
    with pytest.raises(GrafanaPushError, match="check --token"):
        await push_all(PushOptions(url=url, token="wrong"))
    assert fake.datasources == {}


async def test_push_unreachable_grafana() -> None:
    with pytest.raises(GrafanaPushError, match="cannot reach Grafana"):
        await push_all(PushOptions(url="http://127.0.0.1:9", token=TOKEN))


async def test_dose_annotations_added_once(grafana: tuple[FakeGrafana, str], seeded: Seeded) -> None:
    fake, url = grafana
    opts = PushOptions(url=url, token=TOKEN, annotations=True, person="alice")
    first = await push_all(opts, settings=seeded.settings)
    assert fake.problems == []
    doses = seeded.seed.dose_times_ns
    assert first.annotations == 2 * len(doses)  # on Overview and Night
    overview = [a for a in fake.annotations if a["dashboardUID"] == "magsleep-overview"]
    assert sorted(a["time"] for a in overview) == [t // 1_000_000 for t in doses]
    assert all(DOSE_TAG in a["tags"] and "person:alice" in a["tags"] for a in overview)
    assert all("200 mg elemental" in a["text"] for a in overview)
    second = await push_all(opts, settings=seeded.settings)
    assert second.annotations == 0
    assert len(fake.annotations) == 2 * len(doses)


def test_cli_push() -> None:
    """The CLI is wired to push_all (exercised against an unreachable URL: clear error, exit 2)."""
    from typer.testing import CliRunner

    from collector.cli import app

    r = CliRunner().invoke(app, ["dashboards", "push", "--url", "http://127.0.0.1:9", "--token", TOKEN])
    assert r.exit_code == 2
    assert "cannot reach Grafana" in r.output
    assert TOKEN not in r.output
