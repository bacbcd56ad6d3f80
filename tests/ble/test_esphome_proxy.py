"""Wearables through ESPHome Bluetooth proxies: the real aioesphomeapi/bleak-esphome/habluetooth
client path against the virtual proxy (collector/sim/esphome), which speaks the native API over TCP."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator, Callable

import pytest
from pydantic import SecretStr

from collector.ble.bluez import BlueZProps
from collector.ble.daemon import run_wearables
from collector.ble.esphome import ProxyHub
from collector.ble.registry import DeviceRegistry, RegisteredDevice
from collector.ble.session import LOCAL, DeviceSession, PointBuffer
from collector.clock import CompressedClock
from collector.errors import DeviceNotFoundError
from collector.settings import BleSettings, InfluxSettings, PersonSettings, ProxySettings, Settings, StorageSettings
from collector.sim.bluez import VirtualWearable, heart_rate_feed, heart_rate_strap
from collector.sim.esphome import VirtualEsphomeProxy
from collector.storage.lineprotocol import Point

A1, A2 = "C0:FF:EE:00:00:01", "C0:FF:EE:00:00:02"
SPEED = 120.0  # clock seconds per real second


class MemorySink:
    def __init__(self) -> None:
        self.points: list[Point] = []

    async def put(self, points) -> None:
        self.points.extend(points)

    def hr(self, device: str) -> list[Point]:
        return [p for p in self.points if p.measurement == "heart_rate" and p.tags.get("device") == device]

    def status(self, device: str) -> list[Point]:
        return [p for p in self.points if p.measurement == "device_status" and p.tags.get("device") == device]


@pytest.fixture
def clock() -> CompressedClock:
    return CompressedClock(start_ns=time.time_ns(), speed=SPEED)


@pytest.fixture
async def bedroom(clock: CompressedClock) -> AsyncIterator[VirtualEsphomeProxy]:
    async with VirtualEsphomeProxy.start(name="bedroom-proxy", mac="AC:0B:FB:00:00:01", clock=clock) as px:
        yield px


def ble(*proxies: VirtualEsphomeProxy, **kw: float) -> BleSettings:
    return BleSettings(**{"scan_timeout_s": 1.0, "connect_timeout_s": 5.0, "silence_timeout_s": 60.0,
                          "max_backoff_s": 120.0, **kw},
                       proxies=[ProxySettings(host=p.host, port=p.port, name=p.name) for p in proxies])


def settings_for(tmp_path, *proxies: VirtualEsphomeProxy) -> Settings:
    return Settings(influx=InfluxSettings(embedded=False), storage=StorageSettings(state_dir=tmp_path),
                    persons=[PersonSettings(name="alice")], ble=ble(*proxies))


def strap(address: str, name: str = "Polar H10 A1") -> VirtualWearable:
    return heart_rate_strap(address, name, feed=heart_rate_feed(8 * 3600, bpm=lambda t: 58.0), battery_pct=77,
                            hide_battery_service=False)


async def until(cond: Callable[[], bool], real_s: float = 15.0) -> None:
    deadline = time.monotonic() + real_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


class Sessions:
    """DeviceSessions on a hub, run as tasks (what the daemon does, with the sessions in reach)."""

    def __init__(self, hub: ProxyHub, settings: BleSettings, clock: CompressedClock, *addresses: str,
                 props: BlueZProps | None = None) -> None:
        self.sink = MemorySink()
        self.buffer = PointBuffer(self.sink, batch_s=0.02)
        self.sessions = {a: DeviceSession(RegisteredDevice(a, f"strap-{a[-2:]}", "alice", paired=True),
                                          buffer=self.buffer, clock=clock, ble=settings, props=props or _NoProps(),
                                          proxies=hub, status_interval_s=30.0) for a in addresses}
        self.tasks = [asyncio.create_task(s.run()) for s in self.sessions.values()]
        self.forwarder = asyncio.create_task(self.buffer.run())

    async def stop(self) -> None:
        for s in self.sessions.values():
            s.stop()
        await asyncio.wait_for(asyncio.gather(*self.tasks), 10)
        self.forwarder.cancel()
        await self.buffer.drain()


class _NoProps(BlueZProps):
    """BlueZ properties when there is no local adapter to ask (proxy-only collector)."""

    async def rssi(self, path: str) -> int | None:
        return None

    async def battery(self, path: str) -> int | None:
        return None


async def test_daemon_streams_a_strap_through_a_proxy(tmp_path, bedroom, clock):
    bedroom.add_device(strap(A1))
    settings = settings_for(tmp_path, bedroom)
    reg = DeviceRegistry(tmp_path / "devices.json", [RegisteredDevice(A1, "h10-alice", "alice", paired=True)])
    sink = MemorySink()
    stop = asyncio.Event()
    task = asyncio.create_task(run_wearables(settings, reg, clock=clock, stop_event=stop, sink=sink,
                                          status_interval_s=30.0))
    await until(lambda: len([p for p in sink.points if p.measurement == "heart_rate"]) >= 100)
    stop.set()
    result = await asyncio.wait_for(task, 15)
    hr = [p for p in sink.points if p.measurement == "heart_rate"]
    assert {p.fields["bpm"] for p in hr} == {58}
    assert {(p.tags["person"], p.tags["device"]) for p in hr} == {("alice", "h10-alice")}
    stats = result.sessions["h10-alice"]
    assert stats.connects == 1 and stats.battery_pct == 77  # battery read over GATT through the proxy
    assert stats.model == "H10" and stats.notifications >= 100
    assert bedroom.stats.ble_connects == 1 and bedroom.stats.notifications_sent >= stats.notifications
    status = [p for p in sink.points if p.measurement == "device_status" and p.fields["state"] == "connected"]
    assert any(p.fields.get("rssi_dbm") == -58 for p in status)  # the proxy's RSSI for the strap
    assert {p.fields.get("via") for p in status} == {"bedroom-proxy"}
    assert bedroom.used_slots() == 0  # the daemon disconnected on stop


async def test_survives_a_proxy_restart_with_backoff(tmp_path, bedroom, clock, caplog):
    bedroom.add_device(strap(A1))
    settings = ble(bedroom)
    hub = ProxyHub(settings.proxies)
    await hub.start()
    run = Sessions(hub, settings, clock, A1)
    try:
        await until(lambda: len(run.sink.hr("strap-01")) >= 50)
        with caplog.at_level(logging.INFO, logger="collector.ble.esphome"):
            await bedroom.restart(down_s=0.5 * SPEED)  # half a real second off the network
            before = len(run.sink.hr("strap-01"))
            await until(lambda: len(run.sink.hr("strap-01")) >= before + 50, real_s=30)
        session = run.sessions[A1]
        assert session.stats.reconnects >= 1 and session.via == "bedroom-proxy"
        assert hub.links[0].drops == 1 and hub.links[0].connects == 2
        assert bedroom.stats.api_connections == 2 and bedroom.stats.restarts == 1
        assert "dropped off" in caplog.text and "connected again" in caplog.text
    finally:
        await run.stop()
        await hub.stop()


async def test_out_of_slots_is_said_clearly_then_connects_when_a_slot_frees(bedroom, clock, caplog):
    bedroom.set_slots(1)
    bedroom.add_device(strap(A1, "Polar H10 A1"))
    bedroom.add_device(strap(A2, "Polar H10 A2"))
    settings = ble(bedroom)
    hub = ProxyHub(settings.proxies)
    await hub.start()
    caplog.set_level(logging.WARNING, logger="collector.ble.session")
    run = Sessions(hub, settings, clock, A1)
    try:
        await until(lambda: len(run.sink.hr("strap-01")) >= 10)
        second = Sessions(hub, settings, clock, A2)
        try:
            await until(lambda: "no free connection slot" in caplog.text)
            assert "bedroom-proxy (1 of 1 slots in use)" in caplog.text and "connection_slots" in caplog.text
            assert not second.sink.hr("strap-02") and bedroom.used_slots() == 1
            bedroom.set_slots(2)
            await until(lambda: len(second.sink.hr("strap-02")) >= 10, real_s=30)
            assert bedroom.used_slots() == 2
        finally:
            await second.stop()
    finally:
        await run.stop()
        await hub.stop()


async def test_link_loss_reconnects_through_the_proxy(bedroom, clock):
    dev = bedroom.add_device(strap(A1))
    settings = ble(bedroom)
    async with ProxyHub(settings.proxies) as hub:
        run = Sessions(hub, settings, clock, A1)
        try:
            await until(lambda: len(run.sink.hr("strap-01")) >= 20)
            await dev.drop_link()
            before = len(run.sink.hr("strap-01"))
            await until(lambda: len(run.sink.hr("strap-01")) >= before + 20)
            assert run.sessions[A1].stats.reconnects == 1 and bedroom.stats.ble_connects == 2
        finally:
            await run.stop()


async def test_the_watchdog_reconnects_a_silent_strap_through_the_proxy(bedroom, clock):
    dev = bedroom.add_device(strap(A1))
    settings = ble(bedroom)  # silence_timeout_s = 60 clock seconds
    async with ProxyHub(settings.proxies) as hub:
        run = Sessions(hub, settings, clock, A1)
        try:
            await until(lambda: len(run.sink.hr("strap-01")) >= 20)
            dev.set_silent()
            session = run.sessions[A1]
            await until(lambda: session.stats.watchdog_drops >= 1)
            dev.set_silent(False)
            before = len(run.sink.hr("strap-01"))
            await until(lambda: len(run.sink.hr("strap-01")) >= before + 20)
            assert session.stats.reconnects >= 1 and bedroom.stats.ble_connects >= 2
        finally:
            await run.stop()


async def test_a_wearable_moves_to_the_proxy_that_still_hears_it(clock):
    async with (VirtualEsphomeProxy.start(name="bedroom-proxy", mac="AC:0B:FB:00:00:01", clock=clock) as bedroom,
                VirtualEsphomeProxy.start(name="hallway-proxy", mac="AC:0B:FB:00:00:02", clock=clock) as hallway):
        bedroom.add_device(strap(A1), rssi=-50)
        hallway.add_device(strap(A1), rssi=-85)
        settings = ble(bedroom, hallway)
        async with ProxyHub(settings.proxies) as hub:
            await until(lambda: len(hub.candidates(A1)) == 2)
            run = Sessions(hub, settings, clock, A1)
            try:
                await until(lambda: len(run.sink.hr("strap-01")) >= 20)
                session = run.sessions[A1]
                assert session.via == "bedroom-proxy" and hallway.stats.ble_connects == 0
                await bedroom.stop_serving()  # the bedroom node loses power
                before = len(run.sink.hr("strap-01"))
                await until(lambda: len(run.sink.hr("strap-01")) >= before + 20, real_s=30)
                assert session.via == "hallway-proxy" and hallway.stats.ble_connects == 1
                assert session.via != LOCAL
            finally:
                await run.stop()


async def test_nobody_hears_it_names_the_sources(bedroom, clock):
    settings = ble(bedroom, scan_timeout_s=0.5)
    async with ProxyHub(settings.proxies) as hub:
        session = DeviceSession(RegisteredDevice(A1, "strap", "alice", paired=True),
                                buffer=PointBuffer(MemorySink()), clock=clock, ble=settings, props=_NoProps(),
                                proxies=hub)
        with pytest.raises(DeviceNotFoundError, match=r"nor by the ESPHome proxies \(bedroom-proxy\); "
                           r"bedroom-proxy sent no advertisements at all: .*one API client at a time"):
            await session._find()


KEY = base64.b64encode(bytes(range(32))).decode()
WRONG_KEY = base64.b64encode(bytes(range(1, 33))).decode()


async def test_noise_encrypted_proxy_streams_and_a_wrong_key_is_named(clock, caplog):
    async with VirtualEsphomeProxy.start(name="bedroom-proxy", clock=clock, noise_psk=KEY) as px:
        px.add_device(strap(A1))
        good = BleSettings(scan_timeout_s=1.0, connect_timeout_s=5.0, silence_timeout_s=60.0,
                           proxies=[ProxySettings(host=px.host, port=px.port, name=px.name, noise_psk=SecretStr(KEY))])
        async with ProxyHub(good.proxies) as hub:
            run = Sessions(hub, good, clock, A1)
            try:
                await until(lambda: len(run.sink.hr("strap-01")) >= 20)
            finally:
                await run.stop()
        caplog.set_level(logging.WARNING, logger="collector.ble.esphome")
        for key, what in ((WRONG_KEY, "Invalid encryption key"), (None, "requires encryption")):
            caplog.clear()
            cfg = ProxySettings(host=px.host, port=px.port, name="bad", noise_psk=SecretStr(key) if key else None)
            hub = ProxyHub([cfg])
            await hub.start(wait_s=1.0)
            try:
                assert not hub.connected and hub.links[0].connects == 0
                assert "unreachable" in caplog.text and what in caplog.text, caplog.text
            finally:
                await hub.stop()


async def test_a_wearable_moves_from_a_proxy_to_the_local_adapter(fast_bluez, compressed_clock):
    clock = compressed_clock
    local = fast_bluez.add_device(strap(A1), paired=True)  # BlueZ hears it at -58 dBm
    async with VirtualEsphomeProxy.start(name="bedroom-proxy", clock=clock) as px:
        px.add_device(strap(A1), rssi=-45)  # the proxy by the bed hears it louder
        settings = ble(px)
        props = BlueZProps()
        async with ProxyHub(settings.proxies) as hub:
            await until(lambda: bool(hub.candidates(A1)))
            run = Sessions(hub, settings, clock, A1, props=props)
            try:
                await until(lambda: len(run.sink.hr("strap-01")) >= 20)
                session = run.sessions[A1]
                assert session.via == "bedroom-proxy" and local.stats.connects == 0
                await px.stop_serving()  # the proxy loses power: the local adapter still hears the strap
                before = len(run.sink.hr("strap-01"))
                await until(lambda: len(run.sink.hr("strap-01")) >= before + 20, real_s=30)
                assert session.via == LOCAL and local.stats.connects == 1 and session.stats.reconnects == 1
            finally:
                await run.stop()
                props.close()
