"""What each state topic carries, from the plan, the doses, the nights, the effects and the status (pure)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from collector.ble.registry import DeviceStatus, RegisteredDevice
from collector.doses.model import Assignment, Dose, MorningCard, PlanToday
from collector.doses.today import evening_of
from collector.effects.metrics import METRICS
from collector.mqtt.discovery import HA_STATE_MAX, NIGHT_SENSORS, NONE, OFF, ON, Topics
from collector.storage.reader import Row

_STAGING_RANK = {"computed": 0, "device": 1, "none": 2}  # as the morning card prefers them


def _num(v: object) -> str:
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
        return f"{float(v):.2f}".rstrip("0").rstrip(".")
    return NONE


def _float(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


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


def night_row(rows: Sequence[Row], card: MorningCard) -> Row | None:
    """The row the morning card's night came from (real data first, computed staging first)."""
    if card.night is None:
        return None
    same = [r for r in rows if str(r.get("night")) == card.night.isoformat()]
    return min(same, key=lambda r: (int(r.get("source") == "sim"),
                                    _STAGING_RANK.get(str(r.get("staging")), 3)), default=None)


@dataclass(frozen=True, slots=True)
class Verdict:
    text: str
    attributes: dict[str, Any]


def effect_verdict(rows: Sequence[Row], min_nights: int) -> Verdict:
    """The latest ``effect`` run (magnesium vs control) in a sentence, each metric's summary as attributes."""
    rows = [r for r in rows if r.get("comparison", "mg_vs_control") == "mg_vs_control"]
    if not rows:
        return Verdict("No estimate yet: magsleep effects computes one once nights and doses are in.",
                       {"metrics": {}})
    stamp = max(int(r["time"]) for r in rows)
    latest = {str(r.get("metric")): r for r in rows if int(r["time"]) == stamp}
    attrs: dict[str, Any] = {
        "computed_at": datetime.fromtimestamp(stamp / 1e9, UTC).isoformat(timespec="seconds"),
        "metrics": {m: str(r.get("summary") or "") for m, r in sorted(latest.items())},
    }
    n_mg = max(int(r.get("n_mg") or 0) for r in latest.values())
    n_ctl = max(int(r.get("n_control") or 0) for r in latest.values())
    arms = f"{n_mg} magnesium vs {n_ctl} control nights"
    reported = {m: r for m, r in latest.items() if r.get("reported") is True}
    if not reported:
        return Verdict(_clip(f"Not enough nights yet ({arms}; {min_nights} of each needed): keep "
                             "following the plan."), attrs)
    better: list[str] = []
    worse: list[str] = []
    for m, r in sorted(reported.items()):
        spec = METRICS.get(m)
        lo, hi, est = (_float(r.get(k)) for k in ("ci_low", "ci_high", "estimate"))
        if spec is None or lo is None or hi is None or est is None:
            continue
        if lo > 0 or hi < 0:  # the 95% CI excludes no difference
            (better if spec.beneficial(est) else worse).append(spec.label)
    if not better and not worse:
        text = f"No clear difference with magnesium so far ({arms})."
    else:
        parts = []
        if better:
            parts.append("better with magnesium: " + ", ".join(better))
        if worse:
            parts.append("worse with magnesium: " + ", ".join(worse))
        text = "; ".join(parts) + f" ({arms}); other metrics: no clear difference."
        text = text[0].upper() + text[1:]
    return Verdict(_clip(text), attrs)


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
