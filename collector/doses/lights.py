"""Lights out / lights on: which night a time belongs to.

One place for the CLI (``magsleep night lights-out``), the HTTP API and the phone page; the
``night_tag`` point they all write is made by :func:`collector.doses.points.lights_tag_point`
(tags person and tag ``lights_out`` / ``lights_on``, fields night, value and at, stamped 12:00
UTC of the night). The night window is the nights area's
(:func:`collector.nights.segment.night_of`, which needs only NumPy); it is imported on first use
(the service calls this on its worker thread, not on the event loop).
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from collector.doses.entities import DoseValidationError, FieldProblem
from collector.doses.points import to_ns
from collector.doses.rules import ConfiguredPersons
from collector.settings import PersonSettings, Settings


def person_settings(settings: Settings, name: str) -> PersonSettings:
    """The person's settings (:meth:`collector.doses.rules.ConfiguredPersons.settings_of`: a person
    known only from the device registry gets the defaults)."""
    return ConfiguredPersons(settings).settings_of(name)


def night_for(person: PersonSettings, at: datetime, field: str = "at") -> date:
    """The evening whose night window holds ``at``; a :class:`DoseValidationError` saying what
    to fix when it falls between windows."""
    from collector.nights.segment import night_of, night_window

    night = night_of(to_ns(at), person)
    if night is not None:
        return night
    tz = ZoneInfo(person.timezone)
    local = at.astimezone(tz)
    w = night_window(local.date(), person)

    def hm(ns: int) -> str:
        return datetime.fromtimestamp(ns / 1e9, tz).strftime("%H:%M")

    raise DoseValidationError([FieldProblem(
        field,
        f"{local.isoformat(timespec='minutes')} is outside {person.name}'s night window "
        f"({hm(w.start_ns)}-{hm(w.end_ns)}); give a time in the night, or change "
        "night_start/night_end in the person's settings if this is a night",
    )])


__all__ = ["night_for", "person_settings"]
