"""Reusable pytest fixtures: a private dbus-daemon as the system bus and a virtual BlueZ on it.

Enabled for the whole suite by ``pytest_plugins = ["tests.ble_fixtures"]`` in tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from collector.clock import CompressedClock
from collector.sim.bluez import PrivateDBus, VirtualBlueZ
from collector.sim.bluez.dbus_daemon import ENV_SYSTEM_BUS

T = TypeVar("T")


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


class ThreadedBlueZ:
    """A virtual BlueZ running in its own thread and event loop, for code that calls ``asyncio.run``
    itself (the CLI). ``call(fn)`` runs ``fn(bz)`` in the fake's loop and returns its result."""

    def __init__(self, bus_address: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="virtual-bluez", daemon=True)
        self.thread.start()
        self._cm = VirtualBlueZ.start(bus_address=bus_address)
        self.bz: VirtualBlueZ = self.run(self._cm.__aenter__())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def call(self, fn: Callable[[VirtualBlueZ], T]) -> T:
        async def go() -> T:
            return fn(self.bz)

        return self.run(go())

    def close(self) -> None:
        self.run(self._cm.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def threaded_bluez(private_dbus: PrivateDBus) -> Iterator[ThreadedBlueZ]:
    """A virtual BlueZ in a background thread (for CLI tests that run their own event loop)."""
    tb = ThreadedBlueZ(private_dbus.address)
    try:
        yield tb
    finally:
        tb.close()
