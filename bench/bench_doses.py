"""Dose API benchmark (issue 5): request rates as ratios against GET /healthz in the same run.

Each POST is a SQLite journal transaction (WAL, synchronous=FULL) plus a commit to the
pipeline's outbox; the baseline is the cheapest authenticated-free route of the same server.
Runs against a private InfluxDB 1.6.7 on loopback.

Run: .venv/bin/python -m bench.bench_doses [--n 500] [--out bench/results/doses.md]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from collector.doses.api import PIPELINE, create_app
from collector.settings import (
    ApiSettings,
    InfluxSettings,
    PersonSettings,
    Settings,
    StorageSettings,
)
from collector.storage import local_influx
from collector.storage.pipeline import Pipeline

TOKEN = "bench-token"
H = {"Authorization": f"Bearer {TOKEN}"}


async def run(n: int, root: Path, url: str) -> list[tuple[str, float, float]]:
    s = Settings(
        influx=InfluxSettings(embedded=False, url=url, database="bench_doses"),
        storage=StorageSettings(state_dir=root / "state", flush_interval_s=0.1),
        persons=[PersonSettings(name="alice", timezone="Europe/Berlin")],
        api=ApiSettings(tokens=[SecretStr(TOKEN)]),
    )
    at = datetime.now(UTC) - timedelta(hours=1)
    rows: list[tuple[str, float, float]] = []
    async with TestClient(TestServer(create_app(s), host="127.0.0.1")) as c:

        async def timed(label: str, coros: list[Any], concurrent: bool) -> float:
            t = time.perf_counter()
            if concurrent:
                await asyncio.gather(*coros)
            else:
                for co in coros:
                    await co
            rate = len(coros) / (time.perf_counter() - t)
            rows.append((label, rate, 0.0))
            return rate

        async def get_health() -> None:
            r = await c.get("/healthz")
            assert r.status == 200
            await r.read()

        async def post(body: dict[str, Any], expect: int) -> None:
            r = await c.post("/api/v1/doses", json=body, headers=H)
            assert r.status == expect, await r.text()
            await r.read()

        base = await timed("GET /healthz, sequential (baseline)", [get_health() for _ in range(n)], False)
        bodies = [{"id": str(uuid.uuid4()), "person": "alice", "amount_mg": 100,
                   "taken_at": (at + timedelta(seconds=i)).isoformat()} for i in range(2 * n)]
        await timed("POST new dose, sequential", [post(b, 201) for b in bodies[:n]], False)
        sem = asyncio.Semaphore(50)

        async def limited(b: dict[str, Any], expect: int) -> None:
            async with sem:
                await post(b, expect)

        await timed("POST new dose, 50 in flight", [limited(b, 201) for b in bodies[n:]], True)
        await timed("POST replay of a stored id (idempotent), sequential",
                    [post(b, 200) for b in bodies[:n]], False)
        app = c.app
        assert app is not None
        pipe = app[PIPELINE]
        assert isinstance(pipe, Pipeline)
        t = time.perf_counter()
        await pipe.flush(timeout=120)
        rows.append((f"flush: all {2 * n} doses in InfluxDB after the last POST (s)",
                     time.perf_counter() - t, 0.0))
    return [(label, rate, rate / base if "flush" not in label else 0.0) for label, rate, _ in rows]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--out", type=Path, default=Path("bench/results/doses.md"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        inst = local_influx.start(root / "influx")
        try:
            rows = asyncio.run(run(args.n, root, inst.url))
        finally:
            local_influx.stop(root / "influx")
    lines = [
        "# Dose API benchmark (bench/bench_doses.py)",
        "",
        f"{args.n} requests per row (2 x {args.n} distinct doses), aiohttp client and server in one "
        "process on loopback, journal WAL synchronous=FULL, pipeline with a SQLite outbox, private "
        f"InfluxDB 1.6.7. Machine: {platform.machine()}, 2 cores shared with other work; Python "
        f"{platform.python_version()}. Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        "| what | requests/s | vs GET /healthz |",
        "| --- | ---: | ---: |",
    ]
    for label, rate, ratio in rows:
        if "flush" in label:
            lines.append(f"| {label} | {rate:.2f} s | |")
        else:
            lines.append(f"| {label} | {rate:,.0f} | {ratio:.2f}x |")
    lines += ["", "A person logs a few doses a day: any rate above a few per second is enough; the "
              "numbers show the cost of durability (two fsynced SQLite commits per dose) relative to "
              "a bare request.", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
