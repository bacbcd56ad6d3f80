"""Durability: InfluxDB outages and a writer killed with SIGKILL lose nothing and duplicate nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from collector.storage.lineprotocol import Point
from collector.storage.pipeline import Pipeline
from tests.conftest import InfluxServer
from tests.storage.helpers import make_settings

T0 = 1_732_400_000_000_000_000


def hr(i: int, device: str = "d1") -> Point:
    return Point(
        "heart_rate", {"person": "alice", "device": device, "source": "sim"}, {"bpm": 50 + i % 40}, T0 + i * 10**9
    )


async def test_outage_mid_stream_loses_nothing(influx_server: InfluxServer, influx_db: str, tmp_path: Path) -> None:
    settings = make_settings(
        influx_server.url, influx_db, tmp_path, batch_size=200, flush_interval_s=0.05, max_retry_backoff_s=0.3
    )
    n = 3000
    async with Pipeline.from_settings(settings) as pipe:
        for i in range(0, 1000, 50):
            await pipe.put([hr(j) for j in range(i, i + 50)])
            await asyncio.sleep(0.005)
        influx_server.stop()
        try:
            for i in range(1000, 2000, 50):
                await pipe.put([hr(j) for j in range(i, i + 50)])
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.5)  # the sender meets the outage and backs off
            assert pipe.pending()[1] > 0
            assert pipe.stats.errors_by_status.get(0, 0) >= 1
        finally:
            influx_server.start()
        for i in range(2000, n, 50):
            await pipe.put([hr(j) for j in range(i, i + 50)])
        await pipe.flush(timeout=60)
        assert pipe.pending() == (0, 0)
        assert pipe.rejected_count() == 0
    rows = influx_server.rows("SELECT bpm FROM heart_rate", influx_db)
    times = [r["time"] for r in rows]
    assert len(times) == n
    assert sorted(times) == [T0 + i * 10**9 for i in range(n)]
    assert all(r["bpm"] == 50 + i % 40 for i, r in enumerate(sorted(rows, key=lambda r: r["time"])))


async def test_restart_drains_outbox_left_while_influxdb_was_down(
    influx_server: InfluxServer, influx_db: str, tmp_path: Path
) -> None:
    settings = make_settings(influx_server.url, influx_db, tmp_path, max_retry_backoff_s=0.2)
    # InfluxDB unreachable (a closed port): points stay in the outbox across a pipeline restart.
    dead = make_settings("http://127.0.0.1:9", influx_db, tmp_path, max_retry_backoff_s=0.2)
    async with Pipeline.from_settings(dead) as pipe:
        await pipe.put([hr(i) for i in range(500)])
        await pipe.stop(flush_timeout=0.3)
        assert pipe.pending()[1] == 500
    async with Pipeline.from_settings(settings) as pipe:
        assert pipe.pending()[1] == 500
        await pipe.flush(timeout=20)
    assert influx_server.rows("SELECT count(bpm) FROM heart_rate", influx_db)[0]["count"] == 500


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from collector.settings import InfluxSettings, Settings, StorageSettings
    from collector.storage.lineprotocol import Point
    from collector.storage.pipeline import Pipeline

    url, db, state = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    T0 = 1_732_400_000_000_000_000

    async def main() -> None:
        s = Settings(influx=InfluxSettings(embedded=False, url=url, database=db),
                     storage=StorageSettings(state_dir=state, batch_size=1000, flush_interval_s=0.02))
        async with Pipeline.from_settings(s) as pipe:
            i = 0
            while True:
                await pipe.put([Point("rr", {"person": "alice", "device": "d", "source": "sim"},
                                      {"rr_ms": 800.0 + j % 100}, T0 + j * 10**6) for j in range(i, i + 250)])
                i += 250
                print(i, flush=True)

    asyncio.run(main())
    """
)


async def test_sigkill_mid_batch_loses_nothing_committed(
    influx_server: InfluxServer, influx_db: str, tmp_path: Path
) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    proc = subprocess.Popen(
        [sys.executable, str(script), influx_server.url, influx_db, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
    )
    assert proc.stdout is not None
    committed = 0
    for line in proc.stdout:
        committed = int(line)
        if committed >= 20_000:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # Whatever the writer reported as committed must arrive once the outbox drains.
    settings = make_settings(influx_server.url, influx_db, tmp_path)
    async with Pipeline.from_settings(settings) as pipe:
        await pipe.flush(timeout=60)
    rows = influx_server.rows("SELECT rr_ms FROM rr", influx_db)
    times = {r["time"] for r in rows}
    assert len(times) == len(rows)  # one point per timestamp: no duplicates
    expected = {T0 + j * 10**6 for j in range(committed)}
    assert expected <= times


async def test_outbox_bound_warns_as_it_fills_and_refuses_beyond(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from collector.errors import OutboxFullError

    dead = make_settings("http://127.0.0.1:9", "db", tmp_path, max_retry_backoff_s=0.2, outbox_max_mb=1)
    caplog.set_level("WARNING", logger="collector.storage.pipeline")
    async with Pipeline.from_settings(dead) as pipe:
        line = "heart_rate,device=d,person=alice,source=sim bpm=60i "
        accepted = 0
        refused: OutboxFullError | None = None
        for i in range(100_000):
            try:
                await pipe.put_lines([f"{line}{T0 + j}" for j in range(i * 100, i * 100 + 100)])
            except OutboxFullError as exc:
                refused = exc
                break
            accepted += 100
        assert refused is not None
        assert "storage.outbox_max_mb" in str(refused)
        warnings = [r.getMessage() for r in caplog.records if "outbox is" in r.getMessage()]
        assert [w.split("%")[0] for w in warnings] == ["outbox is 50", "outbox is 80", "outbox is 95"]
        assert pipe.pending()[1] == accepted  # what was accepted is kept; only new points are refused
        await pipe.stop(flush_timeout=0)
    # Nothing already stored is lost: a restarted pipeline still holds every accepted line.
    async with Pipeline.from_settings(dead) as pipe:
        assert pipe.pending()[1] == accepted
        await pipe.stop(flush_timeout=0)
