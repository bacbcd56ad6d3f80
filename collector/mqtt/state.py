"""What each state topic carries, from the plan, the doses, the nights, the effects and the status (pure)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from collector.ble.registry import DeviceStatus, RegisteredDevice
from collector.doses.entities import Assignment, Dose, MorningCard, PlanToday
from collector.doses.today import evening_of
from collector.mqtt.discovery import HA_STATE_MAX, NIGHT_SENSORS, NONE, OFF, ON, Topics
from collector.storage.reader import Row


def _num(v: object) -> str:
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
        return f"{float(v):.2f}".rstrip("0").rstrip(".")
    return NONE


def _clip(text: str) -> str:
    return text if len(text) <= HA_STATE_MAX else text[:HA_STATE_MAX - 1] + "…"


def magnesium_tonight(doses: Iterable[Dose], now: datetime, tz: tzinfo) -> list[Dose]:
    """The magnesium doses logged for this evening (06:00 to 06:00 local time), newest first."""
    night = evening_of(now, tz)
    return [d for d in doses if d.supplement == "magnesium" and evening_of(d.taken_at, tz) == night]


def plan_state(plan: PlanToday) -> str:
    if plan.tonight is None:
        return "no_plan"
    return "magnesium" if plan.tonight.planned is Assignment.magnesium else "control"


#: The verdict sensor's state while no ``effect_verdict`` is stored for the person.
NO_VERDICT = "No verdict yet: 'magsleep effects' writes one once there are nights and doses."


@dataclass(frozen=True, slots=True)
class Verdict:
    text: str
    attributes: dict[str, Any]


def stored_verdict(verdict: Row | None, effects: Sequence[Row] = ()) -> Verdict:
    """The sensor for the latest stored ``effect_verdict`` (written by ``magsleep effects``): its
    headline as the state, word for word as the CLI, the report and the Effects dashboard show it;
    the next step, the staging source and each metric's summary of the same run as attributes.

    ``effects``: the ``effect`` rows of that run (same person, comparison and time)."""
    if verdict is None:
        return Verdict(NO_VERDICT, {"metrics": {}})
    headline = str(verdict.get("headline") or "")
    order = [m for m in str(verdict.get("order") or "").split(",") if m]
    summaries = {str(r.get("metric")): str(r.get("summary") or "") for r in effects if r.get("metric")}
    ranked = [m for m in order if m in summaries] + sorted(m for m in summaries if m not in order)
    attrs: dict[str, Any] = {
        "headline": headline,  # in full (HA keeps 255 characters of a state)
        "next_step": str(verdict.get("next_step") or ""),
        "comparison": str(verdict.get("comparison") or ""),
        "staging_source": str(verdict.get("source") or ""),
        "computed_at": datetime.fromtimestamp(int(verdict["time"]) / 1e9, UTC).isoformat(timespec="seconds"),
        "metrics": {m: summaries[m] for m in ranked},
    }
    if verdict.get("sources_note"):
        attrs["sources_note"] = str(verdict["sources_note"])
    return Verdict(_clip(headline or NO_VERDICT), attrs)


def person_states(topics: Topics, person: str, *, plan: PlanToday | None, doses_tonight: Sequence[Dose] | None,
                  card: MorningCard | None, row: Row | None, verdict: Verdict | None) -> dict[str, str]:
    """State topic -> payload for what is known (a None input leaves its topics out: kept as they are)."""
    out: dict[str, str] = {}

    def put(key: str, value: str) -> None:
        out[topics.person(person, key)] = value

    if plan is not None:
        put("tonight_plan", plan_state(plan))
        put("tonight_plan/attributes", json.dumps({
            "text": plan.text, "plan_id": plan.plan_id,
            "night": plan.tonight.night.isoformat() if plan.tonight else None,
            "usual_dose": (f"{_num(plan.usual_dose.amount_mg)} mg {plan.usual_dose.form.value}"
                           if plan.usual_dose else None),
            "last_night_deviation": plan.last_night.deviation if plan.last_night else None,
        }))
    if doses_tonight is not None:
        put("dose_logged", ON if doses_tonight else OFF)
    if card is not None:
        values = row or {}
        for n in NIGHT_SENSORS:
            put(n.field, _num(values.get(n.field)) if card.night is not None else NONE)
        put("last_night", card.night.isoformat() if card.night else NONE)
        put("last_night/attributes", json.dumps({
            "text": card.text, "provisional": card.provisional, "flagged": card.flagged,
            "baseline_nights": card.baseline_nights,
            "baseline": {m.name: m.baseline for m in card.metrics},
        }))
    if verdict is not None:
        put("effect", verdict.text)
        put("effect/attributes", json.dumps(verdict.attributes))
    return out


def device_states(topics: Topics, dev: RegisteredDevice, st: DeviceStatus | None) -> dict[str, str]:
    st = st or DeviceStatus()
    seen = (datetime.fromtimestamp(st.last_seen_ns / 1e9, UTC).isoformat(timespec="seconds")
            if st.last_seen_ns > 0 else NONE)
    return {
        topics.device(dev.alias, "connected"): ON if st.connected else OFF,
        topics.device(dev.alias, "battery"): str(st.battery_pct) if st.battery_pct is not None else NONE,
        topics.device(dev.alias, "last_seen"): seen,
    }
