"""Profiles defined in config (``[[ble.generic]]``): a simple sensor without code.

One characteristic, one struct format, one point per notification: value ``i`` times
``scale[i]`` plus ``offset[i]`` becomes field ``fields[i]`` of ``measurement`` (validated against
the schema when the settings load; int fields are rounded). With ``acceleration_hz`` the values
named ``x_g``, ``y_g``, ``z_g`` are one raw acceleration sample (g) stamped at receipt, and become
ActiGraph counts per minute per device (:class:`collector.ble.profiles.activity.EpochCounts`); the
other fields still make one point per notification.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING

from collector.ble.profiles.activity import EpochCounts
from collector.ble.profiles.base import Subscription
from collector.ble.profiles.hooks import ProfileContext
from collector.ble.uuids import normalize_uuid
from collector.errors import ParseError
from collector.nights.activity import load_counts
from collector.settings import ACCELERATION_FIELDS, GenericProfileSettings
from collector.storage.lineprotocol import FieldValue, Point
from collector.storage.schema import MEASUREMENTS

if TYPE_CHECKING:
    from bleak import BleakClient


class GenericProfile:
    """A ``[[ble.generic]]`` entry as a profile."""

    def __init__(self, cfg: GenericProfileSettings) -> None:
        self.cfg = cfg
        self.name: str = cfg.name
        self.service_uuids: frozenset[str] = frozenset({normalize_uuid(cfg.service)})
        self.characteristic = normalize_uuid(cfg.characteristic)
        self.subscriptions: tuple[Subscription, ...] = (Subscription(self.characteristic),)
        self._struct = struct.Struct(cfg.format)
        n = len(cfg.fields)
        self._scale = cfg.scale if isinstance(cfg.scale, list) else [cfg.scale] * n
        self._offset = cfg.offset if isinstance(cfg.offset, list) else [cfg.offset] * n
        types = {f.name: f.type for f in MEASUREMENTS[cfg.measurement].fields}
        self._plan = [(i, f, types[f] == "int") for i, f in enumerate(cfg.fields) if f and f not in ACCELERATION_FIELDS]
        self._axes = [cfg.fields.index(a) for a in ACCELERATION_FIELDS] if cfg.acceleration_hz else []
        #: per device (alias): its acceleration stream, when the profile carries acceleration
        self._streams: dict[str, EpochCounts] = {}
        self.devices = frozenset(cfg.devices)

    async def on_connect(self, client: BleakClient, ctx: ProfileContext) -> None:
        """Acceleration sensors: a fresh stream per connection (the minute in progress at a link loss is
        dropped), and agcounts/SciPy imported in a thread, not at the first minute on the event loop."""
        if self._axes:
            self._streams.pop(ctx.alias, None)
            await asyncio.to_thread(load_counts)

    def parse(self, uuid: str, data: bytes | bytearray, received_ns: int, tags: Mapping[str, str]) -> list[Point]:
        if uuid != self.characteristic:
            raise ParseError(f"{self.name} profile does not handle characteristic {uuid}")
        if len(data) < self._struct.size:
            raise ParseError(f"{self.name}: {len(data)} bytes, format {self.cfg.format!r} needs "
                             f"{self._struct.size}: {bytes(data).hex()}")
        values = self._struct.unpack_from(data)
        fields: dict[str, FieldValue] = {}
        for i, name, is_int in self._plan:
            v = values[i] * self._scale[i] + self._offset[i]
            if v != v or v in (float("inf"), float("-inf")):
                raise ParseError(f"{self.name}: {name} is not a finite number")
            fields[name] = round(v) if is_int else float(v)
        out = [Point(self.cfg.measurement, tags, fields, received_ns)] if fields else []
        if self._axes:
            x, y, z = (float(values[i] * self._scale[i] + self._offset[i]) for i in self._axes)
            if not all(abs(v) < 1e6 for v in (x, y, z)):  # also NaN
                raise ParseError(f"{self.name}: acceleration is not a finite number")
            key = tags.get("device", "")
            stream = self._streams.get(key)
            if stream is None:
                stream = self._streams[key] = EpochCounts(tags, rate_hz=self.cfg.acceleration_hz)
            out += stream.add(received_ns, x, y, z)
        return out
