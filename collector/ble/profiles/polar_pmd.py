"""Polar Measurement Data (PMD) service of the H10 and Verity Sense: the accelerometer stream.

Service FB005C80-02E7-F387-1CAD-8ACD2D8DF0C8; control point ...5C81 (read, write, indicate),
data ...5C82 (notify). Runs alongside the standard Heart Rate profile.

Control point: reading it gives ``0f <features>`` (bit 2: accelerometer). Commands are
``<op> <type> [settings]``: op 0x01 get settings, 0x02 start, 0x03 stop; type 2 is ACC. Each
command is answered by an indication ``f0 <op> <type> <status> [more] [params]``; status 0 is
success, the rest are :data:`STATUS` (6, already in that state, counts as success).
Start = ``02 02`` + settings (type, count, uint16 value): 0x00 sample rate, 0x01 resolution,
0x02 range. magsleep asks for 25 Hz / 16 bit / 8 g (enough for actigraphy, a tenth of the traffic
of 200 Hz).

Data frame: ``<type> <uint64 timestamp> <frame type> <payload>``. The timestamp is the device time of
the last sample in ns since 2000-01-01T00:00:00 (Polar's epoch). Frame type bit 7 says
delta-compressed, the low bits the sample width (0: int8, 1: int16, 2: int24 per axis, in mG).
Raw frames are a plain array of X,Y,Z samples. Compressed frames (the H10 sends type 0x80) start
with a reference sample (3 x int16) followed by blocks ``<delta bits> <sample count>
<count x 3 deltas of delta-bits each, two's complement, packed LSB first>``; each sample is the
previous one plus its deltas. Samples are in mG unless the start response carries a factor
setting (id 5, float32 g per count; compressed streams do), then mG = count x factor x 1000.

Units: the samples, in g (mG / 1000), become ActiGraph activity counts per 60-s epoch
(:class:`collector.ble.profiles.activity.EpochCounts`, agcounts after linear interpolation from 25 Hz
onto its 30 Hz grid): ``motion`` points with ``counts`` (vector magnitude), ``counts_x/y/z`` and
``epoch_s``. No free scale: the rate is the one the start command asked for and the strap confirmed,
the unit the one PMD defines (or the factor the strap reports).

Clock skew: the first frame after a (re)connect anchors device time to host time (receipt time of
its last sample); later samples are stamped device time + that offset, so epochs do not jitter
with radio latency. A frame that arrives more than :data:`EARLIER_NS` sooner than the offset predicts
lowers it (the least-delayed frame is the best anchor; smaller differences are latency noise, and
moving the stamps by them would squeeze the samples); frames that keep arriving more than :data:`REANCHOR_NS`
late (:data:`REANCHOR_FRAMES` in a row: a device clock that jumped) anchor it again. Delayed frames
(a busy radio or host catching up) therefore never move the stamps: the device's own sample times
set the spacing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from collector.ble.profiles.activity import EPOCH_S, EpochCounts
from collector.ble.profiles.base import Subscription
from collector.ble.profiles.hooks import ProfileContext
from collector.errors import DeviceError, ParseError
from collector.nights.activity import load_counts
from collector.storage.lineprotocol import Point

if TYPE_CHECKING:
    from bleak import BleakClient
    from bleak.backends.characteristic import BleakGATTCharacteristic

log = logging.getLogger(__name__)

PMD_SERVICE = "fb005c80-02e7-f387-1cad-8acd2d8df0c8"
PMD_CONTROL = "fb005c81-02e7-f387-1cad-8acd2d8df0c8"
PMD_DATA = "fb005c82-02e7-f387-1cad-8acd2d8df0c8"

OP_GET_SETTINGS = 0x01
OP_START = 0x02
OP_STOP = 0x03
RESPONSE = 0xF0
FEATURES = 0x0F
TYPE_ECG, TYPE_PPG, TYPE_ACC = 0, 1, 2
FEATURE_ACC = 1 << TYPE_ACC

ACC_RATE_HZ = 25
ACC_RESOLUTION = 16
ACC_RANGE_G = 8
#: Start ACC: 25 Hz (setting 0), 16 bit (setting 1), 8 g (setting 2); each ``<id> <count=1> <uint16>``.
START_ACC = bytes([OP_START, TYPE_ACC, 0x00, 0x01]) + struct.pack("<H", ACC_RATE_HZ) \
    + bytes([0x01, 0x01]) + struct.pack("<H", ACC_RESOLUTION) + bytes([0x02, 0x01]) + struct.pack("<H", ACC_RANGE_G)
STOP_ACC = bytes([OP_STOP, TYPE_ACC])

STATUS_SUCCESS = 0
STATUS_ALREADY_IN_STATE = 6
#: Control point status codes (Polar BLE SDK, PmdControlPointResponse).
STATUS: dict[int, str] = {
    0: "success",
    1: "invalid op code",
    2: "invalid measurement type",
    3: "not supported",
    4: "invalid length",
    5: "invalid parameter",
    6: "already in state",
    7: "invalid resolution",
    8: "invalid sample rate",
    9: "invalid range",
    10: "invalid MTU",
    11: "invalid number of channels",
    12: "invalid state",
    13: "device in charger",
}

#: Setting ids in control point messages and their value sizes (Polar BLE SDK, PmdSetting).
SETTING_SIZES = {0: 2, 1: 2, 2: 2, 3: 4, 4: 1, 5: 4, 6: 16}
SETTING_FACTOR = 5
SETTING_SAMPLE_RATE = 0

#: Unix time of Polar's epoch 2000-01-01T00:00:00Z, in ns.
POLAR_EPOCH_NS = 946_684_800 * 1_000_000_000
#: Real seconds to wait for a control point response.
RESPONSE_TIMEOUT_S = 3.0
#: Lateness (beyond the anchor) that, held for REANCHOR_FRAMES frames, triggers a new anchor: far more
#: than a busy radio or host delays frames (tested at 60x time compression), far less than a clock set.
REANCHOR_NS = 600_000_000_000
#: A frame this much earlier than the anchor predicts lowers the offset.
EARLIER_NS = 1_000_000_000
#: Consecutive late frames that re-anchor the offset.
REANCHOR_FRAMES = 10


class PmdControlError(DeviceError):
    """The PMD control point refused a command; ``code`` is the status byte."""

    def __init__(self, op: int, code: int) -> None:
        what = {OP_START: "start", OP_STOP: "stop", OP_GET_SETTINGS: "get settings"}.get(op, f"op {op:#04x}")
        advice = " (take the strap off the charger)" if code == 13 else ""
        super().__init__(f"Polar PMD {what} refused: status {code} ({STATUS.get(code, 'unknown')}){advice}")
        self.op = op
        self.code = code


@dataclass(frozen=True, slots=True)
class ControlResponse:
    op: int
    type: int
    status: int
    params: bytes = b""


def decode_response(data: bytes | bytearray) -> ControlResponse:
    """A control point indication ``f0 op type status [more] [params]``."""
    if len(data) < 4 or data[0] != RESPONSE:
        raise ParseError(f"not a PMD control point response: {bytes(data).hex()}")
    return ControlResponse(data[1], data[2], data[3], bytes(data[5:]))


@dataclass(frozen=True, slots=True)
class AccFrame:
    """One decoded ACC frame: device time of the last sample and the X,Y,Z samples in mG."""

    timestamp_ns: int
    frame_type: int
    samples: tuple[tuple[int, int, int], ...]


def decode_settings(params: bytes) -> dict[int, list[float]]:
    """Settings TLVs ``<id> <count> <count x value>`` of a response (a factor is a float32, the rest uint)."""
    out: dict[int, list[float]] = {}
    i = 0
    while i + 2 <= len(params):
        sid, count = params[i], params[i + 1]
        size = SETTING_SIZES.get(sid)
        if size is None or i + 2 + count * size > len(params):
            break
        values: list[float] = []
        for k in range(count):
            chunk = params[i + 2 + k * size:i + 2 + (k + 1) * size]
            values.append(struct.unpack("<f", chunk)[0] if sid == SETTING_FACTOR else int.from_bytes(chunk, "little"))
        out[sid] = values
        i += 2 + count * size
    return out


def mg_per_count(factor: float) -> float:
    """Milli-g per sample unit: a factor of 1 means the samples are mG already (raw H10 frames);
    otherwise the factor is g per count (compressed streams report it in the start response)."""
    return 1.0 if factor == 1.0 else factor * 1000.0


_WIDTHS = {0: 1, 1: 2, 2: 3}


def decode_acc_frame(data: bytes | bytearray) -> AccFrame:
    """Decode an ACC data frame (raw int8/int16/int24 or delta-compressed); :class:`ParseError` if bad."""
    if len(data) < 10:
        raise ParseError(f"PMD frame too short ({len(data)} bytes): {bytes(data).hex()}")
    if data[0] != TYPE_ACC:
        raise ParseError(f"PMD frame of measurement type {data[0]}, expected ACC ({TYPE_ACC})")
    ts = int.from_bytes(data[1:9], "little")
    ftype = data[9]
    payload = bytes(data[10:])
    if ftype & 0x80:
        if ftype != 0x80:
            raise ParseError(f"unsupported compressed ACC frame type {ftype:#04x}")
        return AccFrame(ts, ftype, _decode_delta(payload))
    width = _WIDTHS.get(ftype)
    if width is None:
        raise ParseError(f"unsupported ACC frame type {ftype:#04x}")
    step = 3 * width
    if not payload or len(payload) % step:
        raise ParseError(f"ACC frame type {ftype} payload of {len(payload)} bytes is not a whole number of samples")
    if width in (1, 2):
        v = struct.unpack(f"<{len(payload) // width}{'b' if width == 1 else 'h'}", payload)
        return AccFrame(ts, ftype, tuple(zip(v[0::3], v[1::3], v[2::3], strict=True)))
    samples = []
    for i in range(0, len(payload), step):
        x, y, z = (int.from_bytes(payload[i + k * width:i + (k + 1) * width], "little", signed=True) for k in range(3))
        samples.append((x, y, z))
    return AccFrame(ts, ftype, tuple(samples))


def _decode_delta(payload: bytes) -> tuple[tuple[int, int, int], ...]:
    if len(payload) < 6:
        raise ParseError(f"compressed ACC frame has no reference sample ({len(payload)} bytes)")
    ref = struct.unpack_from("<3h", payload, 0)
    samples = [(ref[0], ref[1], ref[2])]
    i = 6
    while i < len(payload):
        if i + 2 > len(payload):
            raise ParseError("compressed ACC frame ends inside a block header")
        bits, count = payload[i], payload[i + 1]
        i += 2
        if not 1 <= bits <= 32:
            raise ParseError(f"compressed ACC block with delta width {bits}")
        nbytes = (count * 3 * bits + 7) // 8
        if i + nbytes > len(payload):
            raise ParseError(f"compressed ACC block needs {nbytes} bytes, {len(payload) - i} left")
        value = int.from_bytes(payload[i:i + nbytes], "little")
        i += nbytes
        mask, sign = (1 << bits) - 1, 1 << (bits - 1)
        x, y, z = samples[-1]
        pos = 0
        for _ in range(count):
            d = []
            for _axis in range(3):
                v = (value >> pos) & mask
                pos += bits
                d.append(v - (1 << bits) if v & sign else v)
            x, y, z = x + d[0], y + d[1], z + d[2]
            samples.append((x, y, z))
    return tuple(samples)


def encode_acc_frame(timestamp_ns: int, samples: Sequence[tuple[int, int, int]], *, compressed: bool = False,
                     block: int = 16) -> bytes:
    """An ACC frame (int16 raw type 0x01, or delta-compressed 0x80); the simulator's inverse of decoding."""
    head = bytes([TYPE_ACC]) + timestamp_ns.to_bytes(8, "little")
    if not compressed:
        return head + b"\x01" + b"".join(struct.pack("<3h", *s) for s in samples)
    out = bytearray(head + b"\x80" + struct.pack("<3h", *samples[0]))
    prev = samples[0]
    rest = list(samples[1:])
    for j in range(0, len(rest), block):
        chunk = rest[j:j + block]
        deltas = []
        for s in chunk:
            deltas += [s[0] - prev[0], s[1] - prev[1], s[2] - prev[2]]
            prev = s
        bits = max(max((d.bit_length() + 1 for d in deltas), default=1), 1)
        value, pos = 0, 0
        for d in deltas:
            value |= (d & ((1 << bits) - 1)) << pos
            pos += bits
        out += bytes([bits, len(chunk)]) + value.to_bytes((pos + 7) // 8, "little")
    return bytes(out)


class AccStream:
    """One connection's ACC stream: control point responses, frames -> samples -> epoch counts."""

    def __init__(self, ctx: ProfileContext, *, rate_hz: int = ACC_RATE_HZ, epoch_s: int = EPOCH_S) -> None:
        self._ctx = ctx
        self.rate_hz = rate_hz
        self.counts = EpochCounts(ctx.tags, epoch_s=epoch_s, rate_hz=rate_hz)
        self.responses: asyncio.Queue[ControlResponse] = asyncio.Queue()
        self.offset_ns: int | None = None
        self._late = 0
        self.mg_per_count = 1.0
        self.frames = 0
        self.bad_frames = 0

    def on_control(self, _char: BleakGATTCharacteristic, data: bytearray) -> None:
        with contextlib.suppress(ParseError):
            self.responses.put_nowait(decode_response(data))

    def on_data(self, _char: BleakGATTCharacteristic, data: bytearray) -> None:
        self._ctx.touch()
        try:
            points = self.feed(decode_acc_frame(data), self._ctx.clock.time_ns())
        except ParseError as exc:
            self.bad_frames += 1
            if self.bad_frames == 1 or self.bad_frames % 100 == 0:
                log.warning("%s: malformed PMD frame #%d ignored: %s", self._ctx.alias, self.bad_frames, exc)
            return
        if points:
            self._ctx.emit(points)

    def feed(self, frame: AccFrame, received_ns: int) -> list[Point]:
        """Points completed by one frame received at host time ``received_ns``."""
        self.frames += 1
        device_ns = POLAR_EPOCH_NS + frame.timestamp_ns
        lat = received_ns - device_ns
        self._late = self._late + 1 if self.offset_ns is not None and lat - self.offset_ns > REANCHOR_NS else 0
        if self.offset_ns is None or lat < self.offset_ns - EARLIER_NS or self._late >= REANCHOR_FRAMES:
            self.offset_ns, self._late = lat, 0
            self._ctx.memory["skew_ms"] = -self.offset_ns / 1e6
        period = 1_000_000_000 // self.rate_hz
        last = device_ns + self.offset_ns
        g = self.mg_per_count / 1000.0
        return self.counts.add_frame(last, period, [(x * g, y * g, z * g) for x, y, z in frame.samples])

    def set_rate(self, rate_hz: int) -> None:
        """The rate the strap confirmed in its start response (samples are spaced by it)."""
        if rate_hz != self.rate_hz:
            self.rate_hz = rate_hz
            self.counts = EpochCounts(self._ctx.tags, epoch_s=self.counts.epoch_s, rate_hz=rate_hz)

    async def command(self, client: BleakClient, data: bytes) -> ControlResponse:
        """Write a command and wait for its response indication; :class:`PmdControlError` unless it succeeded."""
        while not self.responses.empty():
            self.responses.get_nowait()
        await client.write_gatt_char(PMD_CONTROL, data, response=True)
        async with asyncio.timeout(RESPONSE_TIMEOUT_S):
            while True:
                resp = await self.responses.get()
                if resp.op == data[0]:
                    break
        if resp.status not in (STATUS_SUCCESS, STATUS_ALREADY_IN_STATE):
            raise PmdControlError(resp.op, resp.status)
        return resp


class PolarPmdProfile:
    """Polar H10/Verity accelerometer through PMD: ActiGraph counts per epoch as ``motion`` points."""

    name: str = "polar_pmd"
    service_uuids: frozenset[str] = frozenset({PMD_SERVICE})
    subscriptions: tuple[Subscription, ...] = ()  # control point and data are subscribed by on_connect

    def parse(self, uuid: str, data: bytes | bytearray, received_ns: int, tags: Mapping[str, str]) -> list[Point]:
        """Validates one data frame; its samples only become points per epoch in :class:`AccStream`."""
        if uuid != PMD_DATA:
            raise ParseError(f"polar_pmd profile does not handle characteristic {uuid}")
        decode_acc_frame(data)
        return []

    async def on_connect(self, client: BleakClient, ctx: ProfileContext) -> None:
        if client.services.get_characteristic(PMD_CONTROL) is None or client.services.get_characteristic(
                PMD_DATA) is None:
            raise DeviceError("the device serves no PMD control point/data characteristics")
        await asyncio.to_thread(load_counts)  # SciPy's import would stall the event loop at the first epoch
        stream = AccStream(ctx)
        ctx.memory["stream"] = stream
        ctx.memory["started"] = False
        await client.start_notify(PMD_CONTROL, stream.on_control)
        features = bytes(await client.read_gatt_char(PMD_CONTROL))
        if len(features) >= 2 and features[0] == FEATURES and not features[1] & FEATURE_ACC:
            raise DeviceError(f"this Polar device has no accelerometer stream (features {features.hex()})")
        await client.start_notify(PMD_DATA, stream.on_data)
        resp = await stream.command(client, START_ACC)
        confirmed = decode_settings(resp.params)
        stream.mg_per_count = mg_per_count(confirmed.get(SETTING_FACTOR, [1.0])[0])
        rate = int(confirmed.get(SETTING_SAMPLE_RATE, [ACC_RATE_HZ])[0])
        if rate > 0:
            stream.set_rate(rate)
        ctx.memory["started"] = True
        ctx.memory["starts"] = int(ctx.memory.get("starts", 0)) + 1
        log.debug("%s: PMD accelerometer started at %d Hz", ctx.alias, ACC_RATE_HZ)

    async def on_disconnect(self, client: BleakClient, ctx: ProfileContext) -> None:
        stream = ctx.memory.get("stream")
        if isinstance(stream, AccStream) and ctx.memory.get("started"):
            await stream.command(client, STOP_ACC)
            ctx.memory["started"] = False
            ctx.memory["stops"] = int(ctx.memory.get("stops", 0)) + 1
