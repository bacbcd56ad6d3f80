"""The dose service: the journal, the rules and the drain, for the CLI, the HTTP API and the phone page.

:class:`DoseService` validates with the pure rules (:mod:`collector.doses.rules`), runs the
journal on one worker thread (so concurrent requests are serialised) and lets the drain
(:mod:`collector.doses.drain`) hand the journal's queued operations to the storage pipeline.
Who exists is injected (``persons``; the app passes :class:`collector.app.persons.Persons`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TypeVar
from uuid import UUID

from collector.doses.drain import STALL_AFTER_S, BacklogSink, JournalDrain, PointSink
from collector.doses.entities import (
    ConflictError,
    Dose,
    DoseCreate,
    DosePatch,
    DoseResult,
    DoseValidationError,
    FieldProblem,
    Health,
    Lights,
    LightsEvent,
    NightTag,
    NightTagName,
    NotFoundError,
    Source,
)
from collector.doses.forms import FORM_NAMES
from collector.doses.journal import JOURNAL_NAME, DoseJournal, damaged_journal_error, is_damaged
from collector.doses.lights import night_for
from collector.doses.rules import (
    PersonLookup,
    Rules,
    apply_patch,
    build_dose,
    check_moment,
    check_rules,
    resolve_time,
    same_request,
    utcnow,
)
from collector.errors import JournalUnavailableError, MagsleepError, StorageError, ValidationError
from collector.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


def journal_path(settings: Settings) -> Path:
    return settings.storage.path(JOURNAL_NAME)


class DoseService:
    """Journal + validation + InfluxDB hand-off. Use as ``async with``."""

    def __init__(
        self,
        settings: Settings,
        *,
        sink: PointSink | None = None,
        persons: PersonLookup | None = None,
        now: Callable[[], datetime] = utcnow,
        path: Path | None = None,
        durable_sink: bool = True,
        flush_timeout_s: float = 5.0,
        drain_interval_s: float = 0.0,
        max_backoff_s: float | None = None,
        stall_after_s: float = STALL_AFTER_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``persons``: who exists (default: the configured persons only; the app injects
        :class:`collector.app.persons.Persons`, which adds the device registry's).
        ``durable_sink``: the sink keeps what ``put`` accepted (a pipeline with an outbox).
        Otherwise journal operations are acknowledged only after ``flush`` succeeded.
        ``drain_interval_s`` > 0: also hand over queued operations periodically (long-lived
        services: picks up what a CLI command could not deliver, and retries after the sink
        refused, e.g. a full outbox, with backoff up to ``max_backoff_s``, default
        ``storage.max_retry_backoff_s``). ``stall_after_s``: a backlog that has not moved for
        this long makes :meth:`health` report "degraded"."""
        self.stall_after_s = stall_after_s
        self.settings = settings
        self.rules = Rules(settings, persons=persons, now=now)
        self.rules.default_form()  # doses.default_form: a ConfigError before anything is logged
        self.sink = sink
        self.path = path or journal_path(settings)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dose-journal")
        self._journal: DoseJournal | None = None
        self._unavailable: JournalUnavailableError | None = None
        self._drain = JournalDrain(
            sink, journal=lambda: self._journal, run=self._run,
            lock_path=self.path.with_suffix(".drain.lock"), durable_sink=durable_sink,
            flush_timeout_s=flush_timeout_s, interval_s=drain_interval_s,
            max_backoff_s=settings.storage.max_retry_backoff_s if max_backoff_s is None else max_backoff_s,
            monotonic=monotonic)

    async def __aenter__(self) -> DoseService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the journal and hand over what it queued. A journal that cannot be opened
        (damaged, unreadable) does not stop the process: every dose call then raises
        :class:`JournalUnavailableError` saying how to recover (the API answers 503)."""
        try:
            self._journal = await self._run(lambda: DoseJournal(self.path))
        except JournalUnavailableError as exc:
            self._unavailable = exc
            log.error("doses cannot be logged: %s", exc)
            return
        await self.drain(wait_s=2.0)
        self._drain.start_periodic()

    async def close(self) -> None:
        await self._drain.stop()
        if self._journal is not None:
            journal = self._journal
            await self._run(journal.close)
            self._journal = None
        self._pool.shutdown(wait=True)

    @property
    def journal(self) -> DoseJournal:
        if self._journal is None:
            if self._unavailable is not None:
                raise JournalUnavailableError(str(self._unavailable))
            raise MagsleepError("the dose service is not started; use `async with DoseService(...)`")
        return self._journal

    @property
    def available(self) -> bool:
        """Whether the journal is open (False: it could not be opened; see :meth:`health`)."""
        return self._journal is not None

    async def _run(self, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn)
        except sqlite3.Error as exc:
            if is_damaged(exc):
                raise damaged_journal_error(self.path, str(exc)) from exc
            raise StorageError(
                f"dose journal {self.path}: {exc}; check free disk space and permissions "
                "(nothing was changed)") from exc

    # -- doses -------------------------------------------------------------------------------

    async def add(self, create: DoseCreate, *, default_source: Source | None = None) -> DoseResult:
        if create.id is not None:
            stored = await self._run(lambda: self.journal.get(create.id))  # type: ignore[arg-type]
            if stored is not None:
                return self._replay(stored, create, default_source)
        dose = build_dose(create, self.rules, default_source)
        saved, created = await self._run(partial(self.journal.insert, dose))
        if not created:
            return self._replay(saved, create, default_source)
        warnings = await self._run(partial(self._daily_warnings, saved))
        await self.drain()
        return DoseResult(dose=saved, warnings=warnings, created=True)

    def _replay(self, stored: Dose, create: DoseCreate, src: Source | None) -> DoseResult:
        try:
            fresh = build_dose(create, self.rules, src)
        except DoseValidationError:
            fresh = None
        if fresh is None or not same_request(stored, create, fresh):
            raise ConflictError(
                f"id {stored.id} is already used by a different dose; send a new id, or PATCH "
                f"/api/v1/doses/{stored.id} to change it"
            )
        return DoseResult(dose=stored, warnings=[], created=False)

    async def journal_get(self, dose_id: UUID) -> Dose | None:
        return await self._run(partial(self.journal.get, dose_id))

    async def find_id(self, text: str) -> UUID:
        """A full dose id, or a unique prefix of one (as `magsleep dose list` shows)."""
        t = text.strip().lower()
        try:
            return UUID(t)
        except ValueError:
            pass
        if not re.fullmatch(r"[0-9a-f-]{4,36}", t):
            raise ValidationError(f"{text!r} is not a dose id; copy one from `magsleep dose list`")
        matches = [d.id for d in await self.list_doses() if str(d.id).startswith(t)]
        if not matches:
            raise ValidationError(f"no dose id starts with {text!r}; see `magsleep dose list`")
        if len(matches) > 1:
            raise ValidationError(f"{text!r} matches {len(matches)} doses; give more characters")
        return matches[0]

    async def get(self, dose_id: UUID) -> Dose:
        dose = await self._run(lambda: self.journal.get(dose_id))
        if dose is None:
            raise NotFoundError(f"no dose with id {dose_id}; list them with GET /api/v1/doses")
        return dose

    async def list_doses(
        self,
        *,
        person: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[Dose]:
        return await self._run(
            lambda: self.journal.list_doses(person=person, since=since, until=until, limit=limit)
        )

    async def update(self, dose_id: UUID, patch: DosePatch) -> DoseResult:
        old = await self.get(dose_id)
        new = apply_patch(old, patch, self.rules)
        stored = await self._run(lambda: self.journal.replace(new))
        warnings = await self._run(lambda: self._daily_warnings(stored))
        await self.drain()
        return DoseResult(dose=stored, warnings=warnings, created=False)

    async def delete(self, dose_id: UUID) -> Dose:
        now = self.rules.now()
        old = await self._run(lambda: self.journal.delete(dose_id, now))
        await self.drain()
        return old

    def _daily_warnings(self, dose: Dose) -> list[str]:
        if dose.supplement != "magnesium":
            return []
        level = self.settings.doses.daily_warning_elemental_mg
        tz = self.rules.tz(dose.person)
        day = dose.taken_at.astimezone(tz).date()
        start = datetime(day.year, day.month, day.day, tzinfo=tz)
        end = start + timedelta(days=1)
        total = dose.elemental_mg + self.journal.elemental_total(
            dose.person, dose.supplement, start, end, dose.id
        )
        if total <= level:
            return []
        return [
            f"{dose.person}'s supplemental elemental magnesium on {day.isoformat()} is now "
            f"{total:.0f} mg, above the daily level of {level:g} mg (doses.daily_warning_elemental_mg;"
            " the US adult upper level for supplements is 350 mg, EFSA's 250 mg). The dose is"
            " logged; check the amounts if this is a mistake."
        ]

    # -- night tags --------------------------------------------------------------------------

    async def tag_night(
        self, person: str | None, night: date, tags: Sequence[NightTagName], *, remove: bool = False
    ) -> list[tuple[NightTagName, bool]]:
        """Set (or remove) tags on a night; returns each tag and whether it changed."""
        problems: list[FieldProblem] = []
        name = self.rules.resolve_person(person, problems)
        today = self.rules.now().astimezone(self.rules.tz(name or "")).date()
        if night > today:
            problems.append(FieldProblem(
                "night", f"{night} is in the future; tag a night that has begun (YYYY-MM-DD)"
            ))
        if not tags:
            problems.append(FieldProblem(
                "tag", "give at least one tag: " + ", ".join(t.value for t in NightTagName)
            ))
        if problems:
            raise DoseValidationError(problems)
        now = self.rules.now()
        out: list[tuple[NightTagName, bool]] = []
        for t in tags:
            if remove:
                changed = await self._run(partial(self.journal.remove_tag, name, night, t))
            else:
                tag = NightTag(person=name, night=night, tag=t, recorded_at=now)
                changed = await self._run(partial(self.journal.set_tag, tag))
            out.append((t, changed))
        await self.drain()
        return out

    async def night_tags(
        self, *, person: str | None = None, since: date | None = None
    ) -> list[NightTag]:
        return await self._run(lambda: self.journal.list_tags(person=person, since=since))

    # -- lights out / lights on ---------------------------------------------------------------

    async def set_lights(
        self,
        person: str | None,
        event: LightsEvent,
        at: datetime | None = None,
        *,
        source: Source = Source.api,
    ) -> tuple[Lights, bool]:
        """Record the lights out/on of the night holding ``at`` (default now), replacing the
        night's earlier one; returns it and whether anything changed (same time again: no)."""
        problems: list[FieldProblem] = []
        name = self.rules.resolve_person(person, problems)
        if problems:
            raise DoseValidationError(problems)
        tz = self.rules.tz(name)
        when = resolve_time(self.rules, at, tz, problems, field="at")
        now = self.rules.now()
        problem = check_moment(when, now, "at", give="the time the lights went out/on")
        if problem is not None:
            problems.append(problem)
        if problems:
            raise DoseValidationError(problems)
        night = await self._run(partial(night_for, self.rules.people.settings_of(name), when))
        other_event = (LightsEvent.lights_on if event is LightsEvent.lights_out
                       else LightsEvent.lights_out)
        other = await self._run(partial(self.journal.get_lights, name, night, other_event))
        if other is not None and (
            (event is LightsEvent.lights_out and other.at <= when)
            or (event is LightsEvent.lights_on and other.at >= when)
        ):
            first, then = ("out", "on") if event is LightsEvent.lights_out else ("on", "out")
            problems.append(FieldProblem(
                "at", f"lights {first} at {when.astimezone(tz):%H:%M} would not be "
                f"{'before' if first == 'out' else 'after'} lights {then} at "
                f"{other.at.astimezone(tz):%H:%M} on the night of {night.isoformat()}; check the "
                f"time, or remove that lights {then} first"))
            raise DoseValidationError(problems)
        lights = Lights(person=name, night=night, event=event, at=when, source=source,
                        recorded_at=now)
        saved, changed = await self._run(partial(self.journal.set_lights, lights))
        await self.drain()
        return saved, changed

    async def record_lights(self, person: str | None, event: LightsEvent, at: str | None, *,
                            source: Source = Source.cli) -> tuple[Lights, bool]:
        """:meth:`set_lights` with ``at`` as a person types it (``--at``: :func:`parse_at` in the
        person's time zone; default now)."""
        problems: list[FieldProblem] = []
        name = self.rules.resolve_person(person, problems)
        if problems:
            raise DoseValidationError(problems)
        when = self.rules.at(at, name) if at else None
        return await self.set_lights(name, event, when, source=source)

    async def remove_lights(self, person: str | None, night: date, event: LightsEvent) -> Lights:
        """Remove a night's lights out/on (InfluxDB: a ``value=false`` point overwrites it)."""
        problems: list[FieldProblem] = []
        name = self.rules.resolve_person(person, problems)
        if problems:
            raise DoseValidationError(problems)
        old = await self._run(partial(self.journal.remove_lights, name, night, event))
        await self.drain()
        return old

    async def list_lights(
        self, *, person: str | None = None, since: date | None = None, limit: int | None = None
    ) -> list[Lights]:
        """Current lights out/on per night, newest night first."""
        return await self._run(
            lambda: self.journal.list_lights(person=person, since=since, limit=limit))

    # -- InfluxDB ----------------------------------------------------------------------------

    async def sync(self) -> int:
        """Queue every live dose, tag and lights out/on for InfluxDB again and hand them over."""
        n = await self._run(self.journal.enqueue_all)
        await self.drain()
        return n

    async def pending(self) -> int:
        return await self._run(self.journal.pending_count)

    async def health(self) -> Health:
        """Both backlogs (journal operations, outbox rows) and whether they move.

        "degraded" when either has waited ``stall_after_s`` without moving, or the journal is
        unavailable."""
        if self._journal is None and self._unavailable is not None:
            return Health(status="degraded", journal="unavailable", journal_ops=None,
                          outbox_rows=self.sink.backlog().rows
                          if isinstance(self.sink, BacklogSink) else None,
                          problems=[str(self._unavailable)])
        ops = await self.pending()
        problems: list[str] = []
        stalled = self._drain.progress.stalled_s(ops)
        if stalled >= self.stall_after_s:
            problems.append(
                f"{ops} dose journal operation(s) have not reached the outbox for {stalled:.0f} s"
                + (" (the outbox is full or refusing; is InfluxDB reachable?)"
                   if self._drain.failures else ""))
        rows: int | None = None
        if isinstance(self.sink, BacklogSink):
            backlog = self.sink.backlog()
            rows = backlog.rows
            if backlog.stalled_s >= self.stall_after_s:
                problems.append(
                    f"{backlog.lines} line(s) in {backlog.rows} outbox row(s) have not reached "
                    f"InfluxDB for {backlog.stalled_s:.0f} s; check that InfluxDB runs and the "
                    "URL (`magsleep influx ping`)")
        return Health(
            status="degraded" if problems else "ok",
            journal=f"{ops} operation(s) queued for InfluxDB",
            journal_ops=ops,
            outbox_rows=rows,
            problems=problems,
        )

    async def drain(self, *, wait_s: float = 1.0) -> int:
        """Hand queued journal operations to the pipeline, in order; returns how many
        (:meth:`collector.doses.drain.JournalDrain.drain`)."""
        return await self._drain.drain(wait_s=wait_s)


__all__ = [
    "FORM_NAMES",
    "BacklogSink",
    "DoseService",
    "PointSink",
    "Rules",
    "apply_patch",
    "build_dose",
    "check_rules",
    "journal_path",
    "utcnow",
]
