"""Compute nights from InfluxDB, incrementally, and write ``sleep_stage`` + ``night`` points.

Incremental and idempotent: each night's inputs are summarised as a fingerprint (per 30-min
bucket the count and sum of RR, heart-rate, motion and device-stage values in the night window,
the night's tags, the evening's doses, the person's settings and :data:`ALGO_VERSION`), kept in
``<state_dir>/nights.sqlite``. A night is recomputed only when its fingerprint changed (or with
``recompute``). Points are stamped deterministically (stages on the window's 30-s grid, the night
at 12:00 UTC of the evening), so writing a night again overwrites it; stage epochs that fell out of
the night and a night point whose tags changed are deleted.

This module orchestrates; the state file is :mod:`collector.nights.state`, the InfluxQL reads are
:mod:`collector.nights.inputs`, the computation is :mod:`collector.nights.compute` (pure) and
``magsleep nights`` reads :mod:`collector.nights.listing`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from collector.effects.tagging import Dose, NightKey, night_time_ns, tag_nights
from collector.errors import AnalysisError, StorageError
from collector.nights.compute import (
    EPOCH_NS,
    DoseInfo,
    NightInputs,
    NightOptions,
    NightResult,
    closes_at,
    compute_night,
    night_point,
    one_blas_thread,
    stage_points,
    stage_tags,
)
from collector.nights.gru_classifier import load_classifier
from collector.nights.inputs import first_data_ns, read_buckets, read_doses, read_inputs_many, read_night_tags
from collector.nights.segment import NS, NightWindow, night_window
from collector.nights.stages import EPOCH_S
from collector.nights.staging import Subject
from collector.nights.state import NightState, StateRow, state_path
from collector.nights.wake import rule_from_settings
from collector.settings import NightsSettings, PersonSettings, Settings
from collector.storage.lineprotocol import Point
from collector.storage.pipeline import Pipeline
from collector.storage.reader import InfluxReader, Row
from collector.storage.schema import NIGHT, SLEEP_STAGE

__all__ = [
    "ALGO_VERSION",
    "MIN_NIGHTS_FOR_WORKERS",
    "RECHECK_DAYS",
    "RunSummary",
    "compute_all",
    "compute_person",
    "dose_info",
    "night_options",
]

#: Bump when the computation changes so that every night is recomputed once.
ALGO_VERSION = 3
#: Without --since, an incremental run re-checks this many days before the newest computed night
#: (late uploads from a tracker, tags added the next day); older changes need --since.
RECHECK_DAYS = 14
_DOSE_LOOKBACK_NS = 24 * 3600 * NS
#: Worker processes start only for at least this many nights (a worker's start-up, ~1 s of CPU,
#: is more than computing a night, ~0.3 s).
MIN_NIGHTS_FOR_WORKERS = 4
#: Nights read together (one range query per measurement) and written together: at most this many,
#: from at most this many days, holding at most CHUNK_POINTS points by the change detector's counts
#: (a chest strap's night is ~30,000 beats: 5 nights a chunk; a band's minute samples: 64).
CHUNK_NIGHTS = 64
CHUNK_POINTS = 150_000


# --------------------------------------------------------------------------------------------
# Dose hook (effects area)
# --------------------------------------------------------------------------------------------


def dose_info(res: NightResult, doses: Sequence[Dose], tag_names: Iterable[str],
              settings: Settings, person: PersonSettings) -> DoseInfo:
    """The night's dose status via the effects area's rule (collector.effects.tagging.tag_nights).

    This is the one hook between nights and doses: washout / off-window nights are neither arm and
    are written as ``unknown``; the effects analysis re-derives status from doses itself.
    """
    key = NightKey(date.fromisoformat(res.night), res.lights_out_ns, res.lights_on_ns)
    nd = tag_nights([key], doses, {key.night: list(tag_names)}, window_h=settings.analysis.dose_window_h,
                    tz=ZoneInfo(person.timezone))[0]
    if nd.status == "magnesium":
        return DoseInfo("magnesium", nd.elemental_mg, nd.form)
    if nd.status == "control":
        return DoseInfo("control")
    return DoseInfo()


# --------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------


_Deletion = tuple[str, dict[str, str], int]  # measurement, tags, time


@dataclass(frozen=True, slots=True)
class _Todo:
    win: NightWindow
    fp: str
    tag_rows: list[Row]
    points: int  # to be read: RR (else heart-rate samples), motion and device stages


def _points(buckets: Iterable[tuple[Any, ...]]) -> int:
    """The points a night's read returns, from its 30-min buckets' counts (rr, hr, motion, stages)."""
    rr, hr, mo, st = (sum(int(b[k] or 0) for b in buckets) for k in (0, 2, 4, 6))
    return (rr or hr) + mo + st


def _chunks(todo: Sequence[_Todo]) -> list[list[_Todo]]:
    """``todo`` (in night order) in runs of at most CHUNK_NIGHTS nights spanning at most CHUNK_NIGHTS days
    and holding at most CHUNK_POINTS points (or one night)."""
    out: list[list[_Todo]] = []
    held = 0
    for item in todo:
        if (out and len(out[-1]) < CHUNK_NIGHTS and (item.win.night - out[-1][0].win.night).days < CHUNK_NIGHTS
                and held + item.points <= CHUNK_POINTS):
            out[-1].append(item)
            held += item.points
        else:
            out.append([item])
            held = item.points
    return out


def _stages_from_rr(inp: NightInputs) -> bool:
    """The night will be staged from its RR by the classifier (no device stages in the window)."""
    return bool(inp.rr_time_ns.size) and not bool(np.any(inp.stage_code >= 0))


@dataclass
class RunSummary:
    person: str
    considered: int = 0
    computed: int = 0
    unchanged: int = 0
    empty: int = 0
    flagged: int = 0
    provisional: int = 0  # computed while the window is open (closed early)
    pending: int = 0  # open windows not closed yet (asleep, or no sleep yet)
    nights: list[str] = field(default_factory=list)
    seconds: float = 0.0
    parallel: bool = False  # computed in worker processes (else in this process)


def _fingerprint(parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def night_options(n: NightsSettings) -> NightOptions:
    """The staging options the ``[nights]`` settings describe (production and ``magsleep validate`` alike)."""
    return NightOptions(classifier=n.classifier,
                        wake_classifier=None if n.wake_classifier == "none" else n.wake_classifier,
                        motion_staging=n.motion_staging,
                        min_coverage_pct=n.min_coverage_pct,
                        rule=rule_from_settings(n))


def _options(settings: Settings) -> NightOptions:
    return night_options(settings.nights)


def _compute(inp: NightInputs, subject: Subject, tz: str, opts: NightOptions) -> NightResult | None:
    res = compute_night(inp, subject, ZoneInfo(tz), opts)
    if res is None:
        return None
    # beats are not needed past this point; keep what crosses process boundaries small
    return dataclasses.replace(res, beats=None)


def _worker_init(classifiers: tuple[str, ...]) -> None:
    """A compute process: one BLAS thread, the classifiers loaded once, everything loaded so far
    moved out of the garbage collector's way (it would re-scan SciPy's objects every full pass)."""
    one_blas_thread()
    for name in classifiers:
        load_classifier(name)
    gc.collect()
    gc.freeze()


def _today(now_ns: int | None) -> datetime:
    return datetime.fromtimestamp((now_ns if now_ns is not None else time.time_ns()) / NS, UTC)


async def compute_person(
    settings: Settings,
    person: PersonSettings,
    reader: InfluxReader,
    pipe: Pipeline,
    state: NightState,
    *,
    since: date | None = None,
    until: date | None = None,
    recompute: bool = False,
    now_ns: int | None = None,
    executor: Executor | Callable[[int], Executor | None] | None = None,
) -> RunSummary:
    """Compute the new or changed nights of one person: windows that have ended by ``now_ns``, and the
    open window once it has closed (:func:`~collector.nights.compute.closes_at`), written as provisional.

    ``executor`` runs the nights staged from RR (None: a thread of this process); a callable is asked
    for one, with the number of nights left, at the first such night, so that worker processes start
    only when worth it. Nights are read, computed and written in chunks (:data:`CHUNK_NIGHTS`): the
    same nights and points as one by one, with a few queries and one state commit per chunk.
    """
    t_start = time.perf_counter()
    summary = RunSummary(person.name)
    now = _today(now_ns)
    now_i = int(now.timestamp() * NS)
    known = state.get(person.name)
    if since is None:
        if known and not recompute:
            # incremental default: look back RECHECK_DAYS from the newest computed night (without
            # asking InfluxDB for the first point: with years of data that opens every shard, ~2 s)
            since = max(date.fromisoformat(k) for k in known) - timedelta(days=RECHECK_DAYS)
        else:
            first = await first_data_ns(reader, person.name)
            if first is None:
                return summary
            since = datetime.fromtimestamp(first / NS, ZoneInfo(person.timezone)).date() - timedelta(days=1)
    last = until or now.astimezone(ZoneInfo(person.timezone)).date()
    close_after_ns = round(settings.nights.close_after_min * 60 * NS)
    nights: list[NightWindow] = []
    open_nights: set[date] = set()
    d = since
    while d <= last:
        win = night_window(d, person)
        if win.end_ns <= now_i:
            nights.append(win)
        elif win.start_ns < now_i:
            # still open: what has arrived so far, in whole epochs of the window's grid; it is written
            # (provisional) once it has closed (closes_at)
            end = win.start_ns + (now_i - win.start_ns) // EPOCH_NS * EPOCH_NS
            if end > win.start_ns:
                nights.append(NightWindow(win.night, win.start_ns, end))
                open_nights.add(win.night)
        d += timedelta(days=1)
    if not nights:
        return summary
    span_lo, span_hi = nights[0].start_ns, nights[-1].end_ns
    buckets, tag_rows, dose_rows = await asyncio.gather(
        read_buckets(reader, person.name, span_lo, span_hi),
        read_night_tags(reader, person.name, span_lo - _DOSE_LOOKBACK_NS),
        read_doses(reader, person.name, span_lo - _DOSE_LOOKBACK_NS, span_hi))
    dose_rows.sort(key=lambda x: int(x["time"]))  # (InfluxDB sends them in time order)
    dose_times = np.array([int(x["time"]) for x in dose_rows], dtype=np.int64)
    doses = [Dose(int(x["time"]), float(x.get("elemental_mg") or 0.0), str(x.get("form") or ""),
                  str(x.get("supplement") or "magnesium")) for x in dose_rows]
    real_doses = [d for d, x in zip(doses, dose_rows, strict=True) if x.get("source") != "sim"]
    tags_by_night: dict[str, list[Row]] = {}
    for row in tag_rows:
        if row.get("night"):
            tags_by_night.setdefault(str(row["night"]), []).append(row)
    settings_part = [person.model_dump(mode="json"), settings.nights.model_dump(mode="json"),
                     list(settings.analysis.dose_window_h), ALGO_VERSION]
    bucket_times = np.array(sorted(buckets), dtype=np.int64)
    subject = Subject(person.age, person.sex)
    opts = _options(settings)
    loop = asyncio.get_running_loop()

    todo: list[_Todo] = []
    emptied: list[tuple[str, StateRow]] = []
    for win in nights:
        key = win.night.isoformat()
        is_open = win.night in open_nights
        summary.considered += 1
        lo_i, hi_i = np.searchsorted(bucket_times, [win.start_ns, win.end_ns])
        inp_part = [(int(t), buckets[int(t)]) for t in bucket_times[lo_i:hi_i]]
        ntags = sorted(((str(x.get("tag")), x.get("value"), x.get("at"), int(x["time"]))
                        for x in tags_by_night.get(key, [])), key=str)
        d_lo, d_hi = np.searchsorted(dose_times, [win.start_ns - _DOSE_LOOKBACK_NS, win.end_ns])
        ev = [(int(x["time"]), x.get("elemental_mg"), x.get("form")) for x in dose_rows[d_lo:d_hi]]
        fp = _fingerprint([inp_part, ntags, ev, settings_part, *(["open"] if is_open else [])])
        prev = known.get(key)
        if not inp_part and is_open:
            summary.pending += 1  # nothing yet in tonight's window
            continue
        if not inp_part:
            if prev is not None and prev.night_tags:  # data deleted: remove what was written
                await _remove(pipe, prev, night_time_ns(win.night))
                emptied.append((key, StateRow(fp, 0, 0, "", "")))
            summary.empty += 1
            continue
        if not recompute and prev is not None and prev.fingerprint == fp:
            waiting = is_open and not prev.night_tags  # checked before, not closed then
            if not waiting:
                summary.unchanged += 1
                continue
            if not 0 < prev.ready_at_ns <= now_i:  # no new data, and not yet long enough after sleep
                summary.pending += 1
                continue
        todo.append(_Todo(win, fp, tags_by_night.get(key, []), _points(b for _, b in inp_part)))
    if emptied:
        state.put_many(person.name, emptied)

    def output(item: _Todo, inp: NightInputs, res: NightResult | None,
               points: list[Point]) -> tuple[StateRow, list[_Deletion]]:
        """The night's points (appended to ``points``), its state row and the stale points to delete."""
        key = item.win.night.isoformat()
        prev = known.get(key)
        is_open = item.win.night in open_nights
        stale: list[_Deletion] = []
        if res is None:
            if prev is not None and prev.night_tags:
                stale = _stale(prev, 0, 0, "", "", night_time_ns(item.win.night))
            if is_open:
                summary.pending += 1
            else:
                summary.empty += 1
            return StateRow(item.fp, 0, 0, "", ""), stale
        if is_open and (prev is None or not prev.night_tags):
            closes = closes_at(res, inp, close_after_ns)
            if closes is None or closes > now_i:  # still asleep (or no sleep yet): not a night to show
                summary.pending += 1
                return StateRow(item.fp, 0, 0, "", "", closes or 0), stale
        names = [str(x.get("tag")) for x in item.tag_rows if x.get("value") is not False]
        dose = dose_info(res, doses if inp.sim else real_doses, names, settings, person)
        npoint = night_point(person.name, res, dose, sim=inp.sim, provisional=is_open)
        new_stage_tags = ""
        lo = hi = 0
        if res.hypnogram is not None:
            points.extend(stage_points(person.name, res.hypnogram, sim=inp.sim))
            new_stage_tags = json.dumps(stage_tags(person.name, res.hypnogram, sim=inp.sim), sort_keys=True)
            lo, hi = res.hypnogram.start_ns, res.hypnogram.end_ns
        new_night_tags = json.dumps(dict(npoint.tags), sort_keys=True)
        if prev is not None:
            stale = _stale(prev, lo, hi, new_stage_tags, new_night_tags, npoint.time_ns)
        points.append(npoint)
        summary.computed += 1
        summary.flagged += int(res.flagged)
        summary.provisional += int(is_open)
        summary.nights.append(key)
        return StateRow(item.fp, lo, hi, new_stage_tags, new_night_tags), stale

    here = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nights")  # off the event loop
    pool: Executor | None = executor if isinstance(executor, Executor) else None
    asked = pool is not None or executor is None

    def runner(inp: NightInputs, left: int) -> Executor:
        """Worker processes (if ``executor`` gives any when asked with the nights left) for nights staged
        from their RR (~0.3 s of CPU each); nights staged by their device or without RR take
        milliseconds and are computed here, in one thread."""
        nonlocal pool, asked
        if not _stages_from_rr(inp):
            return here
        if not asked:
            asked = True
            pool = executor(left) if callable(executor) and not isinstance(executor, Executor) else None
        if pool is None:
            return here
        summary.parallel = True
        return pool

    async def finish(chunk: list[_Todo], inputs: list[NightInputs],
                     running: list[asyncio.Future[NightResult | None]]) -> None:
        """Write a chunk's points (to the outbox) and then its state rows."""
        rows: list[tuple[str, StateRow]] = []
        points: list[Point] = []
        for item, inp, fut in zip(chunk, inputs, running, strict=True):
            state_row, stale = output(item, inp, await fut, points)
            for measurement, tags, t in stale:
                await pipe.delete(measurement, tags, t)
            rows.append((item.win.night.isoformat(), state_row))
        await pipe.put(points)  # in the outbox before the state says they were written
        state.put_many(person.name, rows)

    async def read(chunk: list[_Todo]) -> list[NightInputs]:
        return await read_inputs_many(reader, person.name, [(t.win, t.tag_rows) for t in chunk])

    # Chunks of nights, each read with a few range queries; while one chunk computes, the next ones
    # are read and queued, so the workers never wait for a chunk to be read or written.
    in_flight: list[tuple[list[_Todo], list[NightInputs], list[asyncio.Future[NightResult | None]]]] = []
    left = len(todo)
    chunks = _chunks(todo)
    reading: list[asyncio.Future[list[NightInputs]]] = [asyncio.ensure_future(read(c)) for c in chunks[:1]]
    try:
        for k, chunk in enumerate(chunks):
            if k + 1 < len(chunks):  # two reads in flight: InfluxDB uses a core for each
                reading.append(asyncio.ensure_future(read(chunks[k + 1])))
            inputs = await reading.pop(0)
            in_flight.append((chunk, inputs, [
                loop.run_in_executor(runner(inp, left), _compute, inp, subject, person.timezone, opts)
                for inp in inputs]))
            left -= len(chunk)
            if len(in_flight) > 1:
                await finish(*in_flight[0])
                in_flight.pop(0)
        while in_flight:
            await finish(*in_flight[0])
            in_flight.pop(0)
    finally:
        for task in reading:  # after an error: nothing left reading
            task.cancel()
        await asyncio.gather(*reading, return_exceptions=True)
        for _, _, running in in_flight:  # after an error: nothing left computing
            for fut in running:
                fut.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        here.shutdown(wait=False)
    summary.nights.sort()
    summary.seconds = time.perf_counter() - t_start
    return summary


async def _remove(pipe: Pipeline, prev: StateRow, t_night: int) -> None:
    """Delete what was written for a night that has no data any more."""
    for measurement, tags, t in _stale(prev, 0, 0, "", "", t_night):
        await pipe.delete(measurement, tags, t)


def _stale(prev: StateRow, lo: int, hi: int, stage_tags_json: str, night_tags_json: str,
           t_night: int) -> list[_Deletion]:
    """Stage epochs no longer in the night and a night point whose tags changed."""
    out: list[_Deletion] = []
    step = EPOCH_S * NS
    if prev.stage_tags:
        old_tags = json.loads(prev.stage_tags)
        same_series = prev.stage_tags == stage_tags_json
        for t in range(prev.stage_lo_ns, prev.stage_hi_ns, step):
            if not same_series or not (lo <= t < hi):
                out.append((SLEEP_STAGE.name, old_tags, t))
    if prev.night_tags and prev.night_tags != night_tags_json:
        out.append((NIGHT.name, json.loads(prev.night_tags), t_night))
    return out


async def compute_all(
    settings: Settings,
    *,
    person: str | None = None,
    since: date | None = None,
    until: date | None = None,
    recompute: bool = False,
    now_ns: int | None = None,
    workers: int = 1,
) -> list[RunSummary]:
    """``magsleep nights compute``: every configured person (or one), incrementally."""
    persons = [settings.person(person)] if person else list(settings.persons)
    if not persons:
        raise AnalysisError("no persons configured; add a [[persons]] entry with name, age and sex")
    state = NightState(state_path(settings))
    opts = _options(settings)
    classifiers = tuple(c for c in (opts.classifier, opts.wake_classifier) if c)
    pool: ProcessPoolExecutor | None = None

    def executor_for(n_nights: int) -> Executor | None:
        # Starting a worker (imports, classifiers) costs ~1.5 s of CPU: not for a night or two.
        nonlocal pool
        if workers <= 1 or n_nights < MIN_NIGHTS_FOR_WORKERS:
            return None
        if pool is None:
            pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, initargs=(classifiers,))
        return pool

    out: list[RunSummary] = []
    try:
        async with InfluxReader.from_settings(settings) as reader, \
                Pipeline.from_settings(settings, name="nights") as pipe:
            for p in persons:
                out.append(await compute_person(settings, p, reader, pipe, state, since=since, until=until,
                                                recompute=recompute, now_ns=now_ns, executor=executor_for))
            await pipe.flush(timeout=max(60.0, settings.influx.timeout_s * 6))
    except StorageError:
        raise
    finally:
        if pool is not None:
            pool.shutdown()
        state.close()
    return out
