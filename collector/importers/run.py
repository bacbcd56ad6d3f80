"""``magsleep import``: parse a file with its importer, write through the storage pipeline,
offer doses, then compute the nights the import touched.

Idempotent: importers stamp points deterministically from the input, and the same series and
time is the same point in InfluxDB, so importing a file again (or after an interruption) rewrites
the same points and adds nothing. Imported points carry ``source=import`` and their own ``device``
tag, so they never merge with what the daemon collected; which device a night uses is the nights
rule (collector/nights/run.py: the device with the most points; docs/import.md).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from collector.errors import ValidationError
from collector.importers import get_importer
from collector.importers.base import NS, Batch, DoseOffer, ImportContext, Report, Rows
from collector.settings import PersonSettings, Settings

if TYPE_CHECKING:
    from collector.storage.pipeline import Pipeline

#: Measurements a night is computed from (a point in one marks its night as touched).
NIGHT_INPUTS = frozenset({"rr", "heart_rate", "motion", "sleep_stage"})
#: Lines per InfluxDB write (a bulk import; 20,000 measured best on 1.6.7 by sim/backfill).
IMPORT_BATCH_SIZE = 20_000
#: Pause parsing while this many lines wait for InfluxDB (keeps memory flat).
MAX_PENDING_LINES = 400_000
#: Nights touched are found per 5-minute slot (three years of minute data: ~300,000 slots, not 1.5M);
#: a slot counts for the night its middle falls in
_SLOT_NS = 300 * NS
_DAY_NS = 86400 * NS
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


@dataclass
class ImportSummary:
    """What an import found, wrote and computed."""

    kind: str
    source: str
    person: str
    dry_run: bool
    points: Counter[str] = field(default_factory=Counter)
    first_ns: int | None = None
    last_ns: int | None = None
    nights: list[date] = field(default_factory=list)
    report: Report = field(default_factory=Report)
    doses: list[DoseOffer] = field(default_factory=list)
    doses_logged: int = 0
    doses_refused: list[str] = field(default_factory=list)
    nights_computed: int = 0
    nights_unchanged: int = 0
    nights_flagged: int = 0
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.points.values())


class _Tally:
    """Counts points per measurement, the time range and the time slots nights are computed from."""

    def __init__(self, summary: ImportSummary) -> None:
        self.s = summary
        self.slots: set[int] = set()

    def add(self, batch: Batch) -> None:
        s = self.s
        if isinstance(batch, Rows):  # one measurement: no per-point bookkeeping
            times = [r[0] for r in batch.rows]
            lo, hi = min(times), max(times)
            s.points[batch.measurement] += len(times)
            if batch.measurement in NIGHT_INPUTS:
                self.slots.update({t // _SLOT_NS for t in times})
        else:
            lo = hi = batch[0].time_ns
            slots = self.slots
            counts: Counter[str] = Counter()
            for p in batch:
                t = p.time_ns
                lo = t if t < lo else lo
                hi = t if t > hi else hi
                counts[p.measurement] += 1
                if p.measurement in NIGHT_INPUTS:
                    slots.add(t // _SLOT_NS)
            s.points.update(counts)
        s.first_ns = lo if s.first_ns is None else min(s.first_ns, lo)
        s.last_ns = hi if s.last_ns is None else max(s.last_ns, hi)

    def nights(self, person: PersonSettings) -> list[date]:
        """The evenings whose night window holds a slot (windows computed once per day, not per slot)."""
        from collector.nights.segment import NightWindow, night_window

        windows: dict[int, NightWindow] = {}
        out: set[date] = set()
        for m in self.slots:
            t = m * _SLOT_NS + _SLOT_NS // 2
            utc_day = _EPOCH_ORDINAL + t // _DAY_NS
            for day in (utc_day - 1, utc_day, utc_day + 1):  # the local evening is one of these
                w = windows.get(day)
                if w is None:
                    w = windows[day] = night_window(date.fromordinal(day), person)
                if w.start_ns <= t < w.end_ns:
                    out.add(w.night)
                    break
        return sorted(out)


async def run_import(
    settings: Settings,
    kind: str,
    source: str,
    *,
    person: str | None = None,
    dry_run: bool = False,
    start: datetime | None = None,
    device: str | None = None,
    nights: bool = True,
    confirm_doses: bool = False,
    beats: bool = False,
    advance: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    now: Callable[[], datetime] | None = None,
) -> ImportSummary:
    """Import ``source`` (a file, or a URL for garmin-grafana) of ``kind`` for one person.

    ``dry_run``: parse everything and count, store nothing. ``beats``: Apple Health's beat lists as
    ``rr`` (docs/import.md says why that is off by default). ``advance``/``on_total``: progress in
    input bytes. ``now``: the clock for dose validation and the nights run (default the real one).
    """
    t0 = time.perf_counter()
    imp = get_importer(kind)
    p = settings.one_person(person)
    path = Path(source)

    def check() -> int:  # file system or network: off the event loop
        if "://" not in source and not path.exists():
            raise ValidationError(f"{source}: no such file")
        if not imp.detect(path):
            raise ValidationError(f"{source}: does not look like a {kind} export ({imp.summary}); check the "
                                  "kind and the file (docs/import.md says what each app exports)")
        return imp.size(path)

    size = await asyncio.to_thread(check)
    summary = ImportSummary(kind, _shown(source), p.name, dry_run)
    ctx = ImportContext(person=p.name, tz=p.tz, start=start, device=device, beats=beats, report=summary.report,
                        doses=summary.doses)
    if advance is not None:
        ctx.advance = advance
    if on_total is not None:
        on_total(size)
    tally = _Tally(summary)
    batches = imp.parse(path, ctx)
    if dry_run:
        await _drain(batches, tally, None)
    else:
        from collector.storage.pipeline import Pipeline

        async with Pipeline.from_settings(settings, name="import", outbox_path=None,
                                          batch_size=IMPORT_BATCH_SIZE) as pipe:
            await _drain(batches, tally, pipe)
            if confirm_doses and summary.doses:
                await _log_doses(settings, p, summary, pipe, now)
            await pipe.flush(timeout=max(600.0, settings.influx.timeout_s * 6))
    summary.nights = tally.nights(p)
    if nights and not dry_run and summary.nights:
        summary.nights_computed, summary.nights_unchanged, summary.nights_flagged = await compute_nights(
            settings, p.name, summary.nights, now=now)
    summary.seconds = time.perf_counter() - t0
    return summary


async def compute_nights(settings: Settings, person: str, nights: Sequence[date],
                         now: Callable[[], datetime] | None = None) -> tuple[int, int, int]:
    """Compute the nights from the first to the last of ``nights``: (computed, unchanged, flagged)."""
    from collector.nights.run import compute_all

    now_ns = None if now is None else int(now().timestamp() * NS)
    # as `magsleep nights compute`: worker processes when there are enough nights to pay for them
    runs = await compute_all(settings, person=person, since=min(nights), until=max(nights), now_ns=now_ns,
                             workers=min(4, os.cpu_count() or 1))
    return (sum(r.computed for r in runs), sum(r.unchanged for r in runs), sum(r.flagged for r in runs))


def _shown(source: str) -> str:
    """``source`` as printed: a URL without its user and password."""
    return re.sub(r"^(https?://)[^/@]*@", r"\1", source)


async def _drain(batches: Iterator[Batch], tally: _Tally, pipe: Pipeline | None) -> None:
    """Pull batches from the importer (in a thread: parsing is CPU work) and hand them on.

    Always the same thread: an importer may hold objects bound to the thread that made them
    (an SQLite connection)."""
    loop = asyncio.get_running_loop()
    done = object()
    pending: list[Batch] = []

    def pull() -> object:
        # a few batches per thread hop: fewer hand-offs, same memory bound
        pending.clear()
        for _ in range(4):
            b = next(batches, None)
            if b is None:
                break
            pending.append(b)
        return list(pending) if pending else done

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="magsleep-import") as parser:
        while True:
            got = await loop.run_in_executor(parser, pull)
            if got is done:
                return
            assert isinstance(got, list)
            for batch in got:
                if not batch:
                    continue
                tally.add(batch)
                if pipe is not None:
                    while pipe.pending()[1] > MAX_PENDING_LINES:  # noqa: ASYNC110 - no "drained below" event
                        await asyncio.sleep(0.02)
                    if isinstance(batch, Rows):
                        await pipe.put_rows(batch.layout.encoder, batch.tags, batch.rows)
                    else:
                        await pipe.put(batch)


async def _log_doses(settings: Settings, person: PersonSettings, summary: ImportSummary, pipe: Pipeline,
                     now: Callable[[], datetime] | None) -> None:
    """Log the offered doses through the dose service (the journal is their source of truth)."""
    from collector.doses.entities import DoseCreate, Source
    from collector.doses.forms import Form
    from collector.doses.service import DoseService, utcnow
    from collector.errors import MagsleepError

    async with DoseService(settings, sink=pipe, durable_sink=False, now=now or utcnow) as svc:
        for offer in summary.doses:
            taken = datetime.fromtimestamp(offer.time_ns / NS, UTC)
            create = DoseCreate(id=offer.dose_id, person=person.name, form=Form.other,
                                amount_mg=max(1.0, offer.elemental_mg), elemental_mg=offer.elemental_mg,
                                taken_at=taken, note=f"imported from {offer.origin}"[:200],
                                source=Source.import_)
            try:
                await svc.add(create, default_source=Source.import_)
                summary.doses_logged += 1
            except MagsleepError as exc:
                summary.doses_refused.append(f"{offer.where}: {exc}")
