"""InfiniTime (PineTime): the motion service, next to the standard Heart Rate profile.

Motion service 00030000-78fc-48fe-8e23-433b3a1942d0: step count ...0001 (uint32 LE, read+notify)
and raw motion ...0002 (3 x int16 LE X, Y, Z; read+notify). InfiniTime polls its BMA421 at 10 Hz
and notifies raw motion only when a value changes, in units of 1/1024 g (its raise-to-wake code
takes 1024 as 1 g). Silence therefore means "unchanged", so activity is computed on the held
signal: each value counts for as long as it stood, and ``pull`` (every 30 s) closes epochs during
which nothing moved (activity 0). Activity per 30-s epoch is the time-weighted mean amplitude
deviation of the magnitude in milli-g (see :mod:`collector.ble.profiles.activity`); the epoch in
progress when the link comes up or goes down is dropped. Steps become ``motion`` points with the
cumulative ``steps`` field.
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING

from collector.ble.profiles.base import Subscription
from collector.ble.profiles.hooks import ProfileContext
from collector.errors import ParseError
from collector.storage.lineprotocol import Point

if TYPE_CHECKING:
    from bleak import BleakClient
    from bleak.backends.characteristic import BleakGATTCharacteristic

log = logging.getLogger(__name__)

MOTION_SERVICE = "00030000-78fc-48fe-8e23-433b3a1942d0"
STEP_COUNT = "00030001-78fc-48fe-8e23-433b3a1942d0"
RAW_MOTION = "00030002-78fc-48fe-8e23-433b3a1942d0"
#: Raw units per g.
COUNTS_PER_G = 1024
EPOCH_S = 30
NS = 1_000_000_000


def decode_steps(data: bytes | bytearray) -> int:
    if len(data) != 4:
        raise ParseError(f"InfiniTime step count must be 4 bytes, got {len(data)}: {bytes(data).hex()}")
    return int(struct.unpack("<I", data)[0])


def decode_motion(data: bytes | bytearray) -> tuple[int, int, int]:
    if len(data) != 6:
        raise ParseError(f"InfiniTime raw motion must be 6 bytes (3 x int16), got {len(data)}: {bytes(data).hex()}")
    x, y, z = struct.unpack("<3h", data)
    return int(x), int(y), int(z)


class HeldActivity:
    """Time-weighted epoch activity of a signal that is only reported when it changes."""

    def __init__(self, tags: Mapping[str, str], *, epoch_s: int = EPOCH_S) -> None:
        self._tags = tags
        self.epoch_s = epoch_s
        self._epoch_ns = epoch_s * NS
        self._start: int | None = None  # start of the epoch in progress
        self._complete = False  # the epoch in progress is covered from its start
        self._t = 0  # time of the held value
        self._mag = 0.0
        self._segments: list[tuple[int, float]] = []  # (duration ns, magnitude mg)

    def add(self, time_ns: int, mag_mg: float) -> list[Point]:
        if self._start is None:
            self._start = time_ns - time_ns % self._epoch_ns
            self._complete = time_ns == self._start
            self._t, self._mag = time_ns, mag_mg
            return []
        if time_ns < self._t:
            return []  # out of order: ignored
        out = self.advance(time_ns)
        self._t, self._mag = time_ns, mag_mg
        return out

    def advance(self, now_ns: int) -> list[Point]:
        """Hold the last value until ``now_ns``; points of the epochs that ended."""
        if self._start is None or now_ns < self._t:
            return []
        out: list[Point] = []
        while now_ns >= self._start + self._epoch_ns:
            end = self._start + self._epoch_ns
            self._segments.append((end - self._t, self._mag))
            if self._complete:
                out.append(self._point(self._start))
            self._segments = []
            self._start, self._t, self._complete = end, end, True
        if now_ns > self._t:
            self._segments.append((now_ns - self._t, self._mag))
            self._t = now_ns
        return out

    def _point(self, start: int) -> Point:
        total = sum(d for d, _ in self._segments) or 1
        mean = sum(d * m for d, m in self._segments) / total
        mad = sum(d * abs(m - mean) for d, m in self._segments) / total
        fields = {"activity": round(mad, 3), "magnitude_g": round(mean / 1000.0 - 1.0, 5), "epoch_s": self.epoch_s}
        return Point("motion", self._tags, fields, start)


def magnitude_mg(x: int, y: int, z: int) -> float:
    return math.sqrt(x * x + y * y + z * z) * 1000.0 / COUNTS_PER_G


class InfiniTimeProfile:
    """PineTime with InfiniTime: steps and per-epoch activity from raw motion."""

    name: str = "infinitime"
    service_uuids: frozenset[str] = frozenset({MOTION_SERVICE})
    subscriptions: tuple[Subscription, ...] = (Subscription(STEP_COUNT, required=False),)
    #: Closes still epochs (no notifications while nothing moves).
    pull_interval_s: float = float(EPOCH_S)

    def parse(self, uuid: str, data: bytes | bytearray, received_ns: int, tags: Mapping[str, str]) -> list[Point]:
        """Steps become a point; raw motion is only validated (it becomes epochs in ``on_connect``'s stream)."""
        if uuid == STEP_COUNT:
            return [Point("motion", tags, {"steps": decode_steps(data)}, received_ns)]
        if uuid == RAW_MOTION:
            decode_motion(data)
            return []
        raise ParseError(f"infinitime profile does not handle characteristic {uuid}")

    async def on_connect(self, client: BleakClient, ctx: ProfileContext) -> None:
        if client.services.get_characteristic(RAW_MOTION) is None:
            log.info("%s: InfiniTime serves no raw motion characteristic (firmware < 1.7?); steps only", ctx.alias)
            return
        held = HeldActivity(ctx.tags)
        ctx.memory["held"] = held
        ctx.memory["bad"] = 0

        def on_motion(_char: BleakGATTCharacteristic, data: bytearray) -> None:
            ctx.touch()
            try:
                x, y, z = decode_motion(data)
            except ParseError as exc:
                ctx.memory["bad"] += 1
                log.debug("%s: %s", ctx.alias, exc)
                return
            points = held.add(ctx.clock.time_ns(), magnitude_mg(x, y, z))
            if points:
                ctx.emit(points)

        await client.start_notify(RAW_MOTION, on_motion)

    async def pull(self, client: BleakClient, ctx: ProfileContext) -> None:
        held = ctx.memory.get("held")
        if isinstance(held, HeldActivity):
            points = held.advance(ctx.clock.time_ns())
            if points:
                ctx.emit(points)
