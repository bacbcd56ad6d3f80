"""magsleep plan: create, replace, show, today (SQLite only: --no-write)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from collector.cli import app
from collector.effects.planner import PlanSpec
from collector.effects.store import PlanStore, new_plan, tonight


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    p = tmp_path / "m.toml"
    p.write_text(f'[storage]\nstate_dir = "{tmp_path / "state"}"\n'
                 '[analysis]\nwashout_nights = 1\n'
                 '[[persons]]\nname = "alice"\ntimezone = "Europe/Berlin"\n')
    return p


def test_plan_today_and_replace(cfg: Path, tmp_path: Path) -> None:
    r = CliRunner()
    res = r.invoke(app, ["-c", str(cfg), "plan", "today"])
    assert res.exit_code == 1
    assert "no trial plan" in res.output
    res = r.invoke(app, ["-c", str(cfg), "plan", "--weeks", "4", "--design", "blocks",
                         "--block-weeks", "1", "--seed", "9", "--no-write"])
    assert res.exit_code == 0, res.output
    assert "14 magnesium and 14 control nights" in res.output
    assert "wash" in res.output  # washout_nights = 1 marks the night after a magnesium block
    store = PlanStore(tmp_path / "state" / "plans.sqlite")
    plan = store.active("alice")
    assert plan is not None and plan.spec.design == "blocks" and plan.seed == 9
    res = r.invoke(app, ["-c", str(cfg), "plan", "today"])
    assert res.exit_code == 0
    expected = "magnesium night" if plan.nights[min(plan.nights)] else "control night"
    assert expected in res.output
    # a second plan needs --replace; the first is kept inactive
    res = r.invoke(app, ["-c", str(cfg), "plan", "--weeks", "2", "--no-write"])
    assert res.exit_code == 2 and "--replace" in res.output
    res = r.invoke(app, ["-c", str(cfg), "plan", "--weeks", "2", "--no-write", "--replace",
                         "--start", "2030-01-07"])
    assert res.exit_code == 0, res.output
    new = store.active("alice")
    assert new is not None and new.plan_id != plan.plan_id and len(new.nights) == 14
    res = r.invoke(app, ["-c", str(cfg), "plan", "today"])
    assert "has not started yet" in res.output
    res = r.invoke(app, ["-c", str(cfg), "plan", "show"])
    assert res.exit_code == 0 and new.plan_id in res.output


def test_bad_plan_options_are_explained(cfg: Path) -> None:
    r = CliRunner()
    res = r.invoke(app, ["-c", str(cfg), "plan", "--weeks", "6", "--design", "blocks", "--no-write"])
    assert res.exit_code == 2
    assert "multiple of 4" in res.output
    res = r.invoke(app, ["-c", str(cfg), "plan", "--person", "zoe", "--no-write"])
    assert res.exit_code == 2 and "unknown person" in res.output


def test_store_round_trip_and_points(tmp_path: Path) -> None:
    store = PlanStore(tmp_path / "p.sqlite")
    plan = new_plan("bob", PlanSpec(date(2026, 11, 23), 2, "randomised"), seed=4)
    assert store.save(plan) is None
    back = store.active("bob")
    assert back == plan
    pts = plan.points()
    assert len(pts) == 14
    assert pts[0].tags == {"person": "bob", "design": "randomised"}
    assert pts[0].fields["night"] == "2026-11-23"
    assert pts[0].time_ns % 86_400_000_000_000 == 43_200_000_000_000  # 12:00 UTC


def test_tonight_rolls_over_at_six() -> None:
    assert tonight(datetime(2026, 11, 24, 5, 59)) == date(2026, 11, 23)
    assert tonight(datetime(2026, 11, 24, 6, 0)) == date(2026, 11, 24)
    assert tonight(datetime(2026, 11, 24, 23, 0)) - timedelta(days=1) == date(2026, 11, 23)
