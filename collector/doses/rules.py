"""The dose rules: input in, a valid :class:`Dose` or a :class:`DoseValidationError` out.

Pure: no I/O. Who exists comes from an injected :class:`PersonLookup`, the time from an injected
clock. :func:`build_dose`, :func:`apply_patch` and :func:`check_rules` list every problem at once;
:func:`check_moment` is the one rule for how far ahead and back a time may be (doses, lights
out/on), and :func:`parse_at` the one ``--at`` parser, with the same tolerance ahead.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta, tzinfo
from datetime import time as dtime
from typing import Protocol
from uuid import uuid4
from zoneinfo import ZoneInfo

import pydantic

from collector.doses.entities import (
    Dose,
    DoseCreate,
    DosePatch,
    DoseValidationError,
    FieldProblem,
    Source,
    problems_from_pydantic,
)
from collector.doses.forms import Form, configured_form, elemental_share
from collector.errors import ValidationError
from collector.settings import PersonSettings, Settings

#: A time up to this far in the future is accepted (a clock a little ahead, "23:40" typed at 23:35).
FUTURE_TOLERANCE = timedelta(minutes=10)
#: Nothing older than this is accepted (a wrong year, not a late entry).
MAX_AGE = timedelta(days=365)


def utcnow() -> datetime:
    return datetime.now(UTC)


class PersonLookup(Protocol):
    """Who exists, as the dose rules need it (:class:`collector.app.persons.Persons` in the app)."""

    def names(self) -> list[str]: ...

    def tz(self, name: str) -> tzinfo: ...

    def settings_of(self, name: str) -> PersonSettings: ...


class ConfiguredPersons:
    """The persons of the config only: what a dose service uses unless the app injects more
    (:class:`collector.app.persons.Persons` adds those of the device registry).

    A known person who is not configured (only in the registry) gets the defaults: UTC and the
    night window 18:00-14:00, as the nights computation would use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def extra_names(self) -> Iterable[str]:
        """Persons known beyond the config (none here)."""
        return ()

    def names(self) -> list[str]:
        names = [p.name for p in self.settings.persons]
        return names + [n for n in self.extra_names() if n not in names]

    def configured(self, name: str) -> PersonSettings | None:
        for p in self.settings.persons:
            if p.name == name:
                return p
        return None

    def settings_of(self, name: str) -> PersonSettings:
        return self.configured(name) or PersonSettings(name=name)

    def tz(self, name: str) -> tzinfo:
        p = self.configured(name)
        return UTC if p is None else ZoneInfo(p.timezone)


class Rules:
    """What validation needs to know: the settings, who exists (``persons``), and the time now."""

    def __init__(
        self,
        settings: Settings,
        *,
        persons: PersonLookup | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.people: PersonLookup = persons if persons is not None else ConfiguredPersons(settings)
        self.now = now

    def persons(self) -> list[str]:
        return self.people.names()

    def tz(self, person: str) -> tzinfo:
        return self.people.tz(person)

    def zone_for(self, person: str | None) -> tzinfo:
        """The time zone of ``person``, else of the only known person, else UTC."""
        if person is None:
            names = self.persons()
            person = names[0] if len(names) == 1 else ""
        return self.tz(person)

    def at(self, text: str, person: str | None, option: str = "--at") -> datetime:
        """``--at`` text (:func:`parse_at`) in the time zone of ``person`` (else the only one), now
        being this clock's now."""
        return parse_at(text, self.zone_for(person), self.now(), option)

    def default_form(self) -> Form:
        return configured_form(self.settings.doses.default_form)

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
    problem = check_moment(dose.taken_at, rules.now(), "taken_at", give="the time you took it",
                           too_old=" (doses older than 365 days are not accepted)")
    if problem is not None:
        problems.append(problem)


def check_moment(when: datetime, now: datetime, field: str, *, give: str, too_old: str = "") -> FieldProblem | None:
    """The one rule for a time someone gives (a dose, lights out/on): at most
    :data:`FUTURE_TOLERANCE` ahead of ``now`` and at most :data:`MAX_AGE` back."""
    if when > now + FUTURE_TOLERANCE:
        minutes = int(FUTURE_TOLERANCE.total_seconds() // 60)
        return FieldProblem(field, f"{when.isoformat(timespec='minutes')} is more than {minutes} minutes in "
                                   f"the future; give {give} (check the date and time zone)")
    if when < now - MAX_AGE:
        return FieldProblem(field, f"{when.isoformat(timespec='minutes')} is more than a year back; "
                                   f"check the date{too_old}")
    return None


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


def resolve_time(
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
    taken = resolve_time(rules, create.taken_at, tz, problems)
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
        taken = resolve_time(rules, patch.taken_at, rules.tz(person), problems)
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


AT_HELP = "HH:MM (the most recent such time) or a date and time 'YYYY-MM-DD HH:MM'."
_HHMM = re.compile(r"(\d{1,2}):(\d{2})")
#: "23:40" typed at 23:35 is tonight's, not yesterday's: a clock up to this far ahead still counts
#: (the same tolerance as :func:`check_moment`, so a time ``--at`` reads as today is accepted).
AT_AHEAD = FUTURE_TOLERANCE


def parse_at(text: str, tz: tzinfo, now: datetime, option: str = "--at") -> datetime:
    """A moment as every command takes it: ``HH:MM``, the most recent such local time in ``tz``
    (up to :data:`AT_AHEAD` in the future still counts as today), or an ISO date and time (in
    ``tz`` unless it carries an offset). ``now`` is the caller's clock."""
    t = text.strip()
    m = _HHMM.fullmatch(t)
    if m:
        h, mi = int(m.group(1)), int(m.group(2))
        if h > 23 or mi > 59:
            raise ValidationError(f"{option} {text!r}: hours 0-23 and minutes 0-59, e.g. 21:30")
        local_now = now.astimezone(tz)
        at = datetime.combine(local_now.date(), dtime(h, mi), tzinfo=tz)
        return at - timedelta(days=1) if at > local_now + AT_AHEAD else at
    try:
        at = datetime.fromisoformat(t)
    except ValueError:
        raise ValidationError(f"{option} {text!r}: use HH:MM (e.g. 21:30) or 'YYYY-MM-DD HH:MM' "
                              "(e.g. '2026-11-20 22:10')") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=tz)


__all__ = [
    "AT_AHEAD",
    "AT_HELP",
    "FUTURE_TOLERANCE",
    "MAX_AGE",
    "ConfiguredPersons",
    "PersonLookup",
    "Rules",
    "apply_patch",
    "build_dose",
    "check_moment",
    "check_rules",
    "parse_at",
    "resolve_time",
    "same_request",
]
