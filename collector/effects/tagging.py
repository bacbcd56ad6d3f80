"""Which nights were magnesium nights: a pure function of nights, doses and night tags.

A night is a *magnesium* night when a magnesium dose was taken between ``window[1]`` and
``window[0]`` hours before lights out (default 0-4 h). It is a *control* night when no dose was
taken in the evening; an explicit ``no_dose`` tag makes it a *confirmed* control. A dose taken
in the 12 hours before lights out but outside the window, or during the night, makes the night
``off_window``: neither arm, left out of the comparison. With ``washout_nights = w``, the ``w``
nights after a magnesium night that would be controls are ``washout`` and left out too. Nights
without a lights-out time fall back to ``default_lights_out`` (local clock time on the evening's
date) when given, else are ``unknown``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

DoseStatus = Literal["magnesium", "control", "washout", "off_window", "unknown"]

COVARIATE_TAGS = ("alcohol", "caffeine_late", "training", "illness")
_NS_PER_H = 3_600_000_000_000
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_EVENING_SPAN_H = 12.0  # doses this long before lights out belong to the evening


def night_time_ns(night: date) -> int:
    """12:00 UTC of the evening's date: the stable timestamp of a night's points (``night``,
    ``night_tag``, ``trial_plan``; docs/schema.md). The one definition: nights, doses and effects use it."""
    return (night.toordinal() - _EPOCH_ORDINAL) * 86_400_000_000_000 + 12 * _NS_PER_H


@dataclass(frozen=True, slots=True)
class NightKey:
    night: date
    lights_out_ns: int | None = None
    lights_on_ns: int | None = None


@dataclass(frozen=True, slots=True)
class Dose:
    time_ns: int
    elemental_mg: float
    form: str = ""
    supplement: str = "magnesium"


@dataclass(frozen=True, slots=True)
class NightDose:
    night: date
    status: DoseStatus
    elemental_mg: float = 0.0
    form: str = ""
    confirmed_control: bool = False
    conflict: bool = False  # a no_dose tag on a night with a dose in the window (the dose wins)
    covariates: Mapping[str, bool] = field(default_factory=dict)


def _lights_out(key: NightKey, default: time | None, tz: ZoneInfo) -> int | None:
    if key.lights_out_ns is not None:
        return key.lights_out_ns
    if default is None:
        return None
    local = datetime.combine(key.night, default, tzinfo=tz)
    if default.hour < 12:  # e.g. 00:30 belongs to the evening before
        local += timedelta(days=1)
    return int(local.timestamp()) * 1_000_000_000


def tag_nights(
    nights: Sequence[NightKey],
    doses: Iterable[Dose],
    tags: Mapping[date, Iterable[str]] | None = None,
    *,
    window_h: tuple[float, float] = (0.0, 4.0),
    washout_nights: int = 0,
    default_lights_out: time | None = None,
    tz: ZoneInfo | None = None,
) -> list[NightDose]:
    """Dose status of each night (same order as ``nights``)."""
    tz = tz or ZoneInfo("UTC")
    tags = tags or {}
    mg = sorted((d for d in doses if d.supplement == "magnesium"), key=lambda d: d.time_ns)
    times = [d.time_ns for d in mg]
    lo_h, hi_h = window_h
    out: list[NightDose] = []
    for key in nights:
        night_tags = set(tags.get(key.night, ()))
        cov = {t: t in night_tags for t in COVARIATE_TAGS}
        no_dose = "no_dose" in night_tags
        lo = _lights_out(key, default_lights_out, tz)
        if lo is None:
            status: DoseStatus = "control" if no_dose else "unknown"
            out.append(NightDose(key.night, status, confirmed_control=no_dose, covariates=cov))
            continue
        win_start, win_end = lo - int(hi_h * _NS_PER_H), lo - int(lo_h * _NS_PER_H)
        night_end = key.lights_on_ns if key.lights_on_ns is not None else lo + 12 * _NS_PER_H
        evening_start = lo - int(max(_EVENING_SPAN_H, hi_h) * _NS_PER_H)
        in_window = [d for d, t in zip(mg, times, strict=True) if win_start <= t <= win_end]
        if in_window:
            forms = sorted({d.form for d in in_window if d.form})
            out.append(NightDose(
                key.night, "magnesium",
                elemental_mg=float(sum(d.elemental_mg for d in in_window)),
                form="+".join(forms), conflict=no_dose, covariates=cov,
            ))
        elif any(evening_start <= t <= night_end for t in times):
            out.append(NightDose(key.night, "off_window", covariates=cov))
        else:
            out.append(NightDose(key.night, "control", confirmed_control=no_dose, covariates=cov))
    if washout_nights > 0:
        mg_days = [n.night for n in out if n.status == "magnesium"]
        for i, n in enumerate(out):
            if n.status != "control":
                continue
            if any(0 < (n.night - d).days <= washout_nights for d in mg_days):
                out[i] = NightDose(n.night, "washout", confirmed_control=n.confirmed_control,
                                   covariates=n.covariates)
    return out
