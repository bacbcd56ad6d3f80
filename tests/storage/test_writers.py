"""Writers against local HTTP servers: the 2.x wire format, and how the pipeline sorts errors."""

from __future__ import annotations

import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from collector.errors import WriteError
from collector.settings import InfluxSettings, Settings, StorageSettings
from collector.storage.connection import influx_target
from collector.storage.lineprotocol import Point
from collector.storage.pipeline import Pipeline, backoff_delay, write_action
from collector.storage.writers import V1Writer, V2Writer
from tests.conftest import InfluxServer

T0 = 1_732_400_000_000_000_000


@dataclass
class Captured:
    requests: list[tuple[str, dict[str, str], dict[str, str], bytes]] = field(default_factory=list)
    respond: Callable[[int, bytes], web.Response] = lambda i, body: web.Response(status=204)


@pytest.fixture
async def fake_influx(unused_tcp_port: int) -> AsyncIterator[tuple[str, Captured]]:
    cap = Captured()

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        cap.requests.append((request.path, dict(request.query), dict(request.headers), body))
        if request.path == "/query":  # CREATE DATABASE from ensure_database
            return web.json_response({"results": [{"statement_id": 0}]})
        return cap.respond(sum(1 for r in cap.requests if r[0] != "/query"), body)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", unused_tcp_port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{unused_tcp_port}", cap
    finally:
        await runner.cleanup()


def v2_settings(url: str, tmp_path: Path) -> Settings:
    return Settings(
        influx=InfluxSettings(embedded=False, version=2, url=url, org="home", bucket="sleep", token="s3cret-token"),
        storage=StorageSettings(state_dir=tmp_path, flush_interval_s=0.05, max_retry_backoff_s=0.1),
    )


async def test_v2_writer_wire_format_lands_in_real_influxdb(
    fake_influx: tuple[str, Captured], influx_server: InfluxServer, influx_db: str, tmp_path: Path
) -> None:
    url, cap = fake_influx
    settings = v2_settings(url, tmp_path)
    pts = [
        Point(
            "heart_rate",
            {"person": "al ice", "device": "h,10", "source": "device"},
            {"bpm": 55 + i, "contact": True},
            T0 + i,
        )
        for i in range(20)
    ]
    async with Pipeline.from_settings(settings) as pipe:
        await pipe.put(pts)
        await pipe.flush(timeout=10)
    assert cap.requests, "no request reached the server"
    path, query, headers, _ = cap.requests[0]
    assert path == "/api/v2/write"
    assert query == {"org": "home", "bucket": "sleep", "precision": "ns"}
    assert headers["Authorization"] == "Token s3cret-token"
    # Replay the captured bodies into the real 1.6.7 /write: valid line protocol, same points.
    for _, _, _, body in cap.requests:
        req = urllib.request.Request(f"{influx_server.url}/write?db={influx_db}&precision=ns", data=body, method="POST")
        with urllib.request.urlopen(req) as resp:
            assert resp.status == 204
    rows = influx_server.rows("SELECT * FROM heart_rate GROUP BY *", influx_db)
    assert sorted((r["time"], r["bpm"], r["contact"], r["_tags"]["person"], r["_tags"]["device"]) for r in rows) == [
        (T0 + i, 55 + i, True, "al ice", "h,10") for i in range(20)
    ]


async def test_v2_errors_carry_status_and_retry_after(fake_influx: tuple[str, Captured], tmp_path: Path) -> None:
    url, cap = fake_influx
    cap.respond = lambda i, body: web.json_response(
        {"code": "too many", "message": "slow down"}, status=429, headers={"Retry-After": "3"}
    )
    w = V2Writer(influx_target(v2_settings(url, tmp_path)))
    try:
        with pytest.raises(WriteError) as ei:
            await w.write(b"m v=1i 1")
    finally:
        await w.close()
    assert ei.value.status == 429
    assert ei.value.retry_after == 3.0
    assert "s3cret" not in str(ei.value)


def v1_settings(url: str, tmp_path: Path, **storage: object) -> Settings:
    return Settings(
        influx=InfluxSettings(embedded=False, url=url, database="db", username="u", password="pw"),
        storage=StorageSettings(state_dir=tmp_path, flush_interval_s=0.02, max_retry_backoff_s=0.05, **storage),
    )


async def test_throttle_honours_retry_after_then_delivers(fake_influx: tuple[str, Captured], tmp_path: Path) -> None:
    url, cap = fake_influx
    cap.respond = lambda i, body: (
        web.Response(status=429, headers={"Retry-After": "0.2"}) if i == 1 else web.Response(status=204)
    )
    async with Pipeline.from_settings(v1_settings(url, tmp_path)) as pipe:
        await pipe.put_lines([f"m v={i}i {i}" for i in range(10)])
        await pipe.flush(timeout=10)
        assert pipe.stats.errors_by_status == {429: 1}
    writes = [r for r in cap.requests if r[0] == "/write"]
    assert len(writes) == 2
    assert writes[0][3] == writes[1][3]
    assert writes[0][1]["db"] == "db"
    assert writes[0][2]["Authorization"].startswith("Basic ")


async def test_server_errors_retry_with_backoff_until_accepted(
    fake_influx: tuple[str, Captured], tmp_path: Path
) -> None:
    url, cap = fake_influx
    cap.respond = lambda i, body: web.Response(status=500 if i <= 4 else 204)
    async with Pipeline.from_settings(v1_settings(url, tmp_path)) as pipe:
        await pipe.put_lines(["m v=1i 1"])
        await pipe.flush(timeout=10)
        assert pipe.stats.errors_by_status.get(500) is not None
    assert len([r for r in cap.requests if r[0] == "/write"]) >= 2


async def test_413_splits_the_batch(fake_influx: tuple[str, Captured], tmp_path: Path) -> None:
    url, cap = fake_influx
    cap.respond = lambda i, body: web.Response(status=413 if body.count(b"\n") >= 25 else 204)
    async with Pipeline.from_settings(v1_settings(url, tmp_path, batch_size=100)) as pipe:
        await pipe.put_lines([f"m v={i}i {i}" for i in range(100)])
        await pipe.flush(timeout=10)
        assert pipe.rejected_count() == 0
    accepted = [b for p, _, _, b in cap.requests if p == "/write" and b.count(b"\n") < 25]
    lines = sorted(ln for b in accepted for ln in b.decode().split("\n"))
    assert lines == sorted(f"m v={i}i {i}" for i in range(100))


async def test_v1_writer_connection_error_is_status_0(tmp_path: Path) -> None:
    w = V1Writer(influx_target(v1_settings("http://127.0.0.1:9", tmp_path)))
    try:
        with pytest.raises(WriteError) as ei:
            await w.write(b"m v=1i 1")
    finally:
        await w.close()
    assert ei.value.status == 0
    assert "pw" not in str(ei.value)


@pytest.mark.parametrize(
    ("status", "action"),
    [
        (400, "drop"),
        (422, "drop"),
        (413, "split"),
        (429, "throttle"),
        (503, "throttle"),
        (500, "retry"),
        (502, "retry"),
        (0, "retry"),
        (401, "retry"),
        (404, "retry"),
    ],
)
def test_classify(status: int, action: str) -> None:
    assert write_action(status) == action


@pytest.mark.parametrize(
    ("attempt", "cap", "expected"),
    [(0, 60, 0.0), (1, 60, 0.5), (2, 60, 1.0), (3, 60, 2.0), (8, 60, 60.0), (50, 60, 60.0), (3, 1.5, 1.5)],
)
def test_backoff_delay(attempt: int, cap: float, expected: float) -> None:
    assert backoff_delay(attempt, cap) == expected


def test_backoff_jitter_stays_within_bounds() -> None:
    import random

    rng = random.Random(1)
    for attempt in range(1, 10):
        d = backoff_delay(attempt, 30, jitter=0.2, rng=rng)
        base = min(30, 0.5 * 2 ** (attempt - 1))
        assert 0.8 * base <= d <= min(30, 1.2 * base)
