"""Bluetooth SIG UUIDs used by magsleep, in the 128-bit lowercase form bleak and BlueZ use."""

from __future__ import annotations

_BASE = "-0000-1000-8000-00805f9b34fb"


def uuid16(short: int) -> str:
    """The full 128-bit UUID of a 16-bit SIG-assigned number (``0x180D`` -> ``0000180d-...``)."""
    return f"0000{short:04x}{_BASE}"


def normalize_uuid(uuid: str) -> str:
    """``uuid`` as a lowercase 128-bit string; accepts '180d', '0x180D' or the full form."""
    u = uuid.strip().lower()
    if u.startswith("0x"):
        u = u[2:]
    if len(u) == 4:
        return uuid16(int(u, 16))
    if len(u) == 8:
        return f"{u}{_BASE}"
    return u


HEART_RATE_SERVICE = uuid16(0x180D)
HEART_RATE_MEASUREMENT = uuid16(0x2A37)
BODY_SENSOR_LOCATION = uuid16(0x2A38)
HEART_RATE_CONTROL_POINT = uuid16(0x2A39)
BATTERY_SERVICE = uuid16(0x180F)
BATTERY_LEVEL = uuid16(0x2A19)
DEVICE_INFORMATION_SERVICE = uuid16(0x180A)
MODEL_NUMBER = uuid16(0x2A24)
SERIAL_NUMBER = uuid16(0x2A25)
FIRMWARE_REVISION = uuid16(0x2A26)
HARDWARE_REVISION = uuid16(0x2A27)
SOFTWARE_REVISION = uuid16(0x2A28)
MANUFACTURER_NAME = uuid16(0x2A29)
CCCD = uuid16(0x2902)
