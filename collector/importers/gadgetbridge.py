"""Gadgetbridge: the database export (Settings > Data management > Export DB: an SQLite file).

Gadgetbridge keeps one sample table per device family, one row per minute, written by greenDAO
with the columns ``TIMESTAMP`` (Unix seconds), ``DEVICE_ID`` (-> ``DEVICE._id``), ``USER_ID``,
``RAW_INTENSITY``, ``STEPS``, ``RAW_KIND`` and ``HEART_RATE``. What each family's ``RAW_KIND``
means is in its sample provider (docs/import.md cites the files):

- ``MI_BAND_ACTIVITY_SAMPLE``, Mi Band 1 (``DEVICE.TYPE`` 10, ``MiBandSampleProvider``):
  4 light sleep, 5 deep sleep, 3 not worn, 6 charging (not worn), -1 activity.
- ``MI_BAND_ACTIVITY_SAMPLE``, Mi Band 2+ / Amazfit (Huami, ``MiBand2SampleProvider`` and
  ``MiBand2Const``): the low 4 bits; 9 light sleep, 11 deep sleep, 12 woke up, 1/2/4 activity,
  3 not worn, 6 charging, 0 and 10 "same as before" (the previous kind carries on).
- ``PINE_TIME_ACTIVITY_SAMPLE`` (``PineTimeActivitySampleProvider``: ``ActivityKind`` codes):
  1 activity, 2 light sleep, 4 deep sleep, 8 not worn, other activity kinds (16, 32, ...) awake.
- ``BANGLE_JSACTIVITY_SAMPLE`` (``BangleJSSampleProvider``): 0 activity; the ActivityKind codes
  above where newer firmware writes them.

Per row: ``heart_rate`` when ``HEART_RATE`` is 1-254 (0, 255 and -1 mean no reading), and a
60-s ``sleep_stage`` for devices that reported any sleep (awake rows included, so the night has
its wake; a device that never reports sleep gets no stages). ``RAW_INTENSITY`` is each firmware's
own unit, not the ActiGraph counts of ``motion.counts``: counted, not stored. Other ``*_SAMPLE``
tables are counted and named, not read.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from collector.errors import ValidationError
from collector.importers.base import BATCH, NS, ImportContext, Layout, Rows, slug
from collector.nights.stages import DEEP, LIGHT, NOT_WORN, STAGE_NAMES, UNKNOWN, WAKE
from collector.storage.lineprotocol import Tags

EPOCH_S = 60
#: Rows fetched from SQLite at a time
_FETCH = 4096
#: What _stage gives for a "same as before" kind when asked with it as the previous code
_CARRY = -99
MIBAND1_TYPES = {"10", "MIBAND"}
#: Mi Band 1 (MiBandSampleProvider)
MIBAND1: dict[int, int] = {4: LIGHT, 5: DEEP, 3: NOT_WORN, 6: NOT_WORN, -1: WAKE}
#: Huami: Mi Band 2 and later, Amazfit (MiBand2Const), after ``raw & 0xf``; 0 and 10 carry on
HUAMI: dict[int, int] = {9: LIGHT, 11: DEEP, 12: WAKE, 1: WAKE, 2: WAKE, 4: WAKE, 3: NOT_WORN, 6: NOT_WORN}
HUAMI_CARRY = (0, 10)
#: ActivityKind codes (PineTime; newer Bangle.js)
ACTIVITY_KIND: dict[int, int] = {1: WAKE, 2: LIGHT, 4: DEEP, 8: NOT_WORN}
BANGLE: dict[int, int] = {0: WAKE, **ACTIVITY_KIND}
HEART_RATE = Layout("heart_rate", [("bpm", "int")])
SLEEP_STAGE = Layout("sleep_stage", [("stage", "string"), ("stage_code", "int"), ("epoch_s", "int")])


@dataclass(frozen=True, slots=True)
class Family:
    table: str
    name: str


FAMILIES = (
    Family("MI_BAND_ACTIVITY_SAMPLE", "miband"),
    Family("PINE_TIME_ACTIVITY_SAMPLE", "pinetime"),
    Family("BANGLE_JSACTIVITY_SAMPLE", "banglejs"),
)
_COLUMNS = ("TIMESTAMP", "DEVICE_ID", "RAW_INTENSITY", "RAW_KIND", "HEART_RATE")


def _open(path: Path) -> sqlite3.Connection:
    try:
        # read-only, and used by one thread at a time (an import closes it wherever it stops)
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True, check_same_thread=False)
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        raise ValidationError(f"{path}: not a readable SQLite database ({exc}); give the file Gadgetbridge's "
                              "'Export DB' wrote") from exc
    return db


def _tables(db: sqlite3.Connection) -> set[str]:
    return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


class GadgetbridgeImporter:
    kind = "gadgetbridge"
    summary = "Gadgetbridge database export (SQLite): Mi Band/Amazfit, PineTime, Bangle.js"

    def detect(self, path: Path) -> bool:
        if not path.is_file():
            return False
        with path.open("rb") as f:
            if f.read(16) != b"SQLite format 3\x00":
                return False
        db = _open(path)
        try:
            t = _tables(db)
        finally:
            db.close()
        return "DEVICE" in t and any(name.endswith("_SAMPLE") for name in t)

    def size(self, path: Path) -> int:
        return path.stat().st_size

    def parse(self, path: Path, ctx: ImportContext) -> Iterator[Rows]:
        db = _open(path)
        try:
            yield from self._parse(db, path, ctx)
        finally:
            db.close()

    def _parse(self, db: sqlite3.Connection, path: Path, ctx: ImportContext) -> Iterator[Rows]:
        tables = _tables(db)
        known = {f.table for f in FAMILIES}
        for table in sorted(tables):
            if table.endswith("_SAMPLE") and table not in known:
                n = db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
                if n:
                    ctx.report.skipped[f"rows of table {table} (not a family this importer reads)"] += int(n)
        devices = self._devices(db)
        families = [f for f in FAMILIES if f.table in tables]
        total = sum(db.execute(f'SELECT count(*) FROM "{f.table}"').fetchone()[0] for f in families)
        per_row = path.stat().st_size / total if total else 0.0
        done = 0.0
        for fam in families:
            cols = {r[1] for r in db.execute(f'PRAGMA table_info("{fam.table}")')}
            missing = [c for c in _COLUMNS if c not in cols]
            if missing:
                ctx.report.bad_input(f"{path.name} table {fam.table}", f"has no column {', '.join(missing)}; "
                                     "not read (a Gadgetbridge version this importer does not know)")
                continue
            for dev_id in [r[0] for r in db.execute(f'SELECT DISTINCT DEVICE_ID FROM "{fam.table}"')]:
                dev_name, dev_type = devices.get(dev_id, (f"device-{dev_id}", ""))
                codes = _codes(fam, dev_type)
                tags = ctx.tags(dev_name)
                staged = self._has_sleep(db, fam, dev_id, codes)
                prev_code = UNKNOWN
                intensities = 0
                # rows, not points: the pipeline encodes them at f-string speed (base.Rows)
                hr_rows: list[tuple[int, int]] = []
                stage_rows: list[tuple[int, str, int, int]] = []
                stage_of: dict[int, int] = {}  # RAW_KIND -> stage code (_CARRY: the previous one)
                rows = db.execute(
                    f'SELECT TIMESTAMP, RAW_INTENSITY, RAW_KIND, HEART_RATE FROM "{fam.table}" '
                    "WHERE DEVICE_ID = ? ORDER BY TIMESTAMP", (dev_id,))
                try:
                    while chunk := rows.fetchmany(_FETCH):
                        done += per_row * len(chunk)
                        if done >= 65536:
                            ctx.advance(int(done))
                            done -= int(done)
                        for ts, intensity, raw_kind, hr in chunk:
                            if type(ts) is not int or ts <= 0:
                                ctx.report.bad_input(_where(path, fam, ts, dev_id),
                                                     f"TIMESTAMP {ts!r} is not Unix seconds")
                                continue
                            t = ts * NS
                            if type(hr) is int:
                                if 0 < hr < 255:
                                    hr_rows.append((t, hr))
                            elif hr is not None:
                                ctx.report.bad_input(_where(path, fam, ts, dev_id),
                                                     f"HEART_RATE {hr!r} is not a number")
                            if type(intensity) is int and intensity > 0:
                                intensities += 1
                            if staged:
                                if type(raw_kind) is not int:
                                    ctx.report.bad_input(_where(path, fam, ts, dev_id),
                                                         f"RAW_KIND {raw_kind!r} is not a number")
                                    continue
                                code = stage_of.get(raw_kind)
                                if code is None:
                                    code = stage_of[raw_kind] = _stage(fam, codes, raw_kind, _CARRY)
                                if code == _CARRY:
                                    code = prev_code
                                else:
                                    prev_code = code
                                stage_rows.append((t, STAGE_NAMES[code], code, EPOCH_S))
                        if len(stage_rows) + len(hr_rows) >= BATCH:
                            yield from _rows(tags, hr_rows, stage_rows)
                            hr_rows, stage_rows = [], []
                    if intensities:
                        ctx.report.skipped["RAW_INTENSITY minutes (device units, not activity counts)"] += intensities
                except sqlite3.DatabaseError as exc:
                    ctx.report.bad += 1
                    ctx.report.stopped = f"{path.name} table {fam.table}: the database is damaged ({exc}); " \
                                         "rows before it were read"
                    yield from _rows(tags, hr_rows, stage_rows)
                    break
                yield from _rows(tags, hr_rows, stage_rows)

    def _devices(self, db: sqlite3.Connection) -> dict[int, tuple[str, str]]:
        """DEVICE._id -> (device tag, TYPE as text)."""
        cols = {r[1] for r in db.execute('PRAGMA table_info("DEVICE")')}
        name_col = "ALIAS" if "ALIAS" in cols else "NAME"
        out: dict[int, tuple[str, str]] = {}
        for _id, name, alias, ident, typ in db.execute(
                f'SELECT _id, NAME, {name_col}, IDENTIFIER, TYPE FROM "DEVICE"'):
            label = alias or name or "gadgetbridge"
            tail = "".join(c for c in str(ident or "") if c.isalnum())[-4:].lower()
            out[int(_id)] = (f"gb-{slug(str(label))}" + (f"-{tail}" if tail else ""), str(typ))
        return out

    def _has_sleep(self, db: sqlite3.Connection, fam: Family, dev_id: int, codes: dict[int, int]) -> bool:
        sleep_raw = [k for k, v in codes.items() if v in (LIGHT, DEEP)]
        expr = "(RAW_KIND & 15)" if codes is HUAMI else "RAW_KIND"
        q = (f'SELECT 1 FROM "{fam.table}" WHERE DEVICE_ID = ? AND {expr} IN '
             f"({', '.join('?' * len(sleep_raw))}) LIMIT 1")
        return db.execute(q, (dev_id, *sleep_raw)).fetchone() is not None


def _rows(tags: Tags, hr: list[tuple[int, int]], stages: list[tuple[int, str, int, int]]) -> Iterator[Rows]:
    if hr:
        yield Rows(HEART_RATE, tags, hr)
    if stages:
        yield Rows(SLEEP_STAGE, tags, stages)


def _where(path: Path, fam: Family, ts: object, dev_id: int) -> str:
    return f"{path.name} table {fam.table} row TIMESTAMP={ts} DEVICE_ID={dev_id}"


def _codes(fam: Family, dev_type: str) -> dict[int, int]:
    if fam.name == "miband":
        return MIBAND1 if dev_type in MIBAND1_TYPES else HUAMI
    if fam.name == "banglejs":
        return BANGLE
    return ACTIVITY_KIND


def _stage(fam: Family, codes: dict[int, int], raw: int, prev: int) -> int:
    if codes is HUAMI:
        k = raw & 0xF
        if k in HUAMI_CARRY:
            return prev
        return HUAMI.get(k, UNKNOWN)
    if codes is MIBAND1:
        return MIBAND1.get(raw, UNKNOWN)
    code = codes.get(raw)
    if code is None:
        return WAKE if raw > 8 else UNKNOWN  # running, walking, cycling... are awake
    return code

