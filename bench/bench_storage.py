"""Storage benchmarks (issue 2), each a ratio against a baseline measured in the same run.

1. Encoder: lines/s of magsleep's encoders vs influxdb-client's ``Point`` (build + to_line_protocol).
2. Ingest: 1M heart_rate/rr points through the pipeline (batching + outbox + writer) into a real
   private InfluxDB 1.6.7 vs a bare aiohttp bulk /write of pre-built lines.
3. Outbox drain after a simulated 24 h outage of 4 devices (about 1.5M points).

Run: .venv/bin/python -m bench.bench_storage [--points N] [--out bench/results/storage.md]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import aiohttp
from influxdb_client.client.write.point import Point as ClientPoint

from collector.settings import InfluxSettings, Settings, StorageSettings
from collector.storage import local_influx
from collector.storage.lineprotocol import Point, RowEncoder, Tags, encode_points
from collector.storage.pipeline import Pipeline

T0 = 1_732_400_000_000_000_000
TAGS = {"person": "alice", "device": "h10-alice", "source": "device"}


def best_rate(n: int, fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return n / min(times)


def rr_value(i: int) -> float:
    """A realistic RR interval in ms: whole 1/1024 s between about 0.59 and 1.27 s (700 values)."""
    return (600 + (i * 37) % 700) * 1000 / 1024


def bench_encoder(n: int = 100_000) -> list[tuple[str, float, float]]:
    tags = Tags(TAGS)
    hr = RowEncoder("heart_rate", [("bpm", "int"), ("contact", "bool")])
    rr = RowEncoder("rr", [("rr_ms", "float")])

    def client_hr() -> None:
        for i in range(n):
            ClientPoint("heart_rate").tag("person", "alice").tag("device", "h10-alice").tag("source", "device").field(
                "bpm", 50 + i % 40
            ).field("contact", True).time(T0 + i).to_line_protocol()

    def client_rr() -> None:
        for i in range(n):
            ClientPoint("rr").tag("person", "alice").tag("device", "h10-alice").tag("source", "device").field(
                "rr_ms", rr_value(i)
            ).time(T0 + i).to_line_protocol()

    base_hr = best_rate(n, client_hr, 3)
    base_rr = best_rate(n, client_rr, 3)
    rows = [
        (
            "RowEncoder heart_rate (bpm int, contact bool)",
            best_rate(n, lambda: hr.lines(tags, [(T0 + i, 50 + i % 40, True) for i in range(n)])),
            base_hr,
        ),
        (
            "RowEncoder rr (rr_ms float in 1/1024 s steps)",
            best_rate(n, lambda: rr.lines(tags, [(T0 + i, rr_value(i)) for i in range(n)])),
            base_rr,
        ),
        (
            "encode_points heart_rate (Point + Tags)",
            best_rate(
                n,
                lambda: encode_points(
                    [Point("heart_rate", tags, {"bpm": 50 + i % 40, "contact": True}, T0 + i) for i in range(n)]
                ),
            ),
            base_hr,
        ),
        (
            "encode_points heart_rate (Point + dict tags)",
            best_rate(
                n,
                lambda: encode_points(
                    [Point("heart_rate", TAGS, {"bpm": 50 + i % 40, "contact": True}, T0 + i) for i in range(n)]
                ),
            ),
            base_hr,
        ),
    ]
    return [(name, rate, rate / base) for name, rate, base in rows] + [
        ("influxdb-client Point heart_rate (baseline)", base_hr, 1.0),
        ("influxdb-client Point rr (baseline)", base_rr, 1.0),
    ]


def _points(n: int) -> list[Point]:
    """Half heart_rate, half rr, over 8 series (4 devices x 2 measurements)."""
    tagsets = [Tags(TAGS, device=f"dev{d}") for d in range(4)]
    out = []
    for i in range(n // 2):
        tags = tagsets[i % 4]
        t = T0 + (i // 4) * 10**9
        out.append(Point("heart_rate", tags, {"bpm": 50 + i % 40, "contact": True}, t))
        out.append(Point("rr", tags, {"rr_ms": 800.0 + i % 97}, t + 1))
    return out


def _query_count(url: str, db: str) -> int:
    q = urllib.parse.urlencode({"db": db, "q": "SELECT count(bpm) FROM heart_rate; SELECT count(rr_ms) FROM rr"})
    with urllib.request.urlopen(f"{url}/query?{q}") as resp:
        import json

        res = json.loads(resp.read())["results"]
    return sum(r["series"][0]["values"][0][1] for r in res if "series" in r)


def _create_db(url: str, db: str) -> None:
    data = urllib.parse.urlencode({"q": f'CREATE DATABASE "{db}"'}).encode()
    urllib.request.urlopen(urllib.request.Request(f"{url}/query", data=data)).read()


async def bare_write(url: str, db: str, lines: list[str], batch: int = 5000) -> float:
    bodies = ["\n".join(lines[i : i + batch]).encode() for i in range(0, len(lines), batch)]
    t = time.perf_counter()
    async with aiohttp.ClientSession() as s:
        for body in bodies:
            async with s.post(f"{url}/write", params={"db": db, "precision": "ns"}, data=body) as r:
                assert r.status == 204, await r.text()
    return time.perf_counter() - t


def settings_for(url: str, db: str, state: Path, outbox: bool) -> Settings:
    return Settings(
        influx=InfluxSettings(embedded=False, url=url, database=db),
        storage=StorageSettings(state_dir=state, outbox=outbox, batch_size=5000, max_retry_backoff_s=0.5),
    )


HR = RowEncoder("heart_rate", [("bpm", "int"), ("contact", "bool")])
RR = RowEncoder("rr", [("rr_ms", "float")])


def _readings(n: int) -> list[tuple[Tags, list[tuple[object, ...]], list[tuple[object, ...]]]]:
    """The same points as :func:`_points`, as per-device reading rows (what a device session holds)."""
    out: list[tuple[Tags, list[tuple[object, ...]], list[tuple[object, ...]]]] = []
    for d in range(4):
        tags = Tags(TAGS, device=f"dev{d}")
        idx = range(d, n // 2, 4)
        hr: list[tuple[object, ...]] = [(T0 + (i // 4) * 10**9, 50 + i % 40, True) for i in idx]
        rr: list[tuple[object, ...]] = [(T0 + (i // 4) * 10**9 + 1, 800.0 + i % 97) for i in idx]
        out.append((tags, hr, rr))
    return out


async def pipeline_ingest(url: str, db: str, n: int, state: Path, outbox: bool, mode: str) -> float:
    """Time from readings to every point accepted by InfluxDB."""
    pts = _points(n) if mode == "points" else []
    readings = _readings(n) if mode == "rows" else []
    t = time.perf_counter()
    async with Pipeline.from_settings(settings_for(url, db, state, outbox)) as pipe:
        if mode == "points":
            for i in range(0, len(pts), 5000):
                await pipe.put(pts[i : i + 5000])
        else:
            step = 1250
            for i in range(0, max(len(r[1]) for r in readings), step):
                for tags, hr, rr in readings:
                    await pipe.put_rows(HR, tags, hr[i : i + step])
                    await pipe.put_rows(RR, tags, rr[i : i + step])
        await pipe.flush(timeout=600)
    return time.perf_counter() - t


async def drain_after_outage(url: str, db: str, state: Path, n: int) -> tuple[float, float]:
    pts = _points(n)
    dead = settings_for("http://127.0.0.1:9", db, state, True)
    t = time.perf_counter()
    async with Pipeline.from_settings(dead) as pipe:
        for i in range(0, len(pts), 5000):
            await pipe.put(pts[i : i + 5000])
        await pipe.stop(flush_timeout=0)
    fill = time.perf_counter() - t
    t = time.perf_counter()
    async with Pipeline.from_settings(settings_for(url, db, state, True)) as pipe:
        await pipe.flush(timeout=900)
    return fill, time.perf_counter() - t


INGEST_KINDS = {
    "bare": "bare aiohttp /write of pre-built lines (baseline)",
    "rows-outbox": "pipeline from reading rows (RowEncoder), outbox on",
    "rows-memory": "pipeline from reading rows (RowEncoder), outbox off",
    "points-outbox": "pipeline from Point objects (encode_points), outbox on",
    "points-memory": "pipeline from Point objects (encode_points), outbox off",
}


async def bench_ingest(url: str, n: int, root: Path, reps: int = 3) -> list[tuple[str, float, float]]:
    lines = encode_points(_points(n))
    results: dict[str, list[float]] = {k: [] for k in INGEST_KINDS}
    for rep in range(reps):
        for kind in INGEST_KINDS:
            db = f"b_{kind.replace('-', '_')}_{rep}"
            _create_db(url, db)
            if kind == "bare":
                dt = await bare_write(url, db, lines)
            else:
                mode, box = kind.split("-")
                dt = await pipeline_ingest(url, db, n, root / f"{kind}{rep}", outbox=(box == "outbox"), mode=mode)
            assert _query_count(url, db) == n, f"{kind}: not every point landed"
            results[kind].append(n / dt)
    bare = statistics.median(results["bare"])
    return [
        (label, statistics.median(results[k]), statistics.median(results[k]) / bare)
        for k, label in INGEST_KINDS.items()
    ]


def table(rows: list[tuple[str, float, float]], unit: str) -> str:
    out = [f"| what | {unit} | ratio to baseline |", "| --- | ---: | ---: |"]
    out += [f"| {name} | {rate:,.0f} | {ratio:.2f} |" for name, rate, ratio in rows]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--drain-points", type=int, default=1_500_000)
    ap.add_argument("--out", type=Path, default=Path("bench/results/storage.md"))
    args = ap.parse_args()
    enc = bench_encoder()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        inst = local_influx.start(root / "influx")
        try:
            ingest = asyncio.run(bench_ingest(inst.url, args.points, root))
            _create_db(inst.url, "drain")
            fill, drain = asyncio.run(drain_after_outage(inst.url, "drain", root / "drain", args.drain_points))
            assert _query_count(inst.url, "drain") == args.drain_points
        finally:
            local_influx.stop(root / "influx")
    text = "\n".join(
        [
            "## Storage (issue 2)",
            "",
            f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, Python {platform.python_version()},"
            " 2 cores shared by client and the private InfluxDB 1.6.7; `python -m bench.bench_storage`.",
            "",
            "### Encoder (lines/s, best of 5; goal: at least 10x influxdb-client's Point)",
            "",
            table(enc, "lines/s"),
            "",
            f"### Ingest of {args.points:,} heart_rate/rr points into InfluxDB (points/s, median of 3)",
            "",
            "Goal: at least 0.8 of the bare rate with the outbox on, 0.9 with it off.",
            "",
            table(ingest, "points/s"),
            "",
            f"### Outbox drain after a simulated 24 h outage of 4 devices ({args.drain_points:,} points)",
            "",
            f"- filling the outbox while InfluxDB is unreachable: {fill:.1f} s"
            f" ({args.drain_points / fill:,.0f} points/s)",
            f"- draining it into InfluxDB after restart: {drain:.1f} s ({args.drain_points / drain:,.0f} points/s);"
            " every point arrived (count checked).",
            "",
        ]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
