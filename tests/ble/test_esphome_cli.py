"""scan / pair through ESPHome proxies: in the test loop, and through the installed console script."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from aioesphomeapi.client import APIClient

from collector.ble import pairing
from collector.ble.registry import DeviceRegistry
from collector.errors import ConfigError
from collector.settings import BleSettings, InfluxSettings, PersonSettings, ProxySettings, Settings, StorageSettings
from collector.sim.bluez import VirtualBlueZ, heart_rate_feed, heart_rate_strap
from collector.sim.esphome import VirtualEsphomeProxy
from tests.ble.magsleep_process import run_until_then_sigterm, write_run_config
from tests.cli.console import Console

A1, A2 = "C0:FF:EE:00:00:01", "C0:FF:EE:00:00:02"
T = TypeVar("T")


def proxy_settings(px: VirtualEsphomeProxy) -> ProxySettings:
    return ProxySettings(host=px.host, port=px.port, name=px.name)


async def test_scan_lists_local_and_proxied_devices_with_their_source(virtual_bluez: VirtualBlueZ):
    virtual_bluez.add_device(heart_rate_strap(A2, "Polar H7 local"))
    async with VirtualEsphomeProxy.start(name="bedroom-proxy") as px:
        px.add_device(heart_rate_strap(A1, "Polar H10 bedroom"), rssi=-67)
        found = await pairing.scan(0.5, proxies=[proxy_settings(px)])
    assert (found[A1].via, found[A1].name, found[A1].rssi, found[A1].profiles) == (
        "bedroom-proxy", "Polar H10 bedroom", -67, ("heart_rate",))
    assert found[A2].via == "local" and found[A2].profiles == ("heart_rate",)


async def test_pair_through_a_proxy_bonds_reads_info_and_frees_the_slot(tmp_path):
    async with VirtualEsphomeProxy.start(name="bedroom-proxy") as px:
        dev = px.add_device(heart_rate_strap(A1, "Polar H10 X", model="H10", firmware="3.1.1"))
        settings = Settings(influx=InfluxSettings(embedded=False), storage=StorageSettings(state_dir=tmp_path),
                            persons=[PersonSettings(name="alice")],
                            ble=BleSettings(scan_timeout_s=1.0, connect_timeout_s=5.0, proxies=[proxy_settings(px)]))
        reg = await pairing.pair(settings, DeviceRegistry.for_settings(settings), "Polar H10 X", person="alice")
        assert (reg.address, reg.profiles, reg.model, reg.firmware, reg.location, reg.paired) == (
            A1, ("heart_rate",), "H10", "3.1.1", "chest", True)
        assert dev.paired and px.stats.ble_connects == 1 and px.used_slots() == 0


class ThreadedProxy:
    """A virtual proxy in its own thread and loop, for the console script in a subprocess."""

    def __init__(self, **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="virtual-proxy", daemon=True)
        self.thread.start()
        self.proxy = VirtualEsphomeProxy(**kwargs)
        self.run(self.proxy.serve())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self.run(self.proxy.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def threaded_proxy():
    tp = ThreadedProxy(name="bedroom-proxy")
    try:
        yield tp
    finally:
        tp.close()


def test_console_scan_lists_what_a_proxy_hears(threaded_proxy: ThreadedProxy, tmp_path):
    px = threaded_proxy.proxy

    async def add() -> None:
        px.add_device(heart_rate_strap(A1, "Polar H10 X"), rssi=-61)

    threaded_proxy.run(add())
    con = Console(tmp_path, {"influx": {"embedded": False}, "persons": [{"name": "alice"}],
                             "ble": {"scan_timeout_s": 1.0,
                                     "proxies": [{"host": px.host, "port": px.port, "name": "bedroom-proxy"}]}})
    con.write_config()
    res = con.run("scan", "--timeout", "0.5")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Heard by" in res.stdout and "bedroom-proxy" in res.stdout and A1 in res.stdout
    assert "-61 dBm" in res.stdout and "1 with a supported profile" in res.stdout


async def test_a_missing_noise_key_file_is_named(tmp_path):
    cfg = ProxySettings(host="127.0.0.1", port=1, noise_psk_file=tmp_path / "proxy.key")
    with pytest.raises(ConfigError, match=r"ble\.proxies\.noise_psk_file.*does not exist; fix the path"):
        await pairing.scan(0.1, proxies=[cfg])


async def test_magsleep_run_process_streams_through_a_proxy_and_stops_cleanly(tmp_path, influx_server, influx_db):
    async with VirtualEsphomeProxy.start(name="bedroom-proxy") as px:
        dev = px.add_device(heart_rate_strap(A1, feed=heart_rate_feed(600, interval_s=0.05)))
        extra = f"""[nights]
compute_every_min = 0
[[ble.proxies]]
name = "bedroom-proxy"
host = "{px.host}"
port = {px.port}
"""
        cfg = write_run_config(tmp_path, influx_server, influx_db, A1, extra)
        code, out = await run_until_then_sigterm(cfg, lambda: px.stats.notifications_sent >= 20)
        assert code == 0, out
        assert not dev.connected and px.used_slots() == 0
        sent = px.stats.notifications_sent
    rows = influx_server.rows("SELECT count(bpm) FROM heart_rate", influx_db)
    assert rows[0]["count"] == sent, out  # every notification the proxy delivered, stored once


async def test_a_proxy_serves_one_client_so_a_scan_beside_another_hears_nothing_through_it(caplog):
    async with VirtualEsphomeProxy.start(name="bedroom-proxy") as px:
        px.add_device(heart_rate_strap(A1, "Polar H10 X"))
        # Home Assistant (or a running 'magsleep run') holds the node's advertisement subscription
        other = APIClient(px.host, px.port, None, client_info="home-assistant")
        await other.connect(login=True)
        heard: list[object] = []
        other.subscribe_bluetooth_le_raw_advertisements(heard.append)
        try:
            found = await pairing.scan(0.5, proxies=[proxy_settings(px)])
            assert A1 not in found and px.stats.refused_subscriptions == 1 and heard
            assert "bedroom-proxy is connected but sent no advertisements" in caplog.text
            assert "one API client at a time" in caplog.text
        finally:
            await other.disconnect()
        found = await pairing.scan(0.5, proxies=[proxy_settings(px)])
        assert found[A1].via == "bedroom-proxy"
