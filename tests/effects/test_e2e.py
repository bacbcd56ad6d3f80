"""End to end: nights, doses, tags and a trial plan in the real InfluxDB -> magsleep effects."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from collector.cli import app
from collector.effects.store import PlanStore
from collector.effects.tagging import night_time_ns
from collector.settings import InfluxSettings, PersonSettings, Settings, StorageSettings
from collector.storage.lineprotocol import Point
from collector.storage.pipeline import Pipeline
from tests.conftest import InfluxServer
from tests.effects.simpeople import ar1

H = 3_600_000_000_000
START = date(2026, 9, 7)


def _config(tmp_path: Path, url: str, db: str) -> Path:
    cfg = tmp_path / "magsleep.toml"
    cfg.write_text(
        f'[influx]\nembedded = false\nurl = "{url}"\ndatabase = "{db}"\n'
        f'[storage]\nstate_dir = "{tmp_path / "state"}"\n'
        '[[persons]]\nname = "alice"\n[[persons]]\nname = "bob"\n'
    )
    return cfg


def _night(person: str, d: date, values: dict[str, float], lights_out: int) -> Point:
    fields: dict[str, float | int | str | bool] = {
        "night": d.isoformat(), "lights_out": lights_out, "lights_on": lights_out + 8 * H, **values}
    # staged by a device: its effects pass through unchanged (no validity correction or gating, which
    # tests/effects/test_validity.py and test_verdict_cli.py check), so the numbers here are the analysis's own
    return Point("night", {"person": person, "dose": "unknown", "staging": "device",
                           "source": "computed"}, fields, night_time_ns(d))


def _lights_out(d: date) -> int:
    return night_time_ns(d) + 11 * H  # 23:00 UTC


async def _write(settings: Settings, points: list[Point]) -> None:
    async with Pipeline.from_settings(settings, name="test") as pipe:
        await pipe.put(points)
        await pipe.flush(timeout=30)


@pytest.mark.slow
def test_effects_end_to_end(influx_server: InfluxServer, influx_db: str, tmp_path: Path) -> None:
    cfg = _config(tmp_path, influx_server.url, influx_db)
    settings = Settings(influx=InfluxSettings(embedded=False, url=influx_server.url, database=influx_db),
                        storage=StorageSettings(state_dir=tmp_path / "state"),
                        persons=[PersonSettings(name="alice"), PersonSettings(name="bob")])
    runner = CliRunner()
    # a randomised 8-week plan for alice, mirrored into InfluxDB as trial_plan points
    res = runner.invoke(app, ["-c", str(cfg), "plan", "--weeks", "8", "--seed", "3", "--person",
                              "alice", "--start", START.isoformat()])
    assert res.exit_code == 0, res.output
    assert "28 magnesium and 28 control nights" in res.output
    plan = PlanStore.from_settings(settings).active("alice")
    assert plan is not None
    rows = influx_server.rows("SELECT * FROM trial_plan", influx_db)
    assert len(rows) == 56
    assert sum(1 for r in rows if r["magnesium"]) == 28

    rng = np.random.default_rng(8)
    noise = ar1(rng, 56, 0.3)
    points: list[Point] = []
    for i, (d, mg) in enumerate(sorted(plan.nights.items())):
        lo = _lights_out(d)
        tst = 420 + 45 * noise[i] + (40 if mg else 0)
        values = {"tst_min": float(tst), "sol_min": float(math.exp(2.7 + 0.5 * rng.normal()) - 1),
                  "awakenings": int(rng.poisson(4))}
        if i == 5:
            values.pop("sol_min")  # a missing metric
        points.append(_night("alice", d, values, lo))
        if mg:  # taken 1.5 h before lights out
            points.append(Point("supplement_dose", {"person": "alice", "supplement": "magnesium",
                                                    "form": "glycinate", "source": "cli"},
                                {"dose_id": f"d{i}", "amount_mg": 1500.0, "elemental_mg": 210.0,
                                 "note": ""}, lo - 3 * H // 2))
        elif i % 4 == 0:
            points.append(Point("night_tag", {"person": "alice", "tag": "no_dose"},
                                {"night": d.isoformat(), "value": True}, night_time_ns(d)))
    # bob: 10 nights, only 2 with magnesium -> counts only
    for i in range(10):
        d = START + timedelta(days=i)
        points.append(_night("bob", d, {"tst_min": 400.0 + 10 * i}, _lights_out(d)))
        if i in (2, 5):
            points.append(Point("supplement_dose", {"person": "bob", "supplement": "magnesium",
                                                    "form": "citrate", "source": "api"},
                                {"dose_id": f"b{i}", "amount_mg": 1000.0, "elemental_mg": 160.0,
                                 "note": ""}, _lights_out(d) - H))
    asyncio.run(_write(settings, points))

    res = runner.invoke(app, ["-c", str(cfg), "effects", "--format", "json"])
    assert res.exit_code == 0, res.output
    out = {p["person"]: p for p in json.loads(res.output)}
    alice = {(r["comparison"], r["metric"]): r for r in out["alice"]["results"]}
    assert out["alice"]["plan_id"] == plan.plan_id
    assert out["alice"]["nights"] == {"magnesium": 28, "control": 28}
    tst = alice[("mg_vs_control", "tst_min")]
    assert tst["reported"] is True
    assert tst["n_mg"] == 28 and tst["n_control"] == 28
    assert tst["ci_low"] > 0  # +40 min planted, SE ~12
    assert tst["perm_method"].startswith("trial plan")
    assert tst["p_perm"] < 0.05
    assert tst["p_adj"] >= tst["p"]
    assert tst["summary"].startswith("Total sleep was ") and "28 vs 28 nights" in tst["summary"]
    sol = alice[("mg_vs_control", "sol_min")]
    assert sol["n_mg"] + sol["n_control"] == 55
    assert not alice[("mg_vs_control", "rem_min")]["reported"]
    bob = {(r["comparison"], r["metric"]): r for r in out["bob"]["results"]}
    assert bob[("mg_vs_control", "tst_min")]["reported"] is False
    assert (bob[("mg_vs_control", "tst_min")]["n_mg"], bob[("mg_vs_control", "tst_min")]["n_control"]) == (2, 8)
    assert out["bob"]["plan_id"] is None

    eff = influx_server.rows("SELECT * FROM effect", influx_db)
    n_results = len(out["alice"]["results"]) + len(out["bob"]["results"])
    assert len(eff) == n_results
    row = next(r for r in eff if r["person"] == "alice" and r["metric"] == "tst_min"
               and r["comparison"] == "mg_vs_control")
    assert row["reported"] is True
    assert row["estimate"] == pytest.approx(tst["estimate"])
    assert row["n_mg"] == 28 and row["nights_needed"] == tst["nights_needed"]
    bob_row = next(r for r in eff if r["person"] == "bob" and r["metric"] == "tst_min"
                   and r["comparison"] == "mg_vs_control")
    assert bob_row["reported"] is False and bob_row["estimate"] is None

    # the table, for one person and one metric, without writing
    res = runner.invoke(app, ["-c", str(cfg), "effects", "--person", "alice", "--metric", "tst_min",
                              "--no-write"])
    assert res.exit_code == 0, res.output
    assert "Total sleep was" in res.output
    assert "Magnesium vs control nights" in res.output
    assert len(influx_server.rows("SELECT * FROM effect", influx_db)) == n_results

    # --since keeps the later nights only
    since = (START + timedelta(days=28)).isoformat()
    res = runner.invoke(app, ["-c", str(cfg), "effects", "--person", "alice", "--since", since,
                              "--no-write", "--format", "json"])
    assert res.exit_code == 0, res.output
    (later,) = json.loads(res.output)
    assert sum(later["nights"].values()) == 28
    res = runner.invoke(app, ["-c", str(cfg), "effects", "--metric", "sleepiness", "--no-write"])
    assert res.exit_code == 2 and "unknown metric" in res.output
