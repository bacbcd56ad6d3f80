"""InfluxReader: JSON and MessagePack answers (real InfluxDB 1.6.7 and a JSON-only local server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiohttp import web

from collector.errors import QueryError
from collector.storage.lineprotocol import Point
from collector.storage.pipeline import Pipeline
from collector.storage.reader import MSGPACK, InfluxReader
from tests.conftest import InfluxServer
from tests.storage.helpers import make_settings

T0 = 1_732_400_000_000_000_000


async def _write(settings, points: list[Point]) -> None:
    async with Pipeline.from_settings(settings) as pipe:
        await pipe.put(points)
        await pipe.flush(timeout=20)
        assert pipe.rejected_count() == 0


async def test_msgpack_answer_equals_json_with_typed_values(
    influx_server: InfluxServer, influx_db: str, tmp_path: Path
) -> None:
    settings = make_settings(influx_server.url, influx_db, tmp_path)
    pts = [Point("rr", {"person": "alice", "device": d, "source": "sim"}, {"rr_ms": 800.0 + i * 0.5}, T0 + i)
           for d in ("a", "b") for i in range(25_000 if d == "a" else 3)]  # more than one 20,000-row chunk
    await _write(settings, pts)
    q = "SELECT rr_ms FROM rr GROUP BY device, source"
    async with InfluxReader.from_settings(settings) as r:
        as_json = await r.raw(q)
        as_msgpack = await r.raw(q, binary=True)
    assert [s["tags"] for s in as_msgpack[0]["series"]] == [{"device": "a", "source": "sim"},
                                                            {"device": "b", "source": "sim"}]
    for sj, sm in zip(as_json[0]["series"], as_msgpack[0]["series"], strict=True):
        assert len(sm["values"]) == len(sj["values"])
        assert [list(v) for v in sm["values"]] == sj["values"]  # same numbers
    values = as_msgpack[0]["series"][0]["values"]
    assert len(values) == 25_000  # the chunks were merged into one series
    # JSON renders 800.0 as 800 (an int); MessagePack keeps the float a float
    assert isinstance(as_json[0]["series"][0]["values"][0][1], int)
    assert isinstance(values[0][1], float) and values[0][1] == 800.0
    assert isinstance(values[0][0], int) and values[0][0] == T0


async def test_msgpack_errors_are_query_errors(influx_server: InfluxServer, influx_db: str, tmp_path: Path) -> None:
    settings = make_settings(influx_server.url, influx_db, tmp_path)
    async with InfluxReader.from_settings(settings) as r:
        with pytest.raises(QueryError, match=r"refused the query \(400\).*expected identifier"):
            await r.raw("SELECT nope FROM", binary=True)
        with pytest.raises(QueryError, match=r"InfluxQL error: .*not compatible"):
            await r.raw("SELECT * FROM rr WHERE time > 'x'", binary=True)


async def _serve(handler) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_get("/query", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


@pytest.mark.parametrize("tail", ['{"error": "query interrupted"}', "<html>proxy timeout</html>"])
async def test_an_answer_broken_off_midway_is_an_error_not_fewer_rows(tmp_path: Path, tail: str) -> None:
    async def query(request: web.Request) -> web.Response:
        first = {"results": [{"statement_id": 0, "series": [
            {"name": "rr", "columns": ["time", "rr_ms"], "values": [[T0, 800.5]], "partial": True}]}]}
        return web.Response(text=json.dumps(first) + "\n" + tail + "\n", content_type="application/json")

    runner, port = await _serve(query)
    try:
        settings = make_settings(f"http://127.0.0.1:{port}", "db", tmp_path)
        async with InfluxReader.from_settings(settings) as r:
            with pytest.raises(QueryError, match="InfluxDB error"):
                await r.raw("SELECT rr_ms FROM rr")
    finally:
        await runner.cleanup()


async def test_server_answering_json_only_still_works(tmp_path: Path) -> None:
    """A server that ignores ``Accept: application/x-msgpack`` (InfluxDB 2.x/3.x compatibility
    APIs may) answers JSON, which is decoded as usual; loopback requests ask for no gzip."""
    seen: list[tuple[str | None, str | None]] = []

    async def query(request: web.Request) -> web.Response:
        seen.append((request.headers.get("Accept"), request.headers.get("Accept-Encoding")))
        doc = {"results": [{"statement_id": 0, "series": [
            {"name": "rr", "tags": {"device": "a"}, "columns": ["time", "rr_ms"], "values": [[T0, 800.5]]}]}]}
        return web.Response(text=json.dumps(doc) + "\n", content_type="application/json")

    runner, port = await _serve(query)
    try:
        settings = make_settings(f"http://127.0.0.1:{port}", "db", tmp_path)
        async with InfluxReader.from_settings(settings) as r:
            res = await r.raw("SELECT rr_ms FROM rr GROUP BY device", binary=True)
        assert res[0]["series"][0]["values"] == [[T0, 800.5]]
        assert seen == [(MSGPACK, "identity")]
    finally:
        await runner.cleanup()
