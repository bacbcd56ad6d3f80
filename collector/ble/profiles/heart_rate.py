"""Heart Rate Service (0x180D): Heart Rate Measurement (0x2A37) and Body Sensor Location (0x2A38).

Measurement layout (Bluetooth SIG HRS 1.0): one flags byte, then HR as uint8 or uint16 (bit 0),
energy expended uint16 kJ when bit 3 is set, then any number of RR intervals as uint16 in 1/1024 s
when bit 4 is set. Bit 2 says sensor contact is supported, bit 1 whether it is detected.
Some straps append one odd byte after the RR pairs: it is ignored, never an error.
A heart rate of 0 (strap reports "no reading") makes no ``heart_rate`` point; RR intervals of 0
are skipped. Each RR interval becomes an ``rr`` point stamped at the end of its beat, walking back
from the time the notification was received (the last interval ends at receipt).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from collector.ble.profiles.base import Parser, Subscription
from collector.ble.uuids import BODY_SENSOR_LOCATION, HEART_RATE_MEASUREMENT, HEART_RATE_SERVICE
from collector.errors import ParseError
from collector.storage.lineprotocol import FieldValue, Point
from collector.storage.schema import HEART_RATE, RR

FLAG_HR_UINT16 = 0x01
FLAG_CONTACT_DETECTED = 0x02
FLAG_CONTACT_SUPPORTED = 0x04
FLAG_ENERGY = 0x08
FLAG_RR = 0x10

#: Body Sensor Location values (0x2A38).
BODY_LOCATIONS = {0: "other", 1: "chest", 2: "wrist", 3: "finger", 4: "hand", 5: "ear_lobe", 6: "foot"}

_NS_PER_RR_UNIT = 1_000_000_000 / 1024


@dataclass(frozen=True, slots=True)
class HeartRateMeasurement:
    """One decoded 0x2A37 notification. ``rr_1024`` are raw intervals in 1/1024 s."""

    bpm: int
    contact: bool | None
    energy_kj: int | None
    rr_1024: tuple[int, ...]
    trailing_bytes: int = 0

    @property
    def rr_ms(self) -> list[float]:
        return [r * 1000.0 / 1024.0 for r in self.rr_1024]


def _header(data: bytes | bytearray) -> tuple[int, int, int]:
    """Flags, heart rate and the offset after it; raises :class:`ParseError` when the bytes are too few."""
    n = len(data)
    if n < 2:
        raise ParseError(f"heart rate measurement too short ({n} bytes, need at least 2): {bytes(data).hex()}")
    flags = data[0]
    if flags & FLAG_HR_UINT16:
        if n < 3:
            raise ParseError(f"heart rate measurement says uint16 HR but has {n} bytes: {bytes(data).hex()}")
        return flags, data[1] | (data[2] << 8), 3
    return flags, data[1], 2


def decode_measurement(data: bytes) -> HeartRateMeasurement:
    """Decode a Heart Rate Measurement; raises :class:`ParseError` when it is too short."""
    n = len(data)
    flags, bpm, i = _header(data)
    contact: bool | None = bool(flags & FLAG_CONTACT_DETECTED) if flags & FLAG_CONTACT_SUPPORTED else None
    energy: int | None = None
    if flags & FLAG_ENERGY:
        if n < i + 2:
            raise ParseError(f"heart rate measurement says energy expended but has {n} bytes: {data.hex()}")
        energy = data[i] | (data[i + 1] << 8)
        i += 2
    rr: tuple[int, ...] = ()
    trailing = 0
    if flags & FLAG_RR:
        pairs = (n - i) // 2
        rr = struct.unpack_from(f"<{pairs}H", data, i) if pairs else ()
        trailing = (n - i) % 2
    else:
        trailing = n - i
    return HeartRateMeasurement(bpm, contact, energy, rr, trailing)


def encode_measurement(
    bpm: int,
    rr_1024: Sequence[int] = (),
    *,
    contact: bool | None = True,
    energy_kj: int | None = None,
    uint16: bool | None = None,
) -> bytes:
    """The 0x2A37 bytes for a reading (the inverse of :func:`decode_measurement`; used by the simulator)."""
    wide = bpm > 255 if uint16 is None else uint16
    flags = (FLAG_HR_UINT16 if wide else 0)
    if contact is not None:
        flags |= FLAG_CONTACT_SUPPORTED | (FLAG_CONTACT_DETECTED if contact else 0)
    if energy_kj is not None:
        flags |= FLAG_ENERGY
    if rr_1024:
        flags |= FLAG_RR
    out = bytearray([flags])
    out += struct.pack("<H", bpm) if wide else bytes([bpm])
    if energy_kj is not None:
        out += struct.pack("<H", energy_kj)
    for r in rr_1024:
        out += struct.pack("<H", r)
    return bytes(out)


def measurement_points(m: HeartRateMeasurement, received_ns: int, tags: Mapping[str, str]) -> list[Point]:
    """``heart_rate`` and per-beat ``rr`` points of one measurement."""
    points: list[Point] = []
    if m.bpm > 0:
        fields: dict[str, FieldValue] = {"bpm": m.bpm}
        if m.contact is not None:
            fields["contact"] = m.contact
        if m.energy_kj is not None:
            fields["energy_kj"] = m.energy_kj
        points.append(Point(HEART_RATE.name, tags, fields, received_ns))
    if m.rr_1024:
        end = received_ns
        beats: list[Point] = []
        for raw in reversed(m.rr_1024):
            if raw == 0:
                continue
            beats.append(Point(RR.name, tags, {"rr_ms": raw * 1000.0 / 1024.0}, end))
            end -= round(raw * _NS_PER_RR_UNIT)
        beats.reverse()
        points.extend(beats)
    return points


def decode_body_sensor_location(data: bytes) -> str:
    """The location name of a 0x2A38 value; raises :class:`ParseError` when empty."""
    if not data:
        raise ParseError("body sensor location is empty")
    return BODY_LOCATIONS.get(data[0], f"reserved_{data[0]}")


class HeartRateProfile:
    """Standard Heart Rate Service: HR, contact, energy and RR intervals."""

    name: str = "heart_rate"
    service_uuids: frozenset[str] = frozenset({HEART_RATE_SERVICE})
    subscriptions: tuple[Subscription, ...] = (Subscription(HEART_RATE_MEASUREMENT),)
    body_sensor_location_uuid = BODY_SENSOR_LOCATION

    def parse(self, uuid: str, data: bytes | bytearray, received_ns: int, tags: Mapping[str, str]) -> list[Point]:
        if uuid != HEART_RATE_MEASUREMENT:
            raise ParseError(f"heart_rate profile does not handle characteristic {uuid}")
        return parse_points(data, received_ns, tags)

    def parser(self, uuid: str) -> Parser:
        if uuid != HEART_RATE_MEASUREMENT:
            raise ParseError(f"heart_rate profile does not handle characteristic {uuid}")
        return parse_points


_RR_FORMATS = [f"<{k}H" for k in range(64)]
#: Builds a Point without the NamedTuple constructor's extra Python frame (hot path, ~0.1 us a point).
_new = tuple.__new__
_HEART_RATE, _RR = HEART_RATE.name, RR.name


def parse_points(data: bytes | bytearray, received_ns: int, tags: Mapping[str, str]) -> list[Point]:
    """``decode_measurement`` + ``measurement_points`` in one pass (the hot path: one call per beat batch)."""
    n = len(data)
    flags, bpm, i = _header(data)
    fields: dict[str, FieldValue] = {"bpm": bpm}
    if flags & FLAG_CONTACT_SUPPORTED:
        fields["contact"] = bool(flags & FLAG_CONTACT_DETECTED)
    if flags & FLAG_ENERGY:
        if n < i + 2:
            raise ParseError(f"heart rate measurement says energy expended but has {n} bytes: {bytes(data).hex()}")
        fields["energy_kj"] = data[i] | (data[i + 1] << 8)
        i += 2
    points = [_new(Point, (_HEART_RATE, tags, fields, received_ns))] if bpm else []
    pairs = (n - i) >> 1
    if flags & FLAG_RR and pairs:
        rr = struct.unpack_from(_RR_FORMATS[pairs] if pairs < 64 else f"<{pairs}H", data, i)
        if pairs == 1:
            if rr[0]:
                points.append(_new(Point, (_RR, tags, {"rr_ms": rr[0] * 0.9765625}, received_ns)))
            return points
        # Beat k ends where the later beats' durations, walked back from receipt, say it does.
        ends = [received_ns] * pairs
        end = received_ns
        for j in range(pairs - 1, 0, -1):
            end -= round(rr[j] * _NS_PER_RR_UNIT)
            ends[j - 1] = end
        points += [_new(Point, (_RR, tags, {"rr_ms": raw * 0.9765625}, e))
                   for raw, e in zip(rr, ends, strict=True) if raw]
    return points
