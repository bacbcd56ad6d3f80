"""The virtual BlueZ: a fake ``org.bluez`` on a private D-Bus that bleak's real backend talks to.

Typical use (see docs/virtual-bluez.md)::

    with private_system_bus():
        async with VirtualBlueZ.start(clock=clock) as bz:
            dev = bz.add_device(heart_rate_strap("C0:FF:EE:00:00:01", feed=heart_rate_feed(3600)))
            ...  # bleak / magsleep now see a heart-rate strap on hci0
            await dev.drop_link()
"""

from __future__ import annotations

from collector.sim.bluez.dbus_daemon import PrivateDBus, private_system_bus
from collector.sim.bluez.fake import BlueZError, DeviceStats, VirtualBlueZ, VirtualDevice
from collector.sim.bluez.gatt import (
    Characteristic,
    Descriptor,
    Feed,
    Notification,
    Service,
    VirtualWearable,
)
from collector.sim.bluez.wearables import heart_rate_feed, heart_rate_strap

__all__ = [
    "BlueZError",
    "Characteristic",
    "Descriptor",
    "DeviceStats",
    "Feed",
    "Notification",
    "PrivateDBus",
    "Service",
    "VirtualBlueZ",
    "VirtualDevice",
    "VirtualWearable",
    "heart_rate_feed",
    "heart_rate_strap",
    "private_system_bus",
]
