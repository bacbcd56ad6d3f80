"""Collecting from wearables: one supervised :class:`DeviceSession` per registered device.

``ble/`` knows only wearables and a point sink: :func:`run_sessions` streams every device into a
sink until ``stop_event`` is set; :func:`run_wearables` does that into its own storage pipeline (or a
given sink). The process that also serves the dose API, Home Assistant and the schedules is
composed in :mod:`collector.app.daemon` (``magsleep run``). On a stop the sessions end first and
the flush gets the rest of ``STOP_BUDGET_S`` seconds; points not yet in InfluxDB stay in the
durable outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from collector.ble.bluez import BlueZProps
from collector.ble.registry import DeviceRegistry, DeviceStatus, RegisteredDevice, save_status, status_path
from collector.ble.session import STATUS_INTERVAL_S, DeviceSession, PointBuffer, SessionStats
from collector.clock import Clock, SystemClock
from collector.errors import DeviceNotFoundError
from collector.settings import Settings
from collector.storage.pipeline import Pipeline, start_locked
from collector.storage.sinks import PointSink

log = logging.getLogger(__name__)

#: Real seconds from the stop request until the daemon returns: sessions first, the flush gets the rest.
STOP_BUDGET_S = 4.5
SESSION_STOP_S = 2.0
#: Real seconds before a crashed session is started again.
RESTART_S = 5.0


@dataclass
class DaemonResult:
    """What the daemon did, per device alias (for tests, the demo and benchmarks)."""

    sessions: dict[str, SessionStats] = field(default_factory=dict)
    points_queued: int = 0
    points_forwarded: int = 0


def devices_to_collect(settings: Settings, registry: DeviceRegistry) -> list[RegisteredDevice]:
    """The registered devices; a clear error when there are none or one belongs to an unknown person."""
    if not len(registry):
        raise DeviceNotFoundError("no devices registered; pair one first with "
                                  "'magsleep pair ADDRESS --person NAME' (find it with 'magsleep scan')")
    for d in registry:
        settings.person(d.person)  # unknown person -> ConfigError before anything connects
    return list(registry)


@dataclass
class CollectingPipeline:
    """The collector's own pipeline (``outbox-ble.sqlite``) while :func:`collecting_pipeline` runs."""

    pipeline: Pipeline
    stopping_at: float | None = None

    def stopping(self) -> None:
        """Called when the sessions are told to stop: the flush gets what is left of the budget."""
        if self.stopping_at is None:
            self.stopping_at = time.monotonic()


@contextlib.asynccontextmanager
async def collecting_pipeline(settings: Settings) -> AsyncIterator[CollectingPipeline]:
    """The run lock and the collector's started pipeline; on exit it is flushed within the stop budget.

    One ``magsleep run`` per state dir: a second would collect into this outbox and re-send it."""
    lock, pipe = await start_locked(settings, "run", "ble", what="magsleep run")
    owned = CollectingPipeline(pipe)
    try:
        yield owned
    finally:
        # What does not reach InfluxDB within the budget stays in the outbox for the next start.
        spent = time.monotonic() - owned.stopping_at if owned.stopping_at is not None else 0.0
        try:
            await pipe.stop(flush_timeout=max(0.5, STOP_BUDGET_S - spent))
        finally:
            lock.release()


async def run_wearables(
    settings: Settings,
    registry: DeviceRegistry,
    *,
    clock: Clock | None = None,
    stop_event: asyncio.Event | None = None,
    sink: PointSink | None = None,
    status_interval_s: float | None = None,
    status_file: Path | None = None,
) -> DaemonResult:
    """Stream every registered device into ``sink`` (default: the storage pipeline) until stopped.

    Only the wearables: ``magsleep run`` (:func:`collector.app.daemon.run_daemon`) adds the dose
    API, Home Assistant and the nights schedule."""
    devices = devices_to_collect(settings, registry)
    clock = clock or SystemClock()
    stop_event = stop_event or asyncio.Event()
    status_file = status_file or status_path(settings)
    if sink is not None:
        return await run_sessions(settings, devices, clock=clock, stop_event=stop_event, sink=sink,
                                  status_interval_s=status_interval_s, status_file=status_file)
    async with collecting_pipeline(settings) as owned:
        return await run_sessions(settings, devices, clock=clock, stop_event=stop_event, sink=owned.pipeline,
                                  status_interval_s=status_interval_s, status_file=status_file,
                                  on_stopping=owned.stopping)


async def run_sessions(
    settings: Settings,
    devices: list[RegisteredDevice],
    *,
    clock: Clock,
    stop_event: asyncio.Event,
    sink: PointSink,
    status_interval_s: float | None = None,
    status_file: Path,
    on_stopping: Callable[[], None] | None = None,
) -> DaemonResult:
    """One supervised session per device streaming into ``sink`` until ``stop_event`` is set;
    ``on_stopping`` is called when the sessions are told to stop."""
    buffer = PointBuffer(sink)
    props = BlueZProps()
    statuses: dict[str, DeviceStatus] = {}
    dirty = asyncio.Event()

    def on_status(dev: RegisteredDevice, st: DeviceStatus) -> None:
        prev = statuses.get(dev.address)
        if prev is not None and not st.connected:
            st = DeviceStatus(st.state, False, prev.last_seen_ns, st.battery_pct, st.rssi_dbm, st.reconnects)
        statuses[dev.address] = st
        dirty.set()

    hub = None
    if settings.ble.proxies:  # ESPHome Bluetooth proxies (collector/ble/esphome.py), loaded only when configured
        from collector.ble.esphome import ProxyHub

        hub = ProxyHub(settings.ble.proxies)
    sessions = [DeviceSession(d, buffer=buffer, clock=clock, ble=settings.ble, props=props, on_status=on_status,
                              status_interval_s=status_interval_s or STATUS_INTERVAL_S,
                              state_dir=settings.storage.state_dir.expanduser(), proxies=hub) for d in devices]
    if hub is not None:
        try:
            await hub.start()
        except BaseException:
            await hub.stop()
            raise
    await _warm_up_bleak()
    forwarder = asyncio.create_task(buffer.run(), name="ble-forwarder")
    writer = asyncio.create_task(_write_status(status_file, statuses, dirty), name="ble-status-file")
    tasks = {asyncio.create_task(_supervise(s, stop_event), name=f"ble-session-{s.device.alias}")
             for s in sessions}
    log.info("collecting from %d device(s): %s", len(sessions), ", ".join(s.device.alias for s in sessions))
    try:
        stopper = asyncio.create_task(stop_event.wait())
        await asyncio.wait({stopper, *tasks}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
    finally:
        if on_stopping is not None:
            on_stopping()
        log.info("stopping: disconnecting %d device(s)", len(sessions))
        for s in sessions:
            s.stop()
        _, pending = await asyncio.wait(tasks, timeout=SESSION_STOP_S)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending, timeout=0.5)
        for t in tasks:
            if t.done() and not t.cancelled() and t.exception() is not None:
                log.error("session task failed: %r", t.exception())
        forwarder.cancel()
        writer.cancel()
        for t in (forwarder, writer):
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await buffer.drain()
        with contextlib.suppress(OSError):
            save_status(status_file, statuses)
        props.close()
        if hub is not None:
            await hub.stop()
    return DaemonResult({s.device.alias: s.stats for s in sessions}, buffer.queued, buffer.forwarded)


async def _supervise(session: DeviceSession, stop_event: asyncio.Event) -> None:
    """Run a session; should it ever crash (a bug), log it and start it again."""
    while True:
        try:
            await session.run()
        except Exception:
            log.exception("session of %s crashed; restarting it in %.0f s", session.device.alias, RESTART_S,
                          extra={"device": session.device.alias, "event": "session_crashed"})
        else:
            return
        if stop_event.is_set():
            return
        await asyncio.sleep(RESTART_S)


async def _warm_up_bleak() -> None:
    """Load BlueZ's object tree once before the sessions start.

    bleak-retry-connector's device lookup returns an empty tree while bleak's manager is still
    initialising, so sessions starting together would fall back to a full scan (seconds).
    """
    try:
        from bleak.backends.bluezdbus.manager import get_global_bluez_manager

        await asyncio.wait_for(get_global_bluez_manager(), 10.0)
    except Exception as exc:  # noqa: BLE001 - the sessions report BlueZ problems with advice
        log.debug("BlueZ not available yet: %r", exc)


async def _write_status(path: Path, statuses: dict[str, DeviceStatus], dirty: asyncio.Event) -> None:
    """Save the status file at most once a second while things change."""
    while True:
        await dirty.wait()
        dirty.clear()
        try:
            await asyncio.to_thread(save_status, path, dict(statuses))
        except OSError as exc:
            log.debug("cannot write %s: %s", path, exc)
        await asyncio.sleep(1.0)
