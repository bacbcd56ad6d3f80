"""Virtual trackers that speak active protocols: Bangle.js (UART console + sleeplog), Polar H10 (PMD),
InfiniTime (motion service).

Each is a :class:`~collector.sim.bluez.gatt.VirtualWearable` (data) plus a small behaviour object
bound through ``on_write`` (what the device does when the host writes its RX or control point).
Behaviours keep what they saw (``commands``, ``requests``) for tests and take fault switches.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import struct
from collections.abc import Iterator, Sequence
from typing import Any

from collector.ble.profiles import polar_pmd as pmd
from collector.ble.profiles.infinitime import MOTION_SERVICE, RAW_MOTION, STEP_COUNT
from collector.ble.profiles.uart import NUS_RX, NUS_SERVICE, NUS_TX
from collector.ble.uuids import (
    DEVICE_INFORMATION_SERVICE,
    FIRMWARE_REVISION,
    HEART_RATE_MEASUREMENT,
    HEART_RATE_SERVICE,
    MANUFACTURER_NAME,
    MODEL_NUMBER,
)
from collector.clock import Clock, SystemClock
from collector.sim.bluez.fake import BlueZError
from collector.sim.bluez.gatt import Characteristic, Feed, Notification, Service, VirtualWearable
from collector.sim.bluez.wearables import heart_rate_feed, heart_rate_strap

#: TX notification size of a default-MTU link (the UART console splits its output into these).
UART_CHUNK = 20
TEN_MIN_MS = 600_000

#: A night as (minutes after lights out, sleeplog status); status 2 awake, 3 light, 4 deep, 1 not worn.
DEFAULT_NIGHT: tuple[tuple[int, int], ...] = (
    (0, 2), (20, 3), (60, 4), (120, 3), (170, 4), (220, 3), (300, 2), (310, 3), (380, 4), (420, 3), (460, 2),
)


def sleeplog_entries(lights_out_ms: int, night: Sequence[tuple[int, int]] = DEFAULT_NIGHT) -> list[list[int]]:
    """sleeplog entries ``[time10, status, consecutive]`` for a night starting at ``lights_out_ms`` (device time)."""
    base = lights_out_ms // TEN_MIN_MS
    return [[base + minutes // 10, status, 2 if status in (3, 4) else 1] for minutes, status in night]


def sleeplog_from_hypnogram(start_ms: int, stages: Sequence[int], epoch_s: int = 30) -> list[list[int]]:
    """sleeplog entries for a simulated hypnogram (schema stage codes per ``epoch_s`` epoch from ``start_ms``).

    Like the watch, it sees 10-minute slots and no REM: each slot takes its most common stage
    (REM counts as light), and only changes become entries. For the demo's device stages.
    """
    per_slot = 600 // epoch_s
    to_status = {0: 2, 1: 3, 2: 4, 3: 3}
    base = start_ms // TEN_MIN_MS
    out: list[list[int]] = []
    for k in range(0, len(stages), per_slot):
        slot = [to_status.get(int(x), 0) for x in stages[k:k + per_slot]]
        status = max(set(slot), key=slot.count)
        if not out or out[-1][1] != status:
            out.append([base + k // per_slot, status, 2 if status in (3, 4) else 1])
    return out


class BangleConsole:
    """An Espruino console on the Nordic UART: answers magsleep's JS lines from a scripted sleeplog.

    Device time is the clock's time plus ``skew_ms``. Output is cut into 20-byte notifications with
    console noise around it (prompts, '=undefined', escape sequences). Fault switches (each used once
    unless noted): ``drop_after_chunks`` drops the link after that many TX chunks of the next sleeplog
    reply; ``corrupt_entries`` mangles those entry lines of the next reply; ``sleeplog_installed``
    False answers like Espruino without the module.
    """

    def __init__(self, clock: Clock, entries: list[list[int]], *, skew_ms: int = 0, noise: bool = True,
                 hrm_bpm: int = 58) -> None:
        self.clock = clock
        self.entries = entries
        self.skew_ms = skew_ms
        self.noise = noise
        self.hrm_bpm = hrm_bpm
        self.sleeplog_installed = True
        self.drop_after_chunks: int | None = None
        self.corrupt_entries: set[int] = set()
        self.requests: list[str] = []
        self.hrm_on = False
        self._rx = bytearray()
        self._tasks: set[asyncio.Task[None]] = set()
        self._hrm_task: asyncio.Task[None] | None = None

    def now_ms(self) -> int:
        return self.clock.time_ns() // 1_000_000 + self.skew_ms

    def read_log(self, since_ms: int) -> list[list[int]]:
        """BangleApps sleeplog ``readLog(since)`` (until = now), entries ascending in 10-min units."""
        now = self.now_ms()
        if now < since_ms:
            return []
        since, until = since_ms // TEN_MIN_MS, -(-now // TEN_MIN_MS)
        out: list[list[int]] = []
        prev: list[int] | None = None
        for e in self.entries:
            if e[0] >= until:
                break
            if e[0] <= since:
                prev = list(e)
            else:
                if prev is not None:
                    out.append(prev)
                    prev = None
                out.append(list(e))
        if prev is not None:
            out.append(prev)
        if out and out[0][0] < since:
            out[0][0] = since
        return out

    def on_write(self, device: Any, uuid: str, value: bytes) -> None:
        if uuid != NUS_RX:
            return
        self._rx += value
        while b"\n" in self._rx:
            raw, _, rest = bytes(self._rx).partition(b"\n")
            self._rx = bytearray(rest)
            self._spawn(self._execute(device, raw.decode("utf-8", errors="replace").lstrip("\x10")))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, device: Any, line: str) -> None:
        self.requests.append(line)
        noise = "\x1b[J>" if self.noise else ""
        if '["ms-now",Date.now()]' in line:
            await self._print(device, [f'{noise}{json.dumps(["ms-now", self.now_ms()], separators=(",", ":"))}'])
        elif "readLog(" in line:
            if not self.sleeplog_installed:
                await self._print(device, ['Uncaught Error: Module sleeplog not found', ' at line 1 col 30', ">"])
                return
            m = re.search(r"readLog\((\d+)\)", line)
            log = self.read_log(int(m.group(1)) if m else 0)
            out = [f"{noise}" if self.noise else ""]
            for i, e in enumerate(log):
                text = json.dumps(["ms", i, *e], separators=(",", ":"))
                if i in self.corrupt_entries:
                    text = text[: len(text) // 2] + "\x00#" + text[len(text) // 2 + 2:]
                out.append(text)
            self.corrupt_entries = set()
            out.append(json.dumps(["ms-end", len(log), self.now_ms()], separators=(",", ":")))
            if self.noise:
                out.append("=undefined")
            drop, self.drop_after_chunks = self.drop_after_chunks, None
            await self._print(device, out, drop_after=drop)
        elif 'Bangle.setHRMPower(1' in line:
            self.hrm_on = True
            if self._hrm_task is None or self._hrm_task.done():
                self._hrm_task = asyncio.ensure_future(self._hrm(device))
        elif 'Bangle.setHRMPower(0' in line:
            self.hrm_on = False
        elif self.noise:
            await self._print(device, ["=undefined"])

    async def _print(self, device: Any, lines: list[str], drop_after: int | None = None) -> None:
        data = "".join(f"{text}\r\n" for text in lines).encode()
        for n, i in enumerate(range(0, len(data), UART_CHUNK)):
            if drop_after is not None and n >= drop_after:
                await device.drop_link("dropped mid-transfer")
                return
            if not await device.notify(NUS_TX, data[i:i + UART_CHUNK]):
                return
            await asyncio.sleep(0)

    async def _hrm(self, device: Any) -> None:
        rng = random.Random(1)  # noqa: S311 - simulation
        while self.hrm_on and device.connected:
            bpm = self.hrm_bpm + rng.randint(-2, 2)
            await self._print(device, [json.dumps(["ms-hrm", bpm, 80], separators=(",", ":"))])
            await self.clock.sleep(1.0)
        self.hrm_on = False


def bangle_js(
    address: str,
    name: str = "Bangle.js 1a2b",
    *,
    clock: Clock | None = None,
    entries: list[list[int]] | None = None,
    skew_ms: int = 0,
    noise: bool = True,
    with_hrs: bool = False,
    rssi: int = -62,
) -> tuple[VirtualWearable, BangleConsole]:
    """A Bangle.js 2 with the sleeplog app: Nordic UART console (+ standard HRS when ``with_hrs``).

    ``entries`` default: one scripted night ending about 1 h before the clock's now (device time).
    """
    clock = clock or SystemClock()
    if entries is None:
        now_ms = clock.time_ns() // 1_000_000 + skew_ms
        entries = sleeplog_entries(now_ms - (470 + 60) * 60_000)
    console = BangleConsole(clock, entries, skew_ms=skew_ms, noise=noise)
    services = [Service(NUS_SERVICE, (
        Characteristic(NUS_RX, ("write", "write-without-response")),
        Characteristic(NUS_TX, ("notify",)),
    ))]
    feed: Feed | None = None
    if with_hrs:
        services.append(Service(HEART_RATE_SERVICE, (Characteristic(HEART_RATE_MEASUREMENT, ("notify",)),)))
        feed = heart_rate_feed(24 * 3600, rr=False)
    wearable = VirtualWearable(
        address=address, name=name, services=tuple(services), rssi=rssi,
        advertised_uuids=(NUS_SERVICE,), feed=feed, on_write=console.on_write,
    )
    return wearable, console


class PmdBehaviour:
    """The PMD control point and accelerometer stream of a Polar H10.

    ``start_status`` answers every start with that status code (0 = success); ``commands`` keeps every
    control point write. While started, one frame of 25 samples per second (clock) goes out on the
    data characteristic, delta-compressed (type 0x80, as the H10 sends) or raw int16 (``compressed``
    False). Device time runs ``offset_s`` from the clock (the strap's clock is not set).
    """

    def __init__(self, clock: Clock, *, compressed: bool = True, offset_s: float = -3600.0,
                 movement: Sequence[tuple[float, float]] = ()) -> None:
        self.clock = clock
        self.compressed = compressed
        self.offset_ns = int(offset_s * 1e9)
        #: g per count of compressed frames (announced in the start response, as a Verity/H10 does).
        self.factor = 2.44e-4
        self.start_status = pmd.STATUS_SUCCESS
        self.commands: list[bytes] = []
        self.streaming = False
        self.frames_sent = 0
        #: (start, end) clock-seconds-since-epoch windows where the wearer moves.
        self.movement = list(movement)
        self._task: asyncio.Future[None] | None = None
        self._link = -1  # connect count of the link the stream runs on
        self._replies: set[asyncio.Future[bool]] = set()
        self._rng = random.Random(7)  # noqa: S311 - simulation

    def on_write(self, device: Any, uuid: str, value: bytes) -> None:
        if uuid != pmd.PMD_CONTROL:
            return
        self.commands.append(bytes(value))
        if len(value) < 2:
            raise BlueZError("org.bluez.Error.InvalidValueLength", "Invalid Length")
        op, mtype = value[0], value[1]
        status = pmd.STATUS_SUCCESS
        if mtype != pmd.TYPE_ACC:
            status = 3  # not supported (this sim streams ACC only)
        elif op == pmd.OP_START:
            if self.start_status:
                status = self.start_status
            elif self.streaming and self._link == device.stats.connects:
                status = pmd.STATUS_ALREADY_IN_STATE
            else:
                self.streaming = True
                self._link = device.stats.connects
                self._task = asyncio.ensure_future(self._stream(device, self._link))
        elif op == pmd.OP_STOP:
            if not self.streaming:
                status = pmd.STATUS_ALREADY_IN_STATE
            self.streaming = False
        elif op != pmd.OP_GET_SETTINGS:
            status = 1
        response = bytes([pmd.RESPONSE, op, mtype, status, 0])
        if op == pmd.OP_START and status == pmd.STATUS_SUCCESS and self.compressed:
            response += bytes([pmd.SETTING_FACTOR, 1]) + struct.pack("<f", self.factor)
        reply = asyncio.ensure_future(device.notify(pmd.PMD_CONTROL, response))
        self._replies.add(reply)
        reply.add_done_callback(self._replies.discard)

    def sample(self, t_s: float) -> tuple[int, int, int]:
        """One X,Y,Z sample in mG at clock time ``t_s``: gravity on Z, noise, movement bursts."""
        moving = any(a <= t_s < b for a, b in self.movement)
        amp = 350.0 if moving else 4.0
        wobble = math.sin(t_s * 7.0) * (200.0 if moving else 0.0)
        return (round(self._rng.gauss(0, amp) + wobble), round(self._rng.gauss(0, amp)),
                round(1000 + self._rng.gauss(0, amp)))

    async def _stream(self, device: Any, link: int) -> None:
        """Stream until stopped or until the link it was started on goes (``link``: connect count then)."""
        rate = pmd.ACC_RATE_HZ
        period = 1_000_000_000 // rate
        sent_ns = self.clock.time_ns()  # samples up to here are out
        while self.streaming and device.connected and device.stats.connects == link:
            await self.clock.sleep(1.0)
            now_ns = self.clock.time_ns()
            # one frame per second of clock time; a loop that ran late catches up (a strap never skips time),
            # up to 5 s at once (beyond that the seconds are lost, as a radio drops frames)
            sent_ns = max(sent_ns, now_ns - 5_000_000_000)
            while now_ns - sent_ns >= 1_000_000_000 and self.streaming:
                end = sent_ns + 1_000_000_000
                samples = [self.sample((end - (rate - 1 - k) * period) / 1e9) for k in range(rate)]
                if self.compressed:
                    c = self.factor * 1000.0
                    samples = [(round(x / c), round(y / c), round(z / c)) for x, y, z in samples]
                device_ts = end + self.offset_ns - pmd.POLAR_EPOCH_NS
                frame = pmd.encode_acc_frame(device_ts, samples, compressed=self.compressed)
                if device.stats.connects != link or not await device.notify(pmd.PMD_DATA, frame):
                    sent_ns = -1
                    break
                sent_ns = end
                self.frames_sent += 1
            if sent_ns < 0:
                break
        if self._link == link and (device.stats.connects != link or not device.connected):
            self.streaming = False  # the H10 stops measuring when the link goes


def polar_h10_pmd(
    address: str,
    name: str = "Polar H10 5E6F7A8B",
    *,
    clock: Clock | None = None,
    compressed: bool = True,
    movement: Sequence[tuple[float, float]] = (),
    hr_feed: Feed | None = None,
) -> tuple[VirtualWearable, PmdBehaviour]:
    """A Polar H10: the heart-rate strap plus the PMD service (features: ECG and ACC)."""
    behaviour = PmdBehaviour(clock or SystemClock(), compressed=compressed, movement=movement)
    strap = heart_rate_strap(address, name, feed=hr_feed or heart_rate_feed(24 * 3600))
    pmd_service = Service(pmd.PMD_SERVICE, (
        Characteristic(pmd.PMD_CONTROL, ("read", "write", "indicate"),
                       bytes([pmd.FEATURES, (1 << pmd.TYPE_ECG) | pmd.FEATURE_ACC])),
        Characteristic(pmd.PMD_DATA, ("notify",)),
    ))
    wearable = VirtualWearable(
        address=strap.address, name=strap.name, services=(*strap.services, pmd_service), rssi=strap.rssi,
        tx_power=strap.tx_power, manufacturer_data=strap.manufacturer_data,
        advertised_uuids=strap.advertised_uuids, battery_pct=strap.battery_pct, feed=strap.feed,
        on_write=behaviour.on_write,
    )
    return wearable, behaviour


def infinitime_feed(duration_s: float, *, rate_hz: float = 2.0, movement: Sequence[tuple[float, float]] = (),
                    bpm: float = 57.0, seed: int = 3) -> Feed:
    """HR every second, raw motion at ``rate_hz`` (sent only when it changes, as InfiniTime does),
    steps when they change. ``movement`` windows are seconds since the feed started."""

    def make() -> Iterator[Notification]:
        rng = random.Random(seed)  # noqa: S311 - simulation
        from collector.ble.profiles.heart_rate import encode_measurement

        steps = 1200
        last: tuple[int, int, int] | None = None
        n_motion = int(duration_s * rate_hz)
        events: list[Notification] = []
        for k in range(1, int(duration_s) + 1):
            events.append(Notification(float(k), HEART_RATE_MEASUREMENT, encode_measurement(round(bpm))))
        for k in range(1, n_motion + 1):
            t = k / rate_hz
            moving = any(a <= t < b for a, b in movement)
            if moving:
                xyz = (rng.randint(-400, 400), rng.randint(-400, 400), 1024 + rng.randint(-300, 300))
                if k % 4 == 0:
                    steps += 1
                    events.append(Notification(t, STEP_COUNT, struct.pack("<I", steps)))
            else:
                xyz = (rng.choice((0, 0, 0, 1)), 0, 1024 + rng.choice((0, 0, -1, 1)))
            if xyz != last:
                events.append(Notification(t, RAW_MOTION, struct.pack("<3h", *xyz)))
                last = xyz
        events.sort(key=lambda n: n.at_s)
        yield from events

    return make


def infinitime_watch(address: str, name: str = "InfiniTime", *, feed: Feed | None = None,
                     rssi: int = -66) -> VirtualWearable:
    """A PineTime running InfiniTime: HRS, the motion service and Device Information."""
    services = (
        Service(HEART_RATE_SERVICE, (Characteristic(HEART_RATE_MEASUREMENT, ("notify",)),)),
        Service(MOTION_SERVICE, (
            Characteristic(STEP_COUNT, ("read", "notify"), (1200).to_bytes(4, "little")),
            Characteristic(RAW_MOTION, ("read", "notify"), bytes(6)),
        )),
        Service(DEVICE_INFORMATION_SERVICE, (
            Characteristic(MANUFACTURER_NAME, ("read",), b"PINE64"),
            Characteristic(MODEL_NUMBER, ("read",), b"PineTime"),
            Characteristic(FIRMWARE_REVISION, ("read",), b"1.14.0"),
        )),
    )
    return VirtualWearable(address=address, name=name, services=services, rssi=rssi,
                           advertised_uuids=(HEART_RATE_SERVICE, MOTION_SERVICE), feed=feed)


__all__ = [
    "DEFAULT_NIGHT",
    "BangleConsole",
    "PmdBehaviour",
    "bangle_js",
    "infinitime_feed",
    "infinitime_watch",
    "polar_h10_pmd",
    "sleeplog_entries",
    "sleeplog_from_hypnogram",
]
