"""``magsleep run``: the collector daemon composed from its parts, in one event loop.

The BLE sessions (:mod:`collector.ble.daemon`) write into the collector's pipeline; beside them,
on the same pipeline, run the dose HTTP API and phone page (:mod:`collector.doses.api`), the Home
Assistant bridge when ``[mqtt]`` is configured (:mod:`collector.mqtt.bridge`) and the nights
schedule (:mod:`collector.app.schedule`). ``run_daemon`` runs until ``stop_event`` is set
(``magsleep run`` sets it on SIGTERM/SIGINT), then stops the sessions, the services and flushes
the pipeline within :data:`collector.ble.daemon.STOP_BUDGET_S` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from collector.ble.daemon import DaemonResult, collecting_pipeline, devices_to_collect, run_sessions, run_wearables
from collector.ble.registry import DeviceRegistry, status_path
from collector.clock import Clock, SystemClock
from collector.errors import ConfigError, LocalInfluxError
from collector.settings import Settings
from collector.storage import local_influx
from collector.storage.sinks import PointSink

log = logging.getLogger(__name__)


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
    """Stream every registered device into the collector's pipeline until stopped, with the services.

    ``serve_api``: also serve the dose HTTP API and phone page (``[api]``), writing through the
    daemon's pipeline. ``compute_nights``: also run ``magsleep [--config config] nights compute``
    every ``[nights] compute_every_min``. With ``[mqtt] host`` the Home Assistant bridge runs too.
    ``magsleep run`` does all. With a ``sink`` only the wearables run (tests, benchmarks)."""
    if sink is not None:
        return await run_wearables(settings, registry, clock=clock, stop_event=stop_event, sink=sink,
                                   status_interval_s=status_interval_s, status_file=status_file)
    devices = devices_to_collect(settings, registry)
    clock = clock or SystemClock()
    stop_event = stop_event or asyncio.Event()
    status_file = status_file or status_path(settings)
    async with collecting_pipeline(settings) as owned, contextlib.AsyncExitStack() as stack:
        pipe = owned.pipeline
        if serve_api:
            from collector.app.persons import Persons
            from collector.doses.api import running_api

            try:
                await stack.enter_async_context(running_api(settings, sink=pipe, persons=Persons(settings)))
            except ConfigError as exc:  # the data matter more than the API: keep collecting
                log.error("not serving the dose API: %s", exc)
        if settings.mqtt.configured:  # Home Assistant over MQTT; a broker away never stops collecting
            from collector.mqtt.bridge import running_bridge

            await stack.enter_async_context(running_bridge(settings, sink=pipe, clock=clock,
                                                           status_file=status_file, devices=devices))
        if compute_nights and settings.nights.compute_every_min > 0:
            from collector.app.schedule import Triggers, compute_periodically

            triggers = Triggers.for_settings(settings, time_ns=clock.time_ns)
            nights = asyncio.create_task(
                compute_periodically(config, settings.nights.compute_every_min * 60, stop_event,
                                     triggers=triggers),
                name="nights-compute")
            stack.push_async_callback(_finish, nights, stop_event)
        return await run_sessions(settings, devices, clock=clock, stop_event=stop_event, sink=pipe,
                                  status_interval_s=status_interval_s, status_file=status_file,
                                  on_stopping=owned.stopping)


async def _finish(task: asyncio.Task[None], stop_event: asyncio.Event) -> None:
    """Let a background task end by itself once ``stop_event`` is set, else cancel it."""
    if not stop_event.is_set():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


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
