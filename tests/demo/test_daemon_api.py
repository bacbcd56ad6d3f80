"""`magsleep run` serves the dose API beside the BLE sessions, writing through the daemon's pipeline."""

from __future__ import annotations

import asyncio

import aiohttp

from collector.app.daemon import run_daemon
from collector.ble.registry import DeviceRegistry, RegisteredDevice
from collector.settings import ApiSettings, InfluxSettings, PersonSettings, Settings, StorageSettings
from collector.sim.bluez import heart_rate_feed, heart_rate_strap
from collector.storage import local_influx

ADDR = "C0:FF:EE:00:0A:01"


async def test_daemon_answers_healthz_and_logs_a_dose_through_its_pipeline(
    tmp_path, virtual_bluez, influx_server, influx_db
):
    virtual_bluez.add_device(heart_rate_strap(ADDR, feed=heart_rate_feed(60)), paired=True)
    port = local_influx.free_port()
    settings = Settings(influx=InfluxSettings(embedded=False, url=influx_server.url, database=influx_db),
                        storage=StorageSettings(state_dir=tmp_path), persons=[PersonSettings(name="alice")],
                        api=ApiSettings(port=port))
    registry = DeviceRegistry(tmp_path / "devices.json", [RegisteredDevice(ADDR, "h10-alice", "alice", paired=True)])
    stop = asyncio.Event()
    task = asyncio.create_task(run_daemon(settings, registry, stop_event=stop, serve_api=True))
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.get(f"{base}/healthz") as resp:
                        assert resp.status == 200
                        health = await resp.json()
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("the daemon never answered /healthz")
            assert health["status"] == "ok"
            async with http.post(f"{base}/api/v1/doses", json={"amount_mg": 300, "form": "citrate"}) as resp:
                assert resp.status == 201, await resp.text()
    finally:
        stop.set()
        result = await asyncio.wait_for(task, 15)
    assert result.sessions["h10-alice"].connects >= 1
    rows = influx_server.rows("SELECT amount_mg, person FROM supplement_dose", influx_db)
    assert [(r["amount_mg"], r["_tags"].get("person", r.get("person"))) for r in rows] == [(300.0, "alice")]


async def test_daemon_computes_nights_on_its_schedule(tmp_path, virtual_bluez, influx_server, influx_db):
    """`magsleep run` runs `nights compute` as a child on start (then every compute_every_min)."""
    from collector.settings import load_settings
    from tests.nights.test_schedule import backfilled_config, wait_for_night

    virtual_bluez.add_device(heart_rate_strap(ADDR, feed=heart_rate_feed(60)), paired=True)
    cfg = await backfilled_config(influx_server, influx_db, tmp_path)
    settings = load_settings(cfg)
    registry = DeviceRegistry(tmp_path / "devices.json", [RegisteredDevice(ADDR, "h10-sam", "sam", paired=True)])
    stop = asyncio.Event()
    task = asyncio.create_task(run_daemon(settings, registry, stop_event=stop, compute_nights=True, config=cfg))
    try:
        await wait_for_night(influx_server, influx_db, "the daemon")
    finally:
        stop.set()
        result = await asyncio.wait_for(task, 15)
    assert result.sessions["h10-sam"].connects >= 1
