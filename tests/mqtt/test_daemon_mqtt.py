"""`magsleep run` with [mqtt]: the broker down at start never stops collection; once it is up, Home
Assistant sees the wearable and its button logs a dose through the daemon's pipeline."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from collector.app.daemon import run_daemon
from collector.ble.registry import DeviceRegistry, RegisteredDevice
from collector.doses.entities import DoseCreate
from collector.doses.service import DoseService
from collector.settings import InfluxSettings, MqttSettings, PersonSettings, Settings, StorageSettings
from collector.sim.bluez import heart_rate_feed, heart_rate_strap
from tests.mqtt.conftest import Broker, home_assistant

ADDR = "C0:FF:EE:00:0B:02"


async def test_daemon_collects_with_the_broker_down_then_serves_home_assistant(
    tmp_path, virtual_bluez, influx_server, influx_db, broker: Broker
):
    virtual_bluez.add_device(heart_rate_strap(ADDR, feed=heart_rate_feed(60)), paired=True)
    settings = Settings(influx=InfluxSettings(embedded=False, url=influx_server.url, database=influx_db),
                        storage=StorageSettings(state_dir=tmp_path, flush_interval_s=0.1),
                        persons=[PersonSettings(name="alice")],
                        mqtt=MqttSettings(host="127.0.0.1", port=broker.port, refresh_s=1.0))
    async with DoseService(settings) as svc:  # an earlier evening's dose: what the button copies
        await svc.add(DoseCreate(person="alice", amount_mg=250.0, form="citrate",
                                 taken_at=datetime.now(UTC) - timedelta(days=2)))
    registry = DeviceRegistry(tmp_path / "devices.json", [RegisteredDevice(ADDR, "h10-alice", "alice", paired=True)])
    broker.stop()
    stop = asyncio.Event()
    task = asyncio.create_task(run_daemon(settings, registry, stop_event=stop))
    try:
        for _ in range(100):  # collecting without a broker
            if influx_server.rows("SELECT count(bpm) FROM heart_rate", influx_db):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("no heart rate reached InfluxDB while the broker was down")
        broker.start()
        async with home_assistant(broker.port) as ha:
            await ha.wait_for("magsleep/device/h10-alice/connected", "ON", timeout=20)
            await ha.wait_for("magsleep/person/alice/dose_logged", "OFF")
            await ha.press("magsleep/person/alice/cmd/took_magnesium")
            result = await ha.wait_for("magsleep/person/alice/button_result")
            assert result.startswith("logged 250 mg citrate at "), result
            await ha.wait_for("magsleep/person/alice/dose_logged", "ON")
            stop.set()
            done = await asyncio.wait_for(task, 15)
            await ha.wait_for("magsleep/status", "offline")
    finally:
        stop.set()
        if not task.done():
            await asyncio.wait_for(task, 15)
    assert done.points_forwarded > 0
    rows = influx_server.rows("SELECT amount_mg, form FROM supplement_dose", influx_db)
    assert sorted((r["amount_mg"], r["form"]) for r in rows) == [(250.0, "citrate"), (250.0, "citrate")]
