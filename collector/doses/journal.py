"""The SQLite dose journal: the source of truth for doses, night tags and lights out/on.

Every change is written, in one transaction, together with the InfluxDB operations it implies
(a transactional outbox: ``influx_ops``). The service hands those operations to the storage
pipeline and acknowledges them afterwards, so a crash between the two only means a re-send.
Not thread-safe by itself: the service runs every call on one worker thread.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

from collector.doses.entities import (
    ConflictError,
    Dose,
    Lights,
    LightsEvent,
    NightTag,
    NightTagName,
    NotFoundError,
)
from collector.doses.points import dose_point, lights_point_of, tag_point, to_ns
from collector.errors import JournalUnavailableError
from collector.storage.files import FILE_MODE, private_dir
from collector.storage.lineprotocol import Point

JOURNAL_NAME = "doses.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS doses (
    id TEXT PRIMARY KEY,
    person TEXT NOT NULL,
    supplement TEXT NOT NULL,
    form TEXT NOT NULL,
    amount_mg REAL NOT NULL,
    elemental_mg REAL NOT NULL,
    elemental_computed INTEGER NOT NULL,
    taken_at TEXT NOT NULL,
    taken_at_ns INTEGER NOT NULL,
    note TEXT NOT NULL,
    source TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    point_time_ns INTEGER NOT NULL,
    deleted_at TEXT
);
CREATE INDEX IF NOT EXISTS doses_person_time ON doses (person, taken_at_ns);
CREATE TABLE IF NOT EXISTS night_tags (
    person TEXT NOT NULL,
    night TEXT NOT NULL,
    tag TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (person, night, tag)
);
CREATE TABLE IF NOT EXISTS lights (
    person TEXT NOT NULL,
    night TEXT NOT NULL,
    event TEXT NOT NULL CHECK (event IN ('lights_out', 'lights_on')),
    at TEXT NOT NULL,
    at_ns INTEGER NOT NULL,
    source TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (person, night, event)
);
CREATE TABLE IF NOT EXISTS influx_ops (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('put', 'delete')),
    measurement TEXT NOT NULL,
    tags TEXT NOT NULL,
    fields TEXT NOT NULL,
    time_ns INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class InfluxOp:
    seq: int
    kind: Literal["put", "delete"]
    point: Point


_I64 = 2**63 - 1


def _clamp(ns: int) -> int:
    """``ns`` within SQLite's INTEGER range (query bounds may be any datetime)."""
    return max(-_I64, min(_I64, ns))


#: SQLite's answers for a file that is not (or no longer) a sound database.
_DAMAGED = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})


def damaged_journal_error(path: Path, what: str) -> JournalUnavailableError:
    """The error for a damaged journal: what happened and the three ways to recover."""
    rescued = path.with_name("doses-recovered.sqlite")
    return JournalUnavailableError(
        f"the dose journal {path} is damaged ({what}); it is left untouched, and doses cannot be "
        "logged until it is repaired (heart data collection goes on). To recover, stop magsleep "
        f"and keep a copy of the file (with any {path.name}-wal beside it), then either restore "
        f"a backup copy of {path.name}, or rescue what is readable with "
        f"`sqlite3 {path} .recover | sqlite3 {rescued}` and move {rescued.name} in its place; "
        "then start magsleep again and run `magsleep dose sync`")


def is_damaged(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorname", "") in _DAMAGED


def check_intact(path: Path) -> None:
    """Raise :class:`JournalUnavailableError` if the existing file at ``path`` is damaged.

    Read-only (``PRAGMA quick_check``), so a damaged file is never written to."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)
        try:
            row = db.execute("PRAGMA quick_check").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        if is_damaged(exc):
            raise damaged_journal_error(path, str(exc)) from exc
        raise JournalUnavailableError(
            f"cannot open the dose journal {path}: {exc}; check storage.state_dir exists and "
            "is readable and writable") from exc
    if row is None or row[0] != "ok":
        raise damaged_journal_error(path, f"integrity check: {row[0] if row else 'no answer'}")


class DoseJournal:
    """Doses, night tags and lights out/on in SQLite (WAL, synchronous=FULL)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            private_dir(path.parent)
            check_intact(path)
            existed = path.exists()
            self._db = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
        except (OSError, sqlite3.Error) as exc:
            raise JournalUnavailableError(
                f"cannot open the dose journal {path}: {exc}; check storage.state_dir "
                "exists and is writable"
            ) from exc
        if not existed:  # private from the start (doses are health data); SQLite's -wal/-shm follow it
            with contextlib.suppress(OSError):
                path.chmod(FILE_MODE)
        try:
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            self._db.close()
            if is_damaged(exc):
                raise damaged_journal_error(path, str(exc)) from exc
            raise JournalUnavailableError(
                f"cannot open the dose journal {path}: {exc}; check storage.state_dir "
                "exists and is writable"
            ) from exc

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # -- doses -------------------------------------------------------------------------------

    def get(self, dose_id: UUID, *, include_deleted: bool = False) -> Dose | None:
        row = self._db.execute("SELECT * FROM doses WHERE id = ?", (str(dose_id),)).fetchone()
        if row is None or (row["deleted_at"] is not None and not include_deleted):
            return None
        return _row_to_dose(row)

    def is_deleted(self, dose_id: UUID) -> bool:
        row = self._db.execute(
            "SELECT deleted_at FROM doses WHERE id = ?", (str(dose_id),)
        ).fetchone()
        return row is not None and row["deleted_at"] is not None

    def list_doses(
        self,
        *,
        person: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[Dose]:
        sql = "SELECT * FROM doses WHERE deleted_at IS NULL"
        args: list[Any] = []
        if person is not None:
            sql += " AND person = ?"
            args.append(person)
        if since is not None:
            sql += " AND taken_at_ns >= ?"
            args.append(_clamp(to_ns(since)))
        if until is not None:
            sql += " AND taken_at_ns < ?"
            args.append(_clamp(to_ns(until)))
        sql += " ORDER BY taken_at_ns DESC, id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [_row_to_dose(r) for r in self._db.execute(sql, args)]

    def elemental_total(
        self, person: str, supplement: str, start: datetime, end: datetime, exclude: UUID
    ) -> float:
        row = self._db.execute(
            "SELECT COALESCE(SUM(elemental_mg), 0) FROM doses WHERE deleted_at IS NULL"
            " AND person = ? AND supplement = ? AND taken_at_ns >= ? AND taken_at_ns < ?"
            " AND id != ?",
            (person, supplement, to_ns(start), to_ns(end), str(exclude)),
        ).fetchone()
        return float(row[0])

    def insert(self, dose: Dose) -> tuple[Dose, bool]:
        """Store ``dose``; if its id exists, return the stored one and False."""
        with self._tx() as db:
            row = db.execute("SELECT * FROM doses WHERE id = ?", (str(dose.id),)).fetchone()
            if row is not None:
                if row["deleted_at"] is not None:
                    raise ConflictError(
                        f"dose {dose.id} was deleted; log it again with a new id"
                    )
                return _row_to_dose(row), False
            t = self._free_time(db, dose)
            db.execute(
                "INSERT INTO doses VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,NULL)",
                (*_dose_values(dose), t),
            )
            self._op(db, "put", dose_point(dose, t))
        return dose, True

    def replace(self, dose: Dose) -> Dose:
        """Store the edited ``dose`` (same id): delete the old point, put the new one."""
        with self._tx() as db:
            row = db.execute(
                "SELECT * FROM doses WHERE id = ? AND deleted_at IS NULL", (str(dose.id),)
            ).fetchone()
            if row is None:
                raise NotFoundError(f"no dose with id {dose.id}; list them with `magsleep dose list`")
            old = _row_to_dose(row)
            self._op(db, "delete", dose_point(old, row["point_time_ns"]))
            t = self._free_time(db, dose)
            db.execute("DELETE FROM doses WHERE id = ?", (str(dose.id),))
            db.execute(
                "INSERT INTO doses VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,NULL)",
                (*_dose_values(dose), t),
            )
            self._op(db, "put", dose_point(dose, t))
        return dose

    def delete(self, dose_id: UUID, when: datetime) -> Dose:
        with self._tx() as db:
            row = db.execute(
                "SELECT * FROM doses WHERE id = ? AND deleted_at IS NULL", (str(dose_id),)
            ).fetchone()
            if row is None:
                raise NotFoundError(f"no dose with id {dose_id}; list them with `magsleep dose list`")
            old = _row_to_dose(row)
            db.execute(
                "UPDATE doses SET deleted_at = ? WHERE id = ?", (when.isoformat(), str(dose_id))
            )
            self._op(db, "delete", dose_point(old, row["point_time_ns"]))
        return old

    def _free_time(self, db: sqlite3.Connection, dose: Dose) -> int:
        """The dose's time in ns, moved on by 1 ns while another dose of the same series has it.

        InfluxDB keeps one point per series and timestamp; two doses at the same instant must
        not overwrite each other.
        """
        t = to_ns(dose.taken_at)
        while db.execute(
            "SELECT 1 FROM doses WHERE deleted_at IS NULL AND point_time_ns = ? AND person = ?"
            " AND supplement = ? AND form = ? AND source = ? AND id != ?",
            (t, dose.person, dose.supplement, dose.form.value, dose.source.value, str(dose.id)),
        ).fetchone():
            t += 1
        return t

    # -- night tags --------------------------------------------------------------------------

    def set_tag(self, tag: NightTag) -> bool:
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO night_tags VALUES (?,?,?,?)",
                (tag.person, tag.night.isoformat(), tag.tag.value, tag.recorded_at.isoformat()),
            )
            if cur.rowcount:
                self._op(db, "put", tag_point(tag))
        return bool(cur.rowcount)

    def remove_tag(self, person: str, night: date, name: NightTagName) -> bool:
        with self._tx() as db:
            row = db.execute(
                "SELECT * FROM night_tags WHERE person = ? AND night = ? AND tag = ?",
                (person, night.isoformat(), name.value),
            ).fetchone()
            if row is None:
                return False
            db.execute(
                "DELETE FROM night_tags WHERE person = ? AND night = ? AND tag = ?",
                (person, night.isoformat(), name.value),
            )
            self._op(db, "delete", tag_point(_row_to_tag(row)))
        return True

    def list_tags(
        self, *, person: str | None = None, since: date | None = None
    ) -> list[NightTag]:
        where, args = _person_since(person, since)
        sql = f"SELECT * FROM night_tags WHERE {where} ORDER BY night DESC, person, tag"
        return [_row_to_tag(r) for r in self._db.execute(sql, args)]

    # -- lights out / lights on ---------------------------------------------------------------

    def get_lights(self, person: str, night: date, event: LightsEvent) -> Lights | None:
        row = self._db.execute(
            "SELECT * FROM lights WHERE person = ? AND night = ? AND event = ?",
            (person, night.isoformat(), event.value),
        ).fetchone()
        return None if row is None else _row_to_lights(row)

    def set_lights(self, lights: Lights) -> tuple[Lights, bool]:
        """Store ``lights`` as the night's current one (replacing any); False when unchanged."""
        at_ns = to_ns(lights.at)
        with self._tx() as db:
            row = db.execute(
                "SELECT * FROM lights WHERE person = ? AND night = ? AND event = ?",
                (lights.person, lights.night.isoformat(), lights.event.value),
            ).fetchone()
            if row is not None and row["at_ns"] == at_ns:
                return _row_to_lights(row), False
            db.execute(
                "INSERT OR REPLACE INTO lights VALUES (?,?,?,?,?,?,?)",
                (lights.person, lights.night.isoformat(), lights.event.value,
                 lights.at.isoformat(), at_ns, lights.source.value, lights.recorded_at.isoformat()),
            )
            self._op(db, "put", lights_point_of(lights))
        return lights, True

    def remove_lights(self, person: str, night: date, event: LightsEvent) -> Lights:
        """Remove the night's lights out/on: a ``value=false`` point overwrites the stored one."""
        with self._tx() as db:
            row = db.execute(
                "SELECT * FROM lights WHERE person = ? AND night = ? AND event = ?",
                (person, night.isoformat(), event.value),
            ).fetchone()
            if row is None:
                raise NotFoundError(
                    f"no {event.value.replace('_', ' ')} recorded for {person}'s night of "
                    f"{night.isoformat()}; list them with GET /api/v1/lights")
            old = _row_to_lights(row)
            db.execute(
                "DELETE FROM lights WHERE person = ? AND night = ? AND event = ?",
                (person, night.isoformat(), event.value),
            )
            self._op(db, "put", lights_point_of(old, value=False))
        return old

    def list_lights(
        self, *, person: str | None = None, since: date | None = None, limit: int | None = None
    ) -> list[Lights]:
        where, args = _person_since(person, since)
        sql = f"SELECT * FROM lights WHERE {where} ORDER BY night DESC, person, at_ns DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [_row_to_lights(r) for r in self._db.execute(sql, args)]

    # -- the InfluxDB outbox -----------------------------------------------------------------

    def _op(self, db: sqlite3.Connection, kind: str, p: Point) -> None:
        db.execute(
            "INSERT INTO influx_ops (kind, measurement, tags, fields, time_ns) VALUES (?,?,?,?,?)",
            (kind, p.measurement, json.dumps(dict(p.tags)), json.dumps(dict(p.fields)), p.time_ns),
        )

    def pending(self, limit: int = 500) -> list[InfluxOp]:
        rows = self._db.execute(
            "SELECT * FROM influx_ops ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        return [
            InfluxOp(
                r["seq"],
                r["kind"],
                Point(r["measurement"], json.loads(r["tags"]), json.loads(r["fields"]), r["time_ns"]),
            )
            for r in rows
        ]

    def pending_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM influx_ops").fetchone()[0])

    def ack(self, up_to_seq: int) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM influx_ops WHERE seq <= ?", (up_to_seq,))

    def enqueue_all(self) -> int:
        """Queue a put for every live dose, night tag and lights out/on (after an InfluxDB reset)."""
        n = 0
        with self._tx() as db:
            for row in db.execute("SELECT * FROM doses WHERE deleted_at IS NULL").fetchall():
                self._op(db, "put", dose_point(_row_to_dose(row), row["point_time_ns"]))
                n += 1
            for row in db.execute("SELECT * FROM night_tags").fetchall():
                self._op(db, "put", tag_point(_row_to_tag(row)))
                n += 1
            for row in db.execute("SELECT * FROM lights").fetchall():
                self._op(db, "put", lights_point_of(_row_to_lights(row)))
                n += 1
        return n


def _dose_values(d: Dose) -> tuple[Any, ...]:
    return (
        str(d.id),
        d.person,
        d.supplement,
        d.form.value,
        d.amount_mg,
        d.elemental_mg,
        int(d.elemental_computed),
        d.taken_at.isoformat(),
        to_ns(d.taken_at),
        d.note,
        d.source.value,
        d.recorded_at.isoformat(),
        d.updated_at.isoformat(),
    )


def _row_to_dose(row: sqlite3.Row) -> Dose:
    return Dose(
        id=UUID(row["id"]),
        person=row["person"],
        supplement=row["supplement"],
        form=row["form"],
        amount_mg=row["amount_mg"],
        elemental_mg=row["elemental_mg"],
        elemental_computed=bool(row["elemental_computed"]),
        taken_at=datetime.fromisoformat(row["taken_at"]),
        note=row["note"],
        source=row["source"],
        recorded_at=datetime.fromisoformat(row["recorded_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
    )


def _person_since(person: str | None, since: date | None) -> tuple[str, list[Any]]:
    """WHERE clause (and its arguments) for rows of one person (or all) from night ``since`` on."""
    conds, args = ["1=1"], []
    if person is not None:
        conds.append("person = ?")
        args.append(person)
    if since is not None:
        conds.append("night >= ?")
        args.append(since.isoformat())
    return " AND ".join(conds), args


def _row_to_tag(row: sqlite3.Row) -> NightTag:
    return NightTag(
        person=row["person"],
        night=date.fromisoformat(row["night"]),
        tag=row["tag"],
        recorded_at=datetime.fromisoformat(row["recorded_at"]),
    )


def _row_to_lights(row: sqlite3.Row) -> Lights:
    return Lights(
        person=row["person"],
        night=date.fromisoformat(row["night"]),
        event=row["event"],
        at=datetime.fromisoformat(row["at"]),
        source=row["source"],
        recorded_at=datetime.fromisoformat(row["recorded_at"]),
    )


__all__ = [
    "JOURNAL_NAME",
    "DoseJournal",
    "InfluxOp",
    "check_intact",
    "damaged_journal_error",
    "is_damaged",
]
