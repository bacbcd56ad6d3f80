"""Nights computed while the daemon runs: ``magsleep nights compute`` every ``[nights] compute_every_min``,
and sooner when a night may just have closed.

``magsleep run`` starts :func:`compute_periodically`, so a night appears (in ``magsleep nights``,
the dashboards and the effects) soon after the person got up, without anyone running a command.
Besides the regular runs, :class:`Triggers` starts one within :data:`POLL_S` of the moment an open
night closes: the previous run stored when that is if no more data arrives (``ready_at`` in the
nights state, :mod:`collector.nights.state`), and a new lights-on in the dose journal counts at once.
Each run is a child process: the staging stack (SciPy, sleepecg, ~150 MB) never enters the
collector, a failure there can't stop collection, and the run is incremental (a night or none:
~1-2 s of CPU). A run still going when the daemon stops is terminated; the next start picks it up
(idempotent). It lives in the app layer: it watches the nights state and the dose journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path

from collector.doses.journal import JOURNAL_NAME
from collector.nights.state import STATE_NAME
from collector.settings import Settings

log = logging.getLogger(__name__)

#: How long a run may take before it is stopped (a first run over years of data takes minutes).
RUN_TIMEOUT_S = 3600.0
#: After asking a run to stop, how long to wait before killing it.
TERMINATE_GRACE_S = 5.0
#: How often the daemon looks whether a night may have closed (two small SQLite reads).
POLL_S = 60.0
#: Triggered runs are at least this far apart (a run that keeps failing waits for the regular one).
MIN_GAP_S = 120.0
#: A lights-on is acted on after this long, so that the dose journal has sent it to InfluxDB.
LIGHTS_DELAY_S = 15.0
#: Pending nights whose moment passed longer ago than this are left to the regular runs.
STALE_NS = 24 * 3600 * 1_000_000_000


def _read_one(path: Path, sql: str) -> object:
    """One value from a SQLite file opened read-only (None when it does not exist or cannot be read)."""
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=1.0)
        try:
            row = db.execute(sql).fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        log.debug("cannot read %s: %s", path, exc)
        return None
    return row[0] if row else None


class Triggers:
    """When the next ``nights compute`` is due before the regular one (:meth:`due`)."""

    @classmethod
    def for_settings(cls, settings: Settings, *, time_ns: Callable[[], int] = time.time_ns) -> Triggers:
        return cls(settings.storage.path(STATE_NAME), settings.storage.path(JOURNAL_NAME), time_ns=time_ns)

    def __init__(self, nights_state: Path, journal: Path, *, time_ns: Callable[[], int] = time.time_ns) -> None:
        self._state = nights_state
        self._journal = journal
        self._time_ns = time_ns
        self._lights_seen = self._lights_mark()
        self._lights_due_ns: int | None = None

    def _lights_mark(self) -> object:
        return _read_one(self._journal, "SELECT max(recorded_at) FROM lights WHERE event = 'lights_on'")

    def next_ready_ns(self) -> int | None:
        """The earliest moment a pending open night closes (the nights state's ``ready_at``)."""
        now = self._time_ns()
        v = _read_one(self._state, "SELECT min(ready_at) FROM nights WHERE night_tags = '' AND ready_at > "
                      f"{int(now - STALE_NS)}")
        return int(v) if isinstance(v, int) else None

    def due(self) -> bool:
        """True when a run should start now: a pending night's moment has come, or a new lights-on."""
        now = self._time_ns()
        mark = self._lights_mark()
        if mark is not None and mark != self._lights_seen:
            self._lights_seen = mark
            self._lights_due_ns = now + round(LIGHTS_DELAY_S * 1e9)
        if self._lights_due_ns is not None and self._lights_due_ns <= now:
            self._lights_due_ns = None
            return True
        ready = self.next_ready_ns()
        return ready is not None and ready <= now


def compute_command(config: Path | None) -> list[str]:
    """The child process: this interpreter running ``magsleep [--config F] nights compute``."""
    cmd = [sys.executable, "-m", "collector"]
    if config is not None:
        cmd += ["--config", str(config)]
    return [*cmd, "nights", "compute"]


async def run_once(config: Path | None, stop: asyncio.Event, *, timeout_s: float = RUN_TIMEOUT_S) -> int | None:
    """One ``nights compute`` child; its exit code, or None when it was stopped (daemon stopping)."""
    proc = await asyncio.create_subprocess_exec(*compute_command(config), stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    done = asyncio.ensure_future(proc.communicate())
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({done, stopper}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()  # no orphan computing on after the daemon
        raise
    finally:
        stopper.cancel()
    if not done.done():
        what = "the daemon is stopping" if stop.is_set() else f"it took over {timeout_s:.0f} s"
        log.warning("stopping 'magsleep nights compute' (%s); the next run continues where it stopped", what)
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(asyncio.shield(done), TERMINATE_GRACE_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await done
        return None
    out, err = done.result()
    code = proc.returncode if proc.returncode is not None else -1
    summary = " ".join(out.decode(errors="replace").split())
    if code == 0:
        log.info("nights computed: %s", summary or "nothing to do")
    else:
        tail = " ".join(err.decode(errors="replace").split())[-400:]
        log.warning("'magsleep nights compute' failed (exit %d): %s", code, tail or summary)
    return code


async def compute_periodically(config: Path | None, every_s: float, stop: asyncio.Event, *,
                               triggers: Triggers | None = None, poll_s: float = POLL_S,
                               min_gap_s: float = MIN_GAP_S) -> None:
    """Run :func:`run_once` now, then every ``every_s`` seconds, and sooner when ``triggers`` say a night
    may have closed (at most every ``min_gap_s``; after a failed run only the regular schedule)."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        started = loop.time()
        code: int | None = None
        try:
            code = await run_once(config, stop)
        except OSError as exc:  # the interpreter vanished (an upgrade in progress): try again later
            log.warning("cannot start 'magsleep nights compute': %s", exc)
        regular = started + every_s
        while not stop.is_set():
            now = loop.time()
            if now >= regular:
                break
            if triggers is not None and code == 0 and now >= started + min_gap_s and triggers.due():
                log.info("a night may have closed: computing nights now")
                break
            wait = min(regular - now, poll_s if triggers is not None else every_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
