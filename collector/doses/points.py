"""The one place that makes a dose's, a night tag's and a lights out/on's InfluxDB points.

Names come from the schema (:mod:`collector.storage.schema`), checked when this module loads:
a name the schema no longer has fails at import, not as a point InfluxDB files away. The journal
queues these points with each change; the CLI shows the lights point it recorded.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from collector.doses.entities import Dose, Lights, LightsEvent, NightTag
from collector.effects.tagging import night_time_ns
from collector.storage.lineprotocol import Point
from collector.storage.schema import NIGHT_TAG, SUPPLEMENT_DOSE, Measurement


def _tags(m: Measurement, *names: str) -> tuple[str, ...]:
    known = {t.name for t in m.tags}
    for n in names:
        if n not in known:
            raise KeyError(f"{m.name} has no tag {n!r} in collector/storage/schema.py")
    return names


def _fields(m: Measurement, *names: str) -> tuple[str, ...]:
    return tuple(m.field(n).name for n in names)


DOSE_MEASUREMENT = SUPPLEMENT_DOSE.name
TAG_MEASUREMENT = NIGHT_TAG.name
_DOSE_TAGS = _tags(SUPPLEMENT_DOSE, "person", "supplement", "form", "source")
_DOSE_FIELDS = _fields(SUPPLEMENT_DOSE, "dose_id", "amount_mg", "elemental_mg", "note")
_TAG_TAGS = _tags(NIGHT_TAG, "person", "tag")
_NIGHT, _VALUE, _AT = _fields(NIGHT_TAG, "night", "value", "at")


def to_ns(dt: datetime) -> int:
    """UTC epoch nanoseconds of an aware datetime, exact to the microsecond."""
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def dose_point(dose: Dose, time_ns: int) -> Point:
    """The ``supplement_dose`` point of ``dose`` at ``time_ns`` (the journal's free instant)."""
    return Point(
        DOSE_MEASUREMENT,
        dict(zip(_DOSE_TAGS, (dose.person, dose.supplement, dose.form.value, dose.source.value), strict=True)),
        dict(zip(_DOSE_FIELDS, (str(dose.id), float(dose.amount_mg), float(dose.elemental_mg), dose.note),
                 strict=True)),
        time_ns,
    )


def tag_point(tag: NightTag) -> Point:
    """The ``night_tag`` point of a tag on a night, stamped 12:00 UTC of the night."""
    return Point(TAG_MEASUREMENT, dict(zip(_TAG_TAGS, (tag.person, tag.tag.value), strict=True)),
                 {_NIGHT: tag.night.isoformat(), _VALUE: True}, night_time_ns(tag.night))


def lights_tag_point(person: str, night: date, event: LightsEvent, at_ns: int, *,
                     value: bool = True) -> Point:
    """The ``night_tag`` point of a night's lights out / on (one per person, night and event).

    Its time is 12:00 UTC of the night, so recording again overwrites it; ``value=False`` marks it
    removed (``collector.nights.segment.lights_from_tags`` then ignores it).
    """
    return Point(TAG_MEASUREMENT, dict(zip(_TAG_TAGS, (person, event.value), strict=True)),
                 {_NIGHT: night.isoformat(), _VALUE: value, _AT: at_ns}, night_time_ns(night))


def lights_point_of(lights: Lights, *, value: bool = True) -> Point:
    """The ``night_tag`` point of a recorded lights out/on (``value=False``: removed)."""
    return lights_tag_point(lights.person, lights.night, lights.event, to_ns(lights.at), value=value)


__all__ = [
    "DOSE_MEASUREMENT",
    "TAG_MEASUREMENT",
    "dose_point",
    "lights_point_of",
    "lights_tag_point",
    "tag_point",
    "to_ns",
]
