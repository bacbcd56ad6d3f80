"""garmin-grafana: its measurements read from an InfluxDB 1.x database (the test server) and imported."""

from __future__ import annotations

import urllib.request
from datetime import date
from pathlib import Path

import pytest

from collector.errors import ValidationError
from collector.importers.garmin_grafana import GarminGrafanaImporter, parse_source
from collector.importers.run import _shown
from tests.importers.common import FIXTURES, count, ctx, do_import, settings

WATCH = "garmin-forerunner-255"
NIGHT_START_S = 1718481600  # 2024-06-15 22:00 Europe/Berlin
ASLEEP = (1718486100, 1718511600)  # 23:15 to 06:20


@pytest.fixture
def garmin_db(influx_server):
    """garmin-grafana's database on the test server: its sleep points plus heart rate every 2 min."""
    name = "GarminStats_test"
    influx_server.create_database(name)
    lines = [x for x in (FIXTURES / "garmin_grafana.lp").read_text().splitlines() if x and not x.startswith("#")]
    for k in range(0, 10 * 3600, 120):
        t = NIGHT_START_S + k
        bpm = 54 if ASLEEP[0] <= t < ASLEEP[1] else 62
        lines.append(f"HeartRateIntraday,Database_Name=GarminStats,Device=Forerunner\\ 255 HeartRate={bpm}i {t}")
    req = urllib.request.Request(f"{influx_server.url}/write?db={name}&precision=s", data="\n".join(lines).encode(),
                                 method="POST")
    with urllib.request.urlopen(req, timeout=30):
        pass
    yield f"{influx_server.url}/{name}"
    influx_server.drop_database(name)


def test_source_parsing_never_shows_the_password() -> None:
    s = parse_source("http://garmin:s3cret@127.0.0.1:8086/GarminStats")
    assert (s.base, s.database, s.username, s.password) == ("http://127.0.0.1:8086", "GarminStats", "garmin", "s3cret")
    assert "s3cret" not in s.shown
    assert _shown("http://garmin:s3cret@127.0.0.1:8086/GarminStats") == "http://127.0.0.1:8086/GarminStats"
    with pytest.raises(ValidationError, match="http://host:8086/DATABASE"):
        parse_source("ftp://example.org/x")


def test_levels_mapped_markers_and_odd_levels_reported(garmin_db) -> None:
    c = ctx()
    imp = GarminGrafanaImporter()
    assert imp.detect(Path(garmin_db))
    pts = [p for b in imp.parse(Path(garmin_db), c) for p in b]
    stages = [(p.fields["stage"], int(p.fields["epoch_s"]) // 60) for p in pts if p.measurement == "sleep_stage"]
    assert stages == [("wake", 15), ("light", 75), ("deep", 60), ("rem", 30), ("light", 120), ("wake", 10),
                      ("light", 80), ("rem", 50), ("wake", 10)]
    assert {p.tags["device"] for p in pts} == {WATCH}
    assert sum(p.measurement == "heart_rate" for p in pts) == 300
    assert c.report.skipped == {"end-of-night markers": 1,
                                "Garmin sleep summaries (magsleep computes its own nights)": 1}
    assert c.report.bad == 1
    assert str(c.report.problems[0]).endswith("SleepIntraday at 2024-06-16T05:50:00+00:00: SleepStageLevel 7 with "
                                              "60 s is not a Garmin sleep level (0 deep, 1 light, 2 REM, 3 awake)")


def test_missing_database_says_what_to_check(influx_server) -> None:
    with pytest.raises(ValidationError, match="no SleepIntraday or HeartRateIntraday measurement"):
        GarminGrafanaImporter().detect(Path(f"{influx_server.url}/NoSuchDb"))


async def test_night_from_garmin_and_a_second_import_adds_nothing(
        garmin_db, influx_server, influx_db, tmp_path) -> None:
    s = settings(influx_server, influx_db, tmp_path / "state")
    first = await do_import(s, "garmin-grafana", garmin_db)
    assert first.nights == [date(2024, 6, 15)] and first.nights_computed == 1
    r = influx_server.rows("SELECT * FROM night GROUP BY *", influx_db)[0]
    assert r["_tags"]["staging"] == "device"
    assert (r["tst_min"], r["deep_min"], r["rem_min"], r["light_min"]) == (415.0, 60.0, 80.0, 275.0)
    assert r["hr_mean_bpm"] == pytest.approx(54, abs=0.5)
    n = count(influx_server, influx_db, "SELECT count(bpm) FROM heart_rate")
    again = await do_import(s, "garmin-grafana", garmin_db)
    assert again.nights_unchanged == 1 and again.nights_computed == 0
    assert count(influx_server, influx_db, "SELECT count(bpm) FROM heart_rate") == n == 300
