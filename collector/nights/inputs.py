"""The InfluxQL reads of the nights run: a night's raw inputs, its change detector, tags and doses.

Names of measurements, fields and tags come from :mod:`collector.storage.schema`. Stages that
magsleep computed itself (device ``magsleep-*``) are never read back as inputs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from collector.nights.compute import STAGING_PREFIX, NightInputs
from collector.nights.segment import NightWindow, lights_from_tags
from collector.nights.stages import EPOCH_S
from collector.storage.reader import InfluxReader, Row, gc_paused, quote_str
from collector.storage.schema import (
    DEVICE,
    HEART_RATE,
    MOTION,
    NIGHT_TAG,
    PERSON,
    RR,
    SLEEP_STAGE,
    SOURCE_DATA,
    SUPPLEMENT_DOSE,
)

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

_BUCKET = "30m"
# fields and tags read here (a name the schema no longer has fails at import)
_RR_MS = RR.field("rr_ms").name
_BPM = HEART_RATE.field("bpm").name
_COUNTS = MOTION.field("counts").name
_EPOCH_S = MOTION.field("epoch_s").name
_STAGE_CODE = SLEEP_STAGE.field("stage_code").name
_STAGE_EPOCH_S = SLEEP_STAGE.field("epoch_s").name
_ELEMENTAL_MG = SUPPLEMENT_DOSE.field("elemental_mg").name
_DOSE_TAGS = [t.name for t in SUPPLEMENT_DOSE.tags]  # person, supplement, form, source
_DEV, _SRC, _PERSON = DEVICE.name, SOURCE_DATA.name, PERSON.name
_NOT_OURS = f"{_DEV} !~ /^{STAGING_PREFIX}/"


def _where(person: str, start_ns: int, end_ns: int) -> str:
    return f"{_PERSON} = {quote_str(person)} AND time >= {start_ns} AND time < {end_ns}"


async def read_buckets(r: InfluxReader, person: str, start_ns: int, end_ns: int) -> dict[int, tuple[Any, ...]]:
    """Per 30-min bucket: counts and sums of each input measurement (the change detector)."""
    w = _where(person, start_ns, end_ns)
    qs = [
        f"SELECT count({_RR_MS}), sum({_RR_MS}) FROM {RR.quoted} WHERE {w} GROUP BY time({_BUCKET}) fill(none)",
        f"SELECT count({_BPM}), sum({_BPM}) FROM {HEART_RATE.quoted} WHERE {w} GROUP BY time({_BUCKET}) fill(none)",
        f"SELECT count({_COUNTS}), sum({_COUNTS}) FROM {MOTION.quoted} WHERE {w} GROUP BY time({_BUCKET}) fill(none)",
        f"SELECT count({_STAGE_CODE}), sum({_STAGE_CODE}) FROM {SLEEP_STAGE.quoted} WHERE {w} AND {_NOT_OURS} "
        f"GROUP BY time({_BUCKET}) fill(none)",
    ]
    out: dict[int, list[Any]] = {}
    for k, rows in enumerate(await asyncio.gather(*(r.query(q) for q in qs))):  # InfluxDB runs them side by side
        for row in rows:
            out.setdefault(int(row["time"]), [None] * 8)[2 * k : 2 * k + 2] = [row.get("count"), row.get("sum")]
    return {t: tuple(v) for t, v in out.items()}


async def first_data_ns(r: InfluxReader, person: str) -> int | None:
    """The time of the person's first heart or device-stage point (None without any)."""
    best: int | None = None
    p = quote_str(person)
    for q in (f"SELECT first({_RR_MS}) FROM {RR.quoted} WHERE {_PERSON} = {p}",
              f"SELECT first({_BPM}) FROM {HEART_RATE.quoted} WHERE {_PERSON} = {p}",
              f"SELECT first({_STAGE_CODE}) FROM {SLEEP_STAGE.quoted} WHERE {_PERSON} = {p} AND {_NOT_OURS}"):
        for row in await r.query(q):
            t = int(row["time"])
            best = t if best is None else min(best, t)
    return best


async def read_night_tags(r: InfluxReader, person: str, since_ns: int) -> list[Row]:
    """The person's ``night_tag`` rows from ``since_ns`` on."""
    p = quote_str(person)
    return await r.query(f"SELECT * FROM {NIGHT_TAG.quoted} WHERE {_PERSON} = {p} AND time >= {since_ns}")


async def read_doses(r: InfluxReader, person: str, start_ns: int, end_ns: int) -> list[Row]:
    """The person's doses in [start, end): time, elemental_mg, form, supplement, source."""
    cols = ", ".join([_ELEMENTAL_MG, *(t for t in _DOSE_TAGS if t != _PERSON)])
    return await r.query(f"SELECT {cols} FROM {SUPPLEMENT_DOSE.quoted} WHERE {_where(person, start_ns, end_ns)}")


@dataclass(frozen=True, slots=True)
class _Series:
    """One series of a GROUP BY answer, time-ordered: its tags and each selected field as a column."""

    device: str
    source: str
    time: I64
    cols: tuple[F64, ...]  # None (no value) is NaN

    def between(self, lo_ns: int, hi_ns: int) -> _Series:
        a, b = np.searchsorted(self.time, [lo_ns, hi_ns])
        return _Series(self.device, self.source, self.time[a:b], tuple(c[a:b] for c in self.cols))


async def _read_series(r: InfluxReader, measurement: str, fields: Sequence[str], where: str,
                       group: Sequence[str], no_device: str = "") -> list[_Series]:
    """``SELECT fields FROM measurement WHERE where GROUP BY group`` column-wise; ``no_device`` names
    a series without a ``device`` tag.

    Grouped by tags, the tags travel once per series instead of once per row (a third of the
    response), and the answer comes as MessagePack (typed, cheap to decode).
    """
    parts: dict[tuple[str, str], list[tuple[I64, tuple[F64, ...]]]] = {}
    q = f"SELECT {', '.join(fields)} FROM {measurement} WHERE {where} GROUP BY {', '.join(group)}"
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
                fs = tuple(np.array(c[cols.index(f)], dtype=np.float64) for f in fields)
                key = (str(tags.get(_DEV) or no_device), str(tags.get(_SRC, "")))
                parts.setdefault(key, []).append((t, fs))  # a series' chunks come in time order
        del results
    return [_Series(dev, src, np.concatenate([p[0] for p in ps]),
                    tuple(np.concatenate([p[1][k] for p in ps]) for k in range(len(fields))))
            for (dev, src), ps in parts.items()]


def _main_heart(series: Sequence[_Series]) -> tuple[I64, F64, set[str]]:
    """(time, value, sources) of the heart device with the most points (ties by name), NaN dropped."""
    per_device: dict[str, list[_Series]] = {}
    for s in series:
        if s.time.size:
            per_device.setdefault(s.device, []).append(s)
    if not per_device:
        return np.zeros(0, np.int64), np.zeros(0), set()
    main = min(per_device, key=lambda d: (-sum(s.time.size for s in per_device[d]), d))  # most points
    parts = per_device[main]
    t = np.concatenate([p.time for p in parts])
    v = np.concatenate([p.cols[0] for p in parts])
    order = np.argsort(t, kind="stable")
    keep = np.isfinite(v)
    sources = {p.source for p in parts if np.any(np.isfinite(p.cols[0]))}
    return t[order][keep[order]], v[order][keep[order]], sources


def _main_epochs(series: Sequence[_Series]) -> tuple[I64, F64, I64, str]:
    """Time, value and epoch length of the rows with a value of the device that covers the most time
    (sum of ``epoch_s`` where positive, else 30 s, per row; ties go to the device seen first, then by
    name), and that device. Two devices at once would interleave; a band's many 60-s rows do not
    outweigh a watch's few long stage segments. The device is "" when none of its rows has a value."""
    best: tuple[int, int, str] | None = None
    for s in series:
        if not s.time.size:
            continue
        span = s.cols[1]
        covered = int(np.where(np.isfinite(span) & (span > 0), np.trunc(span), EPOCH_S).sum())
        key = (-covered, int(s.time[0]), s.device)
        if best is None or key < best:
            best = key
    if best is None:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64), ""
    s = next(x for x in series if x.device == best[2])
    keep = np.isfinite(s.cols[0])
    span = s.cols[1][keep]
    epoch = np.where(np.isnan(span) | (span == 0), EPOCH_S, np.trunc(np.nan_to_num(span))).astype(np.int64)
    return s.time[keep], s.cols[0][keep], epoch, s.device if keep.any() else ""


def _night_slices(series: Sequence[_Series], win: NightWindow) -> list[_Series]:
    return [s.between(win.start_ns, win.end_ns) for s in series]


async def read_inputs_many(r: InfluxReader, person: str,
                           nights: Sequence[tuple[NightWindow, Sequence[Row]]]) -> list[NightInputs]:
    """Raw points of one person in each night window (with its ``night_tag`` rows), read with one
    query per measurement over the span of the nights and split per night in memory.

    Each night's inputs are exactly those of its window alone: the device with the most heart
    points in that night, the device covering the most time of motion and of stages in that night.
    """
    if not nights:
        return []
    wins = [w for w, _ in nights]
    lo, hi = min(w.start_ns for w in wins), max(w.end_ns for w in wins)
    by = [_DEV, _SRC]
    # InfluxDB answers the measurements side by side.
    # (a motion or stage point without a device tag counts as device "None", as it always did)
    # ActiGraph counts; points of older versions (field activity, a milli-g measure) are not counts
    motion_q = asyncio.ensure_future(
        _read_series(r, MOTION.quoted, [_COUNTS, _EPOCH_S], _where(person, lo, hi), [_DEV], "None"))
    stages_q = asyncio.ensure_future(_read_series(r, SLEEP_STAGE.quoted, [_STAGE_CODE, _STAGE_EPOCH_S],
                                                  f"{_where(person, lo, hi)} AND {_NOT_OURS}", [_DEV], "None"))
    try:
        rr = await _read_series(r, RR.quoted, [_RR_MS], _where(person, lo, hi), by)
        heart = [_main_heart(_night_slices(rr, w)) for w in wins]
        # heart-rate samples only matter for straps/watches that send no RR (RR carries the same and more)
        no_rr = [k for k, h in enumerate(heart) if not h[0].size]
        if no_rr:
            a, b = min(wins[k].start_ns for k in no_rr), max(wins[k].end_ns for k in no_rr)
            hr = await _read_series(r, HEART_RATE.quoted, [_BPM], _where(person, a, b), by)
            for k in no_rr:
                heart[k] = _main_heart(_night_slices(hr, wins[k]))
        motion, stages = await motion_q, await stages_q
    finally:
        for task in (motion_q, stages_q):
            if not task.done():
                task.cancel()
    no_rr_set = set(no_rr)
    out: list[NightInputs] = []
    for k, ((win, tag_rows), (heart_t, heart_v, sources)) in enumerate(zip(nights, heart, strict=True)):
        had_rr = k not in no_rr_set
        mo_t, mo_v, mo_e, _ = _main_epochs(_night_slices(motion, win))
        st_t, st_v, st_e, st_dev = _main_epochs(_night_slices(stages, win))
        lo_tag, hi_tag = lights_from_tags([dict(x) for x in tag_rows])
        empty_t, empty_v = np.zeros(0, np.int64), np.zeros(0)
        out.append(NightInputs(
            window=win,
            rr_time_ns=heart_t if had_rr else empty_t,
            rr_ms=heart_v if had_rr else empty_v,
            hr_time_ns=empty_t if had_rr else heart_t,
            hr_bpm=empty_v if had_rr else heart_v,
            motion_time_ns=mo_t,
            motion_activity=mo_v,
            motion_epoch_s=mo_e,
            stage_time_ns=st_t,
            stage_code=st_v.astype(np.int64),
            stage_epoch_s=st_e,
            stage_device=st_dev,
            lights_out_tag_ns=lo_tag,
            lights_on_tag_ns=hi_tag,
            sim=sources == {"sim"},
        ))
    return out
