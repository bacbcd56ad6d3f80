"""RR recordings: Polar Sensor Logger, HRV Logger, Elite HRV and Kubios-style plain lists.

The format is recognised by the file's first line (docs/import.md cites where each comes from):

- Polar Sensor Logger ``*_RR.txt``: ``Phone timestamp;RR-interval [ms]``, then one beat per line,
  ``2024-01-02T23:11:05.123;845`` (phone time, local, no offset).
- HRV Logger ``*_RR_*.csv``: ``date,rr,since start``, then ``2024-01-02 23:11:05.123,845,0``.
- Elite HRV: one RR in ms per line, no header; the reading's start is in the file name
  (``2024-01-02 23-11-05.txt``).
- Plain lists (Kubios and others): one RR per line in ms or s (values below 10 are seconds),
  optionally one header line; the start comes from ``--start``.

Local times are in the person's time zone unless they carry an offset. Beats are stamped at the
end of the beat (schema). In files with a time per line the times are chained by the intervals
and re-synchronised after a gap, so beats that arrived in one notification (same phone time)
still get their own time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from collector.errors import ValidationError
from collector.importers.base import BATCH, ImportContext, to_ns
from collector.storage.lineprotocol import Point

#: A time per line further than this from the chained beat times starts a new chain (a gap).
RESYNC_NS = 2_000_000_000
#: Intervals outside this range (ms) are not heartbeats: reported as bad input.
RR_MIN_MS, RR_MAX_MS = 150.0, 6000.0
_ELITE_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})[ _T](\d{2})[-.:](\d{2})[-.:](\d{2})")


@dataclass(frozen=True, slots=True)
class RRFormat:
    name: str  # also the device tag
    timed: bool  # a time on every line


POLAR = RRFormat("polar-sensor-logger", True)
HRV_LOGGER = RRFormat("hrv-logger", True)
ELITE = RRFormat("elite-hrv", False)
PLAIN = RRFormat("rr-list", False)


def _number(text: str) -> float | None:
    try:
        return float(text.strip().replace(",", "."))
    except ValueError:
        return None


def sniff(first_line: str, path: Path) -> RRFormat | None:
    """The RR format of a file from its first non-empty line (and, for Elite HRV, its name)."""
    head = first_line.strip().lstrip("\ufeff")
    low = head.lower()
    if "phone timestamp" in low and "rr-interval" in low:
        return POLAR
    cols = [c.strip() for c in low.split(",")]
    if cols[:2] == ["date", "rr"]:
        return HRV_LOGGER
    if _number(head) is not None:
        return ELITE if _ELITE_NAME.search(path.stem) else PLAIN
    if len(head) <= 40 and re.fullmatch(r"[A-Za-z \-_()\[\]]+", head) and "rr" in low:
        return PLAIN  # a plain list with one header line ("RR", "RR (ms)", "RR-interval")
    return None


def _first_line(path: Path) -> str:
    with path.open("r", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip():
                return line
    return ""


class RRImporter:
    kind = "rr"
    summary = "RR recordings: Polar Sensor Logger, HRV Logger, Elite HRV, plain lists (Kubios)"

    def detect(self, path: Path) -> bool:
        return path.is_file() and sniff(_first_line(path), path) is not None

    def size(self, path: Path) -> int:
        return path.stat().st_size

    def parse(self, path: Path, ctx: ImportContext) -> Iterator[list[Point]]:
        fmt = sniff(_first_line(path), path)
        if fmt is None:
            raise ValidationError(
                f"{path}: not an RR recording this importer knows (first line {_first_line(path)[:60]!r}); "
                "expected a Polar Sensor Logger, HRV Logger, Elite HRV or plain RR list file")
        tags = ctx.tags(fmt.name)
        start_ns = self._start(path, fmt, ctx)
        rows = self._rows(path, fmt, ctx)
        if not fmt.timed:
            rows = _in_ms(rows)
        batch: list[Point] = []
        prev: int | None = None
        for line, stamp, rr in rows:
            rr_ns = round(rr * 1e6)
            if not RR_MIN_MS <= rr <= RR_MAX_MS:
                ctx.report.bad_input(f"{path.name}:{line}", f"{rr:g} ms is not a heartbeat interval "
                                                            f"({RR_MIN_MS:g}-{RR_MAX_MS:g} ms)")
                if stamp is None and 0 < rr < 60_000:  # the time still passed: keep the chain's clock
                    prev = (start_ns if prev is None else prev) + rr_ns
                continue
            if stamp is None:  # a plain list: the chain alone (start + sum of the intervals)
                t = (start_ns if prev is None else prev) + rr_ns
            elif prev is None:
                t = stamp
            else:
                t = prev + rr_ns
                if abs(t - stamp) > RESYNC_NS:
                    t = stamp
            if prev is not None and t <= prev:
                t = prev + 1_000_000  # a stamp behind the chain: keep beats apart and in order
            prev = t
            batch.append(Point("rr", tags, {"rr_ms": rr}, t))
            if len(batch) >= BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    def _start(self, path: Path, fmt: RRFormat, ctx: ImportContext) -> int:
        if fmt.timed:
            return 0
        if ctx.start is not None:
            start = ctx.start if ctx.start.tzinfo is not None else ctx.start.replace(tzinfo=ctx.tz)
            return to_ns(start)
        m = _ELITE_NAME.search(path.stem) if fmt is ELITE else None
        if m is None:
            raise ValidationError(
                f"{path}: a plain RR list carries no start time; give it with --start "
                "'YYYY-MM-DD HH:MM:SS' (the person's local time)")
        local = datetime.fromisoformat(f"{m.group(1)}T{m.group(2)}:{m.group(3)}:{m.group(4)}")
        return to_ns(local.replace(tzinfo=ctx.tz))

    def _rows(self, path: Path, fmt: RRFormat, ctx: ImportContext) -> Iterator[tuple[int, int | None, float]]:
        """(line number, time ns or None, rr ms) of the good lines; bad lines are reported."""
        sep = ";" if fmt is POLAR else ","
        header_done = False
        with path.open("r", encoding="utf-8", errors="replace", newline="") as f:
            for n, line in enumerate(f, 1):
                ctx.advance(len(line.encode("utf-8", "replace")))
                text = line.strip().lstrip("\ufeff")
                if not text:
                    continue
                where = f"{path.name}:{n}"
                if not header_done:
                    header_done = True
                    if fmt.timed or _number(text) is None:
                        continue
                if fmt.timed:
                    parts = text.split(sep)
                    if len(parts) < 2:
                        ctx.report.bad_input(where, f"expected a time and an interval separated by {sep!r}")
                        continue
                    rr = _number(parts[1])
                    if rr is None:
                        ctx.report.bad_input(where, f"{parts[1].strip()!r} is not a number (RR in ms)")
                        continue
                    try:
                        dt = datetime.fromisoformat(parts[0].strip())
                    except ValueError:
                        ctx.report.bad_input(where, f"{parts[0].strip()!r} is not a date and time")
                        continue
                    stamp = to_ns(dt if dt.tzinfo is not None else dt.replace(tzinfo=ctx.tz))
                else:
                    rr = _number(text)
                    if rr is None:
                        ctx.report.bad_input(where, f"{text[:40]!r} is not a number (one RR interval per line)")
                        continue
                    stamp = None
                yield n, stamp, rr


def _in_ms(rows: Iterator[tuple[int, int | None, float]]) -> Iterator[tuple[int, int | None, float]]:
    """A plain list in seconds (median below 10) in ms (a night's list is small: read whole)."""
    got = list(rows)
    values = sorted(v for _, _, v in got)
    scale = 1000.0 if values and values[len(values) // 2] < 10 else 1.0
    for n, stamp, v in got:
        yield n, stamp, v * scale
