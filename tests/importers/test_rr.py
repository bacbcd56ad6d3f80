"""RR recordings: each app's format read as written, odd lines reported, a night imported for real."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from collector.errors import ValidationError
from collector.importers.rr import ELITE, HRV_LOGGER, PLAIN, POLAR, RRImporter, sniff
from collector.nights.run import compute_all
from collector.sim.backfill import backfill
from collector.sim.hrm import notification_arrays
from tests.importers.common import FIXTURES, NOW, NS, TZ, count, ctx, do_import, settings, sim_night


def _ns(text: str, tz: str = TZ) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp() * 1000) * 1_000_000


def _parse(path: Path, **kw):
    c = ctx(**kw)
    pts = [p for b in RRImporter().parse(path, c) for p in b]
    return pts, c.report


@pytest.mark.parametrize(("name", "fmt"), [
    ("polar_sensor_logger_RR.txt", POLAR), ("hrv_logger_RR.csv", HRV_LOGGER),
    ("2024-01-02 23-11-05.txt", ELITE), ("kubios_rr_seconds.txt", PLAIN)])
def test_detected_by_header(name: str, fmt: object) -> None:
    path = FIXTURES / name
    assert sniff(path.read_text().splitlines()[0], path) is fmt
    assert RRImporter().detect(path)


def test_not_rr_is_not_detected(tmp_path: Path) -> None:
    p = tmp_path / "notes.txt"
    p.write_text("dear diary,\nslept badly\n")
    assert not RRImporter().detect(p)


def test_polar_sensor_logger_beats_chained_and_bad_lines_reported() -> None:
    pts, rep = _parse(FIXTURES / "polar_sensor_logger_RR.txt")
    # two beats of one notification share a phone time: chained by their intervals, 1 s apart
    t0 = _ns("2024-03-30T23:10:01.250")
    assert [p.time_ns for p in pts] == [t0, t0 + 1010 * 10**6, t0 + 2000 * 10**6, t0 + 2980 * 10**6,
                                        _ns("2024-03-30T23:15:00")]  # a 5-min gap: back on the phone's time
    assert [p.fields["rr_ms"] for p in pts] == [1000.0, 1010.0, 990.0, 980.0, 1005.0]
    assert all(dict(p.tags) == {"person": "alice", "device": "polar-sensor-logger", "source": "import"}
               for p in pts)
    assert rep.bad == 2
    assert [str(p) for p in rep.problems] == [
        "polar_sensor_logger_RR.txt:5: 'abc' is not a number (RR in ms)",
        "polar_sensor_logger_RR.txt:7: 20000 ms is not a heartbeat interval (150-6000 ms)"]


def test_hrv_logger_night_of_the_dst_change() -> None:
    pts, rep = _parse(FIXTURES / "hrv_logger_RR.csv")
    assert [p.time_ns for p in pts] == [_ns("2024-10-26T23:40:00"), _ns("2024-10-26T23:40:00.905"),
                                        _ns("2024-10-26T23:40:01.815"), _ns("2024-10-26T23:40:02.730")]
    assert rep.bad == 1 and "'not-a-date' is not a date and time" in str(rep.problems[0])
    assert str(rep.problems[0]).startswith("hrv_logger_RR.csv:5:")


def test_elite_hrv_start_from_the_file_name() -> None:
    pts, rep = _parse(FIXTURES / "2024-01-02 23-11-05.txt")
    start = _ns("2024-01-02T23:11:05")
    assert [p.time_ns - start for p in pts] == [812 * 10**6, 1642 * 10**6, 2487 * 10**6, 3338 * 10**6]
    assert rep.bad == 0
    assert pts[0].tags["device"] == "elite-hrv"


def test_plain_list_in_seconds_needs_start() -> None:
    path = FIXTURES / "kubios_rr_seconds.txt"
    with pytest.raises(ValidationError, match="--start"):
        _parse(path)
    pts, rep = _parse(path, start=datetime(2024, 1, 5, 22, 0))
    start = _ns("2024-01-05T22:00:00")
    assert [p.fields["rr_ms"] for p in pts] == [812.0, 830.0, 845.0, 851.0]
    assert pts[-1].time_ns == start + (812 + 830 + 845 + 851) * 10**6
    assert rep.bad == 1
    assert str(rep.problems[0]) == "kubios_rr_seconds.txt:4: 'x' is not a number (one RR interval per line)"


def _polar_file(path: Path, night, tz: str) -> int:
    """A simulated night written the way Polar Sensor Logger writes it (phone time of each beat)."""
    a = notification_arrays(night)
    z = ZoneInfo(tz)
    lines = ["Phone timestamp;RR-interval [ms]"]
    for t, rr in zip(np.asarray(a.rr_time_ns).tolist(), np.asarray(a.rr_ms).tolist(), strict=True):
        dt = datetime.fromtimestamp(t / NS, z).replace(tzinfo=None)
        lines.append(f"{dt.isoformat(timespec='milliseconds')};{round(rr)}")
    path.write_text("\n".join(lines) + "\n")
    return len(lines) - 1


async def test_a_night_imported_then_computed_and_a_second_import_adds_nothing(
        influx_server, influx_db, tmp_path) -> None:
    study, night = sim_night(datetime(2024, 3, 30).date())  # the spring DST night in Berlin
    path = tmp_path / "Polar_H10_ABCD1234_20240330_231000_RR.txt"
    beats = _polar_file(path, night, TZ)
    s = settings(influx_server, influx_db, tmp_path / "state")

    dry = await do_import(s, "rr", path, dry_run=True)
    assert dry.points == {"rr": beats} and dry.nights == [night.plan.night]
    assert count(influx_server, influx_db, "SELECT count(rr_ms) FROM rr") == 0  # dry run stores nothing

    first = await do_import(s, "rr", path)
    assert first.nights_computed == 1 and first.report.bad == 0
    assert count(influx_server, influx_db, "SELECT count(rr_ms) FROM rr WHERE source = 'import'") == beats
    rows = influx_server.rows("SELECT * FROM night GROUP BY *", influx_db)
    assert len(rows) == 1
    r = rows[0]
    assert r["night"] == night.plan.night.isoformat()
    assert r["_tags"]["staging"] == "computed" and r["_tags"]["source"] == "computed"
    # the same night written the daemon's way (the simulator's strap, exact beat times) gives the same night
    ref_db = f"{influx_db}_ref"
    influx_server.create_database(ref_db)
    try:
        ref_settings = settings(influx_server, ref_db, tmp_path / "ref-state")
        await backfill(ref_settings, study)
        await compute_all(ref_settings, since=night.plan.night, now_ns=int(NOW.timestamp()) * NS)
        ref = influx_server.rows("SELECT * FROM night", ref_db)[0]
    finally:
        influx_server.drop_database(ref_db)
    assert abs(r["lights_out"] - ref["lights_out"]) <= 5 * 60 * NS
    assert abs(r["tst_min"] - ref["tst_min"]) <= 10
    assert r["rmssd_ms"] == pytest.approx(ref["rmssd_ms"], rel=0.05)

    again = await do_import(s, "rr", path)
    assert again.nights_computed == 0 and again.nights_unchanged == 1
    assert count(influx_server, influx_db, "SELECT count(rr_ms) FROM rr") == beats
    assert len(influx_server.rows("SELECT * FROM night", influx_db)) == 1


async def test_wrong_kind_and_missing_start_say_what_to_do(influx_server, influx_db, tmp_path) -> None:
    s = settings(influx_server, influx_db, tmp_path / "state")
    with pytest.raises(ValidationError, match="does not look like a apple-health export"):
        await do_import(s, "apple-health", FIXTURES / "hrv_logger_RR.csv")
    with pytest.raises(ValidationError, match="give it with --start"):
        await do_import(s, "rr", FIXTURES / "kubios_rr_seconds.txt", dry_run=True)
    with pytest.raises(ValidationError, match="no such file"):
        await do_import(s, "rr", tmp_path / "missing.txt")
    with pytest.raises(ValidationError, match="unknown import kind 'fitbit'"):
        await do_import(s, "fitbit", FIXTURES / "kubios_rr_seconds.txt")
