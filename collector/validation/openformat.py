"""Reader for magsleep's open format of PSG-labelled nights: one folder per night (docs/validation.md).

```
night-folder/
  meta.json     {"timezone": "Europe/Berlin", "start": "2024-03-01T22:41:30", "age": 52, "sex": "female",
                 "subject": "p07", "lights_out": "2024-03-01T22:45:00", "lights_on": "2024-03-02T06:30:00"}
  stages.csv    t_s,stage          one row per 30-s epoch: W N1 N2 N3 N4 R, or ? / MT (unscored)
  rr.csv        t_s,rr_ms          t_s: the beat that ends the interval   (or beats.csv: t_s)
  hr.csv        t_s,bpm            optional heart-rate samples
  activity.csv  t_s,counts,epoch_s optional activity counts per epoch
```

All ``t_s`` are seconds from ``start`` (the local clock time of the recording start, in ``timezone``).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, available_timezones

import numpy as np

from collector.nights.stages import EPOCH_S, NREM, REM, UNKNOWN, WAKE
from collector.validation.records import F64, Record, RecordError, read_lines

STAGES = {"W": WAKE, "WAKE": WAKE, "N1": NREM, "N2": NREM, "N3": NREM, "N4": NREM, "1": NREM, "2": NREM,
          "3": NREM, "4": NREM, "R": REM, "REM": REM, "?": UNKNOWN, "MT": UNKNOWN, "U": UNKNOWN}
#: How far (s) a stage row's t_s may sit off the 30-s grid.
GRID_TOL_S = 0.5
META_KEYS = {"timezone", "start", "age", "sex", "subject", "lights_out", "lights_on"}


def _table(path: Path, columns: tuple[str, ...], optional: tuple[str, ...] = ()) -> list[tuple[int, list[float]]]:
    """(line number, values in ``columns + optional`` order; NaN for an absent optional column) per row."""
    lines = read_lines(path)
    if not lines:
        raise RecordError(path, 1, f"empty file: expected a header line {','.join(columns)}")
    header = [h.strip().lower() for h in next(csv.reader([lines[0]]))]
    missing = [c for c in columns if c not in header]
    if missing:
        raise RecordError(path, 1, f"header {lines[0]!r} lacks column(s) {', '.join(missing)}")
    idx = [header.index(c) if c in header else -1 for c in (*columns, *optional)]
    out: list[tuple[int, list[float]]] = []
    for i, row in enumerate(csv.reader(lines[1:]), 2):
        if not row or all(not x.strip() for x in row):
            continue
        if len(row) != len(header):
            raise RecordError(path, i, f"{len(row)} fields where the header has {len(header)}")
        vals: list[float] = []
        for name, j in zip((*columns, *optional), idx, strict=True):
            if j < 0:
                vals.append(math.nan)
                continue
            try:
                v = float(row[j])
            except ValueError:
                raise RecordError(path, i, f"{name} {row[j].strip()!r} is not a number") from None
            if not math.isfinite(v):
                raise RecordError(path, i, f"{name} {row[j].strip()!r} is not a finite number")
            vals.append(v)
        out.append((i, vals))
    return out


def _stages(path: Path) -> np.ndarray:
    lines = read_lines(path)
    if not lines:
        raise RecordError(path, 1, "empty file: expected a header line t_s,stage")
    header = [h.strip().lower() for h in next(csv.reader([lines[0]]))]
    if "t_s" not in header or "stage" not in header:
        raise RecordError(path, 1, f"header {lines[0]!r} must name the columns t_s and stage")
    jt, js = header.index("t_s"), header.index("stage")
    got: dict[int, int] = {}
    for i, row in enumerate(csv.reader(lines[1:]), 2):
        if not row or all(not x.strip() for x in row):
            continue
        if len(row) != len(header):
            raise RecordError(path, i, f"{len(row)} fields where the header has {len(header)}")
        try:
            t = float(row[jt])
        except ValueError:
            raise RecordError(path, i, f"t_s {row[jt].strip()!r} is not a number") from None
        if not math.isfinite(t) or t < 0:
            raise RecordError(path, i, f"t_s {row[jt].strip()!r} must be seconds from the start (>= 0)")
        k = round(t / EPOCH_S)
        if abs(t - k * EPOCH_S) > GRID_TOL_S:
            raise RecordError(path, i, f"t_s {t:g} is not on the 30-s epoch grid from the start")
        stage = row[js].strip().upper()
        if stage not in STAGES:
            raise RecordError(path, i, f"unknown stage {row[js].strip()!r}: use W, N1, N2, N3, N4, R, or ? / MT")
        if k in got:
            raise RecordError(path, i, f"the epoch at t_s {k * EPOCH_S} is given twice")
        got[k] = STAGES[stage]
    if not got:
        raise RecordError(path, 0, "no stages")
    codes = np.full(max(got) + 1, UNKNOWN, dtype=np.int64)
    for k, c in got.items():
        codes[k] = c
    return codes


def _increasing(path: Path, rows: list[tuple[int, list[float]]], strict: bool) -> None:
    for (_, a), (line, b) in itertools.pairwise(rows):
        if b[0] < a[0] or (strict and b[0] == a[0]):
            raise RecordError(path, line, f"t_s {b[0]:g} comes after {a[0]:g}: rows must be in time order")


def _rr(folder: Path) -> tuple[F64, F64]:
    rr_path, beats_path = folder / "rr.csv", folder / "beats.csv"
    if rr_path.exists():
        rows = _table(rr_path, ("t_s", "rr_ms"))
        _increasing(rr_path, rows, strict=True)
        for line, (_, r) in rows:
            if r <= 0:
                raise RecordError(rr_path, line, f"rr_ms {r:g} must be positive")
        a = np.array([v for _, v in rows], dtype=np.float64).reshape(-1, 2)
        return a[:, 0], a[:, 1]
    if beats_path.exists():
        rows = _table(beats_path, ("t_s",))
        _increasing(beats_path, rows, strict=True)
        t = np.array([v[0] for _, v in rows], dtype=np.float64)
        return t[1:], np.diff(t) * 1000.0
    raise RecordError(folder, 0, "neither rr.csv (t_s,rr_ms) nor beats.csv (t_s) is there")


def _aware(path: Path, meta: dict[str, Any], key: str, tz: ZoneInfo) -> datetime | None:
    v = meta.get(key)
    if v is None:
        return None
    try:
        d = datetime.fromisoformat(str(v))
    except ValueError:
        raise RecordError(path, 0, f"{key} {v!r} is not an ISO date and time like 2024-03-01T22:41:30") from None
    return d.replace(tzinfo=tz) if d.tzinfo is None else d.astimezone(tz)


def _meta(path: Path) -> dict[str, Any]:
    text = "\n".join(read_lines(path))
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(path, exc.lineno, f"not valid JSON ({exc.msg})") from None
    if not isinstance(meta, dict):
        raise RecordError(path, 1, "must hold one JSON object")
    unknown = sorted(set(meta) - META_KEYS)
    if unknown:
        raise RecordError(path, 0, f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(META_KEYS))}")
    return meta


def read_night(folder: Path) -> Record:
    """One night folder of the open format."""
    meta_path = folder / "meta.json"
    meta = _meta(meta_path)
    tz_name = meta.get("timezone")
    if not isinstance(tz_name, str) or tz_name not in available_timezones():
        raise RecordError(meta_path, 0, f"timezone {tz_name!r} must be an IANA name like 'Europe/Berlin'")
    tz = ZoneInfo(tz_name)
    start = _aware(meta_path, meta, "start", tz)
    if start is None:
        raise RecordError(meta_path, 0, "start (the local date and time the recording began) is required")
    age = meta.get("age")
    if age is not None and (not isinstance(age, int) or isinstance(age, bool) or not 1 <= age <= 120):
        raise RecordError(meta_path, 0, f"age {age!r} must be a whole number of years (1-120)")
    sex = meta.get("sex")
    if sex not in (None, "female", "male"):
        raise RecordError(meta_path, 0, f"sex {sex!r} must be \"female\" or \"male\"")
    sex_t: Literal["female", "male"] | None = sex
    subject = meta.get("subject", folder.name)
    if not isinstance(subject, str) or not subject:
        raise RecordError(meta_path, 0, "subject must be a non-empty string")

    lights: list[float | None] = []
    for key in ("lights_out", "lights_on"):
        d = _aware(meta_path, meta, key, tz)
        lights.append(None if d is None else (d - start).total_seconds())
    if lights[0] is not None and lights[1] is not None and lights[1] <= lights[0]:
        raise RecordError(meta_path, 0, "lights_on must come after lights_out")

    stages = _stages(folder / "stages.csv")
    end_s = stages.size * EPOCH_S
    for key, v in zip(("lights_out", "lights_on"), lights, strict=True):
        if v is not None and not 0 <= v <= end_s:
            raise RecordError(meta_path, 0, f"{key} is outside the staged recording (0 to {end_s} s after start)")
    rr_end, rr_ms = _rr(folder)

    hr_t = hr = np.zeros(0)
    if (folder / "hr.csv").exists():
        rows = _table(folder / "hr.csv", ("t_s", "bpm"))
        _increasing(folder / "hr.csv", rows, strict=False)
        a = np.array([v for _, v in rows], dtype=np.float64).reshape(-1, 2)
        hr_t, hr = a[:, 0], a[:, 1]
    act_t = act = np.zeros(0)
    act_e = np.zeros(0, np.int64)
    if (folder / "activity.csv").exists():
        path = folder / "activity.csv"
        rows = _table(path, ("t_s", "counts"), ("epoch_s",))
        _increasing(path, rows, strict=True)
        for line, (_, c, e) in rows:
            if c < 0 or (math.isfinite(e) and e <= 0):
                raise RecordError(path, line, "counts must be >= 0 and epoch_s > 0")
        a = np.array([v for _, v in rows], dtype=np.float64).reshape(-1, 3)
        act_t, act = a[:, 0], a[:, 1]
        act_e = np.where(np.isfinite(a[:, 2]), a[:, 2], 60).astype(np.int64)

    return Record(name=folder.name, subject=subject, age=age, sex=sex_t, timezone=tz_name, start=start,
                  stages=stages, rr_end_s=rr_end, rr_ms=rr_ms, hr_t_s=hr_t, hr_bpm=hr, activity_t_s=act_t,
                  activity_counts=act, activity_epoch_s=act_e, lights_out_s=lights[0], lights_on_s=lights[1],
                  source="open")


def write_night(folder: Path, rec: Record) -> None:
    """Write ``rec`` in the open format (used to convert slpdb records and in tests)."""
    folder.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"subject": rec.subject, "timezone": rec.timezone,
                            "start": rec.start.replace(tzinfo=None).isoformat()}
    if rec.age is not None:
        meta["age"] = rec.age
    if rec.sex is not None:
        meta["sex"] = rec.sex
    for key, v in (("lights_out", rec.lights_out_s), ("lights_on", rec.lights_on_s)):
        if v is not None:
            meta[key] = (rec.start + timedelta(seconds=v)).replace(tzinfo=None).isoformat()
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    names = {WAKE: "W", NREM: "N2", REM: "R", UNKNOWN: "?"}
    (folder / "stages.csv").write_text(
        "t_s,stage\n" + "".join(f"{k * EPOCH_S},{names.get(int(c), '?')}\n" for k, c in enumerate(rec.stages)),
        encoding="utf-8")
    (folder / "rr.csv").write_text(
        "t_s,rr_ms\n" + "".join(f"{t:.3f},{r:.1f}\n" for t, r in zip(rec.rr_end_s, rec.rr_ms, strict=True)),
        encoding="utf-8")
