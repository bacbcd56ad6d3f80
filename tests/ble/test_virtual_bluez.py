"""The virtual BlueZ against bleak's real BlueZ backend (unmodified): scan, connect, GATT, faults."""

from __future__ import annotations

import asyncio
import time

import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import BleakCharacteristicNotFoundError, BleakDBusError, BleakError

from collector.ble.bluez import BlueZProps
from collector.ble.profiles.heart_rate import decode_measurement, encode_measurement
from collector.ble.uuids import (
    BATTERY_LEVEL,
    BODY_SENSOR_LOCATION,
    HEART_RATE_MEASUREMENT,
    HEART_RATE_SERVICE,
    MODEL_NUMBER,
    uuid16,
)
from collector.errors import DeviceError
from collector.sim.bluez import (
    Characteristic,
    Notification,
    PrivateDBus,
    Service,
    VirtualBlueZ,
    VirtualWearable,
    heart_rate_feed,
    heart_rate_strap,
)

A1 = "C0:FF:EE:00:00:01"
A2 = "C0:FF:EE:00:00:02"


async def _scan(timeout=0.3, **kw):
    return await BleakScanner.discover(timeout=timeout, return_adv=True, **kw)


async def test_scan_reports_advertisement_and_filters_by_uuid(virtual_bluez):
    virtual_bluez.add_device(heart_rate_strap(A1, "Polar H10 1"))
    virtual_bluez.add_device(VirtualWearable(A2, "Scale", services=(Service(uuid16(0x181D)),), rssi=-80))
    found = await _scan()
    assert set(found) == {A1, A2}
    _dev, adv = found[A1]
    assert adv.local_name == "Polar H10 1"
    assert adv.service_uuids == [HEART_RATE_SERVICE]
    assert adv.manufacturer_data == {0x006B: b"\x3f\x00\x00"}
    assert -61 <= adv.rssi <= -55
    only_hr = await _scan(service_uuids=[HEART_RATE_SERVICE])
    assert set(only_hr) == {A1}
    # a second scan still sees the devices BlueZ already knows (RSSI keeps changing)
    assert set(await _scan()) == {A1, A2}


async def test_connect_services_read_notify_and_hidden_battery(virtual_bluez):
    dev = virtual_bluez.add_device(heart_rate_strap(A1, model="H10", battery_pct=64))
    found = await _scan()
    got: list[bytes] = []
    async with BleakClient(found[A1][0]) as client:
        uuids = {s.uuid for s in client.services}
        assert HEART_RATE_SERVICE in uuids and uuid16(0x180F) not in uuids  # BlueZ hides 0x180F
        assert bytes(await client.read_gatt_char(BODY_SENSOR_LOCATION)) == b"\x01"
        assert bytes(await client.read_gatt_char(MODEL_NUMBER)) == b"H10"
        with pytest.raises(BleakCharacteristicNotFoundError):
            await client.read_gatt_char(BATTERY_LEVEL)
        assert await BlueZProps().battery(dev.path) == 64
        await client.start_notify(HEART_RATE_MEASUREMENT, lambda _c, d: got.append(bytes(d)))
        assert dev.notifying_uuids == {HEART_RATE_MEASUREMENT}
        for bpm in (60, 61, 62):
            assert await dev.notify(HEART_RATE_MEASUREMENT, encode_measurement(bpm, [1000]))
        await asyncio.sleep(0.05)
    assert [decode_measurement(b).bpm for b in got] == [60, 61, 62]
    assert dev.stats.connects == 1 and not dev.connected
    assert not await dev.notify(HEART_RATE_MEASUREMENT, b"\x00\x40")  # nobody listening: dropped
    assert dev.stats.notifications_dropped == 1


async def test_battery_over_gatt_when_bluez_does_not_hide_it(virtual_bluez):
    dev = virtual_bluez.add_device(heart_rate_strap(A1, battery_pct=42, hide_battery_service=False))
    found = await _scan()
    async with BleakClient(found[A1][0]) as client:
        assert bytes(await client.read_gatt_char(BATTERY_LEVEL)) == b"\x2a"
        assert await BlueZProps().battery(dev.path) is None


async def test_burst_of_5000_notifications_arrives_in_order(virtual_bluez):
    """The fake's tolerant writer survives dbus-fast's EAGAIN burst bug."""
    dev = virtual_bluez.add_device(heart_rate_strap(A1))
    found = await _scan()
    got: list[int] = []
    async with BleakClient(found[A1][0]) as client:
        await client.start_notify(HEART_RATE_MEASUREMENT, lambda _c, d: got.append(decode_measurement(bytes(d)).bpm))
        for i in range(5000):
            await dev.notify(HEART_RATE_MEASUREMENT, encode_measurement(i % 250 + 1, uint16=True))
        for _ in range(200):
            if len(got) == 5000:
                break
            await asyncio.sleep(0.02)
        assert client.is_connected
    assert got == [i % 250 + 1 for i in range(5000)]


async def test_pair_and_refused_pairing(virtual_bluez):
    dev = virtual_bluez.add_device(heart_rate_strap(A1))
    dev2 = virtual_bluez.add_device(heart_rate_strap(A2))
    dev2.refuse_pairing()
    found = await _scan()
    async with BleakClient(found[A1][0]) as client:
        await client.pair()
    assert dev.paired and dev.trusted
    async with BleakClient(found[A2][0]) as client:
        with pytest.raises(BleakDBusError, match="AuthenticationFailed"):
            await client.pair()
    assert not dev2.paired


async def test_drop_link_calls_disconnected_callback_and_reconnect_works(virtual_bluez):
    dev = virtual_bluez.add_device(heart_rate_strap(A1))
    found = await _scan()
    lost = asyncio.Event()
    client = BleakClient(found[A1][0], disconnected_callback=lambda _c: lost.set())
    await client.connect()
    await dev.drop_link()
    await asyncio.wait_for(lost.wait(), 5)
    assert not client.is_connected
    await client.connect()
    assert client.is_connected and dev.stats.connects == 2
    await client.disconnect()


async def test_out_of_range_and_refusals(virtual_bluez):
    dev = virtual_bluez.add_device(heart_rate_strap(A1))
    found = await _scan()
    ble_dev = found[A1][0]
    await dev.set_in_range(False)
    with pytest.raises(BleakError, match="out of range"):
        async with BleakClient(ble_dev, timeout=5):
            pass
    await dev.set_in_range(True)
    dev.refuse_connects(2)
    for _ in range(2):
        with pytest.raises(BleakError, match="le-connection-abort-by-remote"):
            async with BleakClient(ble_dev, timeout=5):
                pass
    async with BleakClient(ble_dev, timeout=5) as client:
        assert client.is_connected
    assert dev.stats.connect_attempts == 4


async def test_out_of_range_device_is_not_reported_by_scans(private_dbus):
    async with VirtualBlueZ.start(bus_address=private_dbus.address) as bz:
        dev = bz.add_device(heart_rate_strap(A1))
        await dev.set_in_range(False)
        assert A1 not in await _scan(timeout=0.2)
        await dev.set_in_range(True)
        assert A1 in await _scan(timeout=0.2)


async def test_slow_responses(virtual_bluez):
    dev = virtual_bluez.add_device(heart_rate_strap(A1))
    found = await _scan()
    async with BleakClient(found[A1][0]) as client:
        dev.set_response_delay(0.2)
        t0 = time.monotonic()
        await client.read_gatt_char(BODY_SENSOR_LOCATION)
        assert time.monotonic() - t0 >= 0.2
        dev.set_response_delay(0)


async def test_feed_malformed_and_silent(virtual_bluez):
    def feed():
        for i in range(40):
            yield Notification(0.01 * i, HEART_RATE_MEASUREMENT, encode_measurement(70, [900]))

    w = VirtualWearable(A1, "Custom HR", services=(Service(HEART_RATE_SERVICE, (
        Characteristic(HEART_RATE_MEASUREMENT, ("notify",)),)),), feed=feed)
    dev = virtual_bluez.add_device(w)
    dev.set_malformed_every(4)
    found = await _scan()
    got: list[bytes] = []
    async with BleakClient(found[A1][0]) as client:
        await client.start_notify(HEART_RATE_MEASUREMENT, lambda _c, d: got.append(bytes(d)))
        for _ in range(500):  # until the 40-notification feed is played and everything sent arrived
            if dev.stats.notifications_sent + dev.stats.notifications_dropped >= 40 and \
                    len(got) == dev.stats.notifications_sent:
                break
            await asyncio.sleep(0.02)
        dev.set_silent()
        assert not await dev.notify(HEART_RATE_MEASUREMENT, b"\x00\x40")
    assert got, "the feed delivered nothing"
    bad = [b for b in got if len(b) == 1]
    assert bad and len(bad) == dev.stats.malformed_sent
    assert dev.stats.notifications_sent + dev.stats.notifications_dropped == 41


async def test_bluetoothd_restart_clean_and_crash(virtual_bluez):
    dev = virtual_bluez.add_device(heart_rate_strap(A1))
    found = await _scan()
    async with BleakClient(found[A1][0]) as client:
        await client.pair()
    for clean in (True, False):
        lost = asyncio.Event()

        def on_lost(_c, ev=lost):
            ev.set()

        client = BleakClient(found[A1][0], disconnected_callback=on_lost)
        await client.connect()
        task = asyncio.create_task(virtual_bluez.restart_bluetoothd(0.2, clean=clean))
        await asyncio.sleep(0.05)
        assert not virtual_bluez.online
        if clean:
            await asyncio.wait_for(lost.wait(), 5)
        await task
        assert virtual_bluez.online and not dev.connected
        if not clean:  # after a crash bleak cannot know; the daemon's watchdog handles it
            assert client.is_connected
            with pytest.raises(BleakDBusError, match="NotConnected"):
                await client.disconnect()
        assert not client.is_connected
        # the bonded device is back on the bus after the restart and connectable
        again = BleakClient(found[A1][0])
        await again.connect()
        assert again.is_connected
        await again.disconnect()
    assert virtual_bluez.restarts == 2


async def test_adapter_power_and_removal(virtual_bluez):
    dev = virtual_bluez.add_device(heart_rate_strap(A1), paired=True)
    await virtual_bluez.set_powered(False)
    with pytest.raises(BleakError):
        await _scan(timeout=0.1)
    await virtual_bluez.set_powered(True)
    await virtual_bluez.remove_adapter()
    await asyncio.sleep(0.05)
    with pytest.raises(BleakError, match="No Bluetooth adapters"):
        await _scan(timeout=0.1)
    await virtual_bluez.add_adapter()
    await asyncio.sleep(0.05)  # the InterfacesAdded signal reaches bleak's manager
    found = await _scan(timeout=0.2)
    async with BleakClient(found[A1][0]) as client:
        assert client.is_connected and dev.connected


async def test_remove_device_and_errors(virtual_bluez):
    virtual_bluez.add_device(heart_rate_strap(A1))
    with pytest.raises(ValueError, match="exists already"):
        virtual_bluez.add_device(heart_rate_strap(A1))
    with pytest.raises(ValueError, match="must look like"):
        heart_rate_strap("c0:ff:ee:00:00:01")
    found = await _scan()
    async with BleakClient(found[A1][0]) as client:
        await client.pair()
        await client.unpair()
    assert not virtual_bluez.device(A1).paired
    await virtual_bluez.remove_device(A1)
    assert A1 not in await _scan(timeout=0.2)


async def test_org_bluez_taken_twice_is_a_clear_error(virtual_bluez, private_dbus):
    with pytest.raises(DeviceError, match="already owned"):
        async with VirtualBlueZ.start(bus_address=private_dbus.address):
            pass


def test_private_dbus_start_stop(tmp_path):
    bus = PrivateDBus.start()
    assert bus.running and bus.address.startswith("unix:path=")
    with bus.as_system_bus() as addr:
        assert addr == bus.address
    bus.stop()
    assert not bus.running and not bus.root.exists()


async def test_heart_rate_feed_covers_time_with_rr():
    notes = list(heart_rate_feed(120, bpm=lambda t: 60.0, seed=1)())
    assert len(notes) == 120
    total_rr_s = sum(sum(decode_measurement(n.value).rr_1024) for n in notes) / 1024
    assert 110 < total_rr_s <= 120
