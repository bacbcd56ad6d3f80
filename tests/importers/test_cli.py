"""``magsleep import`` through the installed console script, into the test InfluxDB."""

from __future__ import annotations

from pathlib import Path

from tests.cli.console import Console, flat
from tests.importers.common import FIXTURES, TZ, count


def _console(tmp_path: Path, influx_server, influx_db) -> Console:
    home = tmp_path / "home"
    home.mkdir()
    return Console(home, {"influx": {"embedded": False, "url": influx_server.url, "database": influx_db},
                          "persons": [{"name": "alice", "timezone": TZ}]})


def test_dry_run_lists_then_import_stores_and_reports_bad_input(tmp_path, influx_server, influx_db) -> None:
    c = _console(tmp_path, influx_server, influx_db)
    dry = c.run("import", "apple-health", str(FIXTURES / "apple_export.xml"), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    out = flat(dry.stdout)
    assert "23 point(s) would be stored for alice (2024-03-30 23:05 to 2024-04-02 06:30)" in out
    assert "heart_rate 6" in out and "sleep_stage 17" in out
    assert "nights with data: 2 (2024-03-30 to 2024-04-01)" in out
    assert "2 magnesium intake(s) found" in out and "import again with --confirm-doses" in out
    err = flat(dry.stderr)
    assert "2 bad input item(s) skipped" in err and "Record #6" in err and "'abc'" in err
    assert count(influx_server, influx_db, "SELECT count(bpm) FROM heart_rate") == 0

    done = c.run("import", "rr", str(FIXTURES / "polar_sensor_logger_RR.txt"), str(FIXTURES / "hrv_logger_RR.csv"),
                 "--no-nights")
    assert done.returncode == 0, done.stderr
    out = flat(done.stdout)
    assert "polar_sensor_logger_RR.txt: 5 point(s) stored for alice" in out
    assert "hrv_logger_RR.csv: 4 point(s) stored for alice" in out
    assert "nights not computed (--no-nights): run `magsleep nights compute --since 2024-03-30`" in out
    assert "polar_sensor_logger_RR.txt:5: 'abc' is not a number" in flat(done.stderr)
    assert "hrv_logger_RR.csv:5: 'not-a-date' is not a date and time" in flat(done.stderr)
    assert count(influx_server, influx_db, "SELECT count(rr_ms) FROM rr WHERE device = 'polar-sensor-logger'") == 5
    assert count(influx_server, influx_db, "SELECT count(rr_ms) FROM rr WHERE device = 'hrv-logger'") == 4
