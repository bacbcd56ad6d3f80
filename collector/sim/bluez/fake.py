"""A virtual ``org.bluez`` served with dbus-fast, good enough for bleak's real BlueZ backend.

It keeps BlueZ's object layout exactly (``/org/bluez/hci0/dev_AA_BB_CC_DD_EE_FF/service0010/
char0011/desc0013``), because bleak derives devices and handles from paths, and follows BlueZ's
order of events: ``Connected`` true, GATT objects added, ``ServicesResolved`` true; on loss
``ServicesResolved`` false, ``Connected`` false, GATT objects removed. Notifications go through
``StartNotify`` + ``PropertiesChanged(Value)``, bleak 3's default path.

The fake is written against D-Bus messages rather than dbus-fast ``ServiceInterface`` classes:
BlueZ exports hundreds of objects with generic Properties/ObjectManager behaviour and some
replies must be delayed (slow devices), which a single message handler does plainly.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from collector.ble.uuids import BATTERY_LEVEL, CCCD, normalize_uuid
from collector.clock import Clock, SystemClock
from collector.errors import DeviceError
from collector.sim.bluez.gatt import Characteristic, Descriptor, Service, VirtualWearable

log = logging.getLogger(__name__)

BLUEZ = "org.bluez"
ADAPTER = "org.bluez.Adapter1"
DEVICE = "org.bluez.Device1"
GATT_SERVICE = "org.bluez.GattService1"
GATT_CHAR = "org.bluez.GattCharacteristic1"
GATT_DESC = "org.bluez.GattDescriptor1"
BATTERY = "org.bluez.Battery1"
MONITOR_MANAGER = "org.bluez.AdvertisementMonitorManager1"
OBJECT_MANAGER = "org.freedesktop.DBus.ObjectManager"
PROPERTIES = "org.freedesktop.DBus.Properties"
INTROSPECTABLE = "org.freedesktop.DBus.Introspectable"

ERR_FAILED = "org.bluez.Error.Failed"
ERR_NOT_READY = "org.bluez.Error.NotReady"
ERR_NOT_SUPPORTED = "org.bluez.Error.NotSupported"
ERR_NOT_CONNECTED = "org.bluez.Error.NotConnected"
ERR_ALREADY_EXISTS = "org.bluez.Error.AlreadyExists"
ERR_AUTH_FAILED = "org.bluez.Error.AuthenticationFailed"
ERR_DOES_NOT_EXIST = "org.bluez.Error.DoesNotExist"
ERR_UNKNOWN_OBJECT = "org.freedesktop.DBus.Error.UnknownObject"
ERR_UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"

#: First attribute handle of a device's GATT table (BlueZ numbers services from the low 0x000N).
FIRST_HANDLE = 0x0010

Props = dict[str, Variant]


class BlueZError(Exception):
    """Becomes a D-Bus error reply ``name: text``."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__(f"{name}: {text}")
        self.name = name
        self.text = text


class _EagainTolerantSocket:
    """Makes dbus-fast wait for writability instead of dropping the bus on EAGAIN.

    dbus-fast 5.2 treats ``BlockingIOError`` from ``send`` as fatal and disconnects (seen under a
    burst of ~1,000 signals). Returning 0 bytes sent makes its writer keep the buffer and wait
    for the socket to become writable, which is what a non-blocking writer should do.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def send(self, data: Any) -> int:
        try:
            return self._sock.send(data)
        except BlockingIOError:
            return 0

    def sendmsg(self, buffers: Any, ancdata: Any = ()) -> int:
        try:
            return self._sock.sendmsg(buffers, ancdata)
        except BlockingIOError:
            return 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


@dataclass
class DeviceStats:
    """What happened to one virtual device (for tests and benchmarks)."""

    connects: int = 0
    connect_attempts: int = 0
    disconnects: int = 0
    notifications_sent: int = 0
    notifications_dropped: int = 0
    malformed_sent: int = 0


class VirtualDevice:
    """A wearable inside the virtual BlueZ; its methods inject faults and push notifications."""

    def __init__(self, bz: VirtualBlueZ, wearable: VirtualWearable, adapter: str) -> None:
        self._bz = bz
        self.wearable = wearable
        self.address = wearable.address
        self.adapter_path = f"/org/bluez/{adapter}"
        self.path = f"{self.adapter_path}/dev_{wearable.address.replace(':', '_')}"
        self.stats = DeviceStats()
        self.connected = False
        self.paired = False
        self.trusted = False
        self.known = False  # present on the bus (discovered, or paired before a restart)
        self.in_range = True
        self.silent = False
        self.response_delay_s = 0.0
        self.malformed_every = 0
        self.battery_pct = wearable.battery_pct
        self.rssi = wearable.rssi
        self._refusals = 0
        self._refuse_error = (ERR_FAILED, "le-connection-abort-by-remote")
        self._pair_refused = False
        self._alias = wearable.name
        self._values: dict[str, bytes] = {}
        self._notifying: set[str] = set()
        self._char_by_uuid: dict[str, list[str]] = {}
        self._gatt_objects: list[tuple[str, dict[str, Props]]] = []
        self._build_gatt()

    # ---- fault injection and driving -------------------------------------------------------

    def refuse_connects(
        self, n: int, *, error: str = ERR_FAILED, message: str = "le-connection-abort-by-remote"
    ) -> None:
        """Fail the next ``n`` Connect/Pair calls with ``error: message``."""
        self._refusals = n
        self._refuse_error = (error, message)

    def refuse_pairing(self, refused: bool = True) -> None:
        """Make Pair fail with AuthenticationFailed (wrong passkey, user said no)."""
        self._pair_refused = refused

    def set_response_delay(self, seconds: float) -> None:
        """Delay every reply of this device by ``seconds`` of real time (a slow or busy device)."""
        self.response_delay_s = seconds

    def set_silent(self, silent: bool = True) -> None:
        """Stay connected but send no notifications (a hung sensor)."""
        self.silent = silent

    def set_malformed_every(self, n: int) -> None:
        """Truncate every ``n``-th notification of the feed to one flags byte (0 turns it off)."""
        self.malformed_every = n

    async def drop_link(self, reason: str = "connection-timeout") -> None:
        """Lose the link now, as a supervision timeout would."""
        if self.connected:
            log.debug("virtual %s: link dropped (%s)", self.address, reason)
            self._disconnect()

    async def set_in_range(self, in_range: bool) -> None:
        """Go out of range (drops the link, connects fail, scans miss it) or come back."""
        self.in_range = in_range
        if not in_range:
            await self.drop_link("out-of-range")

    async def set_battery(self, pct: int) -> None:
        self.battery_pct = pct
        if self.connected and self.wearable.has_battery1:
            self._bz._properties_changed(self.path, BATTERY, {"Percentage": Variant("y", pct)})
        for path in self._char_by_uuid.get(BATTERY_LEVEL, []):
            self._values[path] = bytes([pct])

    async def notify(self, uuid: str, value: bytes) -> bool:
        """Send one notification now; False (and counted as dropped) when nobody can receive it."""
        return self._deliver(normalize_uuid(uuid), value)

    @property
    def notifying_uuids(self) -> set[str]:
        return {u for u, paths in self._char_by_uuid.items() for p in paths if p in self._notifying}

    # ---- D-Bus state ---------------------------------------------------------------------

    def _build_gatt(self) -> None:
        handle = FIRST_HANDLE
        for svc in self.wearable.gatt_services():
            spath = f"{self.path}/service{handle:04x}"
            self._gatt_objects.append((spath, {GATT_SERVICE: {
                "UUID": Variant("s", normalize_uuid(svc.uuid)),
                "Device": Variant("o", self.path),
                "Primary": Variant("b", svc.primary),
                "Includes": Variant("ao", []),
                "Handle": Variant("q", handle),
            }}))
            handle += 1
            for ch in svc.characteristics:
                handle = self._add_char(spath, svc, ch, handle)

    def _add_char(self, spath: str, svc: Service, ch: Characteristic, handle: int) -> int:
        cpath = f"{spath}/char{handle:04x}"
        uuid = normalize_uuid(ch.uuid)
        self._char_by_uuid.setdefault(uuid, []).append(cpath)
        value = ch.value
        if uuid == BATTERY_LEVEL and self.battery_pct is not None:
            value = bytes([self.battery_pct])
        self._values[cpath] = value
        props: Props = {
            "UUID": Variant("s", uuid),
            "Service": Variant("o", spath),
            "Flags": Variant("as", list(ch.flags)),
            "MTU": Variant("q", 247),
            "Handle": Variant("q", handle + 1),
        }
        if "notify" in ch.flags or "indicate" in ch.flags:
            props["Notifying"] = Variant("b", False)
        self._gatt_objects.append((cpath, {GATT_CHAR: props}))
        handle += 2  # declaration + value
        descs = list(ch.descriptors)
        if ("notify" in ch.flags or "indicate" in ch.flags) and not any(
            normalize_uuid(d.uuid) == CCCD for d in descs
        ):
            descs.insert(0, _cccd())
        for d in descs:
            dpath = f"{cpath}/desc{handle:04x}"
            self._values[dpath] = d.value
            self._gatt_objects.append((dpath, {GATT_DESC: {
                "UUID": Variant("s", normalize_uuid(d.uuid)),
                "Characteristic": Variant("o", cpath),
                "Flags": Variant("as", ["read"]),
                "Handle": Variant("q", handle),
            }}))
            handle += 1
        return handle

    def device_props(self) -> Props:
        w = self.wearable
        props: Props = {
            "Address": Variant("s", w.address),
            "AddressType": Variant("s", "random"),
            "Name": Variant("s", w.name),
            "Alias": Variant("s", self._alias),
            "Adapter": Variant("o", self.adapter_path),
            "Paired": Variant("b", self.paired),
            "Bonded": Variant("b", self.paired),
            "Trusted": Variant("b", self.trusted),
            "Blocked": Variant("b", False),
            "LegacyPairing": Variant("b", False),
            "Connected": Variant("b", self.connected),
            "ServicesResolved": Variant("b", self.connected),
            "UUIDs": Variant("as", w.uuids),
            "ManufacturerData": Variant(
                "a{qv}", {k: Variant("ay", bytes(v)) for k, v in w.manufacturer_data.items()}
            ),
            "ServiceData": Variant(
                "a{sv}", {normalize_uuid(k): Variant("ay", bytes(v)) for k, v in w.service_data.items()}
            ),
        }
        if self.in_range:
            props["RSSI"] = Variant("n", self.rssi)
            if w.tx_power is not None:
                props["TxPower"] = Variant("n", w.tx_power)
        return props

    def objects(self) -> dict[str, dict[str, Props]]:
        """This device's objects as GetManagedObjects reports them."""
        if not self.known:
            return {}
        dev: dict[str, Props] = {DEVICE: self.device_props(), PROPERTIES: {}, INTROSPECTABLE: {}}
        if self.connected and self.wearable.has_battery1 and self.battery_pct is not None:
            dev[BATTERY] = {"Percentage": Variant("y", self.battery_pct)}
        out = {self.path: dev}
        if self.connected:
            for path, ifaces in self._gatt_objects:
                out[path] = self._with_live_values(path, ifaces)
        return out

    def _with_live_values(self, path: str, ifaces: dict[str, Props]) -> dict[str, Props]:
        out: dict[str, Props] = {}
        for iface, props in ifaces.items():
            p = dict(props)
            if iface in (GATT_CHAR, GATT_DESC):
                p["Value"] = Variant("ay", self._values.get(path, b""))
            if iface == GATT_CHAR and "Notifying" in p:
                p["Notifying"] = Variant("b", path in self._notifying)
            out[iface] = p
        return out

    def _announce(self) -> None:
        if not self.known:
            self.known = True
            self._bz._interfaces_added(self.path, {DEVICE: self.device_props()})
        else:
            # A scan only reports devices whose properties change: keep RSSI moving.
            self.rssi = self.wearable.rssi + self._bz._rng.choice((-2, -1, 0, 1, 2))
            self._bz._properties_changed(self.path, DEVICE, {"RSSI": Variant("n", self.rssi)})

    def _connect(self) -> None:
        self.connected = True
        self.stats.connects += 1
        bz = self._bz
        bz._properties_changed(self.path, DEVICE, {"Connected": Variant("b", True)})
        for path, ifaces in self._gatt_objects:
            bz._interfaces_added(path, self._with_live_values(path, ifaces))
        if self.wearable.has_battery1 and self.battery_pct is not None:
            bz._interfaces_added(self.path, {BATTERY: {"Percentage": Variant("y", self.battery_pct)}})
        bz._properties_changed(self.path, DEVICE, {"ServicesResolved": Variant("b", True)})

    def _disconnect(self, *, emit: bool = True) -> None:
        if not self.connected:
            return
        self.connected = False
        self.stats.disconnects += 1
        self._notifying.clear()
        if not emit:
            return
        bz = self._bz
        bz._properties_changed(self.path, DEVICE, {"ServicesResolved": Variant("b", False)})
        bz._properties_changed(self.path, DEVICE, {"Connected": Variant("b", False)})
        for path, ifaces in reversed(self._gatt_objects):
            bz._interfaces_removed(path, list(ifaces))
        if self.wearable.has_battery1 and self.battery_pct is not None:
            bz._interfaces_removed(self.path, [BATTERY])

    def _deliver(self, uuid: str, value: bytes) -> bool:
        if not (self.connected and self._bz.online) or self.silent:
            self.stats.notifications_dropped += 1
            return False
        for path in self._char_by_uuid.get(uuid, []):
            if path in self._notifying:
                self._values[path] = value
                self._bz._properties_changed(path, GATT_CHAR, {"Value": Variant("ay", value)})
                self.stats.notifications_sent += 1
                return True
        self.stats.notifications_dropped += 1
        return False

    async def _play(self, feed: Iterable[Any]) -> None:
        clock = self._bz.clock
        t0 = clock.monotonic()
        for n, note in enumerate(feed, start=1):
            wait = t0 + note.at_s - clock.monotonic()
            if wait > 0:
                await clock.sleep(wait)
            value = note.value
            if self.malformed_every and n % self.malformed_every == 0 and value:
                value = bytes([value[0] | 0x01])  # claims uint16 HR, carries none
                if self.connected:
                    self.stats.malformed_sent += 1
            self._deliver(normalize_uuid(note.uuid), value)

    # ---- method handlers ---------------------------------------------------------------

    async def _delay(self) -> None:
        if self.response_delay_s > 0:
            await asyncio.sleep(self.response_delay_s)

    async def _check_connectable(self) -> None:
        self.stats.connect_attempts += 1
        if not self._bz.powered:
            raise BlueZError(ERR_NOT_READY, "Resource Not Ready")
        if self._refusals > 0:
            self._refusals -= 1
            raise BlueZError(*self._refuse_error)
        if not self.in_range:
            await asyncio.sleep(self._bz.connect_fail_delay_s)
            raise BlueZError(ERR_FAILED, "le-connection-timeout: device out of range")

    async def m_connect(self, msg: Message) -> list[Any]:
        await self._delay()
        if self.connected:
            return []
        await self._check_connectable()
        self._connect()
        return []

    async def m_disconnect(self, msg: Message) -> list[Any]:
        await self._delay()
        if not self.connected:
            raise BlueZError(ERR_NOT_CONNECTED, "Not Connected")
        self._disconnect()
        return []

    async def m_pair(self, msg: Message) -> list[Any]:
        await self._delay()
        if self.paired:
            raise BlueZError(ERR_ALREADY_EXISTS, "Already Exists")
        if not self.connected:
            await self._check_connectable()
        if self._pair_refused:
            raise BlueZError(ERR_AUTH_FAILED, "Authentication Failed")
        if not self.connected:
            self._connect()
        self.paired = True
        self._bz._properties_changed(self.path, DEVICE, {"Paired": Variant("b", True), "Bonded": Variant("b", True)})
        return []

    def set_property(self, iface: str, name: str, value: Variant) -> None:
        if iface == DEVICE and name == "Trusted":
            self.trusted = bool(value.value)
        elif iface == DEVICE and name == "Alias":
            self._alias = str(value.value) or self.wearable.name
        else:
            raise BlueZError("org.bluez.Error.InvalidArguments", f"property {name} is read-only")
        self._bz._properties_changed(self.path, DEVICE, {name: value})

    async def gatt_call(self, path: str, iface: str, member: str, msg: Message) -> list[Any]:
        await self._delay()
        if not self.connected:
            raise BlueZError(ERR_NOT_CONNECTED, "Not Connected")
        if member == "ReadValue":
            return [self._values.get(path, b"")]
        if member == "WriteValue":
            value = bytes(msg.body[0])
            self._values[path] = value
            handler = self.wearable.on_write
            if handler is not None and iface == GATT_CHAR:
                uuid = next(u for u, paths in self._char_by_uuid.items() if path in paths)
                result = handler(self, uuid, value)  # may raise BlueZError: the write is refused
                if inspect.isawaitable(result):
                    await result
            return []
        if iface == GATT_CHAR and member == "StartNotify":
            self._notifying.add(path)
            self._bz._properties_changed(path, GATT_CHAR, {"Notifying": Variant("b", True)})
            return []
        if iface == GATT_CHAR and member == "StopNotify":
            self._notifying.discard(path)
            self._bz._properties_changed(path, GATT_CHAR, {"Notifying": Variant("b", False)})
            return []
        if iface == GATT_CHAR and member == "AcquireNotify":
            raise BlueZError(ERR_NOT_SUPPORTED, "Operation is not supported (use StartNotify)")
        raise BlueZError(ERR_UNKNOWN_METHOD, f"{iface}.{member}")

    def owns(self, path: str) -> bool:
        return path == self.path or path.startswith(self.path + "/")

    def gatt_iface(self, path: str) -> tuple[str, Props] | None:
        for p, ifaces in self._gatt_objects:
            if p == path:
                iface = next(iter(ifaces))
                return iface, self._with_live_values(p, ifaces)[iface]
        return None


def _cccd() -> Descriptor:
    return Descriptor(CCCD, b"\x00\x00")


_Handler = Callable[[Message], Awaitable[list[Any]]]


class VirtualBlueZ:
    """The fake ``org.bluez``: one adapter (``hci0`` by default) and any number of wearables.

    Use :meth:`start` as an async context manager on a bus where ``org.bluez`` is free (see
    :class:`~collector.sim.bluez.dbus_daemon.PrivateDBus`).
    """

    def __init__(
        self,
        *,
        bus_address: str | None = None,
        clock: Clock | None = None,
        adapter: str = "hci0",
        adapter_address: str = "00:1A:7D:DA:71:13",
        powered: bool = True,
        advertise_interval_s: float = 0.05,
        connect_fail_delay_s: float = 0.05,
        seed: int = 0,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.adapter = adapter
        self.adapter_path = f"/org/bluez/{adapter}"
        self.adapter_address = adapter_address
        self.powered = powered
        self.adapter_present = True
        self.advertise_interval_s = advertise_interval_s
        self.connect_fail_delay_s = connect_fail_delay_s
        self.devices: dict[str, VirtualDevice] = {}
        self.online = False
        self.restarts = 0
        self._bus_address = bus_address
        self._bus: MessageBus | None = None
        self._rng = random.Random(seed)  # noqa: S311 - jitter for a simulation
        self._discovering = False
        self._filter_uuids: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._feeds: dict[str, asyncio.Task[None]] = {}
        self._advertiser: asyncio.Task[None] | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls, **kwargs: Any) -> AsyncIterator[VirtualBlueZ]:
        """Serve ``org.bluez`` on the system bus (``DBUS_SYSTEM_BUS_ADDRESS``) for the block."""
        bz = cls(**kwargs)
        await bz._go_online()
        try:
            yield bz
        finally:
            await bz.close()

    # ---- public API -------------------------------------------------------------------

    def add_device(self, wearable: VirtualWearable, *, paired: bool = False) -> VirtualDevice:
        """Put a wearable in radio range; ``paired=True`` makes BlueZ know it already (bonded)."""
        if wearable.address in self.devices:
            raise ValueError(f"a device with address {wearable.address} exists already")
        dev = VirtualDevice(self, wearable, self.adapter)
        self.devices[wearable.address] = dev
        if paired:
            dev.paired = dev.trusted = True
            if self.online and self.adapter_present:
                dev._announce()
            else:
                dev.known = True
        if wearable.feed is not None:
            task = asyncio.create_task(dev._play(wearable.feed()), name=f"virtual-feed-{wearable.address}")
            self._feeds[wearable.address] = task
        return dev

    def device(self, address: str) -> VirtualDevice:
        return self.devices[address.upper()]

    async def remove_device(self, address: str) -> None:
        """Take a wearable away entirely (as if it were switched off and forgotten)."""
        dev = self.devices.pop(address.upper())
        dev._disconnect()
        if dev.known:
            self._interfaces_removed(dev.path, [DEVICE, PROPERTIES, INTROSPECTABLE])
        task = self._feeds.pop(dev.address, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def set_powered(self, powered: bool) -> None:
        """Power the adapter off (drops every link; connects fail with NotReady) or on."""
        self.powered = powered
        if not powered:
            for dev in self.devices.values():
                dev._disconnect()
        self._properties_changed(self.adapter_path, ADAPTER, {
            "Powered": Variant("b", powered), "PowerState": Variant("s", "on" if powered else "off"),
        })

    async def remove_adapter(self) -> None:
        """Unplug the adapter: its devices and the adapter vanish from the bus."""
        for dev in self.devices.values():
            dev._disconnect()
            if dev.known:
                self._interfaces_removed(dev.path, [DEVICE, PROPERTIES, INTROSPECTABLE])
                dev.known = dev.paired
        self._interfaces_removed(self.adapter_path, [ADAPTER, MONITOR_MANAGER, PROPERTIES])
        self.adapter_present = False
        self._discovering = False

    async def add_adapter(self) -> None:
        """Plug the adapter back in; bonded devices reappear (disconnected)."""
        self.adapter_present = True
        self._interfaces_added(self.adapter_path, self._adapter_ifaces())
        for dev in self.devices.values():
            if dev.paired:
                self._interfaces_added(dev.path, {DEVICE: dev.device_props()})
                dev.known = True

    async def restart_bluetoothd(self, down_s: float = 1.0, *, clean: bool = True) -> None:
        """Stop and restart the fake bluetoothd: everything vanishes from the bus and comes back.

        ``clean`` emits what a stopping bluetoothd emits (disconnects, InterfacesRemoved); a crash
        (``clean=False``) just drops off the bus. ``down_s`` is in the fake's clock.
        """
        await self._go_offline(clean=clean)
        await self.clock.sleep(down_s)
        await self._go_online()
        self.restarts += 1

    async def close(self) -> None:
        for task in self._feeds.values():
            task.cancel()
        for task in list(self._feeds.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._feeds.clear()
        await self._go_offline(clean=False)

    @property
    def discovering(self) -> bool:
        return self._discovering

    # ---- bus lifecycle ---------------------------------------------------------------

    async def _go_online(self) -> None:
        bus = (MessageBus(bus_address=self._bus_address) if self._bus_address
               else MessageBus(bus_type=BusType.SYSTEM))
        try:
            await bus.connect()
        except (OSError, EOFError) as exc:
            raise DeviceError(
                f"cannot reach the D-Bus system bus for the virtual BlueZ ({exc}); "
                "start a private dbus-daemon (collector.sim.bluez.PrivateDBus) first"
            ) from exc
        writer = getattr(bus, "_writer", None)
        if writer is not None:
            writer.sock = _EagainTolerantSocket(writer.sock)
        bus.add_message_handler(self._on_message)
        from dbus_fast.constants import RequestNameReply

        reply = await bus.request_name(BLUEZ)
        if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
            bus.disconnect()
            raise DeviceError(f"org.bluez is already owned on this bus ({reply}); is a real bluetoothd running?")
        self._bus = bus
        self.online = True
        # Like bluetoothd at start-up: adapter, then the bonded devices it keeps on disk.
        if self.adapter_present:
            self._interfaces_added(self.adapter_path, self._adapter_ifaces())
            for dev in self.devices.values():
                if dev.paired:
                    dev.known = False
                    dev._announce()

    async def _go_offline(self, *, clean: bool) -> None:
        bus = self._bus
        if bus is None:
            return
        self._stop_advertiser()
        for dev in self.devices.values():
            dev._disconnect(emit=clean)
        if clean:
            for dev in self.devices.values():
                if dev.known:
                    self._interfaces_removed(dev.path, [DEVICE, PROPERTIES, INTROSPECTABLE])
            if self.adapter_present:
                self._interfaces_removed(self.adapter_path, [ADAPTER, MONITOR_MANAGER, PROPERTIES])
            # Let the signals reach the daemon before the connection closes.
            with contextlib.suppress(Exception):
                await bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                                       interface="org.freedesktop.DBus", member="GetId"))
        for dev in self.devices.values():
            dev.known = False
        self.online = False
        self._discovering = False
        self._bus = None
        bus.disconnect()
        with contextlib.suppress(Exception):
            await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]
        for task in list(self._tasks):
            task.cancel()

    # ---- signals ---------------------------------------------------------------------

    def _send(self, msg: Message) -> None:
        bus = self._bus
        if bus is None or not self.online:
            return
        fut = bus.send(msg)
        fut.add_done_callback(_consume)

    def _properties_changed(self, path: str, iface: str, changed: Props) -> None:
        self._send(Message.new_signal(path, PROPERTIES, "PropertiesChanged", "sa{sv}as", [iface, changed, []]))

    def _interfaces_added(self, path: str, ifaces: dict[str, Props]) -> None:
        self._send(Message.new_signal("/", OBJECT_MANAGER, "InterfacesAdded", "oa{sa{sv}}", [path, ifaces]))

    def _interfaces_removed(self, path: str, ifaces: list[str]) -> None:
        self._send(Message.new_signal("/", OBJECT_MANAGER, "InterfacesRemoved", "oas", [path, ifaces]))

    # ---- objects ---------------------------------------------------------------------

    def _adapter_ifaces(self) -> dict[str, Props]:
        return {
            ADAPTER: {
                "Address": Variant("s", self.adapter_address),
                "AddressType": Variant("s", "public"),
                "Name": Variant("s", "magsleep-virtual"),
                "Alias": Variant("s", "magsleep-virtual"),
                "Class": Variant("u", 0),
                "Powered": Variant("b", self.powered),
                "PowerState": Variant("s", "on" if self.powered else "off"),
                "Discoverable": Variant("b", False),
                "Pairable": Variant("b", True),
                "Discovering": Variant("b", self._discovering),
                "UUIDs": Variant("as", []),
                "Modalias": Variant("s", "usb:v1D6Bp0246d0548"),
                "Roles": Variant("as", ["central", "peripheral"]),
            },
            MONITOR_MANAGER: {
                "SupportedMonitorTypes": Variant("as", ["or_patterns"]),
                "SupportedFeatures": Variant("as", []),
            },
            PROPERTIES: {},
        }

    def _managed_objects(self) -> dict[str, dict[str, Props]]:
        out: dict[str, dict[str, Props]] = {}
        if not self.adapter_present:
            return out
        out[self.adapter_path] = self._adapter_ifaces()
        for dev in self.devices.values():
            out.update(dev.objects())
        return out

    def _find_device(self, path: str) -> VirtualDevice | None:
        if not path.startswith(self.adapter_path + "/dev_") or not self.adapter_present:
            return None
        dev_path = "/".join(path.split("/")[:5])
        for dev in self.devices.values():
            if dev.path == dev_path and dev.known:
                return dev
        return None

    # ---- discovery ------------------------------------------------------------------

    def _start_advertiser(self) -> None:
        if self._advertiser is None or self._advertiser.done():
            self._advertiser = asyncio.create_task(self._advertise(), name="virtual-bluez-advertiser")

    def _stop_advertiser(self) -> None:
        if self._advertiser is not None:
            self._advertiser.cancel()
            self._advertiser = None

    async def _advertise(self) -> None:
        while self._discovering and self.online:
            for dev in list(self.devices.values()):
                if not dev.in_range or dev.connected:
                    continue
                if self._filter_uuids and not self._filter_uuids & set(dev.wearable.uuids):
                    continue
                dev._announce()
            await asyncio.sleep(self.advertise_interval_s)

    # ---- method dispatch -------------------------------------------------------------

    def _on_message(self, msg: Message) -> bool | None:
        if msg.message_type != MessageType.METHOD_CALL:
            return None
        task = asyncio.create_task(self._dispatch(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _dispatch(self, msg: Message) -> None:
        bus = self._bus
        try:
            body = await self._call(msg)
            reply = Message.new_method_return(msg, _reply_signature(msg), body)
        except BlueZError as exc:
            reply = Message.new_error(msg, exc.name, exc.text)
        if bus is not None and bus is self._bus:
            fut = bus.send(reply)
            fut.add_done_callback(_consume)

    async def _call(self, msg: Message) -> list[Any]:
        path, iface, member = msg.path or "", msg.interface or "", msg.member or ""
        if iface == OBJECT_MANAGER and member == "GetManagedObjects":
            return [self._managed_objects()]
        if iface == INTROSPECTABLE:
            return ["<node></node>"]
        if iface == PROPERTIES:
            return await self._properties_call(path, member, msg)
        if path == self.adapter_path and self.adapter_present:
            return await self._adapter_call(iface, member, msg)
        dev = self._find_device(path)
        if dev is None:
            raise BlueZError(ERR_UNKNOWN_OBJECT, f"Method {member} with signature {msg.signature} on interface "
                             f"{iface} doesn't exist (no object {path})")
        if path == dev.path and iface == DEVICE:
            handlers: dict[str, _Handler] = {"Connect": dev.m_connect, "Disconnect": dev.m_disconnect,
                                             "Pair": dev.m_pair}
            if member in handlers:
                return await handlers[member](msg)
            if member == "CancelPairing":
                return []
        elif iface in (GATT_CHAR, GATT_DESC) and dev.gatt_iface(path) is not None and dev.connected:
            return await dev.gatt_call(path, iface, member, msg)
        elif iface in (GATT_CHAR, GATT_DESC):
            raise BlueZError(ERR_UNKNOWN_OBJECT, f"no object {path}")
        raise BlueZError(ERR_UNKNOWN_METHOD, f"{iface}.{member} is not implemented by the virtual BlueZ")

    async def _adapter_call(self, iface: str, member: str, msg: Message) -> list[Any]:
        if iface == ADAPTER:
            if member == "SetDiscoveryFilter":
                uuids = msg.body[0].get("UUIDs")
                self._filter_uuids = {normalize_uuid(u) for u in uuids.value} if uuids is not None else set()
                return []
            if member == "StartDiscovery":
                if not self.powered:
                    raise BlueZError(ERR_NOT_READY, "Resource Not Ready")
                self._discovering = True
                self._properties_changed(self.adapter_path, ADAPTER, {"Discovering": Variant("b", True)})
                self._start_advertiser()
                return []
            if member == "StopDiscovery":
                self._discovering = False
                self._filter_uuids = set()
                self._stop_advertiser()
                self._properties_changed(self.adapter_path, ADAPTER, {"Discovering": Variant("b", False)})
                return []
            if member == "RemoveDevice":
                return self._remove_device_call(msg.body[0])
            if member == "GetDiscoveryFilters":
                return [["UUIDs", "RSSI", "Pathloss", "Transport", "DuplicateData", "Discoverable", "Pattern"]]
        if iface == MONITOR_MANAGER and member in ("RegisterMonitor", "UnregisterMonitor"):
            return []
        raise BlueZError(ERR_UNKNOWN_METHOD, f"{iface}.{member} is not implemented by the virtual BlueZ")

    def _remove_device_call(self, dev_path: str) -> list[Any]:
        dev = self._find_device(dev_path)
        if dev is None or dev.path != dev_path:
            raise BlueZError(ERR_DOES_NOT_EXIST, "Does Not Exist")
        dev._disconnect()
        dev.paired = dev.trusted = False
        dev.known = False
        self._interfaces_removed(dev.path, [DEVICE, PROPERTIES, INTROSPECTABLE])
        return []

    async def _properties_call(self, path: str, member: str, msg: Message) -> list[Any]:
        iface = str(msg.body[0])
        props = self._props_of(path, iface)
        if member == "GetAll":
            return [props]
        if member == "Get":
            name = str(msg.body[1])
            if name not in props:
                raise BlueZError("org.freedesktop.DBus.Error.InvalidArgs", f"No such property '{name}'")
            return [props[name]]
        if member == "Set":
            name, value = str(msg.body[1]), msg.body[2]
            if path == self.adapter_path and iface == ADAPTER and name == "Powered":
                await self.set_powered(bool(value.value))
                return []
            dev = self._find_device(path)
            if dev is None or path != dev.path:
                raise BlueZError(ERR_UNKNOWN_OBJECT, f"no object {path}")
            dev.set_property(iface, name, value)
            return []
        raise BlueZError(ERR_UNKNOWN_METHOD, f"Properties.{member}")

    def _props_of(self, path: str, iface: str) -> Props:
        objs = self._managed_objects()
        if path not in objs:
            raise BlueZError(ERR_UNKNOWN_OBJECT, f"no object {path}")
        if iface not in objs[path]:
            raise BlueZError("org.freedesktop.DBus.Error.InvalidArgs", f"No such interface '{iface}'")
        return objs[path][iface]


_REPLY_SIGNATURES = {
    "GetManagedObjects": "a{oa{sa{sv}}}",
    "GetAll": "a{sv}",
    "Get": "v",
    "ReadValue": "ay",
    "Introspect": "s",
    "GetDiscoveryFilters": "as",
}


def _reply_signature(msg: Message) -> str:
    return _REPLY_SIGNATURES.get(msg.member or "", "")


def _consume(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


__all__ = ["BlueZError", "DeviceStats", "VirtualBlueZ", "VirtualDevice"]
