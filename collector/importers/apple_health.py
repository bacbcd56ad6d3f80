"""Apple Health: ``export.zip`` (or the ``export.xml`` inside it), streamed, never loaded whole.

``export.xml`` (Health app > profile > Export All Health Data) holds one ``<Record>`` per sample,
with ``type``, ``sourceName``, ``unit``, ``value`` and ``startDate``/``endDate`` written as
``2024-01-02 23:11:05 +0100`` (local time with its offset, per record). What is read:

- ``HKQuantityTypeIdentifierHeartRate`` (count/min) -> ``heart_rate.bpm``;
- ``HKCategoryTypeIdentifierSleepAnalysis`` -> ``sleep_stage``, one point per segment at its start
  with ``epoch_s`` = its length (the watch's own resolution): ``...AsleepCore`` light,
  ``...AsleepDeep`` deep, ``...AsleepREM`` rem, ``...Awake`` wake, ``...AsleepUnspecified`` and the
  older ``...Asleep`` sleep; ``...InBed`` time not covered by that source's stages is wake (an
  in-bed period of a source without stages is left out);
- ``HKQuantityTypeIdentifierHeartRateVariabilitySDNN`` and heartbeat series: with ``beats``, the
  ``InstantaneousBeatsPerMinute`` list (``bpm``, ``time`` as local clock time ``11:05:22.17 PM``)
  -> ``rr``, the interval between two listed beats where they are consecutive;
- ``HKQuantityTypeIdentifierDietaryMagnesium`` (mg) -> offered as doses, logged only when confirmed.

Every source (``sourceName``: the watch, the phone, an app) gets its own ``device`` tag, so a
watch and a phone that both recorded a night stay apart. Parsing uses ElementTree's iterparse and
clears every element once read; a record with bad values is reported by its number, type and
date and skipped; where the document stops being well-formed XML, the error is reported by line
and column and parsing starts again at the next ``<Record`` line (the file or zip member is read
again from its start, passing over what was parsed); a cut-off file gives what it holds.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Generator, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, Protocol
from xml.etree import ElementTree as ET

from collector.errors import ValidationError
from collector.importers.base import BATCH, NS, Batch, DoseOffer, ImportContext, Layout, Rows, slug
from collector.nights.stages import DEEP, LIGHT, REM, SLEEP, STAGE_NAMES, WAKE
from collector.storage.lineprotocol import FieldValue, Point, Tags

HR = "HKQuantityTypeIdentifierHeartRate"
SLEEP_ANALYSIS = "HKCategoryTypeIdentifierSleepAnalysis"
HRV = "HKQuantityTypeIdentifierHeartRateVariabilitySDNN"
HEARTBEAT_SERIES = "HKDataTypeIdentifierHeartbeatSeries"
MAGNESIUM = "HKQuantityTypeIdentifierDietaryMagnesium"
IN_BED = "HKCategoryValueSleepAnalysisInBed"
HEART_RATE = Layout("heart_rate", [("bpm", "int")])
#: Apple's sleep values -> stage code (collector/nights/stages.py)
SLEEP_VALUES: dict[str, int] = {
    "HKCategoryValueSleepAnalysisAsleepCore": LIGHT,
    "HKCategoryValueSleepAnalysisAsleepDeep": DEEP,
    "HKCategoryValueSleepAnalysisAsleepREM": REM,
    "HKCategoryValueSleepAnalysisAwake": WAKE,
    "HKCategoryValueSleepAnalysisAsleepUnspecified": SLEEP,
    "HKCategoryValueSleepAnalysisAsleep": SLEEP,  # before iOS 16: asleep without stages
}
#: Record types read but not imported (no place in the schema): counted in the summary.
NOTED = {
    "HKQuantityTypeIdentifierRestingHeartRate": "resting heart rate",
    "HKQuantityTypeIdentifierWalkingHeartRateAverage": "walking heart rate",
    HRV: "HRV SDNN values",
    "HKDataTypeSleepDurationGoal": "sleep duration goal",
}
#: Record types the parser looks at (everything else is passed over at once)
_READ = frozenset({HR, SLEEP_ANALYSIS, MAGNESIUM, HRV, HEARTBEAT_SERIES, *NOTED})
#: Top-level elements other than Record: cleared from the root once read
_TOP = frozenset({"Workout", "ActivitySummary", "Correlation", "Me", "ExportDate", "ClinicalRecord"})
_UNIT_MG = {"mg": 1.0, "g": 1000.0, "mcg": 0.001, "µg": 0.001, "ug": 0.001}
_CHUNK = 1 << 20
#: The DOCTYPE is looked for in this much of the file's start (Apple's is about 10 kB).
_HEAD_MAX = 4 << 20


# ---------------------------------------------------------------------------------------------
# Times
# ---------------------------------------------------------------------------------------------

_days_cache: dict[str, int] = {}
_EPOCH_DAY = date(1970, 1, 1).toordinal()


def apple_ns(text: str) -> int:
    """``2024-01-02 23:11:05 +0100`` -> UTC epoch ns (fast path for Apple's one format)."""
    if len(text) != 25 or text[10] != " " or text[19] != " ":
        raise ValueError(f"{text!r} is not a date like '2024-01-02 23:11:05 +0100'")
    day = _days_cache.get(text[:10])
    if day is None:
        day = date.fromisoformat(text[:10]).toordinal() - _EPOCH_DAY
        if len(_days_cache) > 50_000:
            _days_cache.clear()
        _days_cache[text[:10]] = day
    h, m, s = int(text[11:13]), int(text[14:16]), int(text[17:19])
    sign = text[20]
    off = int(text[21:23]) * 3600 + int(text[23:25]) * 60
    if sign == "-":
        off = -off
    elif sign != "+":
        raise ValueError(f"{text!r}: the offset must be +HHMM or -HHMM")
    if h > 23 or m > 59 or s > 60:
        raise ValueError(f"{text!r} is not a valid time of day")
    return (day * 86400 + h * 3600 + m * 60 + s - off) * NS


def clock_s(text: str) -> float:
    """Seconds after local midnight of ``11:05:22.17 PM``, ``11:05:22.17 pm`` or ``23:05:22.17``."""
    t = text.strip().upper()
    pm = t.endswith("PM")
    am = t.endswith("AM")
    if pm or am:
        t = t[:-2].strip()
    parts = t.split(":")
    if len(parts) != 3:
        raise ValueError(f"{text!r} is not a clock time")
    h, m, s = int(parts[0]), int(parts[1]), float(parts[2])
    if pm or am:
        if not 1 <= h <= 12:
            raise ValueError(f"{text!r} is not a 12-hour clock time")
        h = h % 12 + (12 if pm else 0)
    if h > 23 or m > 59 or s >= 61:
        raise ValueError(f"{text!r} is not a clock time")
    return h * 3600 + m * 60 + s


# ---------------------------------------------------------------------------------------------
# Input: export.xml, export.zip, a cut-off export.zip
# ---------------------------------------------------------------------------------------------


class _Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class _Progress:
    """Bytes read, for the progress bar; what is read again after a resync is not counted twice."""

    def __init__(self, advance: Callable[[int], None]) -> None:
        self.advance = advance
        self.high = 0


class _Counting:
    """A binary stream that reports the bytes read (the progress bar)."""

    def __init__(self, raw: _Readable, progress: _Progress) -> None:
        self._raw = raw
        self._progress = progress
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n if n and n > 0 else _CHUNK)
        self._pos += len(data)
        p = self._progress
        if self._pos > p.high:
            p.advance(self._pos - p.high)
            p.high = self._pos
        return data


class _Resync:
    """The document again after a parse error: lines up to ``skip`` (the bad one) are passed over,
    then everything up to the next line that starts a ``<Record``, which becomes the first line of
    a fresh ``<HealthData>`` document. ``dropped``: lines passed over (added to the parser's line
    numbers); ``found``: False when no record followed (the file ended)."""

    def __init__(self, raw: _Readable, skip: int) -> None:
        self._raw = raw
        self._skip = skip
        self.dropped = 0
        self.found = False
        self._started = False

    def read(self, n: int = -1) -> bytes:
        if self._started:
            return self._raw.read(n)
        self._started = True
        rest = b""
        while True:
            chunk = self._raw.read(_CHUNK)
            if not chunk:
                return b""
            rest += chunk
            while True:
                nl = rest.find(b"\n")
                if nl < 0:
                    break
                if self.dropped >= self._skip and rest[:nl].lstrip().startswith(b"<Record"):
                    self.found = True
                    return b"<HealthData>" + rest
                rest = rest[nl + 1:]
                self.dropped += 1


class _SkipDoctype:
    """The stream without its ``<!DOCTYPE HealthData [...]>``: the export's internal DTD only
    declares elements (nothing the parser needs), some iOS versions wrote it malformed (the whole
    file then fails to parse), and without it no entity can be declared at all. Its lines are kept
    as empty lines, so parse errors still name the right line."""

    def __init__(self, raw: _Readable) -> None:
        self._raw = raw
        self._head = True

    def read(self, n: int = -1) -> bytes:
        if not self._head:
            return self._raw.read(n)
        self._head = False
        data = b""
        while b"<HealthData" not in data and len(data) < _HEAD_MAX:
            chunk = self._raw.read(_CHUNK)
            if not chunk:
                break
            data += chunk
        i, j = data.find(b"<!DOCTYPE"), data.find(b"<HealthData")
        if 0 <= i < j:
            data = data[:i] + b"\n" * data.count(b"\n", i, j) + data[j:]
        return data


def _is_export_xml(name: str) -> bool:
    return name.rsplit("/", 1)[-1] == "export.xml"


def _member(z: zipfile.ZipFile) -> zipfile.ZipInfo | None:
    infos = [i for i in z.infolist() if _is_export_xml(i.filename)]
    return infos[0] if infos else None


class _LocalEntries:
    """``export.xml`` from a zip whose end (the central directory) is missing: the entries are
    read one after another from their local headers, as far as the file goes."""

    def __init__(self, f: IO[bytes], report_stop: Callable[[str], None]) -> None:
        self._f = f
        self._stop = report_stop
        self._inflate: zlib._Decompress | None = None
        self._stored_left = 0
        self._buf = b""
        self._done = False
        self._found = self._seek_export()

    @property
    def found(self) -> bool:
        return self._found

    def _header(self) -> tuple[str, int, int, int] | None:
        head = self._f.read(30)
        if len(head) < 30 or head[:4] != b"PK\x03\x04":
            return None
        _, _, flags, method, _, _, _, csize, _, nlen, xlen = struct.unpack("<IHHHHHIIIHH", head)
        name = self._f.read(nlen).decode("utf-8", "replace")
        self._f.read(xlen)
        return name, flags, method, csize

    def _seek_export(self) -> bool:
        while True:
            h = self._header()
            if h is None:
                return False
            name, flags, method, csize = h
            if method not in (0, 8):
                return False
            if _is_export_xml(name):
                if method == 8:
                    self._inflate = zlib.decompressobj(-15)
                else:
                    self._stored_left = csize
                return True
            if method == 0 or not flags & 0x08:
                self._f.seek(csize, 1)
                if method == 8 and flags & 0x08:
                    return False
                continue
            # deflated with a data descriptor: inflate to find where it ends
            d = zlib.decompressobj(-15)
            while not d.eof:
                chunk = self._f.read(_CHUNK)
                if not chunk:
                    return False
                d.decompress(chunk)
                if d.eof:
                    self._f.seek(-len(d.unused_data), 1)
            self._f.read(16)  # the data descriptor (signature, crc, sizes)

    def read(self, n: int = -1) -> bytes:
        if self._done:
            return b""
        if self._inflate is None:
            want = self._stored_left if n < 0 else min(n, self._stored_left)
            data = self._f.read(want)
            self._stored_left -= len(data)
            if not data:
                self._done = True
            return data
        while True:
            chunk = self._f.read(_CHUNK)
            if not chunk:
                self._done = True
                self._stop("the zip file is cut off (no central directory): read what it holds")
                return self._inflate.flush()
            try:
                out = self._inflate.decompress(chunk)
            except zlib.error as exc:
                self._done = True
                self._stop(f"the zip file is damaged ({exc}): read what came before")
                return b""
            if self._inflate.eof:
                self._done = True
            if out or self._done:
                return out


# ---------------------------------------------------------------------------------------------
# The importer
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _State:
    """What one import has gathered so far (kept across restarts after a parse error)."""

    batch: list[Point] = field(default_factory=list)
    #: heart rate as rows per device (base.Rows: written without building points)
    hr: dict[Tags, list[tuple[int, int]]] = field(default_factory=dict)
    n_hr: int = 0
    sleep: dict[str, list[_Segment]] = field(default_factory=lambda: defaultdict(list))
    devices: dict[str, str] = field(default_factory=dict)  # sourceName -> device tag
    n_record: int = 0


    def flush(self) -> Iterator[Batch]:
        """What was gathered so far, and start again."""
        for tags, rows in self.hr.items():
            yield Rows(HEART_RATE, tags, rows)
        if self.batch:
            yield self.batch
        self.hr, self.n_hr, self.batch = {}, 0, []


@dataclass(slots=True)
class _Segment:
    start_ns: int
    end_ns: int
    code: int  # -1 for in bed


class AppleHealthImporter:
    kind = "apple-health"
    summary = "Apple Health export.zip or export.xml"

    def detect(self, path: Path) -> bool:
        if not path.is_file():
            return False
        with path.open("rb") as f:
            head = f.read(4096)
        if head[:4] == b"PK\x03\x04":
            try:
                with zipfile.ZipFile(path) as z:
                    return _member(z) is not None
            except zipfile.BadZipFile:
                return b"export.xml" in head  # cut off: the first entry's name is in the head
        return b"<HealthData" in head or b"<!DOCTYPE HealthData" in head

    def size(self, path: Path) -> int:
        try:
            with zipfile.ZipFile(path) as z:
                m = _member(z)
                return m.file_size if m is not None else 0
        except zipfile.BadZipFile:
            return path.stat().st_size

    def parse(self, path: Path, ctx: ImportContext) -> Iterator[Batch]:
        opener, name = self._opener(path, ctx)
        st = _State()
        progress = _Progress(ctx.advance)
        skip = 0  # lines to pass over before parsing again (0: from the start)
        last = ""  # the last syntax error, for the summary when nothing follows it
        while True:
            with opener() as raw:
                counted = _Counting(raw, progress)
                stream: _SkipDoctype | _Resync = _SkipDoctype(counted) if skip == 0 else _Resync(counted, skip)
                error = yield from self._parse_xml(stream, name, ctx, st)
            if isinstance(stream, _Resync) and not stream.found:
                ctx.report.stopped = ctx.report.stopped or (
                    f"{name}: no record after line {skip} ({last}); the file is cut off or broken from there, "
                    "what came before was read")
                break
            if error is None:
                break
            line, col, msg = error
            if isinstance(stream, _Resync):
                line += stream.dropped
            ctx.report.bad_input(f"{name} line {line} column {col}", f"not well-formed XML ({msg}); "
                                 "passed over to the next record")
            last = f"line {line}: {msg}"
            skip = line
        yield from st.flush()
        yield from _sleep_points(st.sleep, ctx)

    def _opener(self, path: Path, ctx: ImportContext) -> tuple[Callable[[], AbstractContextManager[_Readable]], str]:
        """How to open ``export.xml`` again from its start (after a parse error the parser restarts)."""
        with path.open("rb") as f:
            is_zip = f.read(4) == b"PK\x03\x04"
        if not is_zip:
            return (lambda: path.open("rb")), path.name
        try:
            with zipfile.ZipFile(path) as z:
                m = _member(z)
        except zipfile.BadZipFile:
            @contextmanager
            def local() -> Iterator[_Readable]:
                with path.open("rb") as f:
                    def stop(msg: str) -> None:
                        ctx.report.stopped = ctx.report.stopped or f"{path.name}: {msg}"

                    entries = _LocalEntries(f, stop)
                    if not entries.found:
                        raise ValidationError(f"{path}: no export.xml in this zip (is it the Health app's "
                                              "export.zip?)")
                    yield entries

            return local, f"{path.name}:export.xml"
        if m is None:
            raise ValidationError(f"{path}: no export.xml in this zip (is it the Health app's export.zip?)")
        member = m

        @contextmanager
        def in_zip() -> Iterator[_Readable]:
            with zipfile.ZipFile(path) as z, z.open(member) as xml:
                yield xml

        return in_zip, f"{path.name}:{member.filename}"

    def _parse_xml(self, stream: _Readable, name: str, ctx: ImportContext,
                   st: _State) -> Generator[Batch, None, tuple[int, int, str] | None]:
        """Parse until the end (None) or a syntax error: (line, column, message) in this stream."""
        report = ctx.report
        root: ET.Element | None = None
        # without the DOCTYPE no entity can be declared (no expansion bombs), and ElementTree never
        # fetches external ones; the file is the user's own export
        it = ET.iterparse(stream, events=("start", "end"))  # noqa: S314
        devices = st.devices
        sleep = st.sleep

        def device(a: dict[str, str]) -> str:
            src = a.get("sourceName", "")
            d = devices.get(src)
            if d is None:
                d = devices[src] = slug(src, "apple-health")
            return d

        n_record = st.n_record
        try:
            for ev, el in it:
                if ev == "start":
                    if root is None:
                        root = el
                    continue
                if el.tag != "Record":
                    if el.tag in _TOP and root is not None:
                        root.clear()
                    continue
                n_record += 1
                a = el.attrib
                typ = a.get("type", "")
                if typ not in _READ:  # most records: steps, energy, distance, ...
                    if root is not None:
                        root.clear()
                    continue
                batch = st.batch
                hr = st.hr
                try:
                    if typ == HR:
                        t = apple_ns(a["startDate"])
                        bpm = round(float(a["value"]))
                        if not 0 < bpm < 300:
                            raise ValueError(f"heart rate {a['value']} is out of range")
                        tags = ctx.tags(device(a))
                        rows = hr.get(tags)
                        if rows is None:
                            rows = hr[tags] = []
                        rows.append((t, bpm))
                        st.n_hr += 1
                    elif typ == SLEEP_ANALYSIS:
                        value = a.get("value", "")
                        code = -1 if value == IN_BED else SLEEP_VALUES.get(value)
                        if code is None:
                            raise ValueError(f"unknown sleep analysis value {value!r}")
                        lo, hi = apple_ns(a["startDate"]), apple_ns(a["endDate"])
                        if hi <= lo:
                            raise ValueError("ends before it starts")
                        sleep[device(a)].append(_Segment(lo, hi, code))
                    elif typ == MAGNESIUM:
                        self._dose(a, ctx, name, n_record)
                    elif typ in (HRV, HEARTBEAT_SERIES):
                        if ctx.beats:
                            batch.extend(self._beats(el, ctx))
                        report.skipped[NOTED.get(typ, "heartbeat series")] += 1
                    elif typ in NOTED:
                        report.skipped[NOTED[typ]] += 1
                except (KeyError, ValueError) as exc:
                    what = f"missing attribute {exc}" if isinstance(exc, KeyError) else str(exc)
                    report.bad_input(f"{name} Record #{n_record} ({typ or 'no type'}, "
                                     f"{a.get('startDate', 'no startDate')})", what)
                if root is not None:
                    root.clear()
                if len(batch) + st.n_hr >= BATCH:
                    yield from st.flush()
        except ET.ParseError as exc:
            line, col = exc.position
            return line, col, str(exc).split(":", 1)[0]
        finally:
            st.n_record = n_record
        return None

    def _dose(self, a: dict[str, str], ctx: ImportContext, name: str, n: int) -> None:
        unit = a.get("unit", "mg")
        if unit not in _UNIT_MG:
            raise ValueError(f"magnesium in unknown unit {unit!r}")
        mg = float(a["value"]) * _UNIT_MG[unit]
        if not mg > 0:
            raise ValueError(f"magnesium amount {a['value']} is not positive")
        t = apple_ns(a["startDate"])
        origin = a.get("sourceName", "Apple Health")
        ctx.doses.append(DoseOffer(t, mg, f"{origin} (Apple Health)", f"{name} Record #{n}",
                                   f"apple-health:{ctx.person}:{a['startDate']}:{origin}:{a['value']}:{unit}"))

    def _beats(self, el: ET.Element, ctx: ImportContext) -> list[Point]:
        """The listed beats as RR: the interval to the previous beat where it matches the beat's bpm."""
        a = el.attrib
        start = a["startDate"]
        t0 = apple_ns(start)
        # local midnight of the record's start, in the record's own offset
        local_s = int(start[11:13]) * 3600 + int(start[14:16]) * 60 + int(start[17:19])
        midnight_ns = t0 - local_s * NS
        tags = ctx.tags(slug(a.get("sourceName", ""), "apple-health"))
        out: list[Point] = []
        prev_ns: int | None = None
        for b in el.iter("InstantaneousBeatsPerMinute"):
            s = clock_s(b.get("time", ""))
            if s < local_s - 3600:  # the list ran past midnight
                s += 86400
            t = midnight_ns + round(s * NS)
            bpm = float(b.get("bpm", "0"))
            if prev_ns is not None and bpm > 0:
                rr = (t - prev_ns) / 1e6
                if abs(rr - 60000.0 / bpm) <= 0.2 * 60000.0 / bpm:  # consecutive beats
                    out.append(Point("rr", tags, {"rr_ms": round(rr, 1)}, t))
            prev_ns = t
        return out


def _sleep_points(sleep: dict[str, list[_Segment]], ctx: ImportContext) -> Iterator[list[Point]]:
    """Each source's segments as stage points; in-bed time around its stages becomes wake."""
    out: list[Point] = []
    for device, segs in sleep.items():
        stages = sorted((s for s in segs if s.code >= 0), key=lambda s: s.start_ns)
        starts = [s.start_ns for s in stages]
        longest = max((s.end_ns - s.start_ns for s in stages), default=0)
        in_bed = [s for s in segs if s.code == -1]
        fill: list[_Segment] = []
        for b in in_bed:
            # the stages overlapping b start within the longest stage's length before it (years of
            # nights: a binary search per in-bed period, not a pass over every stage)
            lo, hi = bisect_left(starts, b.start_ns - longest), bisect_left(starts, b.end_ns)
            inside = [s for s in stages[lo:hi] if s.end_ns > b.start_ns]
            if not inside:
                ctx.report.skipped["in-bed periods without sleep stages"] += 1
                continue
            cur = b.start_ns
            for s in inside:
                if s.start_ns > cur:
                    fill.append(_Segment(cur, s.start_ns, WAKE))
                cur = max(cur, s.end_ns)
            if cur < b.end_ns:
                fill.append(_Segment(cur, b.end_ns, WAKE))
        tags = ctx.tags(device)
        by_start: dict[int, _Segment] = {}
        for s in sorted(stages + fill, key=lambda s: s.start_ns):
            by_start[s.start_ns] = s  # two segments starting together: one point (the later-listed)
        for s in by_start.values():
            fields: dict[str, FieldValue] = {"stage": STAGE_NAMES[s.code], "stage_code": s.code,
                                             "epoch_s": max(1, round((s.end_ns - s.start_ns) / NS))}
            out.append(Point("sleep_stage", tags, fields, s.start_ns))
            if len(out) >= BATCH:
                yield out
                out = []
    if out:
        yield out


