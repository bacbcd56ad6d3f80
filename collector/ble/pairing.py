"""Scanning, pairing and forgetting wearables (the work behind ``magsleep scan/pair/forget``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak_retry_connector import establish_connection
from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

from collector.ble.bluez import NOT_FOUND_ADVICE, find_device, to_device_error
from collector.ble.profiles import PROFILES, matching_profiles
from collector.ble.profiles import device_info as dis
from collector.ble.profiles.heart_rate import decode_body_sensor_location
from collector.ble.registry import DeviceRegistry, RegisteredDevice, is_address, slug
from collector.ble.uuids import BODY_SENSOR_LOCATION
from collector.errors import DeviceError, DeviceNotFoundError
from collector.settings import BleSettings, ProxySettings, Settings

if TYPE_CHECKING:
    from collector.ble.esphome import ProxyHub

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ScanResult:
    """One device seen by a scan."""

    address: str
    name: str
    rssi: int
    profiles: tuple[str, ...]
    service_uuids: tuple[str, ...]
    #: Who heard it (loudest): "local" (this machine's adapter) or an ESPHome proxy's label.
    via: str = "local"


@contextlib.asynccontextmanager
async def proxy_hub(proxies: Sequence[ProxySettings]) -> AsyncIterator[ProxyHub | None]:
    """The ESPHome proxies connected for the block (None when none is configured)."""
    if not proxies:
        yield None
        return
    from collector.ble.esphome import ProxyHub

    hub = ProxyHub(list(proxies))
    try:
        await hub.start()
        yield hub
    finally:
        await hub.stop()


async def scan(
    timeout: float,
    *,
    on_update: Callable[[dict[str, ScanResult]], None] | None = None,
    proxies: Sequence[ProxySettings] = (),
) -> dict[str, ScanResult]:
    """Devices seen within ``timeout`` seconds, by address; ``on_update`` gets the table as it grows.

    With ``proxies``, devices heard by ESPHome proxies are listed too (the loudest source wins a
    row); then a missing local adapter is only a warning."""
    seen: dict[str, ScanResult] = {}

    def record(device: BLEDevice, adv: AdvertisementData, via: str) -> None:
        prev = seen.get(device.address)
        if prev is not None and prev.via != via and prev.rssi > adv.rssi:
            return
        uuids = tuple(sorted(u.lower() for u in adv.service_uuids))
        seen[device.address] = ScanResult(
            device.address, adv.local_name or device.name or "", adv.rssi,
            tuple(p.name for p in matching_profiles(set(uuids))), uuids, via)
        if on_update is not None:
            on_update(dict(seen))

    async with proxy_hub(proxies) as hub:
        listening = (hub.listening(lambda d, a: record(d, a, _heard_by(hub, d.address)))
                     if hub is not None else contextlib.nullcontext())
        with listening:
            try:
                async with BleakScanner(detection_callback=lambda d, a: record(d, a, "local")):
                    await asyncio.sleep(timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = exc if isinstance(exc, DeviceError) else to_device_error(exc, "scan")
                if hub is None:
                    raise error from exc
                log.warning("local adapter not scanning (%s); listing what the ESPHome proxies hear", error)
                await asyncio.sleep(timeout)
        if hub is not None:
            from collector.ble.esphome import ONE_CLIENT_ADVICE

            for label in hub.silent():
                log.warning("ESPHome proxy %s is connected but sent no advertisements in %g s; %s", label, timeout,
                            ONE_CLIENT_ADVICE)
    return seen


def _heard_by(hub: ProxyHub, address: str) -> str:
    best = hub.candidates(address)
    return best[0].proxy if best else "proxy"


async def locate(key: str, timeout: float) -> BLEDevice:
    """The device with address or advertised name ``key``; :class:`DeviceNotFoundError` otherwise."""
    try:
        if is_address(key):
            device = await find_device(key.upper(), timeout)
        else:
            device = await BleakScanner.find_device_by_name(key, timeout=timeout)
    except Exception as exc:
        raise to_device_error(exc, f"looking for {key}") from exc
    if device is None:
        raise DeviceNotFoundError(f"no device {key!r} seen within {timeout:g} s; {NOT_FOUND_ADVICE}; "
                                  "'magsleep scan' lists what is in range")
    return device


async def locate_via_proxies(hub: ProxyHub, key: str, timeout: float) -> BLEDevice | None:
    """The device with address or name ``key`` as heard by a proxy within ``timeout`` s (None if not)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if is_address(key):
            device = hub.ble_device(key)
        else:
            device = next((hub.ble_device(h.address) for h in hub.heard().values() if h.name == key), None)
        if device is not None:
            hub.check_slots(device.address, f"connecting to {key}")
            return device
        if loop.time() >= deadline:
            return None
        await asyncio.sleep(0.2)


async def pair(
    settings: Settings,
    registry: DeviceRegistry,
    key: str,
    *,
    person: str,
    alias: str | None = None,
    bond: bool = True,
) -> RegisteredDevice:
    """Connect, bond (unless ``bond`` is false), check profiles, read device info, register and save.

    With ``[[ble.proxies]]``, a device a proxy hears is paired through that proxy; else locally."""
    settings.person(person)  # unknown person: ConfigError naming the configured ones
    ble = settings.ble
    async with proxy_hub(ble.proxies) as hub:
        proxied = await locate_via_proxies(hub, key, min(ble.scan_timeout_s, 3.0)) if hub is not None else None
        connection: contextlib.AbstractAsyncContextManager[BleakClient]
        if hub is not None and proxied is not None:
            device, connection = proxied, _through_proxy(proxied, key, ble.connect_timeout_s)
        else:
            device = await locate(key, ble.scan_timeout_s)
            connection = BleakClient(device, timeout=ble.connect_timeout_s)
        return await _pair_with(registry, ble, key, device, connection, person=person, alias=alias, bond=bond)


@contextlib.asynccontextmanager
async def _through_proxy(device: BLEDevice, name: str, timeout: float) -> AsyncIterator[BleakClient]:
    """Connected through the best ESPHome proxy (habluetooth's wrapper, as bleak-retry-connector wants it)."""
    from habluetooth import HaBleakClientWrapper

    client = await establish_connection(HaBleakClientWrapper, device, name, max_attempts=2, timeout=timeout)
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            await client.disconnect()


async def _pair_with(
    registry: DeviceRegistry,
    ble: BleSettings,
    key: str,
    device: BLEDevice,
    connection: contextlib.AbstractAsyncContextManager[BleakClient],
    *,
    person: str,
    alias: str | None,
    bond: bool,
) -> RegisteredDevice:
    name = device.name or key
    try:
        async with connection as client:
            if bond:
                try:
                    await client.pair()
                except Exception as exc:
                    raise to_device_error(exc, f"pairing with {name}", pairing=True) from exc
            served = {s.uuid.lower() for s in client.services}
            profiles = [p.name for p in matching_profiles(served, ble)]
            if not profiles:
                raise DeviceError(
                    f"{name} ({device.address}) serves none of the supported profiles "
                    f"({', '.join(PROFILES)}); it serves {', '.join(sorted(served)) or 'nothing'}")
            values: dict[str, bytes] = {}
            for uuid in dis.FIELDS:
                if client.services.get_characteristic(uuid) is not None:
                    try:
                        values[uuid] = bytes(await client.read_gatt_char(uuid))
                    except Exception as exc:  # noqa: BLE001 - device info is optional
                        log.debug("reading %s failed: %s", uuid, exc)
            info = dis.from_values(values)
            location = ""
            if client.services.get_characteristic(BODY_SENSOR_LOCATION) is not None:
                try:
                    location = decode_body_sensor_location(bytes(await client.read_gatt_char(BODY_SENSOR_LOCATION)))
                except Exception as exc:  # noqa: BLE001 - optional
                    log.debug("reading body sensor location failed: %s", exc)
    except DeviceError:
        raise
    except Exception as exc:
        raise to_device_error(exc, f"connecting to {name}") from exc
    existing = registry.find(device.address)
    chosen = alias or (existing.alias if existing else registry.unique_alias(slug(f"{name}-{person}"), device.address))
    reg = RegisteredDevice(
        address=device.address.upper(), alias=chosen, person=person, name=name, profiles=tuple(profiles),
        paired=bond, added_ns=time.time_ns(), model=info.model, firmware=info.firmware, location=location)
    registry.add(reg)
    registry.save()
    return reg


async def remove_bond(address: str, adapter: str) -> bool:
    """Ask BlueZ to forget the bond (Adapter1.RemoveDevice); False when BlueZ does not know it."""
    path = f"/org/bluez/{adapter}"
    bus = MessageBus(bus_type=BusType.SYSTEM)
    try:
        await bus.connect()
        reply = await asyncio.wait_for(bus.call(Message(
            destination="org.bluez", path=path, interface="org.bluez.Adapter1", member="RemoveDevice",
            signature="o", body=[f"{path}/dev_{address.upper().replace(':', '_')}"])), timeout=5.0)
    except (OSError, EOFError, TimeoutError) as exc:
        log.debug("RemoveDevice failed: %s", exc)
        return False
    finally:
        bus.disconnect()
    return reply is not None and reply.message_type == MessageType.METHOD_RETURN


async def forget(settings: Settings, registry: DeviceRegistry, key: str) -> tuple[RegisteredDevice, bool]:
    """Remove a device from the registry (saved) and its bond from BlueZ."""
    dev = registry.remove(key)
    registry.save()
    return dev, await remove_bond(dev.address, settings.ble.adapter)
