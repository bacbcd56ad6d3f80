"""The path from readings to InfluxDB: encode, commit to the outbox, batch, deliver, sort errors.

``await pipe.put(points)`` returns once the points are committed to the outbox (SQLite, WAL);
a background sender delivers them in order, in batches of ``batch_size`` lines or after
``flush_interval_s`` (counted from the arrival of the oldest entry still waiting, so what queued
behind a delete goes out right after it), and removes them from the outbox only after InfluxDB
accepted them. A delete is a barrier: sent alone, after every earlier write.

Write errors are sorted the way Telegraf does:

- 400/422: the batch is split in halves until the bad lines are isolated; good lines are
  written, bad lines move to the outbox's ``rejected`` table with a clear log line;
- 413: the batch is split in halves and retried;
- 429/503: wait for Retry-After (or the backoff) and retry;
- connection errors, other 5xx and 401/403/404: retry with capped exponential backoff. The first
  failure of a streak logs a WARNING, the rest DEBUG, recovery INFO.

Same series + timestamp is the same point in InfluxDB, so re-sending after a crash or a lost
response never duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from collector.errors import StorageError, WriteError
from collector.settings import Settings
from collector.storage.connection import InfluxTarget, influx_target
from collector.storage.lineprotocol import Point, RowEncoder, encode_points
from collector.storage.lock import InstanceLock
from collector.storage.lock import acquire as acquire_lock
from collector.storage.outbox import DeleteOp, Entry, MemoryOutbox, OutboxStore, SqliteOutbox
from collector.storage.schema import normalize
from collector.storage.writers import Writer, make_writer

log = logging.getLogger(__name__)
T = TypeVar("T")

#: First retry after this many seconds; doubles per attempt.
BACKOFF_BASE_S = 0.5
#: Jitter spreads retries of several processes; a fraction of the delay.
BACKOFF_JITTER = 0.2
#: Outbox fill levels that log a warning once each when crossed.
FILL_WARNINGS = (0.5, 0.8, 0.95)

#: Write requests in flight at once: one is being answered while the next is sent.
MAX_IN_FLIGHT = 2

DROP_STATUSES = frozenset({400, 422})
THROTTLE_STATUSES = frozenset({429, 503})
TOO_LARGE_STATUS = 413


def backoff_delay(attempt: int, cap: float, *, jitter: float = 0.0, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry ``attempt`` (1-based): base * 2^(attempt-1), capped, with jitter."""
    if attempt < 1:
        return 0.0
    delay = min(cap, BACKOFF_BASE_S * (2.0 ** min(attempt - 1, 30)))
    if jitter:
        delay *= 1.0 + (rng or random).uniform(-jitter, jitter)
    return min(cap, max(0.0, delay))


def write_action(status: int) -> str:
    """What to do about a failed write: 'drop', 'split', 'throttle' or 'retry'."""
    if status in DROP_STATUSES:
        return "drop"
    if status == TOO_LARGE_STATUS:
        return "split"
    if status in THROTTLE_STATUSES:
        return "throttle"
    return "retry"


class Progress:
    """How long a backlog has waited without moving (for health checks).

    ``observe(n)`` reports the backlog's size (0 resets), ``moved()`` that some of it went
    out; ``stalled_s`` is the time since the later of the two events "became non-empty" and
    "last moved". Never a false alarm: a backlog counts as waiting only from its first
    observation.
    """

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._waiting_since: float | None = None
        self._moved_at: float | None = None

    def observe(self, waiting: int) -> None:
        if waiting <= 0:
            self._waiting_since = None
        elif self._waiting_since is None:
            self._waiting_since = self._now()

    def moved(self) -> None:
        self._moved_at = self._now()

    def stalled_s(self, waiting: int) -> float:
        """Seconds the backlog of size ``waiting`` has not moved (0 when empty)."""
        self.observe(waiting)
        if self._waiting_since is None:
            return 0.0
        since = max(self._waiting_since, self._moved_at or self._waiting_since)
        return max(0.0, self._now() - since)


@dataclass(frozen=True, slots=True)
class Backlog:
    """What waits in the outbox: rows, lines, and seconds since it last moved (0 when empty)."""

    rows: int
    lines: int
    stalled_s: float


@dataclass
class PipelineStats:
    points_in: int = 0
    lines_written: int = 0
    lines_rejected: int = 0
    deletes: int = 0
    write_errors: int = 0
    batches: int = 0
    errors_by_status: dict[int, int] = field(default_factory=dict)


class _Abort(Exception):
    """A retryable error interrupted isolating bad lines."""

    def __init__(self, err: WriteError) -> None:
        super().__init__(str(err))
        self.err = err


class EmbeddedWriter:
    """The writer to the embedded local InfluxDB, found when a write needs it.

    While it is not running, every call fails like a connection error (``status=0``), so the
    pipeline keeps the points in its outbox and retries; once started (on whatever port) the
    next retry finds it. ``magsleep dose add``, the API and the daemon start either way.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._writer: Writer | None = None

    async def _current(self) -> Writer:
        if self._writer is None:
            try:  # reads the state file and pings: off the event loop
                target: InfluxTarget = await asyncio.to_thread(influx_target, self._settings)
            except StorageError as exc:
                raise WriteError(str(exc), status=0) from None
            self._writer = make_writer(target)
        return self._writer

    async def _forget_on_connection_error(self, exc: WriteError) -> None:
        if exc.status == 0 and self._writer is not None:  # it may come back on another port
            writer, self._writer = self._writer, None
            await writer.close()

    async def write(self, body: bytes) -> None:
        writer = await self._current()
        try:
            await writer.write(body)
        except WriteError as exc:
            await self._forget_on_connection_error(exc)
            raise

    async def delete(self, measurement: str, tags: Mapping[str, str], time_ns: int) -> None:
        writer = await self._current()
        try:
            await writer.delete(measurement, tags, time_ns)
        except WriteError as exc:
            await self._forget_on_connection_error(exc)
            raise

    async def ensure_database(self) -> None:
        writer = await self._current()
        try:
            await writer.ensure_database()
        except WriteError as exc:
            await self._forget_on_connection_error(exc)
            raise

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.close()
            self._writer = None


class Pipeline:
    """Batches points into InfluxDB through a durable outbox."""

    def __init__(
        self,
        writer: Writer,
        *,
        outbox_path: Path | None,
        batch_size: int = 5000,
        flush_interval_s: float = 1.0,
        max_outbox_bytes: int = 1024 * 1024 * 1024,
        max_backoff_s: float = 60.0,
        ensure_database: bool = True,
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._writer = writer
        self._outbox_path = outbox_path
        self._max_bytes = max_outbox_bytes
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_backoff_s = max_backoff_s
        self._ensure_db = ensure_database
        self._rng = rng or random.Random()  # noqa: S311 - jitter only
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="magsleep-outbox")
        self._store: OutboxStore | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._flush_now = False
        self._stopping = False
        self._sender: asyncio.Task[None] | None = None
        # When the oldest entry not yet handed to a delivery arrived (loop time); None: nothing
        # new, or only entries from before the start or put back after a failure (all overdue).
        self._oldest_pending: float | None = None
        self._arrivals: deque[tuple[int, float]] = deque()  # (last seq of an append, loop time)
        self._fill_warned = 0
        self._db_ready = False
        self._failing_since_attempt = 0
        self._progress = Progress(monotonic)
        self._last_error: WriteError | None = None
        self.stats = PipelineStats()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        url: str | None = None,
        name: str = "main",
        wait_for_embedded: bool = False,
        **kwargs: Any,
    ) -> Pipeline:
        """A pipeline to the configured InfluxDB. ``name`` picks the outbox file (one per process role).

        ``wait_for_embedded``: with ``influx.embedded``, start even while the local InfluxDB is
        not running and deliver once it is (dose logging, the API, the daemon); otherwise that
        is an error at once (commands that need an answer now)."""
        st = settings.storage
        outbox = st.path(f"outbox-{name}.sqlite") if st.outbox else None
        opts: dict[str, Any] = {
            "outbox_path": outbox,
            "batch_size": st.batch_size,
            "flush_interval_s": st.flush_interval_s,
            "max_outbox_bytes": st.outbox_max_mb * 1024 * 1024,
            "max_backoff_s": st.max_retry_backoff_s,
        }
        opts.update(kwargs)
        if url is None and settings.influx.embedded and wait_for_embedded:
            # Not running yet is an outage like any other: the outbox keeps the points.
            return cls(EmbeddedWriter(settings), **opts)
        return cls(make_writer(influx_target(settings, url=url)), **opts)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._sender is not None:
            return
        if self._outbox_path is not None:
            path = self._outbox_path
            self._store = await self._run(lambda: SqliteOutbox(path, self._max_bytes))
        else:
            self._store = MemoryOutbox(self._max_bytes)
        rows, lines, _ = self._store.totals()
        if rows:
            log.info("outbox holds %d lines from before; delivering them first", lines)
            self._oldest_pending = asyncio.get_running_loop().time() - self.flush_interval_s
            self._wake.set()
        self._sender = asyncio.create_task(self._send_loop(), name="magsleep-sender")

    async def stop(self, flush_timeout: float | None = 5.0) -> None:
        """Deliver what can be delivered within ``flush_timeout``; the rest stays in the outbox."""
        if self._sender is None:
            return
        with contextlib.suppress(StorageError):
            await self.flush(timeout=flush_timeout)
        self._stopping = True
        self._sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sender
        self._sender = None
        store = self._store
        if store is not None:
            await self._run(store.close)
        await self._writer.close()
        self._executor.shutdown(wait=True)

    async def __aenter__(self) -> Pipeline:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- input -----------------------------------------------------------------------------------

    async def put(self, points: Iterable[Point]) -> None:
        """Accept points; returns once they are committed to the outbox."""
        pts = [normalize(p) for p in points]
        if not pts:
            return
        lines = encode_points(pts)
        self.stats.points_in += len(pts)
        await self.put_lines(lines)

    async def put_rows(self, encoder: RowEncoder, tags: Mapping[str, str], rows: Sequence[tuple[object, ...]]) -> None:
        """Accept rows of one series through a :class:`RowEncoder` (the collector's hot path)."""
        self.stats.points_in += len(rows)
        await self.put_lines(encoder.lines(tags, rows))

    async def put_lines(self, lines: list[str]) -> None:
        """Accept pre-encoded line protocol (ns precision)."""
        if not lines:
            return
        store = self._require_store()
        bs = self.batch_size
        chunks = [("\n".join(lines[i : i + bs]), len(lines[i : i + bs])) for i in range(0, len(lines), bs)]
        last = await self._run(lambda: store.append("w", chunks))
        self._pending_added(last)

    async def delete(self, measurement: str, tags: Mapping[str, str], time_ns: int) -> None:
        """Queue deletion of a point, in order with writes."""
        store = self._require_store()
        op = DeleteOp(measurement, dict(tags), int(time_ns))
        last = await self._run(lambda: store.append("d", [(op.to_json(), 0)]))
        self._pending_added(last)

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until everything accepted so far is in InfluxDB (or moved to rejected)."""
        store = self._require_store()
        if self._sender is None or self._sender.done():
            raise StorageError("the pipeline is not running")

        async def wait() -> None:
            while store.totals()[0] > 0:
                self._flush_now = True
                self._idle.clear()
                self._wake.set()
                await self._idle.wait()
                if self._sender is None or self._sender.done():
                    raise StorageError("the pipeline sender stopped")

        try:
            await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            _, lines, _ = store.totals()
            why = f" ({self._last_error})" if self._last_error is not None else ""
            raise StorageError(
                f"{lines} lines not yet delivered after {timeout:.1f} s{why}; they stay in the "
                "outbox and are sent when InfluxDB is reachable"
            ) from None
        finally:
            self._flush_now = False

    def pending(self) -> tuple[int, int]:
        """(entries, lines) still waiting in the outbox."""
        rows, lines, _ = self._require_store().totals()
        return rows, lines

    def rejected_count(self) -> int:
        return self._require_store().rejected_count()

    def backlog(self) -> Backlog:
        """The outbox's backlog and how long it has not moved (for ``/healthz``)."""
        rows, lines, _ = self._require_store().totals()
        return Backlog(rows, lines, self._progress.stalled_s(rows))

    # -- internals -------------------------------------------------------------------------------

    def _require_store(self) -> OutboxStore:
        if self._store is None:
            raise StorageError("the pipeline is not started; use 'async with Pipeline...' or start()")
        return self._store

    async def _run(self, fn: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def _pending_added(self, last_seq: int) -> None:
        store = self._require_store()
        now = asyncio.get_running_loop().time()
        self._arrivals.append((last_seq, now))
        if self._oldest_pending is None:
            self._oldest_pending = now
        rows, lines, size = store.totals()
        self._progress.observe(rows)
        fill = size / store.max_bytes
        while self._fill_warned < len(FILL_WARNINGS) and fill >= FILL_WARNINGS[self._fill_warned]:
            log.warning(
                "outbox is %.0f%% full (%d lines waiting); is InfluxDB reachable?",
                FILL_WARNINGS[self._fill_warned] * 100,
                lines,
            )
            self._fill_warned += 1
        if lines >= self.batch_size:
            self._wake.set()
        elif not self._wake.is_set():
            self._wake.set()  # the sender computes how long to wait for more

    async def _send_loop(self) -> None:
        """Dispatch batches in order, up to ``MAX_IN_FLIGHT`` writes at once; deletes are barriers."""
        store = self._require_store()
        loop = asyncio.get_running_loop()
        in_flight: set[asyncio.Task[None]] = set()
        cursor = 0  # highest seq handed to a delivery task
        try:
            while True:
                in_flight = {t for t in in_flight if not t.done()}
                rows, lines, _ = store.totals()
                if rows == 0 and not in_flight:
                    cursor = 0
                    self._oldest_pending = None
                    self._arrivals.clear()
                    self._fill_warned = 0
                    self._progress.observe(0)
                    self._idle.set()
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                if len(in_flight) >= MAX_IN_FLIGHT:
                    await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                    continue
                # Nothing new (None): what waits is overdue (from before the start, put back).
                due = -math.inf if self._oldest_pending is None else self._oldest_pending + self.flush_interval_s
                if lines < self.batch_size and not self._flush_now and loop.time() < due and not in_flight:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), due - loop.time())
                    continue
                entries: list[Entry] = await self._run(partial(store.head, self.batch_size, cursor))
                if not entries:
                    if in_flight:
                        await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                    else:
                        cursor = 0  # everything dispatched was settled; rows left are new or re-queued
                    continue
                if entries[0].kind == "d":
                    if in_flight:  # a delete waits for every earlier write
                        await asyncio.wait(in_flight)
                        continue
                    await self._deliver(entries)
                else:
                    task = asyncio.create_task(self._deliver(entries))
                    in_flight.add(task)
                cursor = entries[-1].seq
                # The interval runs from the arrival of the oldest entry still waiting, not from
                # this dispatch: an edit's put behind its delete (a barrier) goes out at once.
                while self._arrivals and self._arrivals[0][0] <= cursor:
                    self._arrivals.popleft()
                self._oldest_pending = self._arrivals[0][1] if self._arrivals else None
        finally:
            for t in in_flight:
                t.cancel()
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)

    async def _deliver(self, entries: list[Entry]) -> None:
        """Deliver ``entries`` (retrying as long as needed) and remove them from the outbox."""
        store = self._require_store()
        seqs = [e.seq for e in entries]
        attempt = 0
        while True:
            try:
                await self._ensure_database()
                if entries[0].kind == "d":
                    op = DeleteOp.from_json(entries[0].body)
                    await self._writer.delete(op.measurement, op.tags, op.time_ns)
                    self.stats.deletes += 1
                    await self._run(partial(store.remove, [entries[0].seq]))
                else:
                    await self._write_entries(entries)
                self._progress.moved()
                self._last_error = None
                self._recovered(attempt)
                return
            except _Abort as abort:
                err = abort.err
            except WriteError as exc:
                err = exc
            attempt += 1
            self._last_error = err
            self.stats.write_errors += 1
            self.stats.errors_by_status[err.status] = self.stats.errors_by_status.get(err.status, 0) + 1
            delay = backoff_delay(attempt, self.max_backoff_s, jitter=BACKOFF_JITTER, rng=self._rng)
            if write_action(err.status) == "throttle" and err.retry_after is not None:
                delay = min(max(err.retry_after, 0.0), max(self.max_backoff_s, err.retry_after))
            if attempt == 1:
                log.warning("write to InfluxDB failed, will retry: %s", err)
            else:
                log.debug("write retry %d failed: %s (next in %.1f s)", attempt, err, delay)
            if entries[0].kind == "w":
                # Isolating bad lines may have delivered or rejected some; retry only the rest.
                entries = await self._run(partial(store.get, seqs))
                if not entries:
                    return
            await asyncio.sleep(delay)

    def _recovered(self, attempts: int) -> None:
        if attempts:
            log.info("InfluxDB writes recovered after %d failed attempts", attempts)

    async def _ensure_database(self) -> None:
        if self._ensure_db and not self._db_ready:
            with contextlib.suppress(WriteError):
                await self._writer.ensure_database()
                self._db_ready = True

    async def _write_entries(self, entries: list[Entry]) -> None:
        store = self._require_store()
        body = "\n".join(e.body for e in entries)
        try:
            await self._writer.write(body.encode())
        except WriteError as exc:
            action = write_action(exc.status)
            if action not in ("drop", "split"):
                raise
            lines = body.split("\n")
            accepted: list[bool] = [False] * len(lines)
            rejected: list[tuple[int, str]] = []
            try:
                await self._isolate(lines, 0, len(lines), accepted, rejected, exc)
            finally:
                await self._settle(entries, lines, accepted, rejected)
            return
        await self._run(lambda: store.remove([e.seq for e in entries]))
        self.stats.lines_written += sum(e.lines for e in entries)
        self.stats.batches += 1

    async def _isolate(
        self,
        lines: list[str],
        lo: int,
        hi: int,
        accepted: list[bool],
        rejected: list[tuple[int, str]],
        first: WriteError | None,
    ) -> None:
        """Write lines[lo:hi], halving on 400/422/413 until bad lines stand alone."""
        err = first
        if err is None:
            try:
                await self._writer.write("\n".join(lines[lo:hi]).encode())
            except WriteError as exc:
                err = exc
            else:
                for i in range(lo, hi):
                    accepted[i] = True
                return
        if write_action(err.status) not in ("drop", "split"):
            raise _Abort(err)
        if hi - lo == 1:
            rejected.append((lo, str(err)))
            return
        mid = (lo + hi) // 2
        await self._isolate(lines, lo, mid, accepted, rejected, None)
        await self._isolate(lines, mid, hi, accepted, rejected, None)

    async def _settle(
        self, entries: list[Entry], lines: list[str], accepted: list[bool], rejected: list[tuple[int, str]]
    ) -> None:
        """Record the outcome of isolating: reject bad lines, keep what is still undelivered."""
        store = self._require_store()
        bad = {i for i, _ in rejected}
        remaining = [ln for i, ln in enumerate(lines) if not accepted[i] and i not in bad]
        for i, msg in rejected:
            measurement = lines[i].split(",", 1)[0].split(" ", 1)[0]
            log.error(
                "InfluxDB rejected a %s line for good (kept in the outbox's rejected table): %s", measurement, msg
            )
        bad_lines = [lines[i] for i, _ in rejected]
        seqs = [e.seq for e in entries]

        def apply() -> None:
            if bad_lines:
                store.reject(bad_lines, "; ".join(sorted({m for _, m in rejected}))[:2000])
            if remaining:
                store.replace(seqs[0], "\n".join(remaining), len(remaining))
                store.remove(seqs[1:])
            else:
                store.remove(seqs)

        await self._run(apply)
        self.stats.lines_rejected += len(bad_lines)
        self.stats.lines_written += sum(accepted)


async def start_locked(settings: Settings, role: str, name: str, *, what: str) -> tuple[InstanceLock, Pipeline]:
    """Take ``role``'s instance lock and start the pipeline ``name`` (``outbox-<name>.sqlite``) under it.

    One process per role and state dir: a second would share, and re-send, the outbox. The lock is
    released if the pipeline does not start; otherwise the caller stops the pipeline, then releases it.
    """
    lock = acquire_lock(settings.storage.state_dir, role, what=what)
    try:
        pipe = Pipeline.from_settings(settings, name=name, wait_for_embedded=True)
        await pipe.start()
    except BaseException:
        lock.release()
        raise
    return lock, pipe
