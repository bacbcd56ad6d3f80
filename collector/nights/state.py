"""What was computed per (person, night): ``<state_dir>/nights.sqlite``.

A night's row holds its inputs' fingerprint, the span and tags of the ``sleep_stage`` points
written and the tags of its ``night`` point (to delete them when they change), and for an open
night checked but not ready, when it closes if no more data arrives (``ready_at``, read by the
daemon's schedule). Losing the file loses nothing stored: ``nights compute --recompute`` rebuilds it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from collector.errors import StorageError
from collector.settings import Settings
from collector.storage.files import private_file

#: The nights state file under ``storage.state_dir``.
STATE_NAME = "nights.sqlite"


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
        self.put_many(person, [(night, row)])

    def put_many(self, person: str, rows: Iterable[tuple[str, StateRow]]) -> None:
        """Several nights in one transaction (one commit: a commit waits for the disk)."""
        now = time.time()
        self._db.executemany(
            "INSERT OR REPLACE INTO nights (person, night, fingerprint, stage_lo, stage_hi, stage_tags, night_tags,"
            " updated, ready_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(person, night, row.fingerprint, row.stage_lo_ns, row.stage_hi_ns, row.stage_tags, row.night_tags,
              now, row.ready_at_ns) for night, row in rows])
        self._db.commit()

    def clear(self, person: str) -> None:
        self._db.execute("DELETE FROM nights WHERE person = ?", (person,))
        self._db.commit()

    def close(self) -> None:
        self._db.close()


def state_path(settings: Settings) -> Path:
    return settings.storage.path(STATE_NAME)
