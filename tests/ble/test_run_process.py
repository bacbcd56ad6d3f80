"""`magsleep run` as a real process: streams, stops on SIGTERM with exit 0; InfluxDB restart loses nothing."""

from __future__ import annotations

import asyncio

from collector.sim.bluez import heart_rate_feed, heart_rate_strap
from tests.ble.magsleep_process import run_until_then_sigterm, write_run_config
from tests.ble.test_daemon import Run, deliver_outbox, make_settings, registry

A1 = "C0:FF:EE:00:00:01"


async def test_magsleep_run_process_stops_cleanly_on_sigterm(tmp_path, virtual_bluez, influx_server, influx_db):
    dev = virtual_bluez.add_device(heart_rate_strap(A1, feed=heart_rate_feed(600, interval_s=0.05)), paired=True)
    cfg = write_run_config(tmp_path, influx_server, influx_db, A1)
    code, out = await run_until_then_sigterm(cfg, lambda: dev.stats.notifications_sent >= 20)
    assert code == 0, out
    assert "stopping: disconnecting 1 device(s)" in out
    sent = dev.stats.notifications_sent
    assert not dev.connected
    settings = make_settings(tmp_path, influx_server, influx_db)
    await deliver_outbox(settings)  # normally already flushed; never lost either way
    rows = influx_server.rows("SELECT count(bpm) FROM heart_rate", influx_db)
    assert rows[0]["count"] == sent


async def test_influxdb_restart_while_streaming_loses_nothing(tmp_path, fast_bluez, compressed_clock,
                                                              influx_server, influx_db):
    clock = compressed_clock
    dev = fast_bluez.add_device(heart_rate_strap(A1, feed=heart_rate_feed(400)), paired=True)
    settings = make_settings(tmp_path, influx_server, influx_db)
    run = Run(settings, registry(tmp_path, (A1, "h10", "alice")), clock)
    await clock.sleep(100)
    await asyncio.to_thread(influx_server.stop)
    try:
        await clock.sleep(100)
    finally:
        await asyncio.to_thread(influx_server.start)
    await clock.sleep(210)
    result = await run.stop()
    await deliver_outbox(settings)
    rows = influx_server.rows("SELECT count(bpm) FROM heart_rate", influx_db)
    assert rows[0]["count"] == dev.stats.notifications_sent == result.sessions["h10"].notifications >= 350

