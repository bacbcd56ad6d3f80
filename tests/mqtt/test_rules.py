"""The pure parts: when a reminder is due, the verdict sensor, command topics."""

from __future__ import annotations

import os
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from collector.doses.entities import Assignment, PlannedNight, PlanToday, UsualDose
from collector.doses.forms import Form
from collector.errors import ConfigError
from collector.mqtt.discovery import HA_STATE_MAX, Topics
from collector.mqtt.reminders import due
from collector.mqtt.state import NO_VERDICT, stored_verdict
from collector.settings import MqttSettings, load_settings

TOKYO = ZoneInfo("Asia/Tokyo")
NIGHT = date(2026, 3, 28)


def plan(planned: Assignment | None) -> PlanToday:
    tonight = PlannedNight(night=NIGHT, planned=planned, doses=0) if planned is not None else None
    return PlanToday(person="kim", plan_id="p" if planned else None, text="", tonight=tonight, last_night=None,
                     usual_dose=UsualDose(amount_mg=300.0, form=Form("glycinate")))


@pytest.mark.parametrize(("local", "at", "planned", "logged", "sent", "want"), [
    ("2026-03-28T20:59", time(21), Assignment.magnesium, False, None, None),           # not yet
    ("2026-03-28T21:00", time(21), Assignment.magnesium, False, None, "take_magnesium"),
    ("2026-03-28T23:59", time(21), Assignment.magnesium, False, None, "take_magnesium"),  # late, within 3 h
    ("2026-03-29T00:00", time(21), Assignment.magnesium, False, None, None),           # missed: 3 h later
    ("2026-03-28T21:30", time(21), Assignment.magnesium, True, None, None),            # already taken
    ("2026-03-28T21:30", time(21), Assignment.magnesium, False, NIGHT, None),          # already reminded
    ("2026-03-28T21:30", time(21), Assignment.control, False, None, "skip_magnesium"),
    ("2026-03-28T21:30", time(21), None, False, None, None),                           # no plan tonight
    ("2026-03-29T00:40", time(0, 30), Assignment.magnesium, False, None, "take_magnesium"),  # after midnight
    ("2026-03-28T00:40", time(0, 30), Assignment.magnesium, False, None, None),        # the evening before
])
def test_when_a_reminder_is_due(local: str, at: time, planned: Assignment | None, logged: bool,
                                sent: date | None, want: str | None) -> None:
    now = datetime.fromisoformat(local).replace(tzinfo=TOKYO)
    r = due("kim", now, TOKYO, plan(planned), logged, at, sent)
    assert (r.kind if r else None) == want
    if r is not None:
        assert r.night == NIGHT
        if r.kind == "take_magnesium":
            assert "300 mg glycinate" in r.text


def test_the_verdict_sensor_is_the_stored_verdict() -> None:
    none = stored_verdict(None)
    assert none.text == NO_VERDICT and "No verdict yet" in none.text and none.attributes == {"metrics": {}}
    headline = "For you, magnesium nights: " + ", ".join(f"metric {i} no clear change" for i in range(12)) + "."
    row = {"time": 1_764_000_000_000_000_000, "headline": headline, "next_step": "12 more nights of the plan.",
           "comparison": "mg_vs_control", "source": "computed", "order": "tst_min,sol_min",
           "sources_note": "only nights staged by computed are analysed (3 staged by device left out)"}
    effects = [{"metric": m, "summary": f"{m} in words"} for m in ("waso_min", "sol_min", "tst_min")]
    v = stored_verdict(row, effects)
    assert len(headline) > HA_STATE_MAX and len(v.text) == HA_STATE_MAX  # what HA keeps of a state
    assert v.text[:-1] == headline[:HA_STATE_MAX - 1] and v.attributes["headline"] == headline
    assert list(v.attributes["metrics"]) == ["tst_min", "sol_min", "waso_min"]  # the verdict's order first
    assert v.attributes["next_step"] == "12 more nights of the plan."
    assert v.attributes["computed_at"] == "2025-11-24T16:00:00+00:00"
    assert v.attributes["sources_note"].endswith("left out)")
    assert stored_verdict({**row, "headline": "Short."}).text == "Short."


def test_command_topics() -> None:
    t = Topics("home/magsleep")
    assert t.parse_command("home/magsleep/person/alice/cmd/took_magnesium") == ("alice", "took_magnesium")
    assert t.parse_command("home/magsleep/person/alice/cmd/x/y") is None
    assert t.parse_command("home/magsleep/person//cmd/x") is None
    assert t.parse_command("other/person/alice/cmd/x") is None
    assert t.config("sensor", "alice_tst_min") == "homeassistant/sensor/home_magsleep/alice_tst_min/config"


def test_mqtt_settings(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for k in [k for k in os.environ if k.startswith("MAGSLEEP_")]:
        monkeypatch.delenv(k)
    cfg = tmp_path / "m.toml"
    cfg.write_text('[mqtt]\nhost = "broker.lan"\npassword = "pw-secret"\nntfy_url = "https://ntfy.example/"\n'
                   'ntfy_topic = "t-1"\nntfy_token = "tk-secret"\nreminder_time = 21:30:00\n')
    monkeypatch.setenv("MAGSLEEP_MQTT__TLS", "1")
    s = load_settings(cfg)
    assert s.mqtt.configured and s.mqtt.tls is True and s.mqtt.reminder_time == time(21, 30)
    assert s.mqtt.ntfy_url == "https://ntfy.example"
    masked = s.masked()["mqtt"]
    assert (masked["password"], masked["ntfy_token"]) == ("***", "***")
    assert "secret" not in repr(s.mqtt)
    assert not MqttSettings().configured
    for bad, says in (('topic_prefix = "home/#"', "mqtt.topic_prefix"), ('ntfy_topic = "x"', "or neither"),
                      ('discovery = "yes"', "mqtt.discovery")):
        cfg.write_text(f'[mqtt]\nhost = "h"\n{bad}\n')
        with pytest.raises(ConfigError, match=says.replace(".", r"\.")):
            load_settings(cfg)
