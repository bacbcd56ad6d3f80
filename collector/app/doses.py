"""The dose service as a short-lived command uses it: the resolver of persons, and a pipeline.

``magsleep dose ...`` and ``magsleep night ...`` open it for one command: the journal is their
outbox (what InfluxDB did not take stays queued there and goes out with the next command,
``magsleep dose sync``, or the running daemon).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from collector.app.persons import Persons
from collector.doses.service import DoseService
from collector.settings import Settings

#: Seconds a command waits for InfluxDB to take its changes before leaving them in the journal.
FLUSH_TIMEOUT_S = 3.0


@asynccontextmanager
async def open_dose_service(
    settings: Settings, *, influx: bool = True, now: Callable[[], datetime] | None = None
) -> AsyncIterator[DoseService]:
    """The dose service with :class:`Persons`, and a short-lived pipeline (memory outbox) when
    ``influx``. ``now``: the clock for validation (default the real one)."""
    kwargs: dict[str, Any] = {"persons": Persons(settings)}
    if now is not None:
        kwargs["now"] = now
    if not influx:
        async with DoseService(settings, **kwargs) as svc:
            yield svc
        return
    from collector.storage.pipeline import Pipeline

    pipe = Pipeline.from_settings(settings, name="cli", outbox_path=None, wait_for_embedded=True)
    await pipe.start()
    try:
        async with DoseService(settings, sink=pipe, durable_sink=False, flush_timeout_s=FLUSH_TIMEOUT_S,
                               **kwargs) as svc:
            yield svc
    finally:
        await pipe.stop(flush_timeout=0.1)


__all__ = ["FLUSH_TIMEOUT_S", "open_dose_service"]
