"""Profiles defined in config (``[[ble.generic]]``): a simple sensor without code.

One characteristic, one struct format, one point per notification: value ``i`` times
``scale[i]`` plus ``offset[i]`` becomes field ``fields[i]`` of ``measurement`` (validated against
the schema when the settings load; int fields are rounded).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from collector.ble.profiles.base import Subscription
from collector.ble.uuids import normalize_uuid
from collector.errors import ParseError
from collector.settings import GenericProfileSettings
from collector.storage.lineprotocol import FieldValue, Point
from collector.storage.schema import MEASUREMENTS


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
        self._plan = [(i, f, types[f] == "int") for i, f in enumerate(cfg.fields) if f]
        self.devices = frozenset(cfg.devices)

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
        return [Point(self.cfg.measurement, tags, fields, received_ns)]
