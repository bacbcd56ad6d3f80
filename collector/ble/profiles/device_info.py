"""Device Information Service (0x180A): model, firmware and friends, stored with device status."""

from __future__ import annotations

from dataclasses import dataclass

from collector.ble.uuids import (
    DEVICE_INFORMATION_SERVICE,
    FIRMWARE_REVISION,
    HARDWARE_REVISION,
    MANUFACTURER_NAME,
    MODEL_NUMBER,
    SERIAL_NUMBER,
    SOFTWARE_REVISION,
)

SERVICE_UUID = DEVICE_INFORMATION_SERVICE
#: Characteristic UUID -> DeviceInfo attribute.
FIELDS = {
    MANUFACTURER_NAME: "manufacturer",
    MODEL_NUMBER: "model",
    SERIAL_NUMBER: "serial",
    HARDWARE_REVISION: "hardware",
    FIRMWARE_REVISION: "firmware",
    SOFTWARE_REVISION: "software",
}
_MAX_LEN = 64


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    manufacturer: str = ""
    model: str = ""
    serial: str = ""
    hardware: str = ""
    firmware: str = ""
    software: str = ""


def decode_string(data: bytes) -> str:
    """A DIS UTF-8 string: NUL padding and whitespace stripped, bad bytes replaced, at most 64 chars."""
    text = data.split(b"\x00", 1)[0].decode("utf-8", errors="replace")
    return "".join(ch for ch in text if ch.isprintable()).strip()[:_MAX_LEN]


def from_values(values: dict[str, bytes]) -> DeviceInfo:
    """DeviceInfo from characteristic UUID -> raw value (missing ones stay empty)."""
    kw = {attr: decode_string(values[uuid]) for uuid, attr in FIELDS.items() if uuid in values}
    return DeviceInfo(**kw)
