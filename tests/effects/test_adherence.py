"""Adherence to a trial plan: the pure verdicts, and 'magsleep effects' reporting them."""

from __future__ import annotations

import asyncio
import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from collector.cli import app
from collector.effects.adherence import adherence, verdict
from collector.effects.planner import PlanSpec
from collector.effects.store import PlanStore, StoredPlan
from collector.effects.tagging import DoseStatus, night_time_ns
from collector.settings import InfluxSettings, PersonSettings, Settings, StorageSettings
from collector.storage.lineprotocol import Point
from collector.storage.pipeline import Pipeline
from tests.conftest import InfluxServer

H = 3_600_000_000_000
START = date(2026, 10, 5)


@pytest.mark.parametrize(("planned", "status", "followed", "deviation"), [
    (True, "magnesium", True, ""),
    (True, "control", False, "no magnesium on a magnesium night"),
    (True, "off_window", False, "magnesium outside the dose window"),
    (True, "washout", False, "no magnesium on a magnesium night"),
    (False, "control", True, ""),
    (False, "washout", True, ""),
    (False, "magnesium", False, "magnesium on a control night"),
    (False, "off_window", False, "magnesium on a control night"),
    (True, "unknown", None, ""),
    (False, "unknown", None, ""),
])
def test_verdicts(planned: bool, status: DoseStatus, followed: bool | None, deviation: str) -> None:
    v = verdict(START, planned, status)
    assert (v.followed, v.deviation) == (followed, deviation)


def test_share_counts_only_planned_nights_with_a_known_status() -> None:
    plan = {START + timedelta(days=i): i % 2 == 0 for i in range(6)}
    statuses: list[tuple[date, DoseStatus]] = [
        (START, "magnesium"), (START + timedelta(days=1), "magnesium"),  # dose on a control night
        (START + timedelta(days=2), "unknown"), (START + timedelta(days=3), "control"),
        (START + timedelta(days=4), "control"),  # none on a magnesium night
        (START - timedelta(days=1), "magnesium"),  # before the plan: not counted
    ]
    a = adherence("p1", plan, statuses)
    assert (a.followed, a.counted, a.share) == (2, 4, 0.5)
    assert [(n.night, n.deviation) for n in a.deviations] == [
        (START + timedelta(days=1), "magnesium on a control night"),
        (START + timedelta(days=4), "no magnesium on a magnesium night")]
    assert a.summary().startswith("adherence to plan p1: followed on 2 of 4 planned nights (50%); "
                                  "deviations: 2026-10-06 magnesium on a control night; 2026-10-09 "
                                  "no magnesium on a magnesium night.")
    assert adherence("p2", plan, []).share is None


def test_effects_report_adherence(influx_server: InfluxServer, influx_db: str, tmp_path: Path) -> None:
    """A week's plan, five nights followed and two deviations, through `magsleep effects`."""
    cfg = tmp_path / "magsleep.toml"
    cfg.write_text(f'[influx]\nembedded = false\nurl = "{influx_server.url}"\n'
                   f'database = "{influx_db}"\n[storage]\nstate_dir = "{tmp_path / "state"}"\n'
                   '[[persons]]\nname = "alice"\n')
    settings = Settings(influx=InfluxSettings(embedded=False, url=influx_server.url,
                                              database=influx_db),
                        storage=StorageSettings(state_dir=tmp_path / "state"),
                        persons=[PersonSettings(name="alice")])
    planned = {START + timedelta(days=i): i in (0, 2, 4, 5) for i in range(7)}
    PlanStore.from_settings(settings).save(StoredPlan(
        "adh1", "alice", PlanSpec(START, 1, "randomised"), 1, 0, planned))
    taken = {d: mg for d, mg in planned.items()}
    taken[START + timedelta(days=1)] = True  # a dose on a control night
    taken[START + timedelta(days=5)] = False  # none on a magnesium night
    points: list[Point] = []
    for i, (d, mg) in enumerate(sorted(taken.items())):
        lo = night_time_ns(d) + 10 * H  # 22:00 UTC
        points.append(Point("night", {"person": "alice", "dose": "unknown", "staging": "computed"},
                            {"night": d.isoformat(), "lights_out": lo, "lights_on": lo + 8 * H,
                             "tst_min": 400.0 + i}, night_time_ns(d)))
        if mg:
            points.append(Point("supplement_dose", {"person": "alice", "supplement": "magnesium",
                                                    "form": "glycinate", "source": "cli"},
                                {"dose_id": f"d{i}", "amount_mg": 1500.0, "elemental_mg": 210.0,
                                 "note": ""}, lo - H))

    async def write() -> None:
        async with Pipeline.from_settings(settings, name="test") as pipe:
            await pipe.put(points)
            await pipe.flush(timeout=30)

    asyncio.run(write())
    runner = CliRunner()
    res = runner.invoke(app, ["-c", str(cfg), "effects", "--format", "json", "--no-write"])
    assert res.exit_code == 0, res.output
    (out,) = json.loads(res.output)
    adh = out["adherence"]
    assert (adh["followed"], adh["counted"]) == (5, 7)
    assert adh["share"] == pytest.approx(5 / 7)
    assert adh["deviations"] == [
        {"night": "2026-10-06", "deviation": "magnesium on a control night"},
        {"night": "2026-10-10", "deviation": "no magnesium on a magnesium night"}]
    res = runner.invoke(app, ["-c", str(cfg), "effects", "--no-write"])
    assert res.exit_code == 0, res.output
    assert "adherence to plan adh1: followed on 5 of 7 planned nights (71%)" in res.output
    assert "compare what was taken, not what was planned" in " ".join(res.output.split())
