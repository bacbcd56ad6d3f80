"""Nights computed by the daemon's schedule: a real `magsleep nights compute` child against InfluxDB."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from collector.app.schedule import compute_periodically, run_once
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
    caplog.set_level(logging.INFO, logger="collector.app.schedule")
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
    caplog.set_level(logging.WARNING, logger="collector.app.schedule")
    code = await run_once(tmp_path / "missing.toml", asyncio.Event())
    assert code == 2
    assert "failed (exit 2)" in caplog.text
    assert "does not exist" in caplog.text


async def test_stopping_terminates_a_running_child(influx_server, influx_db, tmp_path, caplog):
    cfg = await backfilled_config(influx_server, influx_db, tmp_path)
    stop = asyncio.Event()
    caplog.set_level(logging.WARNING, logger="collector.app.schedule")
    task = asyncio.create_task(run_once(cfg, stop))
    await asyncio.sleep(0.3)  # the child is importing or computing
    stop.set()
    t = time.monotonic()
    assert await asyncio.wait_for(task, 10) is None
    assert time.monotonic() - t < 6.0
    assert "the daemon is stopping" in caplog.text


async def test_triggers_due_at_a_pending_nights_moment_and_after_a_new_lights_on(tmp_path):
    from datetime import UTC, date, datetime

    from collector.app.schedule import LIGHTS_DELAY_S, Triggers
    from collector.doses.entities import Lights, LightsEvent, Source
    from collector.doses.journal import DoseJournal
    from collector.nights.state import NightState, StateRow

    ns = 1_000_000_000
    now = [1_790_000_000 * ns]
    journal = DoseJournal(tmp_path / "doses.sqlite")
    trig = Triggers(tmp_path / "nights.sqlite", tmp_path / "doses.sqlite", time_ns=lambda: now[0])
    assert not trig.due() and trig.next_ready_ns() is None  # no state file yet
    state = NightState(tmp_path / "nights.sqlite")
    state.put("sam", "2026-09-20", StateRow("fp", 0, 0, "", "", now[0] + 600 * ns))  # closes in 10 min
    state.put("sam", "2026-09-19", StateRow("fp", 1, 2, "{}", "{}", 0))  # written: never a trigger
    state.put("sam", "2026-09-10", StateRow("fp", 0, 0, "", "", now[0] - 9 * 24 * 3600 * ns))  # stale
    assert trig.next_ready_ns() == now[0] + 600 * ns
    assert not trig.due()
    now[0] += 600 * ns
    assert trig.due()
    state.put("sam", "2026-09-20", StateRow("fp2", 1, 2, "{}", "{}", 0))  # the run wrote it
    assert not trig.due()
    # a lights-on tap: due once, after the journal has had time to send it
    at = datetime.fromtimestamp(now[0] / ns, UTC)
    journal.set_lights(Lights(person="sam", night=date(2026, 9, 20), event=LightsEvent.lights_on, at=at,
                              source=Source.api, recorded_at=at))
    assert not trig.due()
    now[0] += round(LIGHTS_DELAY_S * ns)
    assert trig.due()
    assert not trig.due()
    state.close()
    journal.close()


async def test_a_due_trigger_starts_a_run_before_the_regular_one(influx_server, influx_db, tmp_path, caplog):
    from collector.app.schedule import Triggers

    class Once(Triggers):
        """A real Triggers whose moment has come once (the files are not the point here)."""

        fired = 0

        def due(self) -> bool:
            self.fired += 1
            return self.fired == 1

    cfg = write_config(tmp_path / "magsleep.toml", influx_server.url, influx_db, tmp_path / "state", "UTC")
    stop = asyncio.Event()
    caplog.set_level(logging.INFO, logger="collector.app.schedule")
    trig = Once(tmp_path / "n.sqlite", tmp_path / "d.sqlite")
    task = asyncio.create_task(compute_periodically(cfg, 3600.0, stop, triggers=trig, poll_s=0.05, min_gap_s=0))
    try:
        for _ in range(300):
            if caplog.text.count("nights computed") >= 2:
                break
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert "a night may have closed" in caplog.text
    assert caplog.text.count("nights computed") == 2  # the first run, then the triggered one; no more
