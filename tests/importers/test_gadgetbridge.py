"""Gadgetbridge: a database export with three device families, imported into the real InfluxDB."""

from __future__ import annotations

import sqlite3
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from collector.errors import ValidationError
from collector.importers.gadgetbridge import GadgetbridgeImporter
from collector.storage.lineprotocol import encode_points
from collector.storage.schema import normalize
from tests.importers.common import FIXTURES, count, ctx, do_import, settings

MIBAND = "gb-mi-band-2-bb01"
BANGLE = "gb-bangle-1a2b"
PINETIME = "gb-pinetime-4455"


def _db(tmp: Path) -> Path:
    p = tmp / "Gadgetbridge"
    with sqlite3.connect(p) as db:
        db.executescript((FIXTURES / "gadgetbridge.sql").read_text())
    db.close()
    return p


def test_families_and_sleep_kinds(tmp_path: Path) -> None:
    path = _db(tmp_path)
    assert GadgetbridgeImporter().detect(path)
    assert not GadgetbridgeImporter().detect(FIXTURES / "hrv_logger_RR.csv")
    c = ctx()
    batches = list(GadgetbridgeImporter().parse(path, c))
    pts = [p for b in batches for p in b]
    # the rows the pipeline writes are the lines these points give through the general path
    assert [ln for b in batches for ln in b.lines()] == encode_points([normalize(p) for p in pts])
    by = Counter((p.measurement, p.tags["device"]) for p in pts)
    # Mi Band: 571 rows, heart rate 255 (no reading) on 42 of them; one row's kind is not a number
    assert by == {("heart_rate", MIBAND): 571 - 42, ("sleep_stage", MIBAND): 570,
                  ("heart_rate", BANGLE): 120, ("heart_rate", PINETIME): 2}
    stages = Counter(p.fields["stage"] for p in pts if p.measurement == "sleep_stage")
    assert stages == {"wake": 150, "light": 360, "deep": 60}  # "same as before" rows carry light on
    assert c.report.bad == 1
    assert str(c.report.problems[0]) == ("Gadgetbridge table MI_BAND_ACTIVITY_SAMPLE row TIMESTAMP=1730617200 "
                                         "DEVICE_ID=1: RAW_KIND 'x' is not a number")
    assert c.report.skipped == {"rows of table HYBRID_HRACTIVITY_SAMPLE (not a family this importer reads)": 2,
                                "RAW_INTENSITY minutes (device units, not activity counts)": 571 + 120}


def test_not_a_database_says_so(tmp_path: Path) -> None:
    p = tmp_path / "Gadgetbridge"
    p.write_bytes(b"SQLite format 3\x00" + b"\x00" * 50)
    with pytest.raises(ValidationError, match="not a readable SQLite database"):
        GadgetbridgeImporter().detect(p)


async def test_night_from_the_band_and_a_second_import_adds_nothing(influx_server, influx_db, tmp_path) -> None:
    s = settings(influx_server, influx_db, tmp_path / "state")
    path = _db(tmp_path)
    first = await do_import(s, "gadgetbridge", path)
    assert first.nights == [date(2024, 11, 2)] and first.nights_computed == 1
    n_hr = count(influx_server, influx_db, "SELECT count(bpm) FROM heart_rate WHERE source = 'import'")
    assert n_hr == 571 - 42 + 120 + 2
    rows = influx_server.rows("SELECT * FROM night GROUP BY *", influx_db)
    assert len(rows) == 1
    r = rows[0]
    assert r["_tags"]["staging"] == "device"
    assert (r["tst_min"], r["deep_min"], r["light_min"]) == (420.0, 60.0, 360.0)
    assert 56 <= r["hr_mean_bpm"] <= 60  # the band's heart rate (it has the most points), not the Bangle's 60s

    again = await do_import(s, "gadgetbridge", path)
    assert again.nights_unchanged == 1 and again.nights_computed == 0
    assert count(influx_server, influx_db, "SELECT count(bpm) FROM heart_rate") == n_hr
