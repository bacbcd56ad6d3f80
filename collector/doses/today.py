"""What the phone page shows before and after a night: tonight's plan, last night's numbers.

Pure builders (:func:`plan_today`, :func:`morning_card`) take the plan, the doses or the night
rows and the time; :func:`read_night_rows` is the one InfluxDB query. The API
(``GET /api/v1/plan/today``, ``GET /api/v1/nights/last``) wires them to the journal, the plan
store and the injected clock.

A dose belongs to the evening of its local time minus 6 hours (as ``magsleep plan today``): a dose
at 01:00 is last evening's. A planned control night with a magnesium dose, or a planned magnesium
night that passed without one, is a deviation; the effects count the same as adherence
(:mod:`collector.effects.adherence`, with the dose window instead of the evening).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Literal

from collector.doses.entities import (
    Assignment,
    Dose,
    MorningCard,
    NightMetric,
    PlannedNight,
    PlanToday,
    UsualDose,
)
from collector.effects.store import StoredPlan, tonight
from collector.effects.tagging import night_time_ns
from collector.storage.reader import InfluxReader, Row, quote_str

if TYPE_CHECKING:
    from collector.doses.service import DoseService

# How far back the morning card looks for the latest night and its baseline.
LOOKBACK_DAYS = 120
BASELINE_MAX_NIGHTS = 90
BASELINE_MIN_NIGHTS = 3


@dataclass(frozen=True, slots=True)
class CardMetric:
    name: str
    label: str
    unit: str
    better: Literal["lower", "higher"]


CARD_METRICS = (
    CardMetric("tst_min", "Slept", "min", "higher"),
    CardMetric("sol_min", "Fell asleep in", "min", "lower"),
    CardMetric("waso_min", "Awake after falling asleep", "min", "lower"),
    CardMetric("se_pct", "Sleep efficiency", "%", "higher"),
    CardMetric("hr_mean_bpm", "Heart rate asleep", "bpm", "lower"),
    CardMetric("rmssd_ms", "HRV (RMSSD)", "ms", "higher"),
)


def evening_of(at: datetime, tz: tzinfo) -> date:
    """The evening a time belongs to, in the person's zone (before 06:00: the day before)."""
    return tonight(at.astimezone(tz))


def _mg(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _planned_night(night: date, planned: bool, doses: int, *, over: bool) -> PlannedNight:
    deviation = None
    if not planned and doses:
        deviation = ("magnesium logged on a control night of the plan"
                     + ("" if over else "; undo it if it was a mistake"))
    elif planned and not doses and over:
        deviation = "no magnesium logged on a magnesium night of the plan"
    return PlannedNight(night=night, planned=Assignment.magnesium if planned else Assignment.control,
                        doses=doses, deviation=deviation)


def plan_today(person: str, now: datetime, tz: tzinfo, plan: StoredPlan | None,
               doses: Sequence[Dose]) -> PlanToday:
    """Tonight's assignment and last night's, with the doses logged for each evening.

    ``doses``: the person's doses, newest first, at least those of the last two evenings (the
    newest magnesium one is the usual dose).
    """
    night = evening_of(now, tz)
    mg = [d for d in doses if d.supplement == "magnesium"]
    usual = UsualDose(amount_mg=mg[0].amount_mg, form=mg[0].form) if mg else None
    per_evening: dict[date, int] = {}
    for d in mg:
        e = evening_of(d.taken_at, tz)
        per_evening[e] = per_evening.get(e, 0) + 1
    if plan is None:
        return PlanToday(person=person, plan_id=None, tonight=None, last_night=None,
                         usual_dose=usual, text=f"No trial plan for {person} "
                         "(magsleep plan --weeks 8 makes one).")
    last = night - timedelta(days=1)
    last_night = (_planned_night(last, plan.nights[last], per_evening.get(last, 0), over=True)
                  if last in plan.nights else None)
    if night not in plan.nights:
        first, final = min(plan.nights), max(plan.nights)
        where = f"starts on {first:%a %d %b}" if night < first else f"ended on {final:%a %d %b}"
        return PlanToday(person=person, plan_id=plan.plan_id, tonight=None,
                         last_night=last_night, usual_dose=usual,
                         text=f"Tonight: not in the plan (it {where}).")
    this = _planned_night(night, plan.nights[night], per_evening.get(night, 0), over=False)
    if this.planned is Assignment.magnesium:
        text = ("Tonight: magnesium, " + f"{_mg(usual.amount_mg)} mg {usual.form.value}"
                if usual is not None else "Tonight: magnesium")
    else:
        text = "Tonight: no magnesium"
    return PlanToday(person=person, plan_id=plan.plan_id, tonight=this, last_night=last_night,
                     usual_dose=usual, text=text)


_STAGING_RANK = {"computed": 0, "device": 1, "none": 2}


def _rank(row: Row) -> tuple[int, int]:
    return (int(row.get("source") == "sim"), _STAGING_RANK.get(str(row.get("staging")), 3))


def _number(v: object) -> float | None:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v)
    return None


def night_rows(rows: Iterable[Row]) -> dict[date, Row]:
    """One ``night`` row per evening, the one the morning card shows: real data before simulated,
    computed staging before the device's."""
    best: dict[date, Row] = {}
    for row in rows:
        if not row.get("night"):
            continue
        try:
            d = date.fromisoformat(str(row["night"]))
        except ValueError:
            continue
        if d not in best or _rank(row) < _rank(best[d]):
            best[d] = row
    return best


def morning_card(person: str, rows: Iterable[Row]) -> MorningCard:
    """The latest night's numbers against the median of the previous nights (not flagged)."""
    best = night_rows(rows)
    if not best:
        return MorningCard(person=person, night=None,
                           text=f"No night for {person} yet: nights appear once computed.")
    latest = max(best)
    row = best[latest]
    previous = [best[d] for d in sorted(best, reverse=True)[1:]
                if best[d].get("flagged") is not True][:BASELINE_MAX_NIGHTS]
    metrics: list[NightMetric] = []
    for m in CARD_METRICS:
        past = [x for x in (_number(r.get(m.name)) for r in previous) if x is not None]
        baseline = statistics.median(past) if len(past) >= BASELINE_MIN_NIGHTS else None
        metrics.append(NightMetric(name=m.name, label=m.label, unit=m.unit,
                                   value=_number(row.get(m.name)), baseline=baseline,
                                   better=m.better))
    provisional = row.get("provisional") is True
    flagged = row.get("flagged") is True
    note = (" (provisional: it may still change)" if provisional else "") + (
        " (too little signal: do not trust these numbers)" if flagged else "")
    return MorningCard(person=person, night=latest, provisional=provisional, flagged=flagged,
                       baseline_nights=len(previous), metrics=metrics,
                       text=f"Night of {latest:%a %d %b}{note}")


async def plan_doses(svc: DoseService, person: str, now: datetime) -> list[Dose]:
    """The doses :func:`plan_today` needs: the last three days, and older ones when no magnesium dose
    is among them (the newest magnesium dose is the usual one)."""
    doses = await svc.list_doses(person=person, since=now - timedelta(days=3))
    if not any(d.supplement == "magnesium" for d in doses):
        older = await svc.list_doses(person=person, limit=50)
        doses += [d for d in older if d.id not in {x.id for x in doses}]
    return doses


async def read_night_rows(reader: InfluxReader, person: str, today: date) -> list[Row]:
    """The person's ``night`` rows of the last :data:`LOOKBACK_DAYS` days."""
    since = night_time_ns(today - timedelta(days=LOOKBACK_DAYS))
    return await reader.query(f"SELECT * FROM night WHERE person = {quote_str(person)} "
                              f"AND time >= {since}")
