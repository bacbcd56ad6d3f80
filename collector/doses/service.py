"""Dose logic shared by the CLI, the HTTP API and the phone page.

Pure rules (:func:`build_dose`, :func:`apply_patch`, :func:`check_rules`) turn input into a valid
:class:`Dose` or a :class:`DoseValidationError` listing every problem. :class:`DoseService` runs
the journal on one worker thread (so concurrent requests are serialised) and hands the journal's
queued InfluxDB operations to the storage pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import partial
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import pydantic

from collector.doses.forms import FORM_NAMES, Form, elemental_share, parse_form
from collector.doses.journal import JOURNAL_NAME, DoseJournal, damaged_journal_error, is_damaged
from collector.doses.lights import night_for, person_settings
from collector.doses.model import (
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
    problems_from_pydantic,
)
from collector.errors import ConfigError, JournalUnavailableError, MagsleepError, StorageError
from collector.settings import Settings
from collector.storage.lineprotocol import Point
from collector.storage.pipeline import Backlog, Progress, backoff_delay

log = logging.getLogger(__name__)
T = TypeVar("T")

FUTURE_TOLERANCE = timedelta(minutes=10)
MAX_AGE = timedelta(days=365)
#: A backlog (journal operations or outbox rows) that has not moved for this long makes
#: ``/healthz`` answer "degraded": longer than a few retries at the longest backoff.
STALL_AFTER_S = 300.0


class PointSink(Protocol):
    """The part of :class:`collector.storage.pipeline.Pipeline` the doses need."""

    async def put(self, points: Iterable[Point]) -> None: ...

    async def delete(self, measurement: str, tags: Mapping[str, str], time_ns: int) -> None: ...

    async def flush(self, timeout: float | None = None) -> None: ...


@runtime_checkable
class BacklogSink(Protocol):
    """A sink that can tell what still waits for InfluxDB (the pipeline's outbox)."""

    def backlog(self) -> Backlog: ...


def utcnow() -> datetime:
    return datetime.now(UTC)


def journal_path(settings: Settings) -> Path:
    return settings.storage.state_dir.expanduser() / JOURNAL_NAME


def registry_persons(settings: Settings) -> Callable[[], list[str]]:
    """Persons of the device registry (``<state_dir>/devices.json``); empty if it is unreadable."""

    def persons() -> list[str]:
        from collector.ble.registry import DeviceRegistry

        try:
            return sorted({d.person for d in DeviceRegistry.for_settings(settings)})
        except MagsleepError as exc:
            log.warning("doses: only configured persons are accepted: %s", exc)
            return []

    return persons


class Rules:
    """What validation needs to know: the settings, who exists, and the time now.

    Persons are those of the config plus ``extra_persons()`` (default: the device registry).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        extra_persons: Callable[[], Iterable[str]] | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self._extra = extra_persons if extra_persons is not None else registry_persons(settings)
        self.now = now

    def persons(self) -> list[str]:
        names = [p.name for p in self.settings.persons]
        names += [n for n in self._extra() if n not in names]
        return names

    def tz(self, person: str) -> tzinfo:
        for p in self.settings.persons:
            if p.name == person:
                return ZoneInfo(p.timezone)
        return UTC

    def default_form(self) -> Form:
        try:
            return parse_form(self.settings.doses.default_form)
        except ValueError as exc:
            raise ConfigError(f"doses.default_form: {exc}") from None

    def resolve_person(self, person: str | None, problems: list[FieldProblem]) -> str:
        known = self.persons()
        if person is None:
            if len(known) == 1:
                return known[0]
            problems.append(FieldProblem(
                "person",
                "is required when more than one person is configured; use one of: "
                + ", ".join(known)
                if known
                else "no persons configured; add a [[persons]] entry to the config",
            ))
            return ""
        if person not in known:
            hint = ", ".join(known) if known else "none configured"
            problems.append(FieldProblem(
                "person",
                f"unknown person {person!r}; use one of: {hint} "
                "(or add a [[persons]] entry to the config)",
            ))
        return person

    def resolve_time(self, value: datetime | None, tz: tzinfo) -> datetime:
        if value is None:
            return self.now().astimezone(tz)
        if value.tzinfo is None or value.utcoffset() is None:
            return value.replace(tzinfo=tz)
        return value.astimezone(tz)


def check_rules(dose: Dose, rules: Rules, problems: list[FieldProblem]) -> None:
    """Rules that need the settings and the time: ceiling, time window, elemental vs amount."""
    ceiling = rules.settings.doses.ceiling_elemental_mg
    if dose.elemental_mg > ceiling:
        problems.append(FieldProblem(
            "elemental_mg" if not dose.elemental_computed else "amount_mg",
            f"{dose.elemental_mg:.1f} mg elemental magnesium is above the ceiling of {ceiling:g} mg;"
            " check the amount (mg of the compound, not µg or g) or raise"
            " doses.ceiling_elemental_mg",
        ))
    if dose.elemental_mg > dose.amount_mg:
        problems.append(FieldProblem(
            "elemental_mg",
            f"elemental magnesium ({dose.elemental_mg:g} mg) cannot exceed the amount of the "
            f"compound ({dose.amount_mg:g} mg); give the elemental amount from the label",
        ))
    now = rules.now()
    if dose.taken_at > now + FUTURE_TOLERANCE:
        problems.append(FieldProblem(
            "taken_at",
            f"{dose.taken_at.isoformat(timespec='minutes')} is more than 10 minutes in the "
            "future; give the time you took it (check the date and time zone)",
        ))
    if dose.taken_at < now - MAX_AGE:
        problems.append(FieldProblem(
            "taken_at",
            f"{dose.taken_at.isoformat(timespec='minutes')} is more than a year back; "
            "check the date (doses older than 365 days are not accepted)",
        ))


def _elemental(
    form: Form, amount: float, given: float | None, problems: list[FieldProblem]
) -> tuple[float, bool]:
    if given is not None:
        return given, False
    share = elemental_share(form)
    if share is None:
        problems.append(FieldProblem(
            "elemental_mg",
            f"is required for form {form.value!r} (its magnesium share is unknown); give the "
            "elemental magnesium from the label",
        ))
        return amount, False
    exact = amount * share
    return (round(exact, 2) or exact), True  # 2 decimals, but never rounded to 0


def _resolve_time(
    rules: Rules, value: datetime | None, tz: tzinfo, problems: list[FieldProblem],
    field: str = "taken_at",
) -> datetime:
    try:
        return rules.resolve_time(value, tz)
    except (OverflowError, ValueError):
        problems.append(FieldProblem(
            field, "is out of range; give a date and time within the last year"))
        return rules.now()


def _make_dose(**values: object) -> Dose:
    try:
        return Dose.model_validate(values)
    except pydantic.ValidationError as exc:
        raise DoseValidationError(problems_from_pydantic(exc)) from None


def build_dose(create: DoseCreate, rules: Rules, default_source: Source | None = None) -> Dose:
    """A complete, valid dose from ``create``; raises :class:`DoseValidationError`."""
    problems: list[FieldProblem] = []
    person = rules.resolve_person(create.person, problems)
    tz = rules.tz(person)
    form = create.form or rules.default_form()
    elemental, computed = _elemental(form, create.amount_mg, create.elemental_mg, problems)
    now = rules.now()
    source = create.source
    if default_source is not None and "source" not in create.model_fields_set:
        source = default_source
    taken = _resolve_time(rules, create.taken_at, tz, problems)
    if elemental <= 0:
        problems.append(FieldProblem("amount_mg", "is too small to contain any magnesium; give mg"))
    if problems:
        raise DoseValidationError(problems)
    dose = _make_dose(
        id=create.id or uuid4(),
        person=person,
        supplement=create.supplement,
        form=form,
        amount_mg=create.amount_mg,
        elemental_mg=elemental,
        elemental_computed=computed,
        taken_at=taken,
        note=create.note,
        source=source,
        recorded_at=now,
        updated_at=now,
    )
    check_rules(dose, rules, problems)
    if problems:
        raise DoseValidationError(problems)
    return dose


def apply_patch(dose: Dose, patch: DosePatch, rules: Rules) -> Dose:
    """``dose`` changed by ``patch``; elemental mg is recomputed if it was computed before."""
    problems: list[FieldProblem] = []
    given = patch.model_fields_set
    person = dose.person
    if "person" in given and patch.person is not None:
        person = rules.resolve_person(patch.person, problems)
    form = patch.form if patch.form is not None else dose.form
    amount = patch.amount_mg if patch.amount_mg is not None else dose.amount_mg
    if patch.elemental_mg is not None:
        elemental, computed = patch.elemental_mg, False
    elif dose.elemental_computed:
        elemental, computed = _elemental(form, amount, None, problems)
    else:
        elemental, computed = dose.elemental_mg, False
    for name in ("person", "supplement", "form", "amount_mg", "taken_at", "note"):
        if name in given and getattr(patch, name) is None:
            problems.append(FieldProblem(name, "cannot be null; leave it out to keep the value"))
    if problems:
        raise DoseValidationError(problems)
    taken = dose.taken_at
    if patch.taken_at is not None:
        taken = _resolve_time(rules, patch.taken_at, rules.tz(person), problems)
    if elemental <= 0:
        problems.append(FieldProblem("amount_mg", "is too small to contain any magnesium; give mg"))
    if problems:
        raise DoseValidationError(problems)
    values = dose.model_dump()
    values.update({
        "person": person,
        "supplement": patch.supplement or dose.supplement,
        "form": form,
        "amount_mg": amount,
        "elemental_mg": elemental,
        "elemental_computed": computed,
        "taken_at": taken,
        "note": patch.note if patch.note is not None else dose.note,
        "updated_at": rules.now(),
    })
    new = _make_dose(**values)
    check_rules(new, rules, problems)
    if problems:
        raise DoseValidationError(problems)
    return new


def same_request(stored: Dose, create: DoseCreate, fresh: Dose) -> bool:
    """Whether a repeated POST asks for the stored dose (fields it set explicitly match)."""
    for name in create.model_fields_set:
        if name in ("id", "source"):
            continue
        if name == "taken_at":
            if stored.taken_at != fresh.taken_at:
                return False
        elif getattr(stored, name) != getattr(fresh, name):
            return False
    return True


class DoseService:
    """Journal + validation + InfluxDB hand-off. Use as ``async with``."""

    def __init__(
        self,
        settings: Settings,
        *,
        sink: PointSink | None = None,
        extra_persons: Callable[[], Iterable[str]] | None = None,
        now: Callable[[], datetime] = utcnow,
        path: Path | None = None,
        durable_sink: bool = True,
        flush_timeout_s: float = 5.0,
        drain_interval_s: float = 0.0,
        max_backoff_s: float | None = None,
        stall_after_s: float = STALL_AFTER_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``durable_sink``: the sink keeps what ``put`` accepted (a pipeline with an outbox).
        Otherwise journal operations are acknowledged only after ``flush`` succeeded.
        ``drain_interval_s`` > 0: also hand over queued operations periodically (long-lived
        services: picks up what a CLI command could not deliver, and retries after the sink
        refused, e.g. a full outbox, with backoff up to ``max_backoff_s``, default
        ``storage.max_retry_backoff_s``). ``stall_after_s``: a backlog that has not moved for
        this long makes :meth:`health` report "degraded"."""
        self.durable_sink = durable_sink
        self.flush_timeout_s = flush_timeout_s
        self.drain_interval_s = drain_interval_s
        self.max_backoff_s = (settings.storage.max_retry_backoff_s if max_backoff_s is None
                              else max_backoff_s)
        self.stall_after_s = stall_after_s
        self._monotonic = monotonic
        self._ticker: asyncio.Task[None] | None = None
        self._rescheduled = asyncio.Event()
        self._failures = 0  # hand-offs refused in a row
        self._retry_at = 0.0  # monotonic time before which no hand-off is tried
        self._journal_progress = Progress(monotonic)
        self.settings = settings
        self.rules = Rules(settings, extra_persons=extra_persons, now=now)
        self.sink = sink
        self.path = path or journal_path(settings)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dose-journal")
        self._journal: DoseJournal | None = None
        self._unavailable: JournalUnavailableError | None = None
        self._drain_lock = asyncio.Lock()

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
        if self.drain_interval_s > 0 and self.sink is not None:
            self._ticker = asyncio.create_task(self._tick(), name="dose-journal-drain")

    async def _tick(self) -> None:
        while True:
            delay = self.drain_interval_s
            wait = self._retry_at - self._monotonic()
            if 0 < wait < delay:
                delay = wait  # the retry after a refusal is due before the next round
            self._rescheduled.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rescheduled.wait(), delay)
            if self._monotonic() < self._retry_at:
                continue
            try:
                await self.drain(wait_s=0.0)
            except MagsleepError as exc:  # keep ticking; the journal keeps the operations
                log.warning("dose journal: periodic hand-off failed: %s", exc)

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
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
        when = _resolve_time(self.rules, at, tz, problems, field="at")
        now = self.rules.now()
        if when > now + FUTURE_TOLERANCE:
            problems.append(FieldProblem(
                "at", f"{when.isoformat(timespec='minutes')} is more than 10 minutes in the future; "
                "give the time the lights went out/on (check the date and time zone)"))
        elif when < now - MAX_AGE:
            problems.append(FieldProblem(
                "at", f"{when.isoformat(timespec='minutes')} is more than a year back; check the date"))
        if problems:
            raise DoseValidationError(problems)
        night = await self._run(partial(night_for, person_settings(self.settings, name), when))
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
        stalled = self._journal_progress.stalled_s(ops)
        if stalled >= self.stall_after_s:
            problems.append(
                f"{ops} dose journal operation(s) have not reached the outbox for {stalled:.0f} s"
                + (" (the outbox is full or refusing; is InfluxDB reachable?)"
                   if self._failures else ""))
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
        """Hand queued journal operations to the pipeline, in order; returns how many.

        One process at a time (a lock file beside the journal): another process busy with the
        same queue means this one skips the round (after waiting up to ``wait_s``). After the
        sink refused (InfluxDB down for a CLI command, a full outbox for a service) rounds are
        skipped until the backoff ends; a short-lived command does not try again.
        """
        if self.sink is None or self._journal is None or self._monotonic() < self._retry_at:
            return 0
        async with self._drain_lock:
            deadline = asyncio.get_running_loop().time() + wait_s
            while (fd := await self._run(self._try_lock)) is None:
                if asyncio.get_running_loop().time() >= deadline:
                    log.debug("dose journal: another process is handing it over; skipping")
                    return 0
                await asyncio.sleep(0.05)
            try:
                return await self._drain_locked(self.sink)
            finally:
                await self._run(partial(_unlock, fd))

    def _try_lock(self) -> int | None:
        fd = os.open(self.path.with_suffix(".drain.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    async def _drain_locked(self, sink: PointSink) -> int:
        done = 0
        while True:
            ops = await self._run(partial(self.journal.pending, 500))
            self._journal_progress.observe(len(ops))
            if not ops:
                self._recovered()
                return done
            last, sent = 0, 0
            try:
                for op in ops:
                    p = op.point
                    if op.kind == "put":
                        await sink.put([p])
                    else:
                        await sink.delete(p.measurement, p.tags, p.time_ns)
                    last, sent = op.seq, sent + 1
                if not self.durable_sink:
                    await sink.flush(timeout=self.flush_timeout_s)
            except MagsleepError as exc:
                progressed = bool(last) and self.durable_sink
                if progressed:  # what the durable sink took is acknowledged
                    await self._run(partial(self.journal.ack, last))
                    self._journal_progress.moved()
                    done += sent
                self._refused(exc, progressed=progressed)
                return done
            await self._run(partial(self.journal.ack, last))
            self._journal_progress.moved()
            done += len(ops)

    def _refused(self, exc: MagsleepError, *, progressed: bool) -> None:
        """The sink refused an operation: back off before the next round (retried by the
        periodic hand-off), or, for a short-lived command, do not wait on it again."""
        if not self.durable_sink:
            log.debug("dose journal: %s; the doses stay queued in the journal", exc)
            self._retry_at = math.inf
            return
        self._failures = 1 if progressed else self._failures + 1
        delay = backoff_delay(self._failures, self.max_backoff_s)
        self._retry_at = self._monotonic() + delay
        self._rescheduled.set()
        log.log(logging.WARNING if self._failures == 1 else logging.DEBUG,
                "dose journal: %s; the rest stays queued in the journal and is handed over "
                "again in %.1f s", str(exc).rstrip("."), delay)

    def _recovered(self) -> None:
        if self._failures:
            log.info("dose journal: the outbox takes operations again (after %d refusal(s))",
                     self._failures)
        self._failures = 0
        self._retry_at = 0.0


def _unlock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


__all__ = [
    "FORM_NAMES",
    "DoseService",
    "PointSink",
    "Rules",
    "apply_patch",
    "build_dose",
    "check_rules",
    "journal_path",
]
