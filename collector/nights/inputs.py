"""The InfluxQL reads of the nights run: a night's raw inputs, its change detector, tags and doses.

Names of measurements, fields and tags come from :mod:`collector.storage.schema`. Stages that
magsleep computed itself (device ``magsleep-*``) are never read back as inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
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
        f"SELECT count({_RR_MS}), sum({_RR_MS}) FROM {RR.name} WHERE {w} GROUP BY time({_BUCKET}) fill(none)",
        f"SELECT count({_BPM}), sum({_BPM}) FROM {HEART_RATE.name} WHERE {w} GROUP BY time({_BUCKET}) fill(none)",
        f"SELECT count({_COUNTS}), sum({_COUNTS}) FROM {MOTION.name} WHERE {w} GROUP BY time({_BUCKET}) fill(none)",
        f"SELECT count({_STAGE_CODE}), sum({_STAGE_CODE}) FROM {SLEEP_STAGE.name} WHERE {w} AND {_NOT_OURS} "
        f"GROUP BY time({_BUCKET}) fill(none)",
    ]
    out: dict[int, list[Any]] = {}
    for k, q in enumerate(qs):
        for row in await r.query(q):
            out.setdefault(int(row["time"]), [None] * 8)[2 * k : 2 * k + 2] = [row.get("count"), row.get("sum")]
    return {t: tuple(v) for t, v in out.items()}


async def first_data_ns(r: InfluxReader, person: str) -> int | None:
    """The time of the person's first heart or device-stage point (None without any)."""
    best: int | None = None
    p = quote_str(person)
    for q in (f"SELECT first({_RR_MS}) FROM {RR.name} WHERE {_PERSON} = {p}",
              f"SELECT first({_BPM}) FROM {HEART_RATE.name} WHERE {_PERSON} = {p}",
              f"SELECT first({_STAGE_CODE}) FROM {SLEEP_STAGE.name} WHERE {_PERSON} = {p} AND {_NOT_OURS}"):
        for row in await r.query(q):
            t = int(row["time"])
            best = t if best is None else min(best, t)
    return best


async def read_night_tags(r: InfluxReader, person: str, since_ns: int) -> list[Row]:
    """The person's ``night_tag`` rows from ``since_ns`` on."""
    return await r.query(f"SELECT * FROM {NIGHT_TAG.name} WHERE {_PERSON} = {quote_str(person)} AND time >= {since_ns}")


async def read_doses(r: InfluxReader, person: str, start_ns: int, end_ns: int) -> list[Row]:
    """The person's doses in [start, end): time, elemental_mg, form, supplement, source."""
    cols = ", ".join([_ELEMENTAL_MG, *(t for t in _DOSE_TAGS if t != _PERSON)])
    return await r.query(f"SELECT {cols} FROM {SUPPLEMENT_DOSE.name} WHERE {_where(person, start_ns, end_ns)}")


def _arr(rows: Sequence[Row], key: str, dtype: type) -> Any:
    return np.array([row.get(key) if row.get(key) is not None else np.nan for row in rows], dtype=dtype)


def main_device(rows: Sequence[Row]) -> list[Row]:
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
                per_device.setdefault(str(tags.get(_DEV, "")), []).append((t, v, str(tags.get(_SRC, ""))))
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
    by = f"GROUP BY {_DEV}, {_SRC}"
    rr_t, rr_v, rr_src = await _series_columns(r, f"SELECT {_RR_MS} FROM {RR.name} WHERE {w} {by}", _RR_MS)
    # heart-rate samples only matter for straps/watches that send no RR (RR carries the same and more)
    hr_t, hr_v, hr_src = (np.zeros(0, np.int64), np.zeros(0), set()) if rr_t.size else await _series_columns(
        r, f"SELECT {_BPM} FROM {HEART_RATE.name} WHERE {w} {by}", _BPM)
    # ActiGraph counts; points of older versions (field activity, a milli-g measure) are not counts
    mo = main_device(await r.query(f"SELECT {_COUNTS}, {_EPOCH_S}, {_DEV} FROM {MOTION.name} WHERE {w}"))
    st = main_device(await r.query(
        f"SELECT {_STAGE_CODE}, {_STAGE_EPOCH_S}, {_DEV}, {_SRC} FROM {SLEEP_STAGE.name} WHERE {w} AND {_NOT_OURS}"))
    lo_tag, hi_tag = lights_from_tags([dict(x) for x in tag_rows])
    mo = [x for x in mo if x.get(_COUNTS) is not None]
    st = [x for x in st if x.get(_STAGE_CODE) is not None]
    sources = rr_src if rr_t.size else hr_src
    return NightInputs(
        window=win,
        rr_time_ns=rr_t,
        rr_ms=rr_v,
        hr_time_ns=hr_t,
        hr_bpm=hr_v,
        motion_time_ns=np.array([int(x["time"]) for x in mo], dtype=np.int64),
        motion_activity=_arr(mo, _COUNTS, np.float64),
        motion_epoch_s=np.array([int(x.get(_EPOCH_S) or EPOCH_S) for x in mo], dtype=np.int64),
        stage_time_ns=np.array([int(x["time"]) for x in st], dtype=np.int64),
        stage_code=np.array([int(x[_STAGE_CODE]) for x in st], dtype=np.int64),
        stage_epoch_s=np.array([int(x.get(_STAGE_EPOCH_S) or EPOCH_S) for x in st], dtype=np.int64),
        stage_device=str(st[0].get(_DEV)) if st else "",
        lights_out_tag_ns=lo_tag,
        lights_on_tag_ns=hi_tag,
        sim=sources == {"sim"},
    )
