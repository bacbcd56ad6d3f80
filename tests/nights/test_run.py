"""Compute orchestration against a real InfluxDB: simulated nights in, night + sleep_stage points out."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from collector.cli import app
from collector.cli.night_tags_cmd import write_lights
from collector.nights.listing import list_nights
from collector.nights.run import compute_all
from collector.settings import InfluxSettings, PersonSettings, Settings, StorageSettings
from collector.sim.backfill import backfill
from collector.sim.nights import plan_study
from collector.sim.params import Dosing, SimConfig
from collector.sim.person import PersonProfile
from tests.nights.simdata import END

NS = 1_000_000_000


@pytest.fixture
def setup(influx_server, influx_db, tmp_path):
    person = PersonProfile.sample("sam", 4, age=45, sex="male")
    # no device stages: the nights are staged from the strap's RR; dose on one of the two nights
    cfg = SimConfig(device_stages=False, motion=False, dosing=Dosing(design="blocks", block_nights=1))
    study = plan_study(person, 2, seed=4, end=END, config=cfg)
    settings = Settings(
        influx=InfluxSettings(embedded=False, url=influx_server.url, database=influx_db),
        storage=StorageSettings(state_dir=tmp_path),
        persons=[PersonSettings(name="sam", age=45, sex="male", timezone=person.timezone)],
    )
    return settings, study


def _now(study):
    return study.plans[-1].lights_out_ns + 24 * 3600 * NS


async def test_compute_incremental_idempotent(setup, influx_server, influx_db):
    settings, study = setup
    await backfill(settings, study)
    now = _now(study)
    since = study.plans[0].night

    s1 = (await compute_all(settings, since=since, now_ns=now))[0]
    assert s1.computed == 2
    rows = influx_server.rows("SELECT * FROM night GROUP BY *", influx_db)
    assert len(rows) == 2
    by_night = {r["night"]: r for r in rows}
    for plan in study.plans:
        r = by_night[plan.night.isoformat()]
        assert r["_tags"]["staging"] == "computed"
        assert r["_tags"]["source"] == "sim"
        # the dose hook: the night's dose status comes from the logged (simulated) dose
        assert r["_tags"]["dose"] == ("magnesium" if plan.dose else "control")
        assert r["flagged"] is False
        assert r["lights_source"] == "estimate"
        assert 0 < r["tst_min"] <= r["tib_min"]
    stages = influx_server.rows("SELECT count(stage_code) FROM sleep_stage GROUP BY device, source", influx_db)
    assert stages[0]["_tags"] == {"device": "magsleep-wrn-gru-mesa", "source": "sim"}
    n_stage = stages[0]["count"]
    tib_epochs = sum(round(r["tib_min"] * 2) for r in rows)
    assert n_stage == tib_epochs

    # nothing changed: nothing recomputed
    s2 = (await compute_all(settings, since=since, now_ns=now))[0]
    assert (s2.computed, s2.unchanged) == (0, 2)

    # a lights-out tag on the first night: only that night is recomputed, from the tag
    lo = study.plans[0].lights_out_ns
    await write_lights(settings, "sam", "lights_out", datetime.fromtimestamp(lo / NS - 600, UTC).isoformat())
    s3 = (await compute_all(settings, since=since, now_ns=now))[0]
    assert (s3.computed, s3.unchanged) == (1, 1)
    rows = influx_server.rows("SELECT * FROM night GROUP BY *", influx_db)
    assert len(rows) == 2  # overwritten, not duplicated
    first = {r["night"]: r for r in rows}[study.plans[0].night.isoformat()]
    assert first["lights_source"] == "tag"
    assert abs(first["lights_out"] - (lo - 600 * NS)) < 30 * NS  # on the 30-s grid
    # stage points follow the new time in bed exactly (stale epochs deleted)
    n_stage = influx_server.rows("SELECT count(stage_code) FROM sleep_stage", influx_db)[0]["count"]
    assert n_stage == sum(round(r["tib_min"] * 2) for r in rows)

    # --recompute: everything again, still one row per night
    s4 = (await compute_all(settings, since=since, now_ns=now, recompute=True))[0]
    assert s4.computed == 2
    assert len(influx_server.rows("SELECT * FROM night GROUP BY *", influx_db)) == 2

    listed = await list_nights(settings, person="sam")
    assert [r["night"] for r in listed] == [p.night.isoformat() for p in study.plans]


async def test_worker_processes_only_for_several_nights_and_same_results(influx_server, influx_db, tmp_path):
    """2 workers compute 4 nights exactly as this process does; 1 new night runs in process."""
    person = PersonProfile.sample("sam", 4, age=45, sex="male")
    study = plan_study(person, 5, seed=8, end=END, config=SimConfig(device_stages=False, motion=False))
    settings = Settings(
        influx=InfluxSettings(embedded=False, url=influx_server.url, database=influx_db),
        storage=StorageSettings(state_dir=tmp_path),
        persons=[PersonSettings(name="sam", age=45, sex="male", timezone=person.timezone)],
    )
    await backfill(settings, study, indices=range(4))
    now = study.plans[3].lights_out_ns + 24 * 3600 * NS
    s1 = (await compute_all(settings, now_ns=now, workers=2))[0]
    assert (s1.computed, s1.parallel) == (4, True)
    in_workers = {r["night"]: r for r in influx_server.rows("SELECT * FROM night GROUP BY *", influx_db)}
    s2 = (await compute_all(settings, now_ns=now, workers=1, recompute=True))[0]
    assert (s2.computed, s2.parallel) == (4, False)
    here = {r["night"]: r for r in influx_server.rows("SELECT * FROM night GROUP BY *", influx_db)}
    assert here == in_workers
    await backfill(settings, study, indices=[4])
    s3 = (await compute_all(settings, now_ns=now + 24 * 3600 * NS, workers=2))[0]
    assert (s3.computed, s3.parallel) == (1, False)


async def test_nights_without_data_and_unfinished_windows(setup):
    settings, study = setup
    await backfill(settings, study, indices=[0])
    # "now" is during the second night's window: it is not computed yet
    now = study.plans[1].lights_out_ns
    s = (await compute_all(settings, now_ns=now))[0]
    assert s.computed == 1
    assert s.nights == [study.plans[0].night.isoformat()]


def test_cli_list_formats(setup, influx_server, influx_db, tmp_path, monkeypatch):
    import asyncio

    settings, study = setup
    asyncio.run(backfill(settings, study, indices=[0]))
    cfg = tmp_path / "m.toml"
    cfg.write_text(
        f'[influx]\nembedded = false\nurl = "{influx_server.url}"\ndatabase = "{influx_db}"\n'
        f'[storage]\nstate_dir = "{tmp_path}"\n[[persons]]\nname = "sam"\nage = 45\nsex = "male"\n'
        f'timezone = "{settings.persons[0].timezone}"\n'
    )
    runner = CliRunner()
    # compute with the defaults (the simulated night ended days before the real clock's now)
    r = runner.invoke(app, ["--config", str(cfg), "nights", "compute"])
    assert r.exit_code == 0, r.output
    assert "sam: 1 night(s) computed (0 flagged)" in r.output
    r = runner.invoke(app, ["--config", str(cfg), "nights", "--format", "json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert len(data) == 1
    assert data[0]["night"] == study.plans[0].night.isoformat()
    assert data[0]["staging"] == "computed"
    r = runner.invoke(app, ["--config", str(cfg), "nights", "--format", "csv"])
    assert r.exit_code == 0
    assert r.output.splitlines()[0].startswith("night,person,dose,staging")
    r = runner.invoke(app, ["--config", str(cfg), "nights"])
    assert r.exit_code == 0
    assert "1 night(s)" in r.output
    r = runner.invoke(app, ["--config", str(cfg), "nights", "--since", "nope"])
    assert r.exit_code == 2
    assert "YYYY-MM-DD" in r.output
    r = runner.invoke(app, ["--config", str(cfg), "night", "lights-out", "--at", "16:00"])
    assert r.exit_code == 2  # 16:00 is between windows (14:00-18:00)
    assert "night window" in r.output


def test_main_device_is_the_one_covering_most_time() -> None:
    import numpy as np

    from collector.nights.inputs import _main_epochs, _Series

    def series(device: str, n: int, epoch_s: float, t0: int = 0) -> _Series:
        t = np.arange(t0, t0 + n, dtype=np.int64)
        return _Series(device, "device", t, (np.full(n, 1.0), np.full(n, epoch_s)))

    band = series("band", 100, 60)  # 100 min in 60-s rows
    watch = series("watch", 8, 1800, t0=5)  # 4 h in 8 segments
    assert _main_epochs([band, watch])[3] == "watch"
    # without epoch_s: the most rows; a tie goes to the device seen first
    assert _main_epochs([series("b", 2, np.nan, t0=3), series("a", 2, np.nan, t0=5)])[3] == "b"
    assert _main_epochs([series("a", 2, np.nan), series("b", 1, np.nan)])[3] == "a"
    t, v, e, dev = _main_epochs([])
    assert (t.size, v.size, e.size, dev) == (0, 0, 0, "")
    # rows without a value count for the device's time but are not returned; epoch 0 or none is 30 s
    s = _Series("w", "device", np.array([1, 2, 3]), (np.array([2.0, np.nan, 1.0]), np.array([0.0, 600.0, np.nan])))
    t, v, e, _ = _main_epochs([s])
    assert t.tolist() == [1, 3] and v.tolist() == [2.0, 1.0] and e.tolist() == [30, 30]
