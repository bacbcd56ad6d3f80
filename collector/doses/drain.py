"""The drain: the dose journal's queued InfluxDB operations handed to the storage pipeline.

The journal keeps every change's operations (a transactional outbox); :class:`JournalDrain`
hands them over in order and acknowledges them only once the sink holds them (a durable sink:
after ``put``; otherwise after a successful ``flush``). One process at a time drains a journal
(a lock file beside it). After the sink refused, rounds wait out a backoff; a long-lived service
also drains periodically, which picks up what a CLI command could not deliver.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import math
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

from collector.doses.journal import DoseJournal
from collector.errors import MagsleepError
from collector.storage.pipeline import Backlog, Progress, backoff_delay
from collector.storage.sinks import PointStore

log = logging.getLogger(__name__)
T = TypeVar("T")

#: A backlog (journal operations or outbox rows) that has not moved for this long makes
#: ``/healthz`` answer "degraded": longer than a few retries at the longest backoff.
STALL_AFTER_S = 300.0


#: What the doses hand their operations to (puts, deletes, a flush): the storage pipeline.
PointSink = PointStore


@runtime_checkable
class BacklogSink(Protocol):
    """A sink that can tell what still waits for InfluxDB (the pipeline's outbox)."""

    def backlog(self) -> Backlog: ...


class Runner(Protocol):
    """Runs a journal call on the service's one worker thread."""

    async def __call__(self, fn: Callable[[], T]) -> T: ...


class JournalDrain:
    """Hands the journal's queued operations to ``sink``, in order, with backoff after a refusal."""

    def __init__(
        self,
        sink: PointSink | None,
        *,
        journal: Callable[[], DoseJournal | None],
        run: Runner,
        lock_path: Path,
        durable_sink: bool = True,
        flush_timeout_s: float = 5.0,
        interval_s: float = 0.0,
        max_backoff_s: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = sink
        self.durable_sink = durable_sink
        self.flush_timeout_s = flush_timeout_s
        self.interval_s = interval_s
        self.max_backoff_s = max_backoff_s
        self._journal = journal
        self._run = run
        self._lock_path = lock_path
        self._monotonic = monotonic
        self._ticker: asyncio.Task[None] | None = None
        self._rescheduled = asyncio.Event()
        self._lock = asyncio.Lock()
        self.failures = 0  # hand-offs refused in a row
        self._retry_at = 0.0  # monotonic time before which no hand-off is tried
        self.progress = Progress(monotonic)

    def start_periodic(self) -> None:
        """With ``interval_s`` > 0 and a sink, also drain every ``interval_s`` (long-lived services)."""
        if self.interval_s > 0 and self.sink is not None and self._ticker is None:
            self._ticker = asyncio.create_task(self._tick(), name="dose-journal-drain")

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None

    async def _tick(self) -> None:
        while True:
            delay = self.interval_s
            wait = self._retry_at - self._monotonic()
            if 0 < wait < delay:
                delay = wait  # the retry after a refusal is due before the next round
            self._rescheduled.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rescheduled.wait(), delay)
            if self._monotonic() < self._retry_at:
                continue
            try:
                await self.drain(wait_s=0.0)
            except MagsleepError as exc:  # keep ticking; the journal keeps the operations
                log.warning("dose journal: periodic hand-off failed: %s", exc)

    async def drain(self, *, wait_s: float = 1.0) -> int:
        """Hand queued journal operations to the sink, in order; returns how many.

        One process at a time (a lock file beside the journal): another process busy with the
        same queue means this one skips the round (after waiting up to ``wait_s``). After the
        sink refused (InfluxDB down for a CLI command, a full outbox for a service) rounds are
        skipped until the backoff ends; a short-lived command does not try again.
        """
        journal = self._journal()
        if self.sink is None or journal is None or self._monotonic() < self._retry_at:
            return 0
        async with self._lock:
            deadline = asyncio.get_running_loop().time() + wait_s
            while (fd := await self._run(self._try_lock)) is None:
                if asyncio.get_running_loop().time() >= deadline:
                    log.debug("dose journal: another process is handing it over; skipping")
                    return 0
                await asyncio.sleep(0.05)
            try:
                return await self._drain_locked(journal, self.sink)
            finally:
                await self._run(partial(_unlock, fd))

    def _try_lock(self) -> int | None:
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    async def _drain_locked(self, journal: DoseJournal, sink: PointSink) -> int:
        done = 0
        while True:
            ops = await self._run(partial(journal.pending, 500))
            self.progress.observe(len(ops))
            if not ops:
                self._recovered()
                return done
            last, sent = 0, 0
            try:
                for op in ops:
                    p = op.point
                    if op.kind == "put":
                        await sink.put([p])
                    else:
                        await sink.delete(p.measurement, p.tags, p.time_ns)
                    last, sent = op.seq, sent + 1
                if not self.durable_sink:
                    await sink.flush(timeout=self.flush_timeout_s)
            except MagsleepError as exc:
                progressed = bool(last) and self.durable_sink
                if progressed:  # what the durable sink took is acknowledged
                    await self._run(partial(journal.ack, last))
                    self.progress.moved()
                    done += sent
                self._refused(exc, progressed=progressed)
                return done
            await self._run(partial(journal.ack, last))
            self.progress.moved()
            done += len(ops)

    def _refused(self, exc: MagsleepError, *, progressed: bool) -> None:
        """The sink refused an operation: back off before the next round (retried by the
        periodic hand-off), or, for a short-lived command, do not wait on it again."""
        if not self.durable_sink:
            log.debug("dose journal: %s; the doses stay queued in the journal", exc)
            self._retry_at = math.inf
            return
        self.failures = 1 if progressed else self.failures + 1
        delay = backoff_delay(self.failures, self.max_backoff_s)
        self._retry_at = self._monotonic() + delay
        self._rescheduled.set()
        log.log(logging.WARNING if self.failures == 1 else logging.DEBUG,
                "dose journal: %s; the rest stays queued in the journal and is handed over "
                "again in %.1f s", str(exc).rstrip("."), delay)

    def _recovered(self) -> None:
        if self.failures:
            log.info("dose journal: the outbox takes operations again (after %d refusal(s))",
                     self.failures)
        self.failures = 0
        self._retry_at = 0.0


def _unlock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


__all__ = ["STALL_AFTER_S", "BacklogSink", "JournalDrain", "PointSink"]
