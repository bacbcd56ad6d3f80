"""Backfill into the real InfluxDB: expected counts, source=sim, truth JSON, refusal to mix."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from collector.cli import common, sim_cmd
from collector.errors import ValidationError
from collector.settings import InfluxSettings, PersonSettings, Settings, StorageSettings
from collector.sim.backfill import backfill, clear_sim, night_lines, night_points
from collector.sim.params import Dosing, Faults
from collector.storage.lineprotocol import Point, encode_points
from collector.storage.pipeline import Pipeline
from collector.storage.schema import normalize, validate_point
from tests.conftest import InfluxServer
from tests.sim.conftest import make_study


def _settings(server: InfluxServer, db: str, tmp_path: Path) -> Settings:
    return Settings(influx=InfluxSettings(embedded=False, url=server.url, database=db),
                    storage=StorageSettings(state_dir=tmp_path), persons=[PersonSettings(name="alice")])


def _counts(server: InfluxServer, db: str, where: str) -> dict[str, int]:
    q = ";".join(f"SELECT count({f}) FROM {m} WHERE {where}" for m, f in (
        ("heart_rate", "bpm"), ("rr", "rr_ms"), ("motion", "counts"), ("sleep_stage", "stage_code"),
        ("supplement_dose", "amount_mg")))
    out: dict[str, int] = {}
    for row in server.rows(q, db):
        out[row["_measurement"]] = int(row["count"])
    return out


def test_lines_equal_points_and_fit_the_schema() -> None:
    s = make_study(2, seed=2, dosing=Dosing(design="blocks", block_nights=1))
    for i in range(2):
        night = s.night(i)
        pts = night_points(night, s)
        for p in pts:
            validate_point(p)
            assert p.tags["source"] == "sim"
        assert night_lines(night, s) == encode_points([normalize(p) for p in pts])
        doses = [p for p in pts if p.measurement == "supplement_dose"]
        assert len(doses) == (1 if night.plan.dose else 0)
        thin = night_points(night, s, hr_every_s=5.0)
        assert night_lines(night, s, hr_every_s=5.0) == encode_points([normalize(p) for p in thin])
        hr_full = sum(p.measurement == "heart_rate" for p in pts)
        hr_thin = [p.time_ns for p in thin if p.measurement == "heart_rate"]
        assert abs(len(hr_thin) - hr_full / 5) < hr_full * 0.02
        gaps = [b - a for a, b in itertools.pairwise(hr_thin)]
        assert sorted(gaps)[len(gaps) // 2] == pytest.approx(5e9, abs=0.1e9)
        assert sum(p.measurement == "rr" for p in thin) == sum(p.measurement == "rr" for p in pts)
        no_doses = night_lines(night, s, doses=False)
        assert [x for x in night_lines(night, s) if x not in no_doses] == encode_points(doses)


async def test_backfill_lands_expected_counts(influx_server: InfluxServer, influx_db: str, tmp_path: Path) -> None:
    settings = _settings(influx_server, influx_db, tmp_path)
    study = make_study(3, seed=5, dosing=Dosing(design="blocks", block_nights=1),
                       faults=Faults(dropouts_per_night=3.0, contact_losses_per_night=1.0))
    expected: Counter[str] = Counter()
    for night in study.nights():
        expected.update(p.measurement for p in night_points(night, study))
    seen: list[tuple[int, int]] = []
    truth = tmp_path / "truth.json"
    res = await backfill(settings, study, truth_path=truth, progress=lambda d, t, n: seen.append((d, t)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert res.nights == 3 and res.dose_nights == 1 and res.lines == sum(expected.values())
    got = _counts(influx_server, influx_db, "source = 'sim' AND person = 'alice'")
    assert got == dict(expected)
    assert _counts(influx_server, influx_db, "source != 'sim'") == {}
    doc = json.loads(truth.read_text())
    assert [n["night"] for n in doc["nights"]] == [p.night.isoformat() for p in study.plans]
    assert doc["nights"][1]["dose"] == "magnesium" and doc["schedule"][1]["dose"] is True
    assert doc["config"]["effects"]["sol_min"] == pytest.approx(-17.4)
    assert doc["nights"][0]["tst_min"] == study.night(0).truth.tst_min
    # a re-run with the same seed overwrites the same points: no duplicates
    await backfill(settings, study, indices=[0])
    assert _counts(influx_server, influx_db, "source = 'sim'") == dict(expected)


async def test_backfill_refuses_to_mix_with_real_data(influx_server: InfluxServer, influx_db: str,
                                                      tmp_path: Path) -> None:
    settings = _settings(influx_server, influx_db, tmp_path)
    study = make_study(1, seed=5)
    real = Point("heart_rate", {"person": "alice", "device": "h10-alice", "source": "device"}, {"bpm": 55},
                 study.plans[0].lights_out_ns + 10**12)
    async with Pipeline.from_settings(settings, name="real") as pipe:
        await pipe.put([real])
        await pipe.flush()
    with pytest.raises(ValidationError, match=r"real \(non-sim\) heart points"):
        await backfill(settings, study)
    assert _counts(influx_server, influx_db, "source = 'sim'") == {}
    await backfill(settings, study, allow_mixed=True, durable=True)  # through the SQLite outbox
    assert (tmp_path / "outbox-sim.sqlite").exists()
    assert _counts(influx_server, influx_db, "source = 'sim'")["rr"] > 10_000
    assert _counts(influx_server, influx_db, "source = 'device'") == {"heart_rate": 1}
    await clear_sim(settings, "bob")  # another person's: nothing of alice's goes
    assert _counts(influx_server, influx_db, "source = 'sim'")["rr"] > 10_000
    await clear_sim(settings, "alice")
    assert _counts(influx_server, influx_db, "source = 'sim'") == {}
    assert _counts(influx_server, influx_db, "source = 'device'") == {"heart_rate": 1}


def test_cli_backfill(influx_server: InfluxServer, influx_db: str, tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAGSLEEP_INFLUX__EMBEDDED", "false")
    monkeypatch.setenv("MAGSLEEP_INFLUX__URL", influx_server.url)
    monkeypatch.setenv("MAGSLEEP_INFLUX__DATABASE", influx_db)
    monkeypatch.setenv("MAGSLEEP_STORAGE__STATE_DIR", str(tmp_path))
    monkeypatch.setenv("MAGSLEEP_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("")
    common._cache.clear()
    runner = CliRunner()
    r = runner.invoke(sim_cmd.app, ["backfill", "--nights", "2", "--person", "demo", "--seed", "4",
                                    "--scenario", "null", "--design", "blocks", "--end", "2026-11-20",
                                    "--no-device-stages", "--hr-every", "10"])
    assert r.exit_code == 0, r.output
    assert "wrote 2 simulated nights" in r.output and "source=sim" in r.output
    got = _counts(influx_server, influx_db, "source = 'sim' AND person = 'demo'")
    assert got["rr"] > 20_000 and got["motion"] > 1500 and "sleep_stage" not in got
    assert 2 * 2400 < got["heart_rate"] < 2 * 4000  # one per 10 s
    assert got["supplement_dose"] == 1
    truth = tmp_path / "sim" / "truth-demo.json"
    r = runner.invoke(sim_cmd.app, ["truth", str(truth)])
    assert r.exit_code == 0 and "2 nights (1 magnesium, 1 control)" in r.output
    r = runner.invoke(sim_cmd.app, ["clear", "--person", "demo", "--yes"])
    assert r.exit_code == 0, r.output
    assert _counts(influx_server, influx_db, "source = 'sim'") == {}
    r = runner.invoke(sim_cmd.app, ["backfill", "--nights", "2", "--design", "weekly", "--end", "2026-11-20"])
    assert r.exit_code == 2 and "unknown design" in r.output
    r = runner.invoke(sim_cmd.app, ["backfill", "--nights", "2", "--end", "20-11-2026"])
    assert r.exit_code == 2 and "YYYY-MM-DD" in r.output
    common._cache.clear()
