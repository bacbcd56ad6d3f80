"""Scanning, pairing and forgetting wearables (the work behind ``magsleep scan/pair/forget``)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

from collector.ble.bluez import NOT_FOUND_ADVICE, find_device, to_device_error
from collector.ble.profiles import PROFILES, matching_profiles
from collector.ble.profiles import device_info as dis
from collector.ble.profiles.heart_rate import decode_body_sensor_location
from collector.ble.registry import DeviceRegistry, RegisteredDevice, is_address, slug
from collector.ble.uuids import BODY_SENSOR_LOCATION
from collector.errors import DeviceError, DeviceNotFoundError
from collector.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ScanResult:
    """One device seen by a scan."""

    address: str
    name: str
    rssi: int
    profiles: tuple[str, ...]
    service_uuids: tuple[str, ...]


async def scan(
    timeout: float, *, on_update: Callable[[dict[str, ScanResult]], None] | None = None
) -> dict[str, ScanResult]:
    """Devices seen within ``timeout`` seconds, by address; ``on_update`` gets the table as it grows."""
    seen: dict[str, ScanResult] = {}

    def detected(device: BLEDevice, adv: AdvertisementData) -> None:
        uuids = tuple(sorted(u.lower() for u in adv.service_uuids))
        seen[device.address] = ScanResult(
            device.address, adv.local_name or device.name or "", adv.rssi,
            tuple(p.name for p in matching_profiles(set(uuids))), uuids)
        if on_update is not None:
            on_update(dict(seen))

    try:
        async with BleakScanner(detection_callback=detected):
            await asyncio.sleep(timeout)
    except (DeviceError, asyncio.CancelledError):
        raise
    except Exception as exc:
        raise to_device_error(exc, "scan") from exc
    return seen


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


async def pair(
    settings: Settings,
    registry: DeviceRegistry,
    key: str,
    *,
    person: str,
    alias: str | None = None,
    bond: bool = True,
) -> RegisteredDevice:
    """Connect, bond (unless ``bond`` is false), check profiles, read device info, register and save."""
    settings.person(person)  # unknown person: ConfigError naming the configured ones
    ble = settings.ble
    device = await locate(key, ble.scan_timeout_s)
    name = device.name or key
    try:
        async with BleakClient(device, timeout=ble.connect_timeout_s) as client:
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
