"""Reusable pytest fixtures: a private dbus-daemon as the system bus and a virtual BlueZ on it.

Enabled for the whole suite by ``pytest_plugins = ["tests.ble_fixtures"]`` in tests/conftest.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from collector.clock import CompressedClock
from collector.sim.bluez import PrivateDBus, VirtualBlueZ
from collector.sim.bluez.dbus_daemon import ENV_SYSTEM_BUS


@pytest.fixture(scope="session")
def private_dbus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateDBus]:
    """A private dbus-daemon for the session, set as ``DBUS_SYSTEM_BUS_ADDRESS``."""
    bus = PrivateDBus.start(tmp_path_factory.mktemp("dbus"))
    old = os.environ.get(ENV_SYSTEM_BUS)
    os.environ[ENV_SYSTEM_BUS] = bus.address
    try:
        yield bus
    finally:
        if old is None:
            os.environ.pop(ENV_SYSTEM_BUS, None)
        else:
            os.environ[ENV_SYSTEM_BUS] = old
        bus.stop()


@pytest.fixture
async def virtual_bluez(private_dbus: PrivateDBus) -> AsyncIterator[VirtualBlueZ]:
    """A virtual BlueZ (real-time clock) with adapter hci0 and no devices yet."""
    async with VirtualBlueZ.start(bus_address=private_dbus.address) as bz:
        yield bz


@pytest.fixture
def compressed_clock() -> CompressedClock:
    """A clock 120x faster than real time, starting now (use it for both the fake and the daemon)."""
    return CompressedClock(start_ns=time.time_ns(), speed=120.0)


@pytest.fixture
async def fast_bluez(private_dbus: PrivateDBus, compressed_clock: CompressedClock) -> AsyncIterator[VirtualBlueZ]:
    """A virtual BlueZ whose feeds run on ``compressed_clock``."""
    async with VirtualBlueZ.start(bus_address=private_dbus.address, clock=compressed_clock) as bz:
        yield bz
