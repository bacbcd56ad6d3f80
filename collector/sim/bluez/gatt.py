"""Virtual wearables as plain data: advertisement, GATT table and a notification feed."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from collector.ble.uuids import BATTERY_SERVICE, normalize_uuid

_ADDRESS_RE = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}$")


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A GATT descriptor (the CCCD 0x2902 is added automatically to notifying characteristics)."""

    uuid: str
    value: bytes = b""


@dataclass(frozen=True, slots=True)
class Characteristic:
    """A GATT characteristic; ``flags`` as BlueZ spells them (read, write, notify, indicate...)."""

    uuid: str
    flags: tuple[str, ...] = ("read",)
    value: bytes = b""
    descriptors: tuple[Descriptor, ...] = ()


@dataclass(frozen=True, slots=True)
class Service:
    """A primary GATT service and its characteristics."""

    uuid: str
    characteristics: tuple[Characteristic, ...] = ()
    primary: bool = True


@dataclass(frozen=True, slots=True)
class Notification:
    """One notification of a feed: ``at_s`` seconds (device clock) after the feed starts."""

    at_s: float
    uuid: str
    value: bytes


#: A feed factory: called once when the device is added; returns notifications in time order.
Feed = Callable[[], Iterable[Notification]]
#: Called on every characteristic WriteValue as ``handler(device, uuid, value)`` (device is the
#: :class:`~collector.sim.bluez.fake.VirtualDevice`); may return an awaitable; raising
#: :class:`~collector.sim.bluez.fake.BlueZError` refuses the write. Behaviours of active protocols
#: (UART consoles, control points) live in handlers like this (see collector/sim/bluez/trackers.py).
WriteHandler = Callable[[Any, str, bytes], Awaitable[None] | None]


@dataclass(frozen=True)
class VirtualWearable:
    """Everything the virtual BlueZ needs to play one wearable.

    ``battery_pct`` is exposed as BlueZ's ``org.bluez.Battery1`` while connected when the GATT
    table has a Battery Service and ``hide_battery_service`` is true (stock BlueZ hides 0x180F
    behind its battery plugin); with ``hide_battery_service=False`` the 0x180F service stays in
    the GATT table and no Battery1 appears.
    """

    address: str
    name: str
    services: tuple[Service, ...] = ()
    rssi: int = -60
    tx_power: int | None = None
    manufacturer_data: Mapping[int, bytes] = field(default_factory=dict)
    service_data: Mapping[str, bytes] = field(default_factory=dict)
    advertised_uuids: tuple[str, ...] | None = None
    battery_pct: int | None = None
    hide_battery_service: bool = True
    requires_pairing: bool = False
    feed: Feed | None = None
    on_write: WriteHandler | None = None

    def __post_init__(self) -> None:
        if not _ADDRESS_RE.match(self.address):
            raise ValueError(f"address {self.address!r} must look like AA:BB:CC:DD:EE:FF (upper case hex)")
        if self.battery_pct is not None and not 0 <= self.battery_pct <= 100:
            raise ValueError("battery_pct must be within 0..100")

    @property
    def uuids(self) -> list[str]:
        """Service UUIDs in the advertisement (default: every primary service but a hidden 0x180F)."""
        if self.advertised_uuids is not None:
            return [normalize_uuid(u) for u in self.advertised_uuids]
        return [normalize_uuid(s.uuid) for s in self.gatt_services() if s.primary]

    def gatt_services(self) -> tuple[Service, ...]:
        """The services BlueZ would expose over D-Bus (0x180F hidden when BlueZ's plugin takes it)."""
        if not self.hide_battery_service:
            return self.services
        return tuple(s for s in self.services if normalize_uuid(s.uuid) != BATTERY_SERVICE)

    @property
    def has_battery1(self) -> bool:
        has_bas = any(normalize_uuid(s.uuid) == BATTERY_SERVICE for s in self.services)
        return self.hide_battery_service and (has_bas or self.battery_pct is not None)
