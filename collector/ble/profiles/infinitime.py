"""InfiniTime (PineTime): the motion service, next to the standard Heart Rate profile.

Motion service 00030000-78fc-48fe-8e23-433b3a1942d0: step count ...0001 (uint32 LE, read+notify)
and raw motion ...0002 (3 x int16 LE X, Y, Z; read+notify). InfiniTime polls its BMA421 at 10 Hz
and notifies raw motion only when a value changes, in units of 1/1024 g (its raise-to-wake code
takes 1024 as 1 g). Silence therefore means "unchanged": the values (in g) are held, each standing
until the next, and become ActiGraph activity counts per 60-s epoch
(:class:`collector.ble.profiles.activity.EpochCounts` with ``hold=True``: ``counts`` vector
magnitude, ``counts_x/y/z``, ``epoch_s``); ``pull`` (every 30 s) closes epochs during which
nothing moved (counts 0). Stamps are receipt times, so radio latency moves a change by a few tens of
ms at most. The epoch in progress when the link comes up or goes down is dropped. Steps become
``motion`` points with the cumulative ``steps`` field.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING

from collector.ble.profiles.activity import EpochCounts
from collector.ble.profiles.base import Subscription
from collector.ble.profiles.hooks import ProfileContext
from collector.errors import ParseError
from collector.nights.activity import load_counts
from collector.storage.lineprotocol import Point
from collector.storage.schema import MOTION

if TYPE_CHECKING:
    from bleak import BleakClient
    from bleak.backends.characteristic import BleakGATTCharacteristic

log = logging.getLogger(__name__)

MOTION_SERVICE = "00030000-78fc-48fe-8e23-433b3a1942d0"
STEP_COUNT = "00030001-78fc-48fe-8e23-433b3a1942d0"
RAW_MOTION = "00030002-78fc-48fe-8e23-433b3a1942d0"
#: Raw units per g.
COUNTS_PER_G = 1024
#: ``pull`` interval: closes epochs in which nothing moved.
PULL_S = 30


def decode_steps(data: bytes | bytearray) -> int:
    if len(data) != 4:
        raise ParseError(f"InfiniTime step count must be 4 bytes, got {len(data)}: {bytes(data).hex()}")
    return int(struct.unpack("<I", data)[0])


def decode_motion(data: bytes | bytearray) -> tuple[int, int, int]:
    if len(data) != 6:
        raise ParseError(f"InfiniTime raw motion must be 6 bytes (3 x int16), got {len(data)}: {bytes(data).hex()}")
    x, y, z = struct.unpack("<3h", data)
    return int(x), int(y), int(z)


def motion_g(x: int, y: int, z: int) -> tuple[float, float, float]:
    """Raw motion in g (InfiniTime's unit is 1/1024 g)."""
    return x / COUNTS_PER_G, y / COUNTS_PER_G, z / COUNTS_PER_G


class InfiniTimeProfile:
    """PineTime with InfiniTime: steps, and ActiGraph counts per epoch from raw motion."""

    name: str = "infinitime"
    service_uuids: frozenset[str] = frozenset({MOTION_SERVICE})
    subscriptions: tuple[Subscription, ...] = (Subscription(STEP_COUNT, required=False),)
    #: Closes still epochs (no notifications while nothing moves).
    pull_interval_s: float = float(PULL_S)

    def parse(self, uuid: str, data: bytes | bytearray, received_ns: int, tags: Mapping[str, str]) -> list[Point]:
        """Steps become a point; raw motion is only validated (it becomes epochs in ``on_connect``'s stream)."""
        if uuid == STEP_COUNT:
            return [Point(MOTION.name, tags, {"steps": decode_steps(data)}, received_ns)]
        if uuid == RAW_MOTION:
            decode_motion(data)
            return []
        raise ParseError(f"infinitime profile does not handle characteristic {uuid}")

    async def on_connect(self, client: BleakClient, ctx: ProfileContext) -> None:
        if client.services.get_characteristic(RAW_MOTION) is None:
            log.info("%s: InfiniTime serves no raw motion characteristic (firmware < 1.7?); steps only", ctx.alias)
            return
        await asyncio.to_thread(load_counts)  # SciPy's import would stall the event loop at the first epoch
        held = EpochCounts(ctx.tags, hold=True)
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
            points = held.add(ctx.clock.time_ns(), *motion_g(x, y, z))
            if points:
                ctx.emit(points)

        await client.start_notify(RAW_MOTION, on_motion)

    async def pull(self, client: BleakClient, ctx: ProfileContext) -> None:
        held = ctx.memory.get("held")
        if isinstance(held, EpochCounts):
            points = held.advance(ctx.clock.time_ns())
            if points:
                ctx.emit(points)
