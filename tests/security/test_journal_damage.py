"""Issue 20 #3: a damaged dose journal (doses.sqlite cut to half its size) stops nothing but doses.

`magsleep run` goes on collecting heart data, says what happened and how to recover, the API
answers 503 for doses (and /healthz says why), `magsleep dose add` explains the same, and the
damaged file is never written to.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from collector.app.daemon import run_daemon
from collector.ble.registry import DeviceRegistry, RegisteredDevice
from collector.doses.entities import DoseCreate
from collector.doses.service import DoseService
from collector.settings import ApiSettings, InfluxSettings, PersonSettings, Settings, StorageSettings
from collector.sim.bluez import heart_rate_feed, heart_rate_strap
from collector.storage import local_influx
from tests.cli.console import Console, flat

ADDR = "C0:FF:EE:00:0D:01"


async def damaged_journal(state_dir: Path) -> tuple[Path, str]:
    """A journal with 50 doses, truncated to half; its path and the digest of what is left."""
    settings = Settings(storage=StorageSettings(state_dir=state_dir),
                        persons=[PersonSettings(name="alice")])
    async with DoseService(settings) as svc:
        for k in range(50):
            await svc.add(DoseCreate(person="alice", amount_mg=100 + k, note="x" * 200))
    path = state_dir / "doses.sqlite"
    os.truncate(path, path.stat().st_size // 2)
    return path, digest(path)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_recovery_advice(text: str, path: Path) -> None:
    assert f"the dose journal {path} is damaged" in text, text
    assert "left untouched" in text and "restore a backup copy" in text
    assert f"sqlite3 {path} .recover | sqlite3" in text
    assert "heart data collection goes on" in text


async def test_run_collects_heart_data_while_the_journal_is_damaged(
    tmp_path: Path, virtual_bluez: Any, influx_server: Any, influx_db: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path, before = await damaged_journal(tmp_path)
    virtual_bluez.add_device(heart_rate_strap(ADDR, feed=heart_rate_feed(60)), paired=True)
    port = local_influx.free_port()
    settings = Settings(
        influx=InfluxSettings(embedded=False, url=influx_server.url, database=influx_db),
        storage=StorageSettings(state_dir=tmp_path, flush_interval_s=0.1),
        persons=[PersonSettings(name="alice")], api=ApiSettings(port=port))
    registry = DeviceRegistry(tmp_path / "devices.json",
                              [RegisteredDevice(ADDR, "h10-alice", "alice", paired=True)])
    stop = asyncio.Event()
    task = asyncio.create_task(run_daemon(settings, registry, stop_event=stop, serve_api=True))
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(150):
                assert not task.done(), task.exception()
                try:
                    async with http.get(f"{base}/healthz") as resp:
                        status, health = resp.status, await resp.json()
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("the daemon never answered /healthz")
            assert status == 503 and health["status"] == "degraded", health
            assert health["journal_ops"] is None
            assert_recovery_advice(" ".join(health["problems"]), path)
            async with http.post(f"{base}/api/v1/doses",
                                 json={"amount_mg": 300, "form": "citrate"}) as resp:
                assert resp.status == 503
                assert_recovery_advice((await resp.json())["error"], path)
            async with http.get(f"{base}/api/v1/doses") as resp:
                assert resp.status == 503
        for _ in range(200):  # heart data keep arriving
            rows = influx_server.rows("SELECT count(bpm) FROM heart_rate", influx_db)
            if rows and rows[0]["count"] >= 3:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("no heart data reached InfluxDB while the journal was damaged")
    finally:
        stop.set()
        result = await asyncio.wait_for(task, 15)
    assert result.sessions["h10-alice"].connects >= 1
    logged = " ".join(r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    assert_recovery_advice(logged, path)
    assert digest(path) == before, "the damaged journal was written to"


async def test_dose_add_explains_a_damaged_journal_and_leaves_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    path, before = await damaged_journal(home / "state")
    con = Console(home, {"persons": [{"name": "alice"}],
                         "influx": {"embedded": False, "url": "http://127.0.0.1:9"}})
    r = con.run("dose", "add", "300")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert_recovery_advice(flat(r.stderr), path)
    assert digest(path) == before
