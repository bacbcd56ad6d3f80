"""A virtual ESPHome Bluetooth proxy: the device side of ESPHome's native API, plaintext, over TCP.

It speaks what aioesphomeapi/bleak-esphome use of a ``bluetooth_proxy:`` node: hello, login,
ping, device info with the Bluetooth proxy feature flags, raw advertisements, connection slots,
BLE connect/disconnect/pair/clear cache, GATT services, reads, writes and notifications. Messages
are aioesphomeapi's own protobuf classes (``aioesphomeapi.api_pb2``) with their message ids
(``aioesphomeapi.core.MESSAGE_TYPE_TO_PROTO``); frames are written with aioesphomeapi's plaintext
frame packer. The wearables it forwards are the same :class:`~collector.sim.bluez.gatt.VirtualWearable`
objects the virtual BlueZ plays (see docs/virtual-bluez.md, "ESPHome proxies").

Fault injection: :meth:`VirtualEsphomeProxy.restart` (the node reboots: API and BLE links drop,
the port refuses for a while), :meth:`VirtualEsphomeProxy.set_slots` (out of connection slots),
:meth:`ProxiedDevice.drop_link` (link loss) and :meth:`ProxiedDevice.set_in_range`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import uuid as uuid_mod
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from aioesphomeapi import api_pb2
from aioesphomeapi._frame_helper.noise import make_noise_packets
from aioesphomeapi._frame_helper.noise_encryption import (
    ESPHOME_NOISE_BACKEND,
    NOISE_PROTOCOL_NAME,
    DecryptCipher,
    EncryptCipher,
    decode_noise_psk,
)
from aioesphomeapi._frame_helper.packets import make_plain_text_packets
from aioesphomeapi.core import MESSAGE_TYPE_TO_PROTO
from cryptography.exceptions import InvalidTag
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from noise.connection import NoiseConnection  # type: ignore[import-untyped]

from collector.ble.uuids import normalize_uuid
from collector.clock import Clock, SystemClock
from collector.sim.bluez.gatt import Characteristic, Notification, VirtualWearable

log = logging.getLogger(__name__)

#: aioesphomeapi's generated protobuf module (it ships no type stubs).
pb: Any = api_pb2
_MSG_ID: dict[type[Any], int] = {cls: num for num, cls in MESSAGE_TYPE_TO_PROTO.items()}
#: ESPHome native API version this proxy announces (1.9+ carries bluetooth_proxy_feature_flags).
API_VERSION = (1, 12)
#: PASSIVE_SCAN | ACTIVE_CONNECTIONS | REMOTE_CACHING | PAIRING | CACHE_CLEARING | RAW_ADVERTISEMENTS
FEATURE_FLAGS = 1 | 2 | 4 | 8 | 16 | 32
#: ESP-IDF's GATT error for a connection that could not be established (what a real node reports).
CONN_FAIL_ESTABLISH = 0x85
#: HCI "remote user terminated connection" / "connection timeout" (link loss).
LINK_LOST_ERROR = 0x08
_PROPS = {"broadcast": 0x01, "read": 0x02, "write-without-response": 0x04, "write": 0x08, "notify": 0x10,
          "indicate": 0x20}
_CCCD = "00002902-0000-1000-8000-00805f9b34fb"
_BASE_SUFFIX = "-0000-1000-8000-00805f9b34fb"


def mac_to_int(address: str) -> int:
    return int(address.replace(":", ""), 16)


def _uuid_pair(value: str) -> list[int]:
    """A 128-bit UUID as ESPHome sends it: [high 64 bits, low 64 bits]."""
    n = uuid_mod.UUID(normalize_uuid(value)).int
    return [n >> 64, n & 0xFFFF_FFFF_FFFF_FFFF]


def advertisement_data(wearable: VirtualWearable) -> bytes:
    """The advertisement's AD structures (flags, name, service UUIDs, TX power, manufacturer data)."""
    out = bytearray(b"\x02\x01\x06")

    def ad(kind: int, payload: bytes) -> None:
        out.extend(bytes([len(payload) + 1, kind]))
        out.extend(payload)

    short = [u for u in wearable.uuids if u.startswith("0000") and u.endswith(_BASE_SUFFIX)]
    long_ = [u for u in wearable.uuids if u not in short]
    if short:
        ad(0x03, b"".join(struct.pack("<H", int(u[4:8], 16)) for u in short))
    for u in long_:
        ad(0x07, uuid_mod.UUID(u).bytes[::-1])
    if wearable.tx_power is not None:
        ad(0x0A, struct.pack("<b", wearable.tx_power))
    for company, data in wearable.manufacturer_data.items():
        ad(0xFF, struct.pack("<H", company) + data)
    ad(0x09, wearable.name.encode()[:29])
    return bytes(out)


@dataclass
class _Char:
    handle: int
    uuid: str
    spec: Characteristic
    value: bytes
    cccd: int | None


@dataclass
class ProxyStats:
    """What the virtual proxy did (for assertions)."""

    api_connections: int = 0
    ble_connects: int = 0
    refused_no_slot: int = 0
    refused_subscriptions: int = 0
    notifications_sent: int = 0
    notifications_dropped: int = 0
    advertisements: int = 0
    restarts: int = 0


class ProxiedDevice:
    """One wearable within range of the proxy."""

    def __init__(self, proxy: VirtualEsphomeProxy, wearable: VirtualWearable, rssi: int) -> None:
        self.proxy = proxy
        self.wearable = wearable
        self.address = wearable.address
        self.rssi = rssi
        self.in_range = True
        self.paired = False
        self.silent = False
        self.session: _ApiSession | None = None  # the API connection holding the BLE link
        self.notifying: set[int] = set()
        self.values: dict[int, bytes] = {}
        self.chars: dict[int, _Char] = {}
        self.by_uuid: dict[str, list[_Char]] = {}
        self.services: list[Any] = []
        self._build_gatt()

    @property
    def connected(self) -> bool:
        return self.session is not None

    def _build_gatt(self) -> None:
        handle = 1
        for svc in self.wearable.services:  # a proxy sees the full table (no BlueZ battery plugin)
            s = pb.BluetoothGATTService(uuid=_uuid_pair(svc.uuid), handle=handle)
            handle += 1
            for ch in svc.characteristics:
                props = sum(_PROPS.get(f, 0) for f in ch.flags)
                c = s.characteristics.add(uuid=_uuid_pair(ch.uuid), handle=handle, properties=props)
                char = _Char(handle, normalize_uuid(ch.uuid), ch, ch.value, None)
                handle += 1
                for d in ch.descriptors:
                    c.descriptors.add(uuid=_uuid_pair(d.uuid), handle=handle)
                    handle += 1
                if props & (_PROPS["notify"] | _PROPS["indicate"]):
                    c.descriptors.add(uuid=_uuid_pair(_CCCD), handle=handle)
                    char.cccd = handle
                    handle += 1
                self.chars[char.handle] = char
                self.by_uuid.setdefault(char.uuid, []).append(char)
            self.services.append(s)

    async def drop_link(self) -> None:
        """The BLE link drops (the wearable walked away for a moment); it stays in range."""
        session = self.session
        if session is not None:
            self._release()
            session.send(pb.BluetoothDeviceConnectionResponse(
                address=mac_to_int(self.address), connected=False, mtu=0, error=LINK_LOST_ERROR))
            self.proxy._slots_changed()

    async def set_in_range(self, in_range: bool) -> None:
        """Out of range: no advertisements, connects fail, an open link drops."""
        self.in_range = in_range
        if not in_range:
            await self.drop_link()

    def set_silent(self, silent: bool = True) -> None:
        """Stay connected but send nothing (a hung sensor): the collector's watchdog must notice."""
        self.silent = silent

    def notify(self, uuid: str, value: bytes) -> bool:
        """Send a notification now (when connected and subscribed); True when sent."""
        session = self.session
        if session is None or not self.proxy.serving or self.silent:
            self.proxy.stats.notifications_dropped += 1
            return False
        for char in self.by_uuid.get(normalize_uuid(uuid), []):
            if char.handle in self.notifying:
                session.send(pb.BluetoothGATTNotifyDataResponse(
                    address=mac_to_int(self.address), handle=char.handle, data=value))
                self.proxy.stats.notifications_sent += 1
                return True
        self.proxy.stats.notifications_dropped += 1
        return False

    def _release(self) -> None:
        self.session = None
        self.notifying.clear()

    async def _play(self, feed: Iterable[Notification]) -> None:
        clock = self.proxy.clock
        t0 = clock.monotonic()
        for note in feed:
            wait = t0 + note.at_s - clock.monotonic()
            if wait > 0:
                await clock.sleep(wait)
            self.notify(note.uuid, note.value)


class _ApiSession(asyncio.Protocol):
    """One API client connection (the collector's aioesphomeapi client)."""

    def __init__(self, proxy: VirtualEsphomeProxy) -> None:
        self.proxy = proxy
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self.subscribed_adverts = False
        self.subscribed_slots = False
        # Noise (api: encryption: key:): hello -> handshake -> ready, as ESPHome's api_frame_helper
        self._noise: Any = None
        self._noise_state = "hello"
        self._encrypt: EncryptCipher | None = None
        self._decrypt: DecryptCipher | None = None
        if proxy.noise_psk is not None:
            noise = NoiseConnection.from_name(NOISE_PROTOCOL_NAME, backend=ESPHOME_NOISE_BACKEND)
            noise.set_as_responder()
            noise.set_psks(decode_noise_psk(proxy.noise_psk))
            noise.set_prologue(b"NoiseAPIInit\x00\x00")
            noise.start_handshake()
            self._noise = noise

    # ---- transport ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.proxy._sessions.add(self)
        self.proxy.stats.api_connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.proxy._sessions.discard(self)
        self.transport = None
        if self.proxy._adv_holder is self:
            self.proxy._adv_holder = None
        # A node drops the BLE links of an API client that went away.
        released = False
        for dev in self.proxy.devices.values():
            if dev.session is self:
                dev._release()
                released = True
        if released:
            self.proxy._slots_changed()

    def send(self, *msgs: Any) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        packets = [(_MSG_ID[type(m)], m.SerializeToString()) for m in msgs]
        if self._encrypt is not None:
            self.transport.writelines(make_noise_packets(packets, self._encrypt))
        else:
            self.transport.writelines(make_plain_text_packets(packets))

    def _send_noise_frame(self, payload: bytes) -> None:
        if self.transport is not None:
            self.transport.write(bytes((0x01, len(payload) >> 8, len(payload) & 0xFF)) + payload)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self._buf.extend(data)
        while True:
            frame = self._next_noise_message() if self._noise is not None else self._next_frame()
            if frame is None:
                return
            msg_type, payload = frame
            cls = MESSAGE_TYPE_TO_PROTO.get(msg_type)
            if cls is None:
                log.debug("virtual proxy: unknown message type %d ignored", msg_type)
                continue
            msg = cls()
            try:
                msg.ParseFromString(payload)
            except DecodeError:
                log.warning("virtual proxy: undecodable %s; closing", cls.__name__)
                self.close()
                return
            self._handle(msg)

    def _next_noise_message(self) -> tuple[int, bytes] | None:
        """One decrypted message, after running the Noise hello and handshake as they arrive."""
        while True:
            buf = self._buf
            if len(buf) < 3:
                return None
            if buf[0] != 0x01:
                # A plaintext client on an encrypted node: answer with the Noise preamble (the
                # client then reports that the device requires encryption) and close.
                log.warning("virtual proxy %s: plaintext client on an encrypted node; closing", self.proxy.name)
                self._send_noise_frame(b"\x01Encryption required")
                self.close()
                buf.clear()
                return None
            length = (buf[1] << 8) | buf[2]
            if len(buf) < 3 + length:
                return None
            frame = bytes(buf[3:3 + length])
            del buf[:3 + length]
            if self._noise_state == "hello":  # ClientHello (empty); answer ServerHello: proto, name, mac
                self._send_noise_frame(b"\x01" + self.proxy.name.encode() + b"\0" + self.proxy.mac.encode() + b"\0")
                self._noise_state = "handshake"
            elif self._noise_state == "handshake":
                try:
                    self._noise.read_message(frame[1:])
                except InvalidTag:
                    self._send_noise_frame(b"\x01Handshake MAC failure")
                    self.close()
                    buf.clear()
                    return None
                self._send_noise_frame(b"\x00" + self._noise.write_message())
                proto = self._noise.noise_protocol
                self._encrypt = EncryptCipher(proto.cipher_state_encrypt)
                self._decrypt = DecryptCipher(proto.cipher_state_decrypt)
                self._noise_state = "ready"
            else:
                assert self._decrypt is not None
                try:
                    msg = self._decrypt.decrypt(frame)
                except InvalidTag:
                    log.warning("virtual proxy %s: undecryptable frame; closing", self.proxy.name)
                    self.close()
                    buf.clear()
                    return None
                return (msg[0] << 8) | msg[1], bytes(msg[4:])

    def _next_frame(self) -> tuple[int, bytes] | None:
        """One plaintext frame (0x00, varint length, varint type, payload) off the buffer."""
        buf = self._buf
        if not buf:
            return None
        if buf[0] != 0:
            # 0x01 is a Noise client on a plaintext node: the client reports the node is plaintext.
            log.warning("virtual proxy: not a plaintext frame (preamble %#x); closing", buf[0])
            if self.transport is not None:
                self.transport.write(b"\x00\x00\x00")
            self.close()
            self._buf.clear()
            return None
        pos = 1
        values: list[int] = []
        for _ in range(2):
            value, shift = 0, 0
            while True:
                if pos >= len(buf):
                    return None
                b = buf[pos]
                pos += 1
                value |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            values.append(value)
        length, msg_type = values
        if len(buf) < pos + length:
            return None
        payload = bytes(buf[pos:pos + length])
        del buf[:pos + length]
        return msg_type, payload

    # ---- messages -------------------------------------------------------------------------

    def _handle(self, msg: Any) -> None:
        p = self.proxy
        if isinstance(msg, pb.HelloRequest):
            self.send(pb.HelloResponse(api_version_major=API_VERSION[0], api_version_minor=API_VERSION[1],
                                       server_info=f"{p.name} (magsleep virtual ESPHome)", name=p.name))
        elif isinstance(msg, pb.AuthenticationRequest):
            pass  # no password set: a real node sends nothing back
        elif isinstance(msg, pb.PingRequest):
            self.send(pb.PingResponse())
        elif isinstance(msg, pb.DisconnectRequest):
            self.send(pb.DisconnectResponse())
            self.close()
        elif isinstance(msg, pb.DeviceInfoRequest):
            self.send(pb.DeviceInfoResponse(
                name=p.name, friendly_name=p.name, mac_address=p.mac, bluetooth_mac_address=p.mac,
                esphome_version="2025.11.0", model="esp32-poe-iso", manufacturer="Espressif",
                bluetooth_proxy_feature_flags=FEATURE_FLAGS))
        elif isinstance(msg, pb.SubscribeBluetoothLEAdvertisementsRequest):
            holder = p._adv_holder
            if holder is not None and holder is not self and holder.transport is not None:
                # ESPHome's bluetooth_proxy serves advertisements to one API client only; the
                # second one is refused silently (the node logs it), as here.
                log.error("virtual proxy %s: Only one API subscription is allowed at a time", p.name)
                p.stats.refused_subscriptions += 1
                return
            p._adv_holder = self
            self.subscribed_adverts = True
        elif isinstance(msg, pb.UnsubscribeBluetoothLEAdvertisementsRequest):
            self.subscribed_adverts = False
            if p._adv_holder is self:
                p._adv_holder = None
        elif isinstance(msg, pb.SubscribeBluetoothConnectionsFreeRequest):
            self.subscribed_slots = True
            self.send(p._slots_message())
        elif isinstance(msg, pb.BluetoothDeviceRequest):
            p._spawn(self._device_request(msg))
        elif isinstance(msg, pb.BluetoothGATTGetServicesRequest):
            self._get_services(msg.address)
        elif isinstance(msg, pb.BluetoothGATTNotifyRequest):
            self._notify_request(msg)
        elif isinstance(msg, pb.BluetoothGATTReadRequest):
            self._read(msg.address, msg.handle)
        elif isinstance(msg, pb.BluetoothGATTWriteRequest):
            p._spawn(self._write(msg))
        elif isinstance(msg, pb.BluetoothGATTWriteDescriptorRequest):
            self._write_descriptor(msg)
        else:
            log.debug("virtual proxy: %s not handled", type(msg).__name__)

    def _device(self, address: int) -> ProxiedDevice | None:
        dev = self.proxy._by_int.get(address)
        return dev if dev is not None and dev.session is self else None

    async def _device_request(self, msg: Any) -> None:
        p = self.proxy
        kind = msg.request_type
        dev = p._by_int.get(msg.address)
        if kind in (pb.BLUETOOTH_DEVICE_REQUEST_TYPE_CONNECT, pb.BLUETOOTH_DEVICE_REQUEST_TYPE_CONNECT_V3_WITH_CACHE,
                    pb.BLUETOOTH_DEVICE_REQUEST_TYPE_CONNECT_V3_WITHOUT_CACHE):
            if dev is not None and dev.session is self:
                self.send(pb.BluetoothDeviceConnectionResponse(address=msg.address, connected=True, mtu=247))
                return
            if p.free_slots() <= 0:
                p.stats.refused_no_slot += 1
                self.send(pb.BluetoothDeviceConnectionResponse(address=msg.address, connected=False))
                return
            await asyncio.sleep(p.connect_delay_s)
            if dev is None or not dev.in_range or dev.session is not None or not p.serving:
                self.send(pb.BluetoothDeviceConnectionResponse(address=msg.address, connected=False,
                                                               error=CONN_FAIL_ESTABLISH))
                return
            dev.session = self
            p.stats.ble_connects += 1
            self.send(pb.BluetoothDeviceConnectionResponse(address=msg.address, connected=True, mtu=247))
            p._slots_changed()
        elif kind == pb.BLUETOOTH_DEVICE_REQUEST_TYPE_DISCONNECT:
            released = dev is not None and dev.session is self
            if dev is not None and released:
                dev._release()
            self.send(pb.BluetoothDeviceConnectionResponse(address=msg.address, connected=False))
            if released:
                p._slots_changed()
        elif kind == pb.BLUETOOTH_DEVICE_REQUEST_TYPE_PAIR:
            ok = dev is not None and dev.session is self
            if ok and dev is not None:
                dev.paired = True
            self.send(pb.BluetoothDevicePairingResponse(address=msg.address, paired=ok,
                                                        error=0 if ok else CONN_FAIL_ESTABLISH))
        elif kind == pb.BLUETOOTH_DEVICE_REQUEST_TYPE_UNPAIR:
            if dev is not None:
                dev.paired = False
            self.send(pb.BluetoothDeviceUnpairingResponse(address=msg.address, success=True))
        elif kind == pb.BLUETOOTH_DEVICE_REQUEST_TYPE_CLEAR_CACHE:
            self.send(pb.BluetoothDeviceClearCacheResponse(address=msg.address, success=True))

    def _gatt_error(self, address: int, handle: int) -> None:
        self.send(pb.BluetoothGATTErrorResponse(address=address, handle=handle, error=0x01))

    def _get_services(self, address: int) -> None:
        dev = self._device(address)
        if dev is None:
            self.send(pb.BluetoothGATTErrorResponse(address=address, handle=0, error=CONN_FAIL_ESTABLISH))
            return
        for svc in dev.services:  # one service per message, as a node with little RAM sends them
            self.send(pb.BluetoothGATTGetServicesResponse(address=address, services=[svc]))
        self.send(pb.BluetoothGATTGetServicesDoneResponse(address=address))

    def _notify_request(self, msg: Any) -> None:
        dev = self._device(msg.address)
        if dev is None or msg.handle not in dev.chars:
            self._gatt_error(msg.address, msg.handle)
            return
        if msg.enable:
            dev.notifying.add(msg.handle)
        else:
            dev.notifying.discard(msg.handle)
        self.send(pb.BluetoothGATTNotifyResponse(address=msg.address, handle=msg.handle))

    def _read(self, address: int, handle: int) -> None:
        dev = self._device(address)
        char = dev.chars.get(handle) if dev is not None else None
        if dev is None or char is None or "read" not in char.spec.flags:
            self._gatt_error(address, handle)
            return
        self.send(pb.BluetoothGATTReadResponse(address=address, handle=handle, data=dev.values.get(handle, char.value)))

    async def _write(self, msg: Any) -> None:
        dev = self._device(msg.address)
        char = dev.chars.get(msg.handle) if dev is not None else None
        if dev is None or char is None:
            self._gatt_error(msg.address, msg.handle)
            return
        dev.values[msg.handle] = bytes(msg.data)
        handler = dev.wearable.on_write
        if handler is not None:
            result = handler(dev, char.uuid, bytes(msg.data))
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                await result
        if msg.response:
            self.send(pb.BluetoothGATTWriteResponse(address=msg.address, handle=msg.handle))

    def _write_descriptor(self, msg: Any) -> None:
        dev = self._device(msg.address)
        if dev is None:
            self._gatt_error(msg.address, msg.handle)
            return
        for char in dev.chars.values():
            if char.cccd == msg.handle:  # the client enables notifications itself (connection v3)
                if msg.data[:1] in (b"\x01", b"\x02"):
                    dev.notifying.add(char.handle)
                else:
                    dev.notifying.discard(char.handle)
        self.send(pb.BluetoothGATTWriteResponse(address=msg.address, handle=msg.handle))


class VirtualEsphomeProxy:
    """An ESP32 running ``bluetooth_proxy: active: true``, reachable at ``host:port``."""

    def __init__(
        self,
        *,
        name: str = "bedroom-proxy",
        mac: str = "AC:0B:FB:00:00:01",
        host: str = "127.0.0.1",
        port: int = 0,
        slots: int = 3,
        clock: Clock | None = None,
        advertise_interval_s: float = 0.2,
        connect_delay_s: float = 0.01,
        noise_psk: str | None = None,
    ) -> None:
        self.name = name
        #: base64 32-byte key (ESPHome's ``api: encryption: key:``); None: plaintext.
        self.noise_psk = noise_psk
        self.mac = mac
        self.host = host
        self.port = port
        self.slots = slots
        self.clock: Clock = clock or SystemClock()
        self.advertise_interval_s = advertise_interval_s
        self.connect_delay_s = connect_delay_s
        self.stats = ProxyStats()
        self.devices: dict[str, ProxiedDevice] = {}
        self._by_int: dict[int, ProxiedDevice] = {}
        self._sessions: set[_ApiSession] = set()
        self._adv_holder: _ApiSession | None = None  # the one API client advertisements go to
        self._server: asyncio.Server | None = None
        self._advertiser: asyncio.Task[None] | None = None
        self._feeds: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls, **kwargs: Any) -> AsyncIterator[VirtualEsphomeProxy]:
        proxy = cls(**kwargs)
        await proxy.serve()
        try:
            yield proxy
        finally:
            await proxy.close()

    @property
    def serving(self) -> bool:
        return self._server is not None

    def add_device(self, wearable: VirtualWearable, *, rssi: int | None = None) -> ProxiedDevice:
        """Put a wearable within range of this proxy (``rssi`` as heard here; default: the wearable's)."""
        dev = ProxiedDevice(self, wearable, wearable.rssi if rssi is None else rssi)
        self.devices[dev.address] = dev
        self._by_int[mac_to_int(dev.address)] = dev
        if wearable.feed is not None:
            self._feeds[dev.address] = asyncio.create_task(dev._play(wearable.feed()),
                                                          name=f"virtual-proxy-feed-{dev.address}")
        return dev

    def device(self, address: str) -> ProxiedDevice:
        return self.devices[address.upper()]

    def used_slots(self) -> int:
        return sum(1 for d in self.devices.values() if d.session is not None)

    def free_slots(self) -> int:
        return max(0, self.slots - self.used_slots())

    def set_slots(self, slots: int) -> None:
        """Change the node's connection limit (0: out of slots for everybody)."""
        self.slots = slots
        self._slots_changed()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _ApiSession(self), self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._advertiser = asyncio.create_task(self._advertise(), name=f"virtual-proxy-adv-{self.name}")

    async def stop_serving(self) -> None:
        """The node goes off the network: the port closes, every API and BLE connection drops."""
        server, self._server = self._server, None
        if self._advertiser is not None:
            self._advertiser.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._advertiser
            self._advertiser = None
        if server is not None:
            server.close()
        for s in list(self._sessions):
            if s.transport is not None:
                s.transport.abort()
        for dev in self.devices.values():
            dev._release()
        self._adv_holder = None
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)

    async def restart(self, down_s: float = 0.5) -> None:
        """The node reboots: everything drops, the port refuses for ``down_s`` (clock seconds)."""
        self.stats.restarts += 1
        await self.stop_serving()
        await self.clock.sleep(down_s)
        await self.serve()

    async def close(self) -> None:
        await self.stop_serving()
        for t in [*self._feeds.values(), *self._tasks]:
            t.cancel()
        for t in [*self._feeds.values(), *self._tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._feeds.clear()

    # ---- internals ------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _slots_message(self) -> Any:
        allocated = [mac_to_int(d.address) for d in self.devices.values() if d.session is not None]
        return pb.BluetoothConnectionsFreeResponse(free=self.free_slots(), limit=self.slots, allocated=allocated)

    def _slots_changed(self) -> None:
        msg = self._slots_message()
        for s in self._sessions:
            if s.subscribed_slots:
                s.send(msg)

    def _adverts(self) -> list[Any]:
        return [pb.BluetoothLERawAdvertisement(address=mac_to_int(d.address), rssi=d.rssi, address_type=0,
                                               data=advertisement_data(d.wearable))
                for d in self.devices.values() if d.in_range]

    async def _advertise(self) -> None:
        while True:
            adverts = self._adverts()
            if adverts:
                for s in list(self._sessions):
                    if s.subscribed_adverts:
                        s.send(pb.BluetoothLERawAdvertisementsResponse(advertisements=adverts))
                        self.stats.advertisements += len(adverts)
            await asyncio.sleep(self.advertise_interval_s)

