"""Nights computed by the daemon's schedule: a real `magsleep nights compute` child against InfluxDB."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from collector.nights.schedule import compute_periodically, run_once
from collector.settings import load_settings
from collector.sim.backfill import backfill
from collector.sim.nights import plan_study
from collector.sim.params import SimConfig
from collector.sim.person import PersonProfile
from tests.nights.simdata import END


def write_config(path: Path, influx_url: str, db: str, state: Path, tz: str, *, every_min: float = 60.0) -> Path:
    path.write_text(
        f'[influx]\nembedded = false\nurl = "{influx_url}"\ndatabase = "{db}"\n'
        f'[storage]\nstate_dir = "{state}"\n'
        f'[nights]\ncompute_every_min = {every_min}\n'
        f'[[persons]]\nname = "sam"\nage = 45\nsex = "male"\ntimezone = "{tz}"\n')
    return path


async def backfilled_config(influx_server, influx_db, tmp_path: Path, **kw: float) -> Path:
    person = PersonProfile.sample("sam", 4, age=45, sex="male")
    study = plan_study(person, 1, seed=4, end=END, config=SimConfig(device_stages=False, motion=False))
    cfg = write_config(tmp_path / "magsleep.toml", influx_server.url, influx_db, tmp_path / "state",
                       person.timezone, **kw)
    await backfill(load_settings(cfg), study)
    return cfg


async def wait_for_night(influx_server, db: str, what: str, timeout_s: float = 30.0) -> None:
    """Until a night point is in ``db`` (AssertionError naming ``what`` after ``timeout_s``)."""
    for _ in range(int(timeout_s * 10)):
        if influx_server.rows("SELECT tst_min FROM night", db):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} computed no night within {timeout_s:.0f} s")


async def test_periodic_runs_compute_the_night_and_stop_promptly(influx_server, influx_db, tmp_path, caplog):
    cfg = await backfilled_config(influx_server, influx_db, tmp_path)
    stop = asyncio.Event()
    caplog.set_level(logging.INFO, logger="collector.nights.schedule")
    task = asyncio.create_task(compute_periodically(cfg, 3600.0, stop))
    try:
        await wait_for_night(influx_server, influx_db, "the schedule")
        for _ in range(50):  # the child logs its summary once it has exited
            if "nights computed" in caplog.text:
                break
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        t = time.monotonic()
        await asyncio.wait_for(task, 10)
    assert time.monotonic() - t < 2.0  # waiting for the next run ends at once
    assert "nights computed: sam: 1 night(s) computed (0 flagged)" in caplog.text
    assert len(influx_server.rows("SELECT tst_min FROM night", influx_db)) == 1


async def test_a_failing_run_is_logged_with_what_to_fix(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="collector.nights.schedule")
    code = await run_once(tmp_path / "missing.toml", asyncio.Event())
    assert code == 2
    assert "failed (exit 2)" in caplog.text
    assert "does not exist" in caplog.text


async def test_stopping_terminates_a_running_child(influx_server, influx_db, tmp_path, caplog):
    cfg = await backfilled_config(influx_server, influx_db, tmp_path)
    stop = asyncio.Event()
    caplog.set_level(logging.WARNING, logger="collector.nights.schedule")
    task = asyncio.create_task(run_once(cfg, stop))
    await asyncio.sleep(0.3)  # the child is importing or computing
    stop.set()
    t = time.monotonic()
    assert await asyncio.wait_for(task, 10) is None
    assert time.monotonic() - t < 6.0
    assert "the daemon is stopping" in caplog.text
