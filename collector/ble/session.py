"""One supervised connection to one wearable: connect, subscribe, stream, reconnect.

The loop is a small state machine (:class:`SessionState`): CONNECTING -> CONNECTED -> (link lost,
watchdog, error) -> BACKOFF -> CONNECTING ... -> STOPPED. Time inside is the injected clock's
monotonic time; points are stamped with the clock's wall time at receipt. The first failure of a
streak logs a WARNING, the rest of the streak DEBUG, a recovery INFO.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak_retry_connector import BleakClientWithServiceCache, establish_connection, get_device

from collector.ble.backoff import Failure, SessionState, backoff_s
from collector.ble.bluez import BlueZProps, device_path, failure_kind, find_device
from collector.ble.profiles import PROFILES, Profile, device_info, profiles_for
from collector.ble.profiles import battery as battery_profile
from collector.ble.profiles.base import parser_for
from collector.ble.profiles.hooks import ProfileHooks
from collector.ble.registry import DeviceStatus, RegisteredDevice
from collector.clock import Clock
from collector.errors import DeviceError, DeviceNotFoundError, ParseError
from collector.settings import BleSettings
from collector.storage.lineprotocol import FieldValue, Point, Tags
from collector.storage.schema import DEVICE_STATUS
from collector.storage.sinks import PointSink

if TYPE_CHECKING:
    from collector.ble.esphome import ProxyHub

log = logging.getLogger(__name__)

#: Seconds (clock) between device_status points while connected.
STATUS_INTERVAL_S = 60.0
#: Seconds (clock) between battery reads while connected.
BATTERY_INTERVAL_S = 600.0
#: Connect attempts inside one establish_connection call; our own backoff does the rest.
CONNECT_ATTEMPTS = 2
#: Real seconds the forwarder gathers points before handing a batch to storage.
BATCH_S = 0.1
#: Points kept in memory while storage refuses them (the pipeline's outbox is the durable buffer).
MAX_BUFFERED = 500_000
#: Real seconds for a clean disconnect before giving up on it.
DISCONNECT_TIMEOUT_S = 2.0
#: The source name of the local adapter (the others are ESPHome proxies, by their label).
LOCAL = "local"
#: Real seconds between looks at what the proxies hear while waiting for a device.
PROXY_POLL_S = 0.2


class PointBuffer:
    """Takes points from notification callbacks (synchronous, cheap) and forwards them in batches."""

    def __init__(self, sink: PointSink, *, retry_s: float = 1.0, batch_s: float = BATCH_S) -> None:
        self._sink = sink
        self._batch_s = batch_s
        self._buf: list[Point] = []
        self._event = asyncio.Event()
        self._retry_s = retry_s
        self.queued = 0
        self.forwarded = 0
        self.dropped = 0

    def add(self, points: list[Point]) -> None:
        self._buf.extend(points)
        self.queued += len(points)
        self._event.set()

    async def run(self) -> None:
        """Forward forever (cancel to stop, then call :meth:`drain`)."""
        while True:
            await self._event.wait()
            # Gather a batch: one outbox commit per batch, not per notification.
            await asyncio.sleep(self._batch_s)
            self._event.clear()
            await self._forward()

    async def _forward(self) -> None:
        while self._buf:
            batch, self._buf = self._buf, []
            try:
                await self._sink.put(batch)
            except asyncio.CancelledError:
                # Stopping mid-put: keep the batch for drain(). Should the put have committed it
                # already, it is sent twice: the same points (series and time), stored once.
                self._buf[:0] = batch
                raise
            except Exception as exc:  # noqa: BLE001 - keep the points, retry; never lose the forwarder
                log.warning("storage refused %d points (%s); retrying in %.0f s", len(batch), exc, self._retry_s,
                            extra={"event": "storage_refused"})
                self._buf[:0] = batch
                if len(self._buf) > MAX_BUFFERED:
                    dropped = len(self._buf) - MAX_BUFFERED
                    del self._buf[:dropped]
                    self.dropped += dropped
                    log.error("storage unavailable: dropped the %d oldest points kept in memory", dropped,
                              extra={"event": "points_dropped"})
                await asyncio.sleep(self._retry_s)
            else:
                self.forwarded += len(batch)

    async def drain(self) -> None:
        if self._buf:
            batch, self._buf = self._buf, []
            await self._sink.put(batch)
            self.forwarded += len(batch)


@dataclass
class SessionStats:
    connects: int = 0
    reconnects: int = 0
    failures: int = 0
    notifications: int = 0
    parse_errors: int = 0
    watchdog_drops: int = 0
    battery_pct: int | None = None
    rssi_dbm: int | None = None
    model: str = ""
    firmware: str = ""


StatusCallback = Callable[[RegisteredDevice, DeviceStatus], None]


class DeviceSession:
    """Keeps one registered wearable connected and streaming until stopped."""

    def __init__(
        self,
        device: RegisteredDevice,
        *,
        buffer: PointBuffer,
        clock: Clock,
        ble: BleSettings,
        props: BlueZProps,
        on_status: StatusCallback | None = None,
        status_interval_s: float = STATUS_INTERVAL_S,
        state_dir: Path | None = None,
        proxies: ProxyHub | None = None,
    ) -> None:
        self.device = device
        self._buffer = buffer
        self._clock = clock
        self._ble = ble
        self._props = props
        self._proxies = proxies
        #: Where the current/last connection goes through: LOCAL or an ESPHome proxy's label.
        self.via = ""
        self._on_status = on_status
        self._status_interval_s = status_interval_s
        self.profiles: list[Profile] = profiles_for(device.profiles, ble, alias=device.alias, address=device.address)
        if not self.profiles:
            raise DeviceError(f"{device.alias}: none of its profiles {list(device.profiles)} is supported; "
                              f"supported: {', '.join(PROFILES)}")
        self.tags = Tags(person=device.person, device=device.alias, source="device")
        self.status_tags = Tags(person=device.person, device=device.alias)
        self.state = SessionState.DISCONNECTED
        self.stats = SessionStats(model=device.model, firmware=device.firmware)
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._link_lost = False
        self._last_rx = 0.0
        self._window_start = 0.0
        self._window_count = 0
        self._last_status_ns = 0
        self._info_read = bool(device.model or device.firmware)
        self._battery_at: float | None = None
        # Optional profile hooks (history pulls, streams started by command): collector/ble/profiles/hooks.py
        self.hooks = ProfileHooks(self.profiles, address=device.address, alias=device.alias, tags=self.tags,
                                  clock=clock, emit=buffer.add, touch=self._touch, state_dir=state_dir,
                                  history_pull_s=ble.history_pull_s)
        self._log = {"device": device.alias, "person": device.person, "address": device.address}

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _touch(self) -> None:
        """Traffic a profile hook handles itself counts for the silence watchdog."""
        self._last_rx = self._clock.monotonic()

    # ---- the state machine --------------------------------------------------------------

    async def run(self) -> None:
        streak = 0
        try:
            while not self._stop.is_set():
                self._set_state(SessionState.CONNECTING)
                try:
                    client, ble_device = await self._connect()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - any connect failure backs off and retries
                    streak += 1
                    kind = failure_kind(exc)
                    self._log_failure(streak, f"cannot connect ({kind.value}): {exc}")
                    await self._backoff(kind, streak)
                    continue
                if streak:
                    log.info("%s: connected again (after %d failure(s) in a row)", self.device.alias, streak,
                             extra={**self._log, "event": "recovered", "streak": streak})
                streak = 0
                lost = await self._stream_safely(client, ble_device)
                await self._disconnect(client)
                if lost is None:
                    break
                self._set_state(SessionState.DISCONNECTED)
                streak = 1
                self._log_failure(streak, f"link lost ({lost.value})")
                await self._backoff(lost, streak)
        finally:
            self._set_state(SessionState.STOPPED)

    def _log_failure(self, streak: int, message: str) -> None:
        self.stats.failures += 1
        if streak == 1:
            log.warning("%s (%s): %s", self.device.alias, self.device.address, message,
                        extra={**self._log, "event": "failure", "streak": streak})
        else:
            log.debug("%s (%s): %s (failure %d in a row)", self.device.alias, self.device.address, message, streak,
                      extra={**self._log, "event": "failure", "streak": streak})

    async def _backoff(self, kind: Failure, streak: int) -> None:
        delay = backoff_s(kind, streak, self._ble.max_backoff_s)
        self._set_state(SessionState.BACKOFF)
        if not self._stop.is_set():
            self._wake.clear()  # the link-loss wake-up is consumed; only stop may cut the wait short
        if delay > 0:
            await self._sleep_or_wake(delay)

    async def _sleep_or_wake(self, seconds: float) -> None:
        """Sleep ``seconds`` of clock time, or less when stopped or the link drops."""
        if self._wake.is_set():
            return
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        waiter = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sleeper
            with contextlib.suppress(asyncio.CancelledError):
                await waiter

    async def _connect(self) -> tuple[BleakClient, BLEDevice]:
        safety = self._ble.connect_timeout_s * (CONNECT_ATTEMPTS + 1) + self._ble.scan_timeout_s
        async with asyncio.timeout(safety):  # a D-Bus call can stall; never hang here
            ble_device, via = await self._find()
            self._link_lost = False
            self._wake.clear()
            client = await establish_connection(
                BleakClientWithServiceCache if via == LOCAL else self._proxy_client_class(),
                ble_device,
                self.device.alias,
                disconnected_callback=self._on_disconnected,
                max_attempts=CONNECT_ATTEMPTS,
                timeout=self._ble.connect_timeout_s,
            )
        if via != LOCAL and self._proxies is not None:
            via = self._proxies.holder(self.device.address) or via  # the proxy habluetooth picked
        if via != self.via:
            if self.via:
                log.info("%s: now connected through %s (was %s)", self.device.alias, via, self.via,
                         extra={**self._log, "event": "source_changed", "via": via})
            elif self._proxies is not None:
                log.info("%s: connected through %s", self.device.alias, via,
                         extra={**self._log, "event": "source_changed", "via": via})
            self.via = via
        return client, ble_device

    @staticmethod
    def _proxy_client_class() -> type[BleakClient]:
        from habluetooth import HaBleakClientWrapper

        return HaBleakClientWrapper

    async def _find(self) -> tuple[BLEDevice, str]:
        """The device and the source to reach it through: the local adapter or the proxy hearing it best.

        Without proxies: BlueZ's known devices, else a scan. With proxies, the proxy with a free
        slot and the strongest signal wins unless the local adapter hears the device louder; a
        device only heard by full proxies raises :class:`OutOfSlotsError` saying so.
        """
        address, hub = self.device.address, self._proxies
        if hub is None:
            found = await find_device(address, self._ble.scan_timeout_s)
            if found is None:
                raise DeviceNotFoundError(f"{address} not seen")
            return found, LOCAL
        local_error: Exception | None = None
        local: BLEDevice | None = None
        local_rssi: int | None = None
        try:
            local = await get_device(address)  # known to BlueZ (no scan)
        except Exception as exc:  # noqa: BLE001 - no local Bluetooth is fine when proxies hear the device
            local_error = exc
        if local is not None:
            path = device_path(local)
            local_rssi = await self._props.rssi(path) if path else None
        picked = self._pick_proxy(local_rssi)
        if picked is not None:
            return picked
        if local is not None and local_rssi is not None:
            return local, LOCAL
        hub.check_slots(address, self.device.alias)
        # Nobody hears it right now: scan locally while the proxies keep listening.
        scan: asyncio.Future[BLEDevice | None] | None = None
        if local_error is None:
            scan = asyncio.ensure_future(find_device(address, self._ble.scan_timeout_s))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._ble.scan_timeout_s
        try:
            while True:
                picked = self._pick_proxy(None)
                if picked is not None:
                    return picked
                if scan is not None and scan.done():
                    try:
                        found = scan.result()
                    except Exception as exc:  # noqa: BLE001 - reported below if no proxy hears it either
                        found, local_error = None, exc
                    if found is not None:
                        return found, LOCAL
                    scan = None
                if loop.time() >= deadline and scan is None:
                    break
                await asyncio.sleep(PROXY_POLL_S)
        finally:
            if scan is not None:
                scan.cancel()
        hub.check_slots(address, self.device.alias)
        local_note = f"the local adapter ({local_error})" if local_error else "the local adapter"
        proxies = ", ".join(hub.connected) or "none connected"
        hint = ""
        if silent := hub.silent():
            from collector.ble.esphome import ONE_CLIENT_ADVICE

            hint = f"; {', '.join(silent)} sent no advertisements at all: {ONE_CLIENT_ADVICE}"
        raise DeviceNotFoundError(f"{address} not heard by {local_note} nor by the ESPHome proxies ({proxies}){hint}")

    def _pick_proxy(self, local_rssi: int | None) -> tuple[BLEDevice, str] | None:
        hub = self._proxies
        if hub is None:
            return None
        free = [c for c in hub.candidates(self.device.address) if c.free is None or c.free > 0]
        if not free or (local_rssi is not None and local_rssi >= free[0].rssi):
            return None
        device = hub.ble_device(self.device.address)
        return (device, free[0].proxy) if device is not None else None

    def _on_disconnected(self, _client: BleakClient) -> None:
        self._link_lost = True
        self._wake.set()

    async def _stream_safely(self, client: BleakClient, ble_device: BLEDevice) -> Failure | None:
        try:
            return await self._stream(client, ble_device)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a session never dies of one bad connection
            log.debug("%s: streaming stopped: %r", self.device.alias, exc)
            return Failure.LINK_LOST if self._link_lost else failure_kind(exc)

    async def _stream(self, client: BleakClient, ble_device: BLEDevice) -> Failure | None:
        if self.stats.connects:
            self.stats.reconnects += 1
        self.stats.connects += 1
        for profile in self.profiles:
            for sub in profile.subscriptions:
                if client.services.get_characteristic(sub.uuid) is None:
                    if sub.required:
                        raise DeviceError(f"{self.device.alias} does not serve {sub.uuid} ({profile.name})")
                    continue
                await client.start_notify(sub.uuid, self._callback(profile, sub.uuid))
        if self.hooks:
            await self.hooks.connected(client)
        now = self._clock.monotonic()
        self._last_rx = now
        self._window_start, self._window_count = now, 0
        path = device_path(ble_device)
        if not self._info_read:
            await self._read_info(client)
        if self._battery_at is None or now - self._battery_at >= BATTERY_INTERVAL_S:
            await self._read_battery(client, path)  # not on every quick reconnect: it delays streaming
            self._battery_at = now
        self._set_state(SessionState.CONNECTED)
        next_status = now + self._status_interval_s
        next_battery = self._battery_at + BATTERY_INTERVAL_S
        tick = min(self._ble.silence_timeout_s / 3.0, self._status_interval_s)
        while True:
            if self._stop.is_set():
                await self.hooks.stopping(client)
                return None
            if self._link_lost or not client.is_connected:
                return Failure.LINK_LOST
            now = self._clock.monotonic()
            if now - self._last_rx > self._ble.silence_timeout_s:
                self.stats.watchdog_drops += 1
                log.info("%s: connected but silent for %.0f s; reconnecting", self.device.alias, now - self._last_rx,
                         extra={**self._log, "event": "watchdog"})
                return Failure.SILENT
            if self.hooks.pull_due(now):
                await self.hooks.pull(client)
            if now >= next_battery:
                await self._read_battery(client, path)
                self._battery_at = now
                next_battery = now + BATTERY_INTERVAL_S
            if now >= next_status:
                if path:
                    self.stats.rssi_dbm = await self._props.rssi(path)
                elif self._proxies is not None and self.via != LOCAL:
                    self.stats.rssi_dbm = self._proxies.rssi(self.device.address)
                self._emit_status()
                next_status = now + self._status_interval_s
            await self._sleep_or_wake(tick)

    def _callback(self, profile: Profile, uuid: str) -> Callable[[BleakGATTCharacteristic, bytearray], None]:
        clock, tags, buffer, parse, stats = self._clock, self.tags, self._buffer, parser_for(profile, uuid), self.stats

        def on_notify(_char: BleakGATTCharacteristic, data: bytearray) -> None:
            self._last_rx = clock.monotonic()
            self._window_count += 1
            stats.notifications += 1
            try:
                points = parse(data, clock.time_ns(), tags)  # bytearray is read in place, not copied
            except ParseError as exc:
                stats.parse_errors += 1
                if stats.parse_errors == 1 or stats.parse_errors % 100 == 0:
                    log.warning("%s: malformed notification #%d ignored: %s",
                                self.device.alias, stats.parse_errors, exc, extra={**self._log, "event": "malformed"})
                return
            if points:
                buffer.add(points)

        return on_notify

    async def _read_info(self, client: BleakClient) -> None:
        values: dict[str, bytes] = {}
        for uuid in device_info.FIELDS:
            if client.services.get_characteristic(uuid) is None:
                continue
            try:
                values[uuid] = bytes(await client.read_gatt_char(uuid))
            except Exception as exc:  # noqa: BLE001 - device info is nice to have
                log.debug("%s: reading %s failed: %s", self.device.alias, uuid, exc)
        info = device_info.from_values(values)
        self.stats.model, self.stats.firmware = info.model, info.firmware
        self._info_read = True

    async def _read_battery(self, client: BleakClient, path: str | None) -> None:
        pct = await self._props.battery(path) if path else None
        if pct is None and client.services.get_characteristic(battery_profile.LEVEL_UUID) is not None:
            try:
                pct = battery_profile.decode_level(bytes(await client.read_gatt_char(battery_profile.LEVEL_UUID)))
            except Exception as exc:  # noqa: BLE001 - battery is nice to have
                log.debug("%s: battery read failed: %s", self.device.alias, exc)
        if pct is not None:
            self.stats.battery_pct = pct

    async def _disconnect(self, client: BleakClient) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), DISCONNECT_TIMEOUT_S)

    # ---- status ---------------------------------------------------------------------------

    def _set_state(self, state: SessionState) -> None:
        if state is self.state:
            return
        self.state = state
        self._emit_status()

    def _emit_status(self) -> None:
        s = self.stats
        now = self._clock.monotonic()
        elapsed = now - self._window_start
        rate = self._window_count / elapsed if elapsed > 0 else 0.0
        self._window_start, self._window_count = now, 0
        connected = self.state is SessionState.CONNECTED
        fields: dict[str, FieldValue] = {
            "state": self.state.value,
            "connected": connected,
            "reconnects": s.reconnects,
            "notify_rate": float(rate if connected else 0.0),
        }
        if s.battery_pct is not None:
            fields["battery_pct"] = s.battery_pct
        if s.rssi_dbm is not None:
            fields["rssi_dbm"] = s.rssi_dbm
        if s.model:
            fields["model"] = s.model
        if s.firmware:
            fields["firmware"] = s.firmware
        if self.via and self._proxies is not None:
            fields["via"] = self.via
        ts = max(self._clock.time_ns(), self._last_status_ns + 1)
        self._last_status_ns = ts
        self._buffer.add([Point(DEVICE_STATUS.name, self.status_tags, fields, ts)])
        if self._on_status is not None:
            self._on_status(self.device, DeviceStatus(
                state=self.state.value, connected=connected, last_seen_ns=ts if connected else 0,
                battery_pct=s.battery_pct, rssi_dbm=s.rssi_dbm, reconnects=s.reconnects))
