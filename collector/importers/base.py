"""The one small interface every importer follows, and what they share.

An importer is a module with a :class:`Importer`: ``detect(path)`` says whether a file is of its
kind, ``parse(path, ctx)`` yields batches of :class:`~collector.storage.lineprotocol.Point` in the
documented schema (collector/storage/schema.py), every point tagged ``source=import`` and with a
``device`` tag naming the app or watch it came from. A batch is a list of points or, for importers
with many points, :class:`Rows`: one series as plain rows, which iterate as the same points and
which the pipeline encodes without building them. Bad input never stops an import: the importer
reports it through ``ctx.report`` (file and line or element), skips it and goes on.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from collector.storage.lineprotocol import Point, RowEncoder, Tags

SOURCE = "import"
NS = 1_000_000_000
#: Points per batch handed to the pipeline.
BATCH = 5000
#: Problems kept word for word (the rest are only counted).
MAX_PROBLEMS = 50
#: Stable ids of offered doses (same record -> same dose id, so confirming twice logs one dose).
DOSE_NAMESPACE = uuid.UUID("3b0d8f5e-4a7c-4f0e-9a51-2f6f1d3e8c70")


@dataclass(frozen=True, slots=True)
class Problem:
    """One piece of bad input: where (file:line, or file and element) and what is wrong."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class Report:
    """What went wrong and what was left out, counted."""

    bad: int = 0
    problems: list[Problem] = field(default_factory=list)
    #: things read but not imported on purpose (no place in the schema), by what they were
    skipped: Counter[str] = field(default_factory=Counter)
    #: the input ended early (truncated file, a parse error the reader cannot get past)
    stopped: str = ""

    def bad_input(self, where: str, message: str) -> None:
        self.bad += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(where, message))


@dataclass(frozen=True, slots=True)
class DoseOffer:
    """A magnesium intake found in the input: offered as a dose, logged only when confirmed."""

    time_ns: int
    elemental_mg: float
    origin: str  # the app/source that recorded it
    where: str  # file and element, for the listing
    key: str  # stable identity of the record (for the dose id)

    @property
    def dose_id(self) -> uuid.UUID:
        return uuid.uuid5(DOSE_NAMESPACE, self.key)


@dataclass
class ImportContext:
    """What an importer needs: whose data, their time zone, an optional start, where to report."""

    person: str
    tz: ZoneInfo
    start: datetime | None = None
    device: str | None = None  # overrides the device tag an importer would choose
    beats: bool = False  # Apple Health: import the instantaneous beat lists as rr (docs/import.md)
    report: Report = field(default_factory=Report)
    doses: list[DoseOffer] = field(default_factory=list)
    #: called with the number of input bytes read since the last call
    advance: Callable[[int], None] = lambda n: None
    _tags: dict[str, Tags] = field(default_factory=dict)

    def tags(self, device: str) -> Tags:
        """The shared tag set of ``device`` (``--device`` wins when given)."""
        name = self.device or device
        t = self._tags.get(name)
        if t is None:
            t = self._tags[name] = Tags(person=self.person, device=name, source=SOURCE)
        return t


class Layout:
    """A measurement with a fixed field layout (names and types as in the schema), for :class:`Rows`."""

    __slots__ = ("encoder", "measurement", "names")

    def __init__(self, measurement: str, fields: Sequence[tuple[str, str]]) -> None:
        self.measurement = measurement
        self.names = tuple(name for name, _ in fields)
        self.encoder = RowEncoder(measurement, fields)


class Rows:
    """A batch of one series (measurement and tags) as rows ``(time_ns, value, ...)`` in the
    layout's field order.

    The cheap form of a batch for importers with many points: the pipeline writes the rows
    through the layout's :class:`~collector.storage.lineprotocol.RowEncoder` (the same lines as the
    points would give), and iterating yields the same :class:`Point` objects, built on demand.
    """

    __slots__ = ("layout", "rows", "tags")

    def __init__(self, layout: Layout, tags: Tags, rows: Sequence[tuple[Any, ...]]) -> None:
        self.layout = layout
        self.tags = tags
        self.rows = rows

    @property
    def measurement(self) -> str:
        return self.layout.measurement

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Point]:
        m, names, tags = self.layout.measurement, self.layout.names, self.tags
        for r in self.rows:
            yield Point(m, tags, dict(zip(names, r[1:], strict=True)), r[0])

    def lines(self) -> list[str]:
        """The rows as line protocol (ns precision)."""
        return self.layout.encoder.lines(self.tags, self.rows)


#: What :meth:`Importer.parse` yields.
Batch = list[Point] | Rows


class Importer(Protocol):
    """One kind of input."""

    kind: str
    summary: str

    def detect(self, path: Path) -> bool:
        """True when ``path`` looks like this kind (by its header or structure)."""
        ...

    def size(self, path: Path) -> int:
        """Total bytes :meth:`parse` reports through ``ctx.advance`` (0 when unknown)."""
        ...

    def parse(self, path: Path, ctx: ImportContext) -> Iterator[Batch]:
        """Batches of points; bad input goes to ``ctx.report``, doses to ``ctx.doses``."""
        ...


_SLUG = re.compile(r"[^a-z0-9]+")


def slug(text: str, fallback: str = "unknown") -> str:
    """A device tag from a free-text name: ``"Alice’s Apple Watch"`` -> ``alice-s-apple-watch``."""
    s = _SLUG.sub("-", text.lower()).strip("-")[:48].strip("-")
    return s or fallback


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def to_ns(dt: datetime) -> int:
    """UTC epoch nanoseconds of an aware datetime (exact to the microsecond)."""
    return (dt - _EPOCH) // _US * 1000
