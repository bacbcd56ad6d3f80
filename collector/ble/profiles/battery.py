"""Battery level: BlueZ's ``org.bluez.Battery1`` first (stock BlueZ hides 0x180F), GATT 0x2A19 as fallback."""

from __future__ import annotations

from collector.ble.uuids import BATTERY_LEVEL, BATTERY_SERVICE
from collector.errors import ParseError

SERVICE_UUID = BATTERY_SERVICE
LEVEL_UUID = BATTERY_LEVEL
BLUEZ_BATTERY_INTERFACE = "org.bluez.Battery1"


def decode_level(data: bytes) -> int:
    """Percent from a 0x2A19 value; raises :class:`ParseError` unless it is one byte within 0..100."""
    if len(data) != 1:
        raise ParseError(f"battery level must be 1 byte, got {len(data)}: {data.hex()}")
    if data[0] > 100:
        raise ParseError(f"battery level {data[0]} is above 100%")
    return data[0]
