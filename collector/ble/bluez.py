"""Thin helpers over bleak/BlueZ: find a device, read Battery1, sort errors into advice."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakDBusError,
    BleakDeviceNotFoundError,
    BleakError,
)
from bleak_retry_connector import BleakNotFoundError, BleakOutOfConnectionSlotsError, get_device
from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

from collector.ble.backoff import Failure
from collector.errors import AdapterError, DeviceError, DeviceNotFoundError, OutOfSlotsError, PairingError

log = logging.getLogger(__name__)

ADAPTER_ADVICE = ("check that a Bluetooth adapter is plugged in, powered on ('bluetoothctl power on') and that "
                  "bluetoothd is running ('systemctl status bluetooth')")
NOT_FOUND_ADVICE = ("wake the wearable (put the strap on, moisten the electrodes), bring it within a few metres "
                    "and make sure no phone app holds its connection")
PAIRING_ADVICE = ("put the wearable in pairing mode, accept the request on it if it asks, or remove an old bond "
                  "with 'magsleep forget' / 'bluetoothctl remove ADDRESS' and try again")
SLOTS_ADVICE = ("the adapter has no free connection slot: disconnect another device, or use a second adapter; "
                "most adapters hold 5-7 LE connections")
DBUS_ADVICE = ("install and start D-Bus and BlueZ (Debian: 'sudo apt-get install dbus bluez', then "
               "'sudo systemctl enable --now bluetooth'); in a container, mount the host's "
               "/run/dbus/system_bus_socket (docker-compose.yml does); DBUS_SYSTEM_BUS_ADDRESS names another socket")
DBUS_PERMISSION_ADVICE = ("run magsleep as a user in the 'bluetooth' group (the systemd units do), or allow the user "
                          "in BlueZ's D-Bus policy")
DEFAULT_SYSTEM_BUS = "unix:path=/var/run/dbus/system_bus_socket"
_ADAPTER_DBUS_ERRORS = ("org.bluez.Error.NotReady", "org.freedesktop.DBus.Error.ServiceUnknown",
                        "org.freedesktop.DBus.Error.NameHasNoOwner")
_SLOT_WORDS = ("connection slot", "available connection")


def failure_kind(exc: BaseException) -> Failure:
    """The kind of failure behind a bleak/dbus exception (drives the backoff)."""
    text = str(exc)
    if isinstance(exc, BleakBluetoothNotAvailableError | AdapterError):
        return Failure.ADAPTER
    if isinstance(exc, BleakOutOfConnectionSlotsError | OutOfSlotsError) or any(w in text for w in _SLOT_WORDS):
        return Failure.OUT_OF_SLOTS
    if isinstance(exc, BleakDBusError) and exc.dbus_error in _ADAPTER_DBUS_ERRORS:
        return Failure.ADAPTER
    if any(e in text for e in _ADAPTER_DBUS_ERRORS) or "No Bluetooth adapters" in text:
        return Failure.ADAPTER
    if isinstance(exc, BleakNotFoundError | BleakDeviceNotFoundError | DeviceNotFoundError):
        return Failure.NOT_FOUND
    return Failure.CONNECT_FAILED


def to_device_error(exc: BaseException, what: str, *, pairing: bool = False) -> DeviceError:
    """A :class:`DeviceError` subclass with advice for a failure while doing ``what``."""
    if isinstance(exc, DeviceError):
        return exc
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, FileNotFoundError | ConnectionRefusedError | PermissionError):
        # the system bus socket (bleak connects to it first): no D-Bus daemon, so no BlueZ either
        bus = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or DEFAULT_SYSTEM_BUS
        if isinstance(exc, PermissionError):
            return AdapterError(f"{what}: not allowed to use the system D-Bus at {bus} ({detail}); "
                                f"{DBUS_PERMISSION_ADVICE}")
        return AdapterError(f"{what}: Bluetooth (D-Bus/BlueZ) is missing: no system D-Bus at {bus} ({detail}); "
                            f"{DBUS_ADVICE}")
    kind = failure_kind(exc)
    if kind is Failure.ADAPTER:
        return AdapterError(f"{what}: Bluetooth is not available ({detail}); {ADAPTER_ADVICE}")
    if kind is Failure.OUT_OF_SLOTS:
        return OutOfSlotsError(f"{what}: {detail}; {SLOTS_ADVICE}")
    if kind is Failure.NOT_FOUND:
        return DeviceNotFoundError(f"{what}: device not found ({detail}); {NOT_FOUND_ADVICE}")
    if pairing or "AuthenticationFailed" in detail or "Authentication" in detail:
        return PairingError(f"{what}: pairing failed ({detail}); {PAIRING_ADVICE}")
    return DeviceError(f"{what}: {detail}; {NOT_FOUND_ADVICE}")


async def find_device(address: str, scan_timeout: float) -> BLEDevice | None:
    """The BLEDevice for ``address``: from BlueZ's known devices, else by scanning for it."""
    dev = await get_device(address)
    if dev is not None:
        return dev
    return await BleakScanner.find_device_by_address(address, timeout=scan_timeout)


def device_path(device: BLEDevice) -> str | None:
    details: Any = device.details
    if isinstance(details, dict):
        path = details.get("path")
        return str(path) if path else None
    return None


class BlueZProps:
    """Reads BlueZ properties bleak does not expose (Battery1.Percentage, Device1.RSSI) over D-Bus."""

    def __init__(self) -> None:
        self._bus: MessageBus | None = None
        self._lock = asyncio.Lock()

    async def _get_bus(self) -> MessageBus:
        async with self._lock:
            if self._bus is None or not self._bus.connected:
                bus = MessageBus(bus_type=BusType.SYSTEM)
                await bus.connect()
                self._bus = bus
            return self._bus

    async def get(self, path: str, interface: str, name: str) -> Any | None:
        """The property's value, or None when the object/interface/property is absent."""
        try:
            bus = await self._get_bus()
            reply = await asyncio.wait_for(bus.call(Message(
                destination="org.bluez", path=path, interface="org.freedesktop.DBus.Properties",
                member="Get", signature="ss", body=[interface, name])), timeout=5.0)
        except (OSError, EOFError, TimeoutError, BleakError) as exc:
            log.debug("reading %s.%s of %s failed: %s", interface, name, path, exc)
            return None
        if reply is None or reply.message_type != MessageType.METHOD_RETURN:
            return None
        return reply.body[0].value

    async def battery(self, path: str) -> int | None:
        value = await self.get(path, "org.bluez.Battery1", "Percentage")
        return int(value) if value is not None else None

    async def rssi(self, path: str) -> int | None:
        value = await self.get(path, "org.bluez.Device1", "RSSI")
        return int(value) if value is not None else None

    def close(self) -> None:
        if self._bus is not None:
            with contextlib.suppress(Exception):
                self._bus.disconnect()
            self._bus = None
