"""A durable local outbox: every point is committed to SQLite (WAL) before it counts as written.

Rows hold chunks of line protocol (``kind='w'``) or a queued delete (``kind='d'``, JSON), in
arrival order (``seq``). The pipeline removes a row only after InfluxDB accepted it. Lines that
InfluxDB rejects for good (400/422 after isolating them) move to the ``rejected`` table, where
they stay for inspection: nothing stored is ever silently lost.

With ``synchronous=NORMAL`` in WAL mode a commit survives the process being killed (SIGKILL);
a power cut may lose the last transactions. :class:`MemoryOutbox` has the same interface and
keeps everything in memory (``storage.outbox = false``).

All methods are blocking; the pipeline calls them from one dedicated thread.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from collector.errors import OutboxFullError, StorageError
from collector.storage.files import private_file


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    kind: str  # 'w' (lines) or 'd' (delete)
    body: str
    lines: int


@dataclass(frozen=True, slots=True)
class DeleteOp:
    measurement: str
    tags: Mapping[str, str]
    time_ns: int

    def to_json(self) -> str:
        return json.dumps({"m": self.measurement, "tags": dict(self.tags), "t": self.time_ns})

    @staticmethod
    def from_json(text: str) -> DeleteOp:
        d = json.loads(text)
        return DeleteOp(str(d["m"]), {str(k): str(v) for k, v in d["tags"].items()}, int(d["t"]))


def take_batch(entries: Iterable[Entry], max_lines: int, after: int) -> list[Entry]:
    """From entries in ``seq`` order: those after ``after`` forming one batch.

    A batch is consecutive writes up to ``max_lines`` lines (at least one entry), or a single
    delete: deletes are barriers, delivered alone and in order.
    """
    out: list[Entry] = []
    total = 0
    for e in entries:
        if e.seq <= after:
            continue
        if e.kind == "d":
            if not out:
                out.append(e)
            break
        if out and total + e.lines > max_lines:
            break
        out.append(e)
        total += e.lines
    return out


class OutboxStore(Protocol):
    max_bytes: int

    def append(self, kind: str, bodies: list[tuple[str, int]]) -> int:
        """Commit ``bodies``; returns the seq of the last one."""
        ...
    def head(self, max_lines: int, after: int = 0) -> list[Entry]: ...
    def get(self, seqs: list[int]) -> list[Entry]: ...
    def remove(self, seqs: list[int]) -> None: ...
    def replace(self, seq: int, body: str, lines: int) -> None: ...
    def reject(self, lines: list[str], error: str) -> None: ...
    def totals(self) -> tuple[int, int, int]: ...
    def rejected_count(self) -> int: ...
    def close(self) -> None: ...


#: Memory for entries the sender need not read back from disk.
CACHE_BYTES = 64 * 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('w', 'd')),
    body TEXT NOT NULL,
    lines INTEGER NOT NULL,
    size INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    line TEXT NOT NULL,
    error TEXT NOT NULL,
    at REAL NOT NULL
);
"""


class SqliteOutbox:
    """The outbox in a SQLite file (WAL mode)."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        try:
            private_file(path)  # 0600 in a 0700 state dir; SQLite gives -wal/-shm the same mode
        except OSError as exc:
            raise StorageError(f"cannot create the outbox {path}: {exc.strerror}; check that storage.state_dir "
                               "is writable for this user") from exc
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            # Checkpoint (and fsync) every ~40 MB of WAL instead of ~4 MB: bulk writes pay far fewer syncs.
            self._db.execute("PRAGMA wal_autocheckpoint=10000")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StorageError(
                f"cannot open the outbox {path}: {exc}. It is left untouched; move it aside to "
                "start a new one (its pending points are then not delivered)."
            ) from exc
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(lines), 0), COALESCE(SUM(size), 0) FROM outbox"
        ).fetchone()
        self._rows, self._lines, self._bytes = int(row[0]), int(row[1]), int(row[2])
        # Entries appended by this process, kept in memory (up to CACHE_BYTES) so the sender
        # need not read them back; rows up to _uncached_max exist only on disk.
        self._cache: dict[int, Entry] = {}
        self._cache_bytes = 0
        self._uncached_max = int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM outbox").fetchone()[0])

    def append(self, kind: str, bodies: list[tuple[str, int]]) -> int:
        size = sum(len(b) for b, _ in bodies)
        if self._bytes + size > self.max_bytes:
            raise OutboxFullError(
                f"the outbox {self.path} holds {self._bytes / 1e6:.0f} MB, its limit "
                f"(storage.outbox_max_mb); new points are refused until InfluxDB is reachable "
                "again and it drains. Check the InfluxDB URL and that it runs."
            )
        now = time.time()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO outbox (kind, body, lines, size, created) VALUES (?, ?, ?, ?, ?)",
                [(kind, b, n, len(b), now) for b, n in bodies],
            )
            last = int(self._db.execute("SELECT last_insert_rowid()").fetchone()[0])
        # One transaction under BEGIN IMMEDIATE: its AUTOINCREMENT keys are consecutive.
        first = last - len(bodies) + 1
        if self._cache_bytes + size <= CACHE_BYTES:
            for i, (b, n) in enumerate(bodies):
                self._cache[first + i] = Entry(first + i, kind, b, n)
            self._cache_bytes += size
        else:
            self._uncached_max = last
        self._rows += len(bodies)
        self._lines += sum(n for _, n in bodies)
        self._bytes += size
        return last

    def head(self, max_lines: int, after: int = 0) -> list[Entry]:
        """The oldest entries after ``after``: consecutive writes up to ``max_lines`` lines, or one delete."""
        if after >= self._uncached_max:
            return take_batch(self._cache.values(), max_lines, after)
        cur = self._db.execute(
            "SELECT seq, kind, body, lines FROM outbox WHERE seq > ? ORDER BY seq LIMIT 2000", (after,)
        )
        try:
            return take_batch((Entry(*row) for row in cur), max_lines, after)
        finally:
            cur.close()

    def get(self, seqs: list[int]) -> list[Entry]:
        """The entries with these sequence numbers that still exist, in order."""
        if not seqs:
            return []
        rows = self._db.execute(
            f"SELECT seq, kind, body, lines FROM outbox WHERE seq IN ({','.join('?' * len(seqs))}) ORDER BY seq",
            seqs,
        ).fetchall()
        return [Entry(int(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]

    def remove(self, seqs: list[int]) -> None:
        if not seqs:
            return
        marks = ",".join("?" * len(seqs))
        cached = [self._cache.get(seq) for seq in seqs]
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            if all(e is not None for e in cached):  # sizes known: no need to read the rows
                row: tuple[int, int, int] = (
                    len(seqs),
                    sum(e.lines for e in cached if e),
                    sum(len(e.body) for e in cached if e),
                )
            else:
                row = self._db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(lines), 0), COALESCE(SUM(size), 0) FROM outbox "
                    f"WHERE seq IN ({marks})",
                    seqs,
                ).fetchone()
            self._db.execute(f"DELETE FROM outbox WHERE seq IN ({marks})", seqs)
        for seq in seqs:
            e = self._cache.pop(seq, None)
            if e is not None:
                self._cache_bytes -= len(e.body)
        self._rows -= int(row[0])
        self._lines -= int(row[1])
        self._bytes -= int(row[2])

    def replace(self, seq: int, body: str, lines: int) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            old = self._db.execute("SELECT lines, size FROM outbox WHERE seq = ?", (seq,)).fetchone()
            if old is None:
                return
            self._db.execute(
                "UPDATE outbox SET body = ?, lines = ?, size = ? WHERE seq = ?", (body, lines, len(body), seq)
            )
        cached = self._cache.get(seq)
        if cached is not None:
            self._cache[seq] = Entry(seq, cached.kind, body, lines)
            self._cache_bytes += len(body) - len(cached.body)
        self._lines += lines - int(old[0])
        self._bytes += len(body) - int(old[1])

    def reject(self, lines: list[str], error: str) -> None:
        now = time.time()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO rejected (line, error, at) VALUES (?, ?, ?)", [(ln, error, now) for ln in lines]
            )

    def totals(self) -> tuple[int, int, int]:
        return self._rows, self._lines, self._bytes

    def rejected_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM rejected").fetchone()[0])

    def close(self) -> None:
        self._db.close()


class MemoryOutbox:
    """The same interface in memory: fast, but lost if the process dies."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._q: deque[Entry] = deque()
        self._seq = 0
        self._lines = 0
        self._bytes = 0
        self.rejected: list[tuple[str, str]] = []

    def append(self, kind: str, bodies: list[tuple[str, int]]) -> int:
        size = sum(len(b) for b, _ in bodies)
        if self._bytes + size > self.max_bytes:
            raise OutboxFullError("the in-memory buffer is full; InfluxDB has been unreachable too long")
        for body, n in bodies:
            self._seq += 1
            self._q.append(Entry(self._seq, kind, body, n))
            self._lines += n
            self._bytes += len(body)
        return self._seq

    def head(self, max_lines: int, after: int = 0) -> list[Entry]:
        return take_batch(self._q, max_lines, after)

    def get(self, seqs: list[int]) -> list[Entry]:
        want = set(seqs)
        return [e for e in self._q if e.seq in want]

    def remove(self, seqs: list[int]) -> None:
        drop = set(seqs)
        keep: deque[Entry] = deque()
        for e in self._q:
            if e.seq in drop:
                self._lines -= e.lines
                self._bytes -= len(e.body)
            else:
                keep.append(e)
        self._q = keep

    def replace(self, seq: int, body: str, lines: int) -> None:
        for i, e in enumerate(self._q):
            if e.seq == seq:
                self._lines += lines - e.lines
                self._bytes += len(body) - len(e.body)
                self._q[i] = Entry(seq, e.kind, body, lines)
                return

    def reject(self, lines: list[str], error: str) -> None:
        self.rejected.extend((ln, error) for ln in lines)

    def totals(self) -> tuple[int, int, int]:
        return len(self._q), self._lines, self._bytes

    def rejected_count(self) -> int:
        return len(self.rejected)

    def close(self) -> None:
        return None
