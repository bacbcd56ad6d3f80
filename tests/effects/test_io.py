"""Rows from InfluxDB -> nights for the analysis (pure part of the I/O layer), and effect points."""

from __future__ import annotations

from datetime import date
from typing import Any

from collector.effects.analysis import EffectResult
from collector.effects.io import build_nights, effect_points
from collector.effects.tagging import night_time_ns
from collector.settings import AnalysisSettings, PersonSettings, Settings
from collector.storage.schema import validate_point

H = 3_600_000_000_000
SETTINGS = Settings(persons=[PersonSettings(name="alice")])


def night(d: str, staging: str = "computed", source: str = "computed", **fields: Any) -> dict[str, Any]:
    t = night_time_ns(date.fromisoformat(d))
    row: dict[str, Any] = {"time": t, "night": d, "person": "alice", "dose": "unknown",
                           "staging": staging, "source": source, "lights_out": t + 11 * H,
                           "lights_on": t + 19 * H, "tst_min": 400.0}
    row.update(fields)
    return row


def dose(d: str, hours_before: float = 1.0, source: str = "cli", mg: float = 200.0) -> dict[str, Any]:
    t = night_time_ns(date.fromisoformat(d)) + 11 * H - int(hours_before * H)
    return {"time": t, "person": "alice", "supplement": "magnesium", "form": "citrate",
            "source": source, "elemental_mg": mg}


def test_one_row_per_night_preferring_computed_staging_and_dropping_flagged() -> None:
    rows = [night("2026-11-20", staging="device", tst_min=300.0), night("2026-11-20", tst_min=420.0),
            night("2026-11-21", flagged=True), night("2026-11-22", hr_mean_bpm=55.0, flagged=False)]
    data = build_nights("alice", rows, [dose("2026-11-20")], [], SETTINGS)
    assert [n.night for n in data.nights] == [date(2026, 11, 20), date(2026, 11, 22)]
    assert data.nights[0].values == {"tst_min": 420.0}
    assert data.nights[0].status == "magnesium"
    assert data.nights[0].elemental_mg == 200.0
    assert data.nights[1].values == {"tst_min": 400.0, "hr_mean_bpm": 55.0}
    assert data.flagged == 1


def test_simulated_rows_are_kept_apart() -> None:
    rows = [night("2026-11-20"), night("2026-11-21", source="sim")]
    doses = [dose("2026-11-20", source="sim")]
    real = build_nights("alice", rows, doses, [], SETTINGS)
    assert [n.night.day for n in real.nights] == [20]
    assert real.dose_source == "night dose tags"  # no real doses: falls back to the night's tag
    sim = build_nights("alice", rows, doses, [], SETTINGS, source="sim")
    assert [n.night.day for n in sim.nights] == [21]
    both = build_nights("alice", rows, doses, [], SETTINGS, source="all")
    assert [n.status for n in both.nights] == ["magnesium", "control"]


def test_tags_window_and_washout_from_settings() -> None:
    s = Settings(persons=[PersonSettings(name="alice")],
                 analysis=AnalysisSettings(dose_window_h=(0.0, 2.0), washout_nights=1))
    rows = [night(f"2026-11-{d}") for d in (20, 21, 22, 23)]
    tags = [{"time": 1, "night": "2026-11-23", "tag": "alcohol", "value": True},
            {"time": 2, "night": "2026-11-22", "tag": "no_dose", "value": True},
            {"time": 3, "night": "2026-11-23", "tag": "illness", "value": True},
            {"time": 4, "night": "2026-11-23", "tag": "illness", "value": False}]  # cleared later
    data = build_nights("alice", rows, [dose("2026-11-20", 1.0), dose("2026-11-22", 3.0)], tags, s)
    assert [n.status for n in data.nights] == ["magnesium", "washout", "off_window", "control"]
    assert data.nights[3].covariates["alcohol"] and not data.nights[3].covariates["illness"]
    assert data.excluded == {"washout": 1, "off_window": 1}


def test_night_dose_tags_are_used_without_a_dose_journal() -> None:
    rows = [night("2026-11-20", dose="magnesium", elemental_mg=300.0, form="glycinate"),
            night("2026-11-21", dose="control"), night("2026-11-22")]
    data = build_nights("alice", rows, [], [{"time": 1, "night": "2026-11-22", "tag": "no_dose"}], SETTINGS)
    assert [n.status for n in data.nights] == ["magnesium", "control", "control"]
    assert data.nights[0].elemental_mg == 300.0 and data.nights[0].form == "glycinate"


def test_effect_points_fit_the_schema() -> None:
    full = EffectResult("alice", "sol_min", "mg_vs_control", "min", 30, 28, True, "Sleep onset ...",
                        estimate=-5.0, ci_low=-9.0, ci_high=-1.0, p=0.01, p_adj=0.03, p_perm=0.02,
                        prob_benefit=0.98, effect_size=-0.4, nights_needed=40)
    gated = EffectResult("bob", "tst_min", "before_after", "min", 2, 9, False, "not enough")
    pts = effect_points([full, gated], 123)
    for p in pts:
        validate_point(p)
    assert pts[0].fields["estimate"] == -5.0 and pts[0].fields["nights_needed"] == 40
    assert "estimate" not in pts[1].fields and pts[1].fields["reported"] is False
    assert pts[1].tags == {"person": "bob", "metric": "tst_min", "comparison": "before_after"}


def test_provisional_nights_are_included_and_counted() -> None:
    rows = [night("2026-11-20", provisional=False), night("2026-11-21"),
            night("2026-11-22", provisional=True), night("2026-11-23", provisional=True, flagged=True)]
    data = build_nights("alice", rows, [dose("2026-11-20")], [], SETTINGS)
    assert [n.night.day for n in data.nights] == [20, 21, 22]
    assert data.provisional == 1  # the flagged one is left out, so not counted as included
