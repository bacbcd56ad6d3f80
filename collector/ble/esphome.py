"""Wearables through ESPHome Bluetooth proxies, driven the way Home Assistant drives them.

One :class:`ProxyHub` per process holds habluetooth's :class:`~habluetooth.BluetoothManager`
(proxies only: the local adapter stays with bleak's own BlueZ backend, collector/ble/bluez.py)
and one :class:`ProxyLink` per ``[[ble.proxies]]`` entry. A link is an aioesphomeapi
``APIClient`` kept connected by aioesphomeapi's ``ReconnectLogic`` (capped exponential backoff);
on every (re)connect it wires the node in with ``bleak_esphome.connect_scanner`` and registers the
scanner with the manager, and on a drop it tears that down again (bleak-esphome's documented
duties of the caller). Connections go through habluetooth's ``HaBleakClientWrapper``, which picks
the proxy that hears the wearable best among those with a free connection slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from aioesphomeapi.client import APIClient
from aioesphomeapi.reconnect_logic import ReconnectLogic
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak_esphome import connect_scanner
from bluetooth_adapters import AdapterDetails, BluetoothAdapters
from habluetooth import BluetoothManager, BluetoothServiceInfoBleak, set_manager
from habluetooth.usage import uninstall_multiple_bleak_catcher

from collector.errors import OutOfSlotsError
from collector.settings import ProxySettings

log = logging.getLogger(__name__)

ONE_CLIENT_ADVICE = ("an ESPHome proxy sends advertisements to one API client at a time: if Home Assistant has "
                     "adopted it, give magsleep a proxy of its own; if 'magsleep run' is running, it holds the "
                     "proxy (stop it to scan or pair through that proxy)")
PROXY_SLOTS_ADVICE = ("a proxy holds 3 connections by default (ESPHome 'bluetooth_proxy: connection_slots', "
                      "at most 5 recommended): disconnect another wearable, raise connection_slots, or add a "
                      "proxy in the same room")
#: Real seconds ``ProxyHub.start`` waits for the first connection to every proxy before going on.
START_WAIT_S = 5.0


class _NoLocalAdapters(BluetoothAdapters):
    """habluetooth sees no local adapter: magsleep drives the local one through bleak's BlueZ backend."""

    @property
    def adapters(self) -> dict[str, AdapterDetails]:
        return {}

    @property
    def default_adapter(self) -> str:
        return "hci0"


class _ProxyManager(BluetoothManager):
    """habluetooth's manager; advertisements reach magsleep through registered bleak callbacks."""

    def _discover_service_info(self, service_info: BluetoothServiceInfoBleak) -> None:
        pass


@dataclass(frozen=True, slots=True)
class Candidate:
    """A proxy that hears a wearable: its label, the RSSI there and its free/total connection slots."""

    proxy: str
    rssi: int
    free: int | None
    limit: int | None


@dataclass(frozen=True, slots=True)
class Heard:
    """A device heard through a proxy (for ``magsleep scan``)."""

    address: str
    name: str
    rssi: int
    service_uuids: tuple[str, ...]
    proxy: str


class ProxyLink:
    """One configured proxy, kept connected with backoff (aioesphomeapi's ReconnectLogic)."""

    def __init__(self, cfg: ProxySettings, hub: ProxyHub) -> None:
        self.cfg = cfg
        self.label = cfg.label
        self._hub = hub
        self.connected = asyncio.Event()
        self.source: str | None = None  # the node's Bluetooth MAC, habluetooth's "source"
        self.connects = 0
        self.drops = 0
        self._failures = 0
        self._cli: APIClient | None = None
        self._logic: ReconnectLogic | None = None
        self._teardown: list[Callable[[], None]] = []
        self._stopping = False

    async def start(self) -> None:
        self._cli = APIClient(self.cfg.host, self.cfg.port, None, noise_psk=self.cfg.psk(),
                              client_info="magsleep")
        self._logic = ReconnectLogic(client=self._cli, on_connect=self._on_connect,
                                     on_disconnect=self._on_disconnect, on_connect_error=self._on_connect_error,
                                     name=None, zeroconf_wake=False)
        await self._logic.start()

    async def stop(self) -> None:
        self._stopping = True
        try:
            if self._logic is not None:
                await self._logic.stop()
        finally:
            if self._cli is not None:
                with contextlib.suppress(Exception):
                    await self._cli.disconnect()
            self._down()

    async def _on_connect(self) -> None:
        cli = self._cli
        assert cli is not None
        info = await cli.device_info()
        data = connect_scanner(cli, info, True)
        scanner = data.scanner
        assert scanner is not None
        unsetup = scanner.async_setup()
        unregister = self._hub.manager.async_register_scanner(scanner)
        device = data.bluetooth_device
        callbacks = data.disconnect_callbacks

        def teardown() -> None:
            device.async_set_unavailable()  # fail slot waiters fast; no new connects offered here
            for cb in list(callbacks):
                try:
                    cb()
                except Exception:
                    log.exception("proxy %s: error in a disconnect callback", self.label)
            callbacks.clear()
            unsetup()
            unregister()

        self._teardown.append(teardown)
        self.source = scanner.source
        self._hub._labels[scanner.source] = self.label
        self.connects += 1
        level = logging.INFO if self._failures or self.connects > 1 else logging.DEBUG
        log.log(level, "ESPHome proxy %s (%s:%d, %s) connected%s", self.label, self.cfg.host, self.cfg.port,
                info.name, f" again after {self._failures} failed attempt(s)" if self._failures else "",
                extra={"proxy": self.label, "event": "proxy_connected"})
        self._failures = 0
        self.connected.set()

    async def _on_disconnect(self, expected: bool) -> None:
        if self._stopping:
            self._down()
            return
        self.drops += 1
        log.warning("ESPHome proxy %s (%s:%d) dropped off%s; reconnecting with backoff; its wearables move to "
                    "another source that hears them", self.label, self.cfg.host, self.cfg.port,
                    " (expected)" if expected else "", extra={"proxy": self.label, "event": "proxy_lost"})
        self._down()

    async def _on_connect_error(self, exc: Exception) -> None:
        self._failures += 1
        level = logging.WARNING if self._failures == 1 else logging.DEBUG
        log.log(level, "ESPHome proxy %s (%s:%d) unreachable (attempt %d): %s; check that it is powered and on "
                "the network, the host/port in [[ble.proxies]] and its API encryption key", self.label,
                self.cfg.host, self.cfg.port, self._failures, exc,
                extra={"proxy": self.label, "event": "proxy_unreachable"})

    def _down(self) -> None:
        self.connected.clear()
        while self._teardown:
            try:
                self._teardown.pop()()
            except Exception:
                log.exception("proxy %s: teardown failed", self.label)


class ProxyHub:
    """Every configured ESPHome proxy, behind one habluetooth manager."""

    def __init__(self, proxies: list[ProxySettings]) -> None:
        self.manager: BluetoothManager = _ProxyManager(bluetooth_adapters=_NoLocalAdapters())
        self.links = [ProxyLink(p, self) for p in proxies]
        self._labels: dict[str, str] = {}
        self._started = False

    async def start(self, wait_s: float = START_WAIT_S) -> None:
        """Set up the manager, start every link; wait up to ``wait_s`` for the first connections."""
        set_manager(self.manager)
        await self.manager.async_setup()
        # habluetooth swaps bleak's classes for its wrappers process-wide (Home Assistant's setup);
        # magsleep keeps bleak's own classes for the local adapter and uses the wrapper explicitly.
        uninstall_multiple_bleak_catcher()
        self._started = True
        for link in self.links:
            await link.start()
        if wait_s > 0 and self.links:
            waiters = [asyncio.ensure_future(link.connected.wait()) for link in self.links]
            _, pending = await asyncio.wait(waiters, timeout=wait_s)
            for w in pending:
                w.cancel()
            for link in self.links:
                if not link.connected.is_set():
                    log.warning("ESPHome proxy %s not connected yet; retrying in the background", link.label)

    async def stop(self) -> None:
        for link in self.links:
            with contextlib.suppress(Exception):
                await link.stop()
        if self._started:
            self.manager.async_stop()
            self._started = False

    async def __aenter__(self) -> ProxyHub:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def label(self, source: str) -> str:
        return self._labels.get(source, source)

    @property
    def connected(self) -> list[str]:
        return [link.label for link in self.links if link.connected.is_set()]

    # ---- what the proxies hear ------------------------------------------------------------

    def candidates(self, address: str) -> list[Candidate]:
        """Connected proxies hearing ``address``, best RSSI first."""
        out = []
        for dev in self.manager.async_scanner_devices_by_address(address.upper(), True):
            alloc = dev.scanner.get_allocations()
            out.append(Candidate(self.label(dev.scanner.source), dev.advertisement.rssi,
                                 alloc.free if alloc else None, alloc.slots if alloc else None))
        return sorted(out, key=lambda c: -c.rssi)

    def silent(self) -> list[str]:
        """Connected proxies that have sent no advertisement at all (another client may hold them)."""
        out = []
        for link in self.links:
            scanner = self.manager.async_scanner_by_source(link.source) if link.source else None
            if link.connected.is_set() and scanner is not None and not list(scanner.discovered_addresses):
                out.append(link.label)
        return out

    def holder(self, address: str) -> str | None:
        """The proxy whose connection slots list ``address`` as connected (None: none does)."""
        for alloc in self.manager.async_current_allocations() or []:
            if address.upper() in (a.upper() for a in alloc.allocated):
                return self.label(alloc.source)
        return None

    def ble_device(self, address: str) -> BLEDevice | None:
        return self.manager.async_ble_device_from_address(address.upper(), True)

    def rssi(self, address: str) -> int | None:
        cands = self.candidates(address)
        return cands[0].rssi if cands else None

    def heard(self) -> dict[str, Heard]:
        """Every connectable device the proxies hear now, by address (best proxy for each)."""
        out: dict[str, Heard] = {}
        for info in self.manager.async_discovered_service_info(True):
            best = self.candidates(info.address)
            out[info.address] = Heard(info.address, info.name if info.name != info.address else "",
                                      best[0].rssi if best else info.rssi,
                                      tuple(sorted(u.lower() for u in info.service_uuids)),
                                      best[0].proxy if best else self.label(info.source))
        return out

    @contextlib.contextmanager
    def listening(self, callback: Callable[[BLEDevice, AdvertisementData], None]) -> Iterator[None]:
        """Call ``callback`` for every advertisement a proxy hears while inside the block."""
        cancel = self.manager.async_register_bleak_callback(callback, {})
        try:
            yield
        finally:
            cancel()

    # ---- connecting -----------------------------------------------------------------------

    def check_slots(self, address: str, what: str) -> None:
        """Raise :class:`OutOfSlotsError` naming the proxies when all that hear ``address`` are full."""
        cands = self.candidates(address)
        if cands and all(c.free is not None and c.free <= 0 for c in cands):
            used = ", ".join(f"{c.proxy} ({c.limit} of {c.limit} slots in use)" for c in cands)
            raise OutOfSlotsError(f"{what}: no free connection slot on the ESPHome proxy that hears it: {used}; "
                                  f"{PROXY_SLOTS_ADVICE}")
