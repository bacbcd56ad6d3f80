"""The collector daemon: one supervised :class:`DeviceSession` per registered wearable.

``run_daemon`` runs until ``stop_event`` is set (``magsleep run`` sets it on SIGTERM/SIGINT), then
stops the sessions, forwards what is buffered and flushes the pipeline, all within
``STOP_BUDGET_S`` seconds; points not yet in InfluxDB stay in the durable outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from collector.ble.bluez import BlueZProps
from collector.ble.registry import DeviceRegistry, DeviceStatus, RegisteredDevice, save_status, status_path
from collector.ble.session import STATUS_INTERVAL_S, DeviceSession, PointBuffer, PointSink, SessionStats
from collector.clock import Clock, SystemClock
from collector.errors import ConfigError, DeviceNotFoundError, LocalInfluxError
from collector.settings import Settings
from collector.storage import local_influx
from collector.storage.lock import acquire as acquire_instance_lock
from collector.storage.pipeline import Pipeline

log = logging.getLogger(__name__)

#: Real seconds from the stop request until run_daemon returns: sessions first, the flush gets the rest.
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


async def run_daemon(
    settings: Settings,
    registry: DeviceRegistry,
    *,
    clock: Clock | None = None,
    stop_event: asyncio.Event | None = None,
    sink: PointSink | None = None,
    status_interval_s: float | None = None,
    status_file: Path | None = None,
    serve_api: bool = False,
    compute_nights: bool = False,
    config: Path | None = None,
) -> DaemonResult:
    """Stream every registered device into ``sink`` (default: the storage pipeline) until stopped.

    ``serve_api``: also serve the dose HTTP API and phone page (``[api]``), writing through the
    daemon's pipeline. ``compute_nights``: also run ``magsleep [--config config] nights compute``
    every ``[nights] compute_every_min`` (:mod:`collector.nights.schedule`). ``magsleep run`` does both."""
    if not len(registry):
        raise DeviceNotFoundError("no devices registered; pair one first with "
                                  "'magsleep pair ADDRESS --person NAME' (find it with 'magsleep scan')")
    for d in registry:
        settings.person(d.person)  # unknown person -> ConfigError before anything connects
    clock = clock or SystemClock()
    stop_event = stop_event or asyncio.Event()
    status_file = status_file or status_path(settings)
    if sink is not None:
        return await _run(settings, list(registry), clock, stop_event, sink, status_interval_s, status_file, [])
    # One `magsleep run` per state dir: a second would collect into this outbox and re-send it.
    lock = acquire_instance_lock(settings.storage.state_dir, "run", what="magsleep run")
    try:
        pipe = Pipeline.from_settings(settings, name="ble", wait_for_embedded=True)
        await pipe.start()
    except BaseException:
        lock.release()
        raise
    stopping_at: list[float] = []
    try:
        async with contextlib.AsyncExitStack() as stack:
            if serve_api:
                from collector.doses.api import running_api

                try:
                    await stack.enter_async_context(running_api(settings, sink=pipe))
                except ConfigError as exc:  # the data matter more than the API: keep collecting
                    log.error("not serving the dose API: %s", exc)
            if settings.mqtt.configured:  # Home Assistant over MQTT; a broker away never stops collecting
                from collector.mqtt.bridge import running_bridge

                await stack.enter_async_context(running_bridge(settings, sink=pipe, clock=clock,
                                                               status_file=status_file, devices=list(registry)))
            if compute_nights and settings.nights.compute_every_min > 0:
                from collector.nights.schedule import Triggers, compute_periodically

                triggers = Triggers.for_settings(settings, time_ns=clock.time_ns)
                nights = asyncio.create_task(
                    compute_periodically(config, settings.nights.compute_every_min * 60, stop_event,
                                         triggers=triggers),
                    name="nights-compute")
                stack.push_async_callback(_finish, nights, stop_event)
            return await _run(settings, list(registry), clock, stop_event, pipe, status_interval_s, status_file,
                              stopping_at)
    finally:
        # What does not reach InfluxDB within the budget stays in the outbox for the next start.
        spent = time.monotonic() - stopping_at[0] if stopping_at else 0.0
        try:
            await pipe.stop(flush_timeout=max(0.5, STOP_BUDGET_S - spent))
        finally:
            lock.release()


async def _run(
    settings: Settings,
    devices: list[RegisteredDevice],
    clock: Clock,
    stop_event: asyncio.Event,
    sink: PointSink,
    status_interval_s: float | None,
    status_file: Path,
    stopping_at: list[float],
) -> DaemonResult:
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
        stopping_at.append(time.monotonic())
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


async def _finish(task: asyncio.Task[None], stop_event: asyncio.Event) -> None:
    """Let a background task end by itself once ``stop_event`` is set, else cancel it."""
    if not stop_event.is_set():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


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


async def start_embedded_influx(settings: Settings) -> None:
    """With ``influx.embedded``, start the local InfluxDB unless it runs (after a reboot nothing else does)."""
    try:
        inst = await asyncio.to_thread(local_influx.ensure_running, settings)
    except LocalInfluxError as exc:  # the points wait in the outbox until it runs
        log.error("cannot start the embedded InfluxDB: %s", exc)
        return
    if inst is not None:
        log.info("embedded InfluxDB at %s (pid %d, data in %s)", inst.url, inst.pid, inst.root)


async def main(settings: Settings, config: Path | None = None) -> int:
    """``magsleep run``: stream until SIGTERM/SIGINT, then stop cleanly; returns the exit code.

    ``config``: the settings file, for the ``nights compute`` runs."""
    registry = DeviceRegistry.for_settings(settings)
    await start_embedded_influx(settings)
    stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_event.set)
    try:
        result = await run_daemon(settings, registry, stop_event=stop_event, serve_api=True, compute_nights=True,
                                  config=config)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    log.info("stopped; %d points forwarded", result.points_forwarded)
    return 0
