"""Compute nights from InfluxDB, incrementally, and write ``sleep_stage`` + ``night`` points.

Incremental and idempotent: each night's inputs are summarised as a fingerprint (per 30-min
bucket the count and sum of RR, heart-rate, motion and device-stage values in the night window,
the night's tags, the evening's doses, the person's settings and :data:`ALGO_VERSION`), kept in
``<state_dir>/nights.sqlite``. A night is recomputed only when its fingerprint changed (or with
``recompute``). Points are stamped deterministically (stages on the window's 30-s grid, the night
at 12:00 UTC of the evening), so writing a night again overwrites it; stage epochs that fell out of
the night and a night point whose tags changed are deleted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from collector.effects.tagging import night_time_ns
from collector.errors import AnalysisError, StorageError
from collector.nights.compute import (
    EPOCH_NS,
    STAGING_PREFIX,
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
from collector.nights.model import load_classifier
from collector.nights.schedule import STATE_NAME
from collector.nights.segment import NS, NightWindow, lights_from_tags, night_window
from collector.nights.stages import EPOCH_S
from collector.nights.staging import Subject
from collector.nights.wake import rule_from_settings
from collector.settings import NightsSettings, PersonSettings, Settings
from collector.storage.files import private_file
from collector.storage.lineprotocol import Point
from collector.storage.pipeline import Pipeline
from collector.storage.reader import InfluxReader, Row, gc_paused, quote_str

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

#: Bump when the computation changes so that every night is recomputed once.
ALGO_VERSION = 3
_BUCKET = "30m"
#: Without --since, an incremental run re-checks this many days before the newest computed night
#: (late uploads from a tracker, tags added the next day); older changes need --since.
RECHECK_DAYS = 14
_DOSE_LOOKBACK_NS = 24 * 3600 * NS
#: Worker processes start only for at least this many nights (a worker's start-up, ~1 s of CPU,
#: is more than computing a night, ~0.3 s).
MIN_NIGHTS_FOR_WORKERS = 4


# --------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StateRow:
    fingerprint: str
    stage_lo_ns: int
    stage_hi_ns: int
    stage_tags: str  # JSON of the sleep_stage tags written ("" when none)
    night_tags: str  # JSON of the night point's tags ("" when none)
    #: An open night checked but not ready: when it closes if no more data arrives (0: unknown).
    ready_at_ns: int = 0


class NightState:
    """What was computed per (person, night): a small SQLite table under the state directory."""

    def __init__(self, path: Path) -> None:
        try:
            private_file(path)
            self._db = sqlite3.connect(path)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open the nights state {path}: {exc}; check storage.state_dir exists "
                               "and is writable") from exc
        try:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS nights (person TEXT, night TEXT, fingerprint TEXT, stage_lo INTEGER,"
                " stage_hi INTEGER, stage_tags TEXT, night_tags TEXT, updated REAL, PRIMARY KEY (person, night))"
            )
            cols = {r[1] for r in self._db.execute("PRAGMA table_info(nights)")}
            if "ready_at" not in cols:  # state files of earlier versions
                self._db.execute("ALTER TABLE nights ADD COLUMN ready_at INTEGER NOT NULL DEFAULT 0")
            self._db.commit()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StorageError(
                f"the nights state {path} is damaged ({exc}); it only remembers what was computed: move it "
                "away (or delete it) and run 'magsleep nights compute --recompute' to rebuild it from InfluxDB"
            ) from exc

    def get(self, person: str) -> dict[str, StateRow]:
        cur = self._db.execute(
            "SELECT night, fingerprint, stage_lo, stage_hi, stage_tags, night_tags, ready_at FROM nights"
            " WHERE person = ?", (person,))
        return {r[0]: StateRow(r[1], r[2], r[3], r[4], r[5], int(r[6] or 0)) for r in cur}

    def put(self, person: str, night: str, row: StateRow) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO nights (person, night, fingerprint, stage_lo, stage_hi, stage_tags, night_tags,"
            " updated, ready_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (person, night, row.fingerprint, row.stage_lo_ns, row.stage_hi_ns, row.stage_tags, row.night_tags,
             time.time(), row.ready_at_ns))
        self._db.commit()

    def clear(self, person: str) -> None:
        self._db.execute("DELETE FROM nights WHERE person = ?", (person,))
        self._db.commit()

    def close(self) -> None:
        self._db.close()


def state_path(settings: Settings) -> Path:
    return settings.storage.state_dir.expanduser() / STATE_NAME


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _where(person: str, start_ns: int, end_ns: int) -> str:
    return f"person = {quote_str(person)} AND time >= {start_ns} AND time < {end_ns}"


_NOT_OURS = f"device !~ /^{STAGING_PREFIX}/"


async def _buckets(r: InfluxReader, person: str, start_ns: int, end_ns: int) -> dict[int, tuple[Any, ...]]:
    """Per 30-min bucket: counts and sums of each input measurement (the change detector)."""
    w = _where(person, start_ns, end_ns)
    qs = [
        f"SELECT count(rr_ms), sum(rr_ms) FROM rr WHERE {w} GROUP BY time({_BUCKET}) fill(none)",
        f"SELECT count(bpm), sum(bpm) FROM heart_rate WHERE {w} GROUP BY time({_BUCKET}) fill(none)",
        f"SELECT count(counts), sum(counts) FROM motion WHERE {w} GROUP BY time({_BUCKET}) fill(none)",
        f"SELECT count(stage_code), sum(stage_code) FROM sleep_stage WHERE {w} AND {_NOT_OURS} "
        f"GROUP BY time({_BUCKET}) fill(none)",
    ]
    out: dict[int, list[Any]] = {}
    for k, q in enumerate(qs):
        for row in await r.query(q):
            out.setdefault(int(row["time"]), [None] * 8)[2 * k : 2 * k + 2] = [row.get("count"), row.get("sum")]
    return {t: tuple(v) for t, v in out.items()}


async def _first_data_ns(r: InfluxReader, person: str) -> int | None:
    best: int | None = None
    for q in (f"SELECT first(rr_ms) FROM rr WHERE person = {quote_str(person)}",
              f"SELECT first(bpm) FROM heart_rate WHERE person = {quote_str(person)}",
              f"SELECT first(stage_code) FROM sleep_stage WHERE person = {quote_str(person)} AND {_NOT_OURS}"):
        for row in await r.query(q):
            t = int(row["time"])
            best = t if best is None else min(best, t)
    return best


def _arr(rows: Sequence[Row], key: str, dtype: type) -> Any:
    return np.array([row.get(key) if row.get(key) is not None else np.nan for row in rows], dtype=dtype)


def _main_device(rows: Sequence[Row]) -> list[Row]:
    """Rows of the device that covers the most time (sum of ``epoch_s``; two devices at once would
    interleave): a band's many 60-s rows do not outweigh a watch's few long stage segments."""
    if not rows:
        return []
    counts: dict[str, int] = {}
    for row in rows:
        span = row.get("epoch_s")
        counts[str(row.get("device"))] = counts.get(str(row.get("device")), 0) + (
            int(span) if isinstance(span, int | float) and span > 0 else EPOCH_S)
    best = max(counts, key=lambda k: counts[k])
    return [row for row in rows if str(row.get("device")) == best]


async def _series_columns(r: InfluxReader, q: str, field_name: str) -> tuple[I64, F64, set[str]]:
    """(time, value) of the main device's points, read column-wise (nights hold ~30,000 beats).

    ``q`` groups by ``device, source``, so tags travel once per series instead of once per row
    (a third of the response), and the answer comes as MessagePack (typed, cheap to decode); the
    main device is the one with the most points.
    """
    per_device: dict[str, list[tuple[I64, F64, str]]] = {}
    results = await r.raw(q, binary=True)
    with gc_paused():
        for res in results:
            for series in res["series"]:
                vals = series.get("values") or []
                if not vals:
                    continue
                cols = series["columns"]
                tags = series.get("tags") or {}
                c = list(zip(*vals, strict=True))
                t = np.array(c[cols.index("time")], dtype=np.int64)
                v = np.array(c[cols.index(field_name)], dtype=np.float64)  # None (no value) becomes NaN
                per_device.setdefault(str(tags.get("device", "")), []).append((t, v, str(tags.get("source", ""))))
        del results
    if not per_device:
        return np.zeros(0, np.int64), np.zeros(0), set()
    main = min(per_device, key=lambda d: (-sum(t.size for t, _, _ in per_device[d]), d))  # most points; ties by name
    parts = per_device[main]
    t = np.concatenate([p[0] for p in parts])
    v = np.concatenate([p[1] for p in parts])
    order = np.argsort(t, kind="stable")
    keep = np.isfinite(v)
    sources = {s for tt, vv, s in parts if np.any(np.isfinite(vv))}
    return t[order][keep[order]], v[order][keep[order]], sources


async def read_inputs(r: InfluxReader, person: str, win: NightWindow, tag_rows: Sequence[Row]) -> NightInputs:
    """Raw points of one person in one night window."""
    w = _where(person, win.start_ns, win.end_ns)
    rr_t, rr_v, rr_src = await _series_columns(r, f"SELECT rr_ms FROM rr WHERE {w} GROUP BY device, source", "rr_ms")
    # heart-rate samples only matter for straps/watches that send no RR (RR carries the same and more)
    hr_t, hr_v, hr_src = (np.zeros(0, np.int64), np.zeros(0), set()) if rr_t.size else await _series_columns(
        r, f"SELECT bpm FROM heart_rate WHERE {w} GROUP BY device, source", "bpm")
    # ActiGraph counts; points of older versions (field activity, a milli-g measure) are not counts
    mo = _main_device(await r.query(f"SELECT counts, epoch_s, device FROM motion WHERE {w}"))
    st = _main_device(await r.query(
        f"SELECT stage_code, epoch_s, device, source FROM sleep_stage WHERE {w} AND {_NOT_OURS}"))
    lo_tag, hi_tag = lights_from_tags([dict(x) for x in tag_rows])
    mo = [x for x in mo if x.get("counts") is not None]
    st = [x for x in st if x.get("stage_code") is not None]
    sources = rr_src if rr_t.size else hr_src
    return NightInputs(
        window=win,
        rr_time_ns=rr_t,
        rr_ms=rr_v,
        hr_time_ns=hr_t,
        hr_bpm=hr_v,
        motion_time_ns=np.array([int(x["time"]) for x in mo], dtype=np.int64),
        motion_activity=_arr(mo, "counts", np.float64),
        motion_epoch_s=np.array([int(x.get("epoch_s") or EPOCH_S) for x in mo], dtype=np.int64),
        stage_time_ns=np.array([int(x["time"]) for x in st], dtype=np.int64),
        stage_code=np.array([int(x["stage_code"]) for x in st], dtype=np.int64),
        stage_epoch_s=np.array([int(x.get("epoch_s") or EPOCH_S) for x in st], dtype=np.int64),
        stage_device=str(st[0].get("device")) if st else "",
        lights_out_tag_ns=lo_tag,
        lights_on_tag_ns=hi_tag,
        sim=sources == {"sim"},
    )


# --------------------------------------------------------------------------------------------
# Dose hook (effects area)
# --------------------------------------------------------------------------------------------


def dose_info(res: NightResult, dose_rows: Sequence[Row], tag_names: Iterable[str],
              settings: Settings, person: PersonSettings) -> DoseInfo:
    """The night's dose status via the effects area's rule (collector.effects.tagging.tag_nights).

    This is the one hook between nights and doses: washout / off-window nights are neither arm and
    are written as ``unknown``; the effects analysis re-derives status from doses itself.
    """
    try:
        from collector.effects.tagging import Dose, NightKey, tag_nights
    except ImportError:  # pragma: no cover - the effects area is part of the package
        return DoseInfo()
    doses = [Dose(int(x["time"]), float(x.get("elemental_mg") or 0.0), str(x.get("form") or ""),
                  str(x.get("supplement") or "magnesium")) for x in dose_rows]
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
    concurrency: int = 1,
) -> RunSummary:
    """Compute the new or changed nights of one person: windows that have ended by ``now_ns``, and the
    open window once it has closed (:func:`~collector.nights.compute.closes_at`), written as provisional.

    ``executor`` runs the computations (None: a thread of this process); a callable is asked for
    one with the number of nights to compute, so that worker processes start only when worth it.
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
            first = await _first_data_ns(reader, person.name)
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
    buckets = await _buckets(reader, person.name, span_lo, span_hi)
    tag_rows = await reader.query(
        f"SELECT * FROM night_tag WHERE person = {quote_str(person.name)} AND time >= {span_lo - _DOSE_LOOKBACK_NS}")
    dose_rows = await reader.query(
        f"SELECT elemental_mg, form, supplement, source FROM supplement_dose WHERE "
        f"{_where(person.name, span_lo - _DOSE_LOOKBACK_NS, span_hi)}")
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

    todo: list[tuple[NightWindow, str, list[Row]]] = []
    for win in nights:
        key = win.night.isoformat()
        is_open = win.night in open_nights
        summary.considered += 1
        lo_i, hi_i = np.searchsorted(bucket_times, [win.start_ns, win.end_ns])
        inp_part = [(int(t), buckets[int(t)]) for t in bucket_times[lo_i:hi_i]]
        ntags = sorted(((str(x.get("tag")), x.get("value"), x.get("at"), int(x["time"]))
                        for x in tags_by_night.get(key, [])), key=str)
        ev = [(int(x["time"]), x.get("elemental_mg"), x.get("form")) for x in dose_rows
              if win.start_ns - _DOSE_LOOKBACK_NS <= int(x["time"]) < win.end_ns]
        fp = _fingerprint([inp_part, ntags, ev, settings_part, *(["open"] if is_open else [])])
        prev = known.get(key)
        if not inp_part and is_open:
            summary.pending += 1  # nothing yet in tonight's window
            continue
        if not inp_part:
            if prev is not None and prev.night_tags:  # data deleted: remove what was written
                await _remove(pipe, prev, person.name, night_time_ns(win.night))
                state.put(person.name, key, StateRow(fp, 0, 0, "", ""))
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
        todo.append((win, fp, tags_by_night.get(key, [])))

    if callable(executor) and not isinstance(executor, Executor):
        executor = executor(len(todo))
    summary.parallel = executor is not None

    async def run_one(win: NightWindow, fp: str, ntag_rows: list[Row]) -> None:
        key = win.night.isoformat()
        inp = await read_inputs(reader, person.name, win, ntag_rows)
        res = await loop.run_in_executor(executor, _compute, inp, subject, person.timezone, opts)
        prev = known.get(key)
        is_open = win.night in open_nights
        if res is None:
            if prev is not None and prev.night_tags:
                await _remove(pipe, prev, person.name, night_time_ns(win.night))
            state.put(person.name, key, StateRow(fp, 0, 0, "", ""))
            if is_open:
                summary.pending += 1
            else:
                summary.empty += 1
            return
        if is_open and (prev is None or not prev.night_tags):
            closes = closes_at(res, inp, close_after_ns)
            if closes is None or closes > now_i:  # still asleep (or no sleep yet): not a night to show
                state.put(person.name, key, StateRow(fp, 0, 0, "", "", closes or 0))
                summary.pending += 1
                return
        names = [str(x.get("tag")) for x in ntag_rows if x.get("value") is not False]
        dose = dose_info(res, [x for x in dose_rows if x.get("source") != "sim" or inp.sim], names, settings,
                         person)
        npoint = night_point(person.name, res, dose, sim=inp.sim, provisional=is_open)
        points: list[Point] = []
        new_stage_tags = ""
        lo = hi = 0
        if res.hypnogram is not None:
            points.extend(stage_points(person.name, res.hypnogram, sim=inp.sim))
            new_stage_tags = json.dumps(stage_tags(person.name, res.hypnogram, sim=inp.sim), sort_keys=True)
            lo, hi = res.hypnogram.start_ns, res.hypnogram.end_ns
        new_night_tags = json.dumps(dict(npoint.tags), sort_keys=True)
        if prev is not None:
            await _delete_stale(pipe, prev, lo, hi, new_stage_tags, new_night_tags, npoint.time_ns)
        points.append(npoint)
        await pipe.put(points)
        state.put(person.name, key, StateRow(fp, lo, hi, new_stage_tags, new_night_tags))
        summary.computed += 1
        summary.flagged += int(res.flagged)
        summary.provisional += int(is_open)
        summary.nights.append(key)

    # Read the next night while the current one computes (bounded to keep memory flat).
    sem = asyncio.Semaphore(max(1, concurrency) + (1 if executor is not None else 0))

    async def guarded(item: tuple[NightWindow, str, list[Row]]) -> None:
        async with sem:
            await run_one(*item)

    await asyncio.gather(*(guarded(item) for item in todo))
    summary.nights.sort()
    summary.seconds = time.perf_counter() - t_start
    return summary


async def _remove(pipe: Pipeline, prev: StateRow, person: str, t_night: int) -> None:
    await _delete_stale(pipe, prev, 0, 0, "", "", t_night)


async def _delete_stale(pipe: Pipeline, prev: StateRow, lo: int, hi: int, stage_tags_json: str,
                        night_tags_json: str, t_night: int) -> None:
    """Delete stage epochs no longer in the night and a night point whose tags changed."""
    step = EPOCH_S * NS
    if prev.stage_tags:
        old_tags = json.loads(prev.stage_tags)
        same_series = prev.stage_tags == stage_tags_json
        for t in range(prev.stage_lo_ns, prev.stage_hi_ns, step):
            if not same_series or not (lo <= t < hi):
                await pipe.delete("sleep_stage", old_tags, t)
    if prev.night_tags and prev.night_tags != night_tags_json:
        await pipe.delete("night", json.loads(prev.night_tags), t_night)


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
                                                recompute=recompute, now_ns=now_ns, executor=executor_for,
                                                concurrency=workers))
            await pipe.flush(timeout=max(60.0, settings.influx.timeout_s * 6))
    except StorageError:
        raise
    finally:
        if pool is not None:
            pool.shutdown()
        state.close()
    return out


# --------------------------------------------------------------------------------------------
# Listing
# --------------------------------------------------------------------------------------------

NIGHT_COLUMNS = ("night", "person", "dose", "staging", "lights_out", "lights_on", "lights_source", "tib_min",
                 "sol_min", "lps_min", "tst_min", "waso_min", "se_pct", "awakenings", "wake_min", "light_min",
                 "deep_min", "rem_min", "nrem_min", "deep_pct", "rem_pct", "hr_mean_bpm", "hr_min5_bpm",
                 "rmssd_ms", "ln_rmssd", "coverage_pct", "flagged", "provisional", "elemental_mg", "form", "source")


async def list_nights(settings: Settings, *, person: str | None = None, since: date | None = None) -> list[Row]:
    """Stored night rows (newest last), one per person and night."""
    conds = []
    if person:
        settings.person(person)
        conds.append(f"person = {quote_str(person)}")
    if since:
        conds.append(f"time >= {night_time_ns(since)}")
    where = (" WHERE " + " AND ".join(conds)) if conds else ""
    async with InfluxReader.from_settings(settings) as r:
        rows = await r.query(f"SELECT * FROM night{where} GROUP BY person, dose, staging, source")
    rows.sort(key=lambda x: (str(x.get("night")), str(x.get("person"))))
    return rows
