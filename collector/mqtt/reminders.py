"""The evening reminder on planned nights: when it is due (pure), the ntfy POST, what was sent.

Due from ``[mqtt] reminder_time`` (the person's local time) for :data:`LATE_H` hours, once per
evening: on a planned magnesium night without a magnesium dose logged ("take it"), on a planned
control night without one ("skip it"); never on a night outside a plan. The evenings already
reminded are kept in ``<state_dir>/mqtt-reminders.json`` so a restart does not remind again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Literal

import aiohttp

from collector.ble.registry import atomic_write
from collector.doses.entities import Assignment, PlanToday
from collector.doses.today import evening_of
from collector.errors import MagsleepError
from collector.settings import MqttSettings

log = logging.getLogger(__name__)

#: Hours after the reminder time during which a missed reminder is still sent (e.g. after a restart).
LATE_H = 3.0
STATE_FILE = "mqtt-reminders.json"

Kind = Literal["take_magnesium", "skip_magnesium"]


@dataclass(frozen=True, slots=True)
class Reminder:
    person: str
    night: date
    kind: Kind
    title: str
    text: str

    def payload(self) -> str:
        """The MQTT message: what HA's event entity and automations read."""
        return json.dumps({"event_type": self.kind, "person": self.person, "night": self.night.isoformat(),
                           "title": self.title, "text": self.text})


def due(person: str, now: datetime, tz: tzinfo, plan: PlanToday, dose_logged: bool, at: time,
        sent: date | None) -> Reminder | None:
    """The reminder to send now, if one is due and was not sent for this evening."""
    night = evening_of(now, tz)
    if sent == night or plan.tonight is None or plan.tonight.night != night or dose_logged:
        return None
    start = datetime.combine(night, at, tzinfo=tz)
    if evening_of(start, tz) != night:  # e.g. 00:30: after midnight, still this evening
        start += timedelta(days=1)
    local = now.astimezone(tz)
    if not start <= local < start + timedelta(hours=LATE_H):
        return None
    if plan.tonight.planned is Assignment.magnesium:
        dose = (f" ({plan.usual_dose.amount_mg:g} mg {plan.usual_dose.form.value})"
                if plan.usual_dose is not None else "")
        return Reminder(person, night, "take_magnesium", "Magnesium tonight",
                        f"{person}: tonight is a magnesium night of your plan{dose}. "
                        "Take it and press 'Took magnesium'.")
    return Reminder(person, night, "skip_magnesium", "No magnesium tonight",
                    f"{person}: tonight is a control night of your plan: no magnesium tonight.")


class SentLog:
    """The last evening each person was reminded of (a small JSON file; a damaged one is started afresh)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sent: dict[str, date] = {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            self._sent = {str(k): date.fromisoformat(str(v)) for k, v in dict(data).items()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError) as exc:
            log.warning("reminders: cannot read %s (%s); starting afresh", path, exc)

    def get(self, person: str) -> date | None:
        return self._sent.get(person)

    def mark(self, person: str, night: date) -> None:
        self._sent[person] = night
        try:
            atomic_write(self.path, json.dumps({k: v.isoformat() for k, v in self._sent.items()}) + "\n")
        except OSError as exc:  # at worst a restart reminds again
            log.warning("reminders: cannot save %s: %s", self.path, exc)


async def post_ntfy(http: aiohttp.ClientSession, mqtt: MqttSettings, reminder: Reminder) -> None:
    """Send the reminder to the ntfy topic; raises :class:`MagsleepError` saying what went wrong."""
    url = f"{mqtt.ntfy_url}/{mqtt.ntfy_topic}"
    headers = {"Title": reminder.title, "Tags": "pill" if reminder.kind == "take_magnesium" else "no_entry",
               "Priority": "high" if reminder.kind == "take_magnesium" else "default"}
    token = mqtt.ntfy_token_value()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        async with http.post(url, data=reminder.text.encode(), headers=headers,
                             timeout=aiohttp.ClientTimeout(total=10)) as resp:
            if resp.status >= 300:
                raise MagsleepError(f"ntfy at {mqtt.ntfy_url} answered {resp.status} for topic "
                                    f"{mqtt.ntfy_topic}; check mqtt.ntfy_url, ntfy_topic and the token")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise MagsleepError(f"cannot reach ntfy at {mqtt.ntfy_url}: {exc!r}") from exc
