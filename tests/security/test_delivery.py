"""Dose delivery from issue 20: a full outbox, edits in bulk, and what /healthz says meanwhile.

Each test runs against a private InfluxDB of its own (so stopping it disturbs no other test),
with small outboxes, short flush intervals and backoffs instead of long waits.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from collector.doses.api import DOSE_SERVICE, PIPELINE, create_app, mount
from collector.doses.service import DoseService
from collector.settings import InfluxSettings, Settings
from collector.storage import local_influx
from collector.storage.pipeline import Pipeline, Progress
from tests.doses.conftest import auth, make_settings

Client = TestClient[web.Request, web.Application]
DB = "doses"


@dataclass
class PrivateInflux:
    root: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        local_influx.stop(self.root)

    def start(self) -> None:
        local_influx.start(self.root, port=self.port)

    def dose_ids(self, db: str = DB) -> list[str]:
        q = urllib.parse.urlencode({"q": "SELECT dose_id FROM supplement_dose", "db": db})
        with urllib.request.urlopen(f"{self.url}/query?{q}", timeout=30) as resp:
            data = json.loads(resp.read())
        series = data["results"][0].get("series", [])
        return sorted(str(v[1]) for s in series for v in s["values"])


    def notes(self) -> list[str]:
        q = urllib.parse.urlencode({"q": "SELECT note FROM supplement_dose", "db": DB})
        with urllib.request.urlopen(f"{self.url}/query?{q}", timeout=30) as resp:
            data = json.loads(resp.read())
        return [str(v[1]) for s in data["results"][0].get("series", []) for v in s["values"]]


@pytest.fixture
def influx(tmp_path: Path) -> Iterator[PrivateInflux]:
    root = tmp_path / "influxdb"
    inst = local_influx.start(root)
    try:
        yield PrivateInflux(root, inst.port)
    finally:
        local_influx.stop(root)


def settings_for(tmp_path: Path, influx: PrivateInflux, **storage: Any) -> Settings:
    s = make_settings(tmp_path / "state", influx.url, DB)
    return s.model_copy(update={"storage": s.storage.model_copy(update=storage)})


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def daemon_api(tmp_path: Path, influx: PrivateInflux) -> AsyncIterator[tuple[Client, Pipeline]]:
    """The API as the daemon serves it (mounted, writing through its pipeline), with an outbox
    that holds about a dozen doses."""
    settings = settings_for(tmp_path, influx, flush_interval_s=0.05, max_retry_backoff_s=0.3)
    async with Pipeline.from_settings(settings, name="ble", max_outbox_bytes=3000) as pipe:
        app = web.Application()
        mount(app, settings, sink=pipe)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            yield client, pipe


def service(client: Client) -> DoseService:
    assert client.app is not None
    return client.app[DOSE_SERVICE]


async def post_dose(client: Client, k: int) -> str:
    at = (datetime.now(UTC) - timedelta(hours=2, minutes=k)).isoformat()
    r = await client.post("/api/v1/doses", json={"person": "alice", "amount_mg": 100 + k,
                                                 "taken_at": at}, headers=auth())
    assert r.status == 201, await r.text()
    return str((await r.json())["dose"]["id"])


async def test_full_outbox_once_then_every_dose_arrives_and_healthz_tells(
    daemon_api: tuple[Client, Pipeline], influx: PrivateInflux
) -> None:
    """Issue 20 #2: after the outbox was full, queued and new doses still reach InfluxDB."""
    client, pipe = daemon_api
    svc = service(client)
    r = await client.get("/healthz")
    assert r.status == 200
    assert (await r.json())["journal_ops"] == 0 and (await r.json())["outbox_rows"] == 0
    influx.stop()
    try:
        ids = [await post_dose(client, k) for k in range(40)]
        assert await svc.pending() > 0, "the small outbox should have refused some"
        assert pipe.pending()[0] > 0
        svc.stall_after_s = 0.2
        await asyncio.sleep(0.3)  # neither backlog moves
        r = await client.get("/healthz")
        body = await r.json()
        assert r.status == 503 and body["status"] == "degraded", body
        assert body["journal_ops"] == await svc.pending() and body["outbox_rows"] > 0
        assert any("journal operation(s)" in p for p in body["problems"])
        assert any("outbox row(s) have not reached InfluxDB" in p for p in body["problems"])
    finally:
        influx.start()

    async def all_delivered() -> bool:
        return await svc.pending() == 0 and pipe.pending() == (0, 0)

    await until(all_delivered, 30, "the journal and the outbox drain by themselves")
    ids.append(await post_dose(client, 41))
    await pipe.flush(timeout=20)
    assert influx.dose_ids() == sorted(ids)
    r = await client.get("/healthz")
    body = await r.json()
    assert r.status == 200 and body["status"] == "ok", body
    assert (body["journal_ops"], body["outbox_rows"], body["problems"]) == (0, 0, [])


def test_progress_stalls_only_while_a_backlog_waits_without_moving() -> None:
    now = [100.0]
    p = Progress(lambda: now[0])
    assert p.stalled_s(0) == 0.0
    p.observe(3)  # became non-empty at 100
    now[0] = 160.0
    assert p.stalled_s(3) == 60.0
    p.moved()  # some went out at 160
    now[0] = 170.0
    assert p.stalled_s(2) == 10.0
    assert p.stalled_s(0) == 0.0  # empty: nothing waits
    now[0] = 500.0
    assert p.stalled_s(1) == 0.0  # non-empty again from now on, not since the last move
    now[0] = 530.0
    assert p.stalled_s(1) == 30.0


async def test_api_logs_doses_while_the_embedded_influx_is_not_running(tmp_path: Path) -> None:
    """Issue 13 #4: `magsleep api` starts and takes doses before `magsleep influx start`."""
    base = make_settings(tmp_path / "state", "http://unused", "magsleep")
    settings = base.model_copy(update={
        "influx": InfluxSettings(embedded=True, database="magsleep"),
        "storage": base.storage.model_copy(update={"max_retry_backoff_s": 0.3})})
    root = tmp_path / "state" / "influxdb"
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1")) as client:
        first = await post_dose(client, 1)
        assert client.app is not None
        pipe = client.app[PIPELINE]
        assert isinstance(pipe, Pipeline) and pipe.pending()[1] == 1  # kept in the outbox
        inst = await asyncio.to_thread(local_influx.start, root)  # `magsleep influx start`
        try:
            second = await post_dose(client, 2)
            await pipe.flush(timeout=20)
            found = PrivateInflux(root, inst.port)
            found_ids = await asyncio.to_thread(found.dose_ids, "magsleep")
            assert found_ids == sorted([first, second])
        finally:
            await asyncio.to_thread(local_influx.stop, root)


async def test_edits_reach_influx_in_about_one_flush_interval_not_one_each(
    tmp_path: Path, influx: PrivateInflux
) -> None:
    """Issue 20 #5: 60 PATCHes (a delete and a put each) arrive together, not one per interval."""
    interval = 0.5
    settings = settings_for(tmp_path, influx, flush_interval_s=interval)
    async with Pipeline.from_settings(settings, name="ble") as pipe:
        app = web.Application()
        mount(app, settings, sink=pipe)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            ids = [await post_dose(client, k) for k in range(60)]
            await pipe.flush(timeout=20)
            deletes_before = pipe.stats.deletes
            for k, dose_id in enumerate(ids):
                r = await client.patch(f"/api/v1/doses/{dose_id}", json={"note": f"edited {k}"},
                                       headers=auth())
                assert r.status == 200, await r.text()
            loop = asyncio.get_running_loop()
            t0 = loop.time()

            async def delivered() -> bool:
                return pipe.pending() == (0, 0)

            await until(delivered, 20 * interval, "the edits reach InfluxDB")
            intervals = (loop.time() - t0) / interval
            assert pipe.stats.deletes - deletes_before == 60
            assert intervals < 3, f"the last edits took {intervals:.1f} flush intervals"
    notes = influx.notes()
    assert sorted(notes) == sorted(f"edited {k}" for k in range(60))
