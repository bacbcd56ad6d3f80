"""Bangle.js (Espruino) over the Nordic UART: the BangleApps ``sleeplog`` history, and HRM.

On every connect (and every ``pull_interval_s`` while connected) the profile

1. measures the clock skew: it sends ``print(JSON.stringify(["ms-now",Date.now()]))`` and takes
   the device time minus the midpoint of the host's send and receive times;
2. pulls ``require("sleeplog").readLog(since)`` as one line of JS that prints one JSON line per
   entry, ``["ms",index,time10,status,consecutive]``, then ``["ms-end",count,Date.now()]``;
3. turns the entries into 10-minute ``sleep_stage`` epochs (source=device, epoch_s=600), stamped
   with the device's own times minus the skew, and stores the device time it pulled up to in
   ``<state_dir>/bangle-sleeplog.json`` so the next pull starts exactly there.

sleeplog entries are status changes in 10-minute units: an entry's status lasts until the next
entry. Only complete epochs before the device's current 10-minute slot are stored (that slot may
still change). The line-per-entry reply lets a corrupt line cost only the span it covers: spans
whose end is known are stored, the watermark stops at the first uncertain span, and the next pull
fetches that span again (re-sent epochs carry identical timestamps, so InfluxDB keeps one).
A transfer cut short (no end line) stores nothing and moves nothing.

When the Bangle serves no standard Heart Rate Service, its HRM is switched on over the console and
each HRM event (``["ms-hrm",bpm,confidence]``) with confidence >= 50 becomes a ``heart_rate`` point.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collector.ble.profiles.base import Subscription
from collector.ble.profiles.hooks import ProfileContext
from collector.ble.profiles.uart import NUS_SERVICE, NUS_TX, UartConsole, json_payload
from collector.ble.uuids import HEART_RATE_SERVICE
from collector.errors import DeviceError, ParseError
from collector.storage.lineprotocol import Point
from collector.storage.schema import HEART_RATE, SLEEP_STAGE

if TYPE_CHECKING:
    from bleak import BleakClient

log = logging.getLogger(__name__)

EPOCH_S = 600
EPOCH_MS = EPOCH_S * 1000
#: sleeplog status -> (stage, stage_code) of the schema.
STAGES: dict[int, tuple[str, int]] = {
    0: ("unknown", -1),
    1: ("not_worn", -2),
    2: ("wake", 0),
    3: ("light", 1),
    4: ("deep", 2),
}
#: A skew below this is round-trip noise, not a wrong clock: no correction (sleeplog has 10-min resolution).
SKEW_TOLERANCE_MS = 2000
#: How far back the very first pull of a device reaches.
FIRST_PULL_DAYS = 7
#: At most this many days per pull: a longer backlog (or a corrupt end time) is caught up over several pulls.
MAX_PULL_DAYS = 14
#: A reply whose device time disagrees with the clock measured at connect by more than this is corrupt.
MAX_CLOCK_DISAGREEMENT_MS = 3_600_000
#: HRM events below this confidence (Espruino's 0-100) are not stored.
MIN_HRM_CONFIDENCE = 50
#: Real seconds to wait for the next console line of a reply.
LINE_TIMEOUT_S = 5.0
STATE_FILE = "bangle-sleeplog.json"

JS_NOW = '\x10print(JSON.stringify(["ms-now",Date.now()]))\n'
JS_HRM_ON = ('\x10if(global._msHrm)Bangle.removeListener("HRM",_msHrm);global._msHrm=function(h){'
             'print(JSON.stringify(["ms-hrm",h.bpm,h.confidence]))};Bangle.on("HRM",_msHrm);'
             'Bangle.setHRMPower(1,"magsleep")\n')
JS_HRM_OFF = '\x10Bangle.setHRMPower(0,"magsleep");if(global._msHrm)Bangle.removeListener("HRM",_msHrm)\n'


def js_pull(since_ms: int) -> str:
    """The one line of JS that prints the sleeplog since ``since_ms`` (device time), entry by entry."""
    return ('\x10(function(){var l=require("sleeplog").readLog(' + str(int(since_ms)) + ');'
            'l.forEach(function(e,i){print(JSON.stringify(["ms",i].concat(e)))});'
            'print(JSON.stringify(["ms-end",l.length,Date.now()]))})()\n')


@dataclass
class SleeplogReply:
    """The lines of one pull reply, collected as they come."""

    entries: dict[int, tuple[int, int]] = field(default_factory=dict)  # index -> (time10, status)
    count: int | None = None
    device_now_ms: int | None = None
    rejected: int = 0

    @property
    def done(self) -> bool:
        return self.count is not None

    def feed(self, line: str) -> None:
        """Take one console line; lines that are not part of the reply are ignored or counted as rejected."""
        if "Uncaught" in line or line.startswith("ERROR"):
            raise DeviceError(f"the Bangle.js reported an error: {line[:200]}; is the BangleApps 'sleeplog' "
                              "app installed? (install it from the Bangle.js App Loader)")
        value = json_payload(line)
        if value is None:
            if '"ms' in line:  # one of ours, but mangled
                self.rejected += 1
            return
        if not isinstance(value, list) or not value or value[0] not in ("ms", "ms-end"):
            return
        if value[0] == "ms-end":
            if len(value) == 3 and all(_is_int(v) for v in value[1:]):
                self.count, self.device_now_ms = int(value[1]), int(value[2])
            else:
                self.rejected += 1
            return
        if len(value) >= 4 and _is_int(value[2]) and value[2] > 10**10:
            raise DeviceError("the Bangle.js sleeplog app is too old (it logs milliseconds, not 10-minute steps); "
                              "update it from the Bangle.js App Loader")
        if len(value) >= 4 and all(_is_int(v) for v in value[1:4]) and int(value[3]) in STAGES and value[1] >= 0:
            self.entries[int(value[1])] = (int(value[2]), int(value[3]))
        else:
            self.rejected += 1


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def stage_points(
    reply: SleeplogReply, since_ms: int, skew_ms: int, tags: Mapping[str, str]
) -> tuple[list[Point], int]:
    """``sleep_stage`` points of a complete reply and the device time (ms) the pull is good up to.

    ``skew_ms`` is device minus host; each epoch is stamped at its device start minus the skew.
    """
    if reply.count is None or reply.device_now_ms is None:
        raise ParseError("sleeplog reply has no end line")
    since10 = since_ms // EPOCH_MS
    until10 = min(reply.device_now_ms // EPOCH_MS, since10 + MAX_PULL_DAYS * 144)  # the current slot is open
    if until10 <= since10:
        return [], since_ms
    n, entries = reply.count, reply.entries
    # The first missing entry makes the span of the one before it uncertain: the watermark stops there.
    first_missing = next((i for i in range(n) if i not in entries), None)
    if first_missing is None:
        watermark10 = until10
    elif first_missing == 0:
        watermark10 = since10
    else:
        watermark10 = max(since10, entries[first_missing - 1][0])
    points: list[Point] = []
    for i in range(n):
        if i not in entries:
            continue
        if i + 1 < n:
            if i + 1 not in entries:
                continue  # where this span ends is lost with the next entry
            end10 = entries[i + 1][0]
        else:
            end10 = until10
        t10, status = entries[i]
        stage, code = STAGES[status]
        for k in range(max(t10, since10), min(end10, until10)):
            t_ns = (k * EPOCH_MS - skew_ms) * 1_000_000
            points.append(Point(SLEEP_STAGE.name, tags, {"stage": stage, "stage_code": code, "epoch_s": EPOCH_S}, t_ns))
    return points, max(since_ms, watermark10 * EPOCH_MS)


def correction_ms(measured_skew_ms: float) -> int:
    """The skew actually corrected: whole seconds, zero below :data:`SKEW_TOLERANCE_MS`."""
    if abs(measured_skew_ms) < SKEW_TOLERANCE_MS:
        return 0
    return round(measured_skew_ms / 1000.0) * 1000


def hrm_points(line: str, received_ns: int, tags: Mapping[str, str]) -> list[Point]:
    """A ``heart_rate`` point for an ``["ms-hrm",bpm,confidence]`` console line (else none)."""
    value = json_payload(line)
    if not (isinstance(value, list) and len(value) == 3 and value[0] == "ms-hrm"):
        return []
    bpm, conf = value[1], value[2]
    if not (_is_int(bpm) and isinstance(conf, (int, float))) or not 20 <= bpm <= 250 or conf < MIN_HRM_CONFIDENCE:
        return []
    return [Point(HEART_RATE.name, tags, {"bpm": int(bpm)}, received_ns)]


class SleeplogState:
    """Device time (ms) pulled up to, per device address, in ``<state_dir>/bangle-sleeplog.json``."""

    def __init__(self, state_dir: Path | None) -> None:
        self.path = state_dir / STATE_FILE if state_dir is not None else None

    def load(self) -> dict[str, int]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return {str(k): int(v["until_ms"]) for k, v in data.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise DeviceError(f"cannot read {self.path} ({exc}); fix or delete it (the next pull then "
                              f"re-reads the last {FIRST_PULL_DAYS} days, which is harmless)") from exc

    def get(self, address: str) -> int | None:
        return self.load().get(address)

    def set(self, address: str, until_ms: int) -> None:
        if self.path is None:
            return
        from collector.ble.registry import atomic_write  # registry imports settings; keep this module light

        data = self.load()
        data[address] = until_ms
        atomic_write(self.path, json.dumps({a: {"until_ms": u} for a, u in sorted(data.items())}, indent=2) + "\n")


class BangleProfile:
    """Bangle.js: sleeplog history pulled over the Nordic UART, HRM over UART when HRS is absent."""

    name: str = "bangle"
    service_uuids: frozenset[str] = frozenset({NUS_SERVICE})
    subscriptions: tuple[Subscription, ...] = ()  # TX is subscribed by on_connect (one console per link)
    pull_interval_s: float = 1800.0
    pulls_history: bool = True  # the interval is ble.history_pull_s

    def parse(self, uuid: str, data: bytes | bytearray, received_ns: int, tags: Mapping[str, str]) -> list[Point]:
        """Points of one complete console line received on TX (HRM events; other lines give none)."""
        if uuid != NUS_TX:
            raise ParseError(f"bangle profile does not handle characteristic {uuid}")
        return hrm_points(bytes(data).decode("utf-8", errors="replace"), received_ns, tags)

    async def on_connect(self, client: BleakClient, ctx: ProfileContext) -> None:
        def on_line(line: str) -> None:
            if line.find('"ms-hrm"') >= 0:
                pts = hrm_points(line, ctx.clock.time_ns(), ctx.tags)
                if pts:
                    ctx.emit(pts)

        console = UartConsole(client, on_line=on_line, on_bytes=ctx.touch)
        ctx.memory["console"] = console
        await console.open()
        ctx.memory["skew_ms"] = await self._measure_skew(console, ctx)
        if client.services.get_service(HEART_RATE_SERVICE) is None:
            await console.send(JS_HRM_ON)
        await self.pull(client, ctx)

    async def on_disconnect(self, client: BleakClient, ctx: ProfileContext) -> None:
        console = ctx.memory.get("console")
        if isinstance(console, UartConsole) and client.services.get_service(HEART_RATE_SERVICE) is None:
            await console.send(JS_HRM_OFF)

    async def _measure_skew(self, console: UartConsole, ctx: ProfileContext) -> int:
        console.begin()
        try:
            t0 = ctx.clock.time_ns()
            await console.send(JS_NOW)
            while True:
                line = await console.next_line(LINE_TIMEOUT_S)
                value = json_payload(line)
                if isinstance(value, list) and len(value) == 2 and value[0] == "ms-now" and _is_int(value[1]):
                    break
        finally:
            console.end()
        t1 = ctx.clock.time_ns()
        measured = value[1] - (t0 + t1) / 2e6
        corr = correction_ms(measured)
        if corr and ctx.memory.get("skew_ms") != corr:
            log.info("%s: Bangle.js clock is %+.1f s off the host; correcting its timestamps",
                     ctx.alias, corr / 1000)
        ctx.memory["measured_skew_ms"] = measured
        return corr

    async def pull(self, client: BleakClient, ctx: ProfileContext) -> None:
        """Pull the sleeplog since the last pull and emit its complete epochs."""
        console = ctx.memory.get("console")
        if not isinstance(console, UartConsole):
            return
        state = SleeplogState(ctx.state_dir)
        since = ctx.memory.get("until_ms")
        if not isinstance(since, int):
            since = state.get(ctx.address)
        skew = int(ctx.memory.get("skew_ms", 0))
        if since is None:
            host_ms = ctx.clock.time_ns() // 1_000_000
            since = (host_ms + skew) // EPOCH_MS * EPOCH_MS - FIRST_PULL_DAYS * 86_400_000
        reply = SleeplogReply()
        console.begin()
        try:
            await console.send(js_pull(since))
            while not reply.done:
                reply.feed(await console.next_line(LINE_TIMEOUT_S))
        finally:
            console.end()
        measured = ctx.memory.get("measured_skew_ms")
        if reply.device_now_ms is not None and isinstance(measured, float):
            expected = ctx.clock.time_ns() / 1e6 + measured
            if abs(reply.device_now_ms - expected) > MAX_CLOCK_DISAGREEMENT_MS:
                raise ParseError(f"sleeplog reply says the watch time is {reply.device_now_ms}, but its clock read "
                                 f"{expected:.0f} at connect; reply ignored (pulled again next time)")
        points, until = stage_points(reply, since, skew, ctx.tags)
        if reply.rejected:
            log.warning("%s: %d malformed sleeplog line(s) rejected; the spans they cover are pulled again next time",
                        ctx.alias, reply.rejected)
        if reply.device_now_ms is not None and reply.device_now_ms < since:
            log.warning("%s: the Bangle.js clock (%d) is before the last pull (%d); was it reset? "
                        "Nothing pulled until it passes that time", ctx.alias, reply.device_now_ms, since)
        if points:
            ctx.emit(points)
        ctx.memory["until_ms"] = until
        ctx.memory["pulls"] = int(ctx.memory.get("pulls", 0)) + 1
        ctx.memory["rejected"] = int(ctx.memory.get("rejected", 0)) + reply.rejected
        if until != since:
            state.set(ctx.address, until)
        log.debug("%s: sleeplog pulled %d epoch(s), up to device time %d", ctx.alias, len(points), until)
