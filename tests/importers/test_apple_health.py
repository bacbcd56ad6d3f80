"""Apple Health: the export read as the Health app writes it, imported into the real InfluxDB."""

from __future__ import annotations

import random
import zipfile
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from collector.importers.apple_health import AppleHealthImporter, _Segment, _sleep_points, apple_ns, clock_s
from collector.importers.base import Rows
from collector.nights.stages import DEEP, LIGHT, REM, WAKE
from collector.storage.lineprotocol import encode_points
from collector.storage.schema import normalize
from tests.importers.common import FIXTURES, NS, count, ctx, do_import, settings

XML = FIXTURES / "apple_export.xml"
WATCH = "alice-s-apple-watch"
#: the export's clock: a few days after its nights (doses are accepted up to a year back)
THEN = datetime(2024, 4, 5, 8, 0, tzinfo=UTC)


def _zip(tmp: Path, name: str = "export.zip") -> Path:
    p = tmp / name
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("apple_health_export/export_cda.xml", "<ClinicalDocument/>" * 50)
        z.write(XML, "apple_health_export/export.xml")
    return p


def _parse(path: Path, **kw):
    c = ctx(**kw)
    pts = [p for b in AppleHealthImporter().parse(path, c) for p in b]
    return pts, c


def test_apple_dates_and_clock_times() -> None:
    assert apple_ns("2024-03-31 03:05:00 +0200") == int(datetime(2024, 3, 31, 1, 5, tzinfo=UTC).timestamp()) * NS
    assert apple_ns("2024-01-02 23:11:05 -0500") == int(datetime(2024, 1, 3, 4, 11, 5, tzinfo=UTC).timestamp()) * NS
    assert clock_s("11:05:22.17 PM") == pytest.approx(23 * 3600 + 5 * 60 + 22.17)
    assert clock_s("12:00:01.00 am") == pytest.approx(1.0)
    assert clock_s("23:05:22.17") == pytest.approx(23 * 3600 + 5 * 60 + 22.17)
    for bad in ("2024-01-02T23:11:05+01:00", "2024-01-02 25:11:05 +0100", "2024-01-02 23:11:05 0100"):
        with pytest.raises(ValueError, match=r"not a date|not a valid time|offset must be"):
            apple_ns(bad)


def test_records_mapped_and_bad_elements_reported() -> None:
    pts, c = _parse(XML)
    hr = [p for p in pts if p.measurement == "heart_rate"]
    assert [p.fields["bpm"] for p in hr] == [64, 58, 58, 55, 52, 54]  # one duplicate, one bad value
    assert {p.tags["device"] for p in hr} == {WATCH}
    assert all(p.tags["source"] == "import" for p in pts)
    stages = [p for p in pts if p.measurement == "sleep_stage"]
    watch = [(p.fields["stage"], p.fields["epoch_s"] // 60) for p in stages if p.tags["device"] == WATCH]
    # in bed before the first stage and after the last is wake; 01:50-03:05 spans the DST jump (15 min)
    assert watch == [("wake", 15), ("light", 30), ("deep", 50), ("light", 50), ("rem", 20), ("light", 15),
                     ("wake", 10), ("light", 75), ("rem", 30), ("light", 90), ("rem", 20), ("wake", 5)]
    auto = [(p.fields["stage"], p.fields["epoch_s"] // 60) for p in stages if p.tags["device"] == "autosleep"]
    assert auto == [("wake", 15), ("sleep", 255), ("wake", 20), ("sleep", 190), ("wake", 15)]
    assert not [p for p in stages if p.tags["device"] == "alice-s-iphone"]  # in bed only: left out
    assert c.report.skipped == {"in-bed periods without sleep stages": 1, "HRV SDNN values": 1,
                                "resting heart rate": 1, "sleep duration goal": 1}
    assert c.report.bad == 2
    assert [str(p) for p in c.report.problems] == [
        "apple_export.xml Record #6 (HKQuantityTypeIdentifierHeartRate, 2024-03-31 00:30:10 +0100): "
        "could not convert string to float: 'abc'",
        "apple_export.xml Record #25 (HKCategoryTypeIdentifierSleepAnalysis, 2024-03-31 06:50:00 +0200): "
        "ends before it starts"]
    assert [(d.elemental_mg, d.origin) for d in c.doses] == [(200.0, "MyFitnessPal (Apple Health)"),
                                                          (150.0, "Cronometer (Apple Health)")]


def test_heart_rate_rows_write_the_lines_of_their_points() -> None:
    rows = [b for b in AppleHealthImporter().parse(XML, ctx()) if isinstance(b, Rows)]
    assert sum(len(b) for b in rows) == 6
    for b in rows:  # what the pipeline writes for the rows is what the points give through the general path
        assert b.lines() == encode_points([normalize(p) for p in b])


def test_in_bed_wake_over_many_nights_equals_a_pass_over_every_stage() -> None:
    rng = random.Random(16)
    segs: list[_Segment] = []
    for night in range(400):  # a source writing both its in-bed periods and its stages
        t = night * 86400 * NS
        segs.append(_Segment(t, t + rng.randrange(6, 10) * 3600 * NS, -1))
        t += rng.randrange(-30, 40) * 60 * NS  # stages may start before the in-bed period
        for _ in range(rng.randrange(0, 12)):  # some nights without stages
            e = t + rng.randrange(5, 90) * 60 * NS
            segs.append(_Segment(t, e, rng.choice((LIGHT, DEEP, REM, WAKE))))
            t = e + rng.choice((0, 0, 300 * NS))  # some gaps: wake inside the in-bed period
    stages = sorted((s for s in segs if s.code >= 0), key=lambda s: s.start_ns)
    expected: list[tuple[int, int]] = []  # (start, code): in-bed time not covered by stages is wake
    for b in (s for s in segs if s.code == -1):
        inside = [s for s in stages if s.end_ns > b.start_ns and s.start_ns < b.end_ns]
        cur = b.start_ns
        for s in inside:
            if s.start_ns > cur:
                expected.append((cur, WAKE))
            cur = max(cur, s.end_ns)
        if inside and cur < b.end_ns:
            expected.append((cur, WAKE))
    expected = sorted(expected + [(s.start_ns, s.code) for s in stages])
    c = ctx()
    got = [(p.time_ns, p.fields["stage_code"]) for b in _sleep_points({"w": segs}, c) for p in b]
    assert got == expected and len(got) > 3000
    assert c.report.skipped["in-bed periods without sleep stages"] == sum(
        1 for b in segs if b.code == -1 and not any(s.end_ns > b.start_ns and s.start_ns < b.end_ns for s in stages))


def test_beat_lists_as_rr_when_asked() -> None:
    pts, _ = _parse(XML, beats=True)
    rr = [p for p in pts if p.measurement == "rr"]
    # 1:10:01.00 -> 02.05 -> 03.15 (consecutive), 06.40 (a gap: not an interval), 07.45
    assert [p.fields["rr_ms"] for p in rr] == [1050.0, 1100.0, 1050.0]
    assert rr[0].time_ns == apple_ns("2024-03-31 01:10:02 +0100") + 50_000_000


def test_zip_streamed_and_a_cut_off_zip_imports_what_it_holds(tmp_path: Path) -> None:
    whole, c_whole = _parse(_zip(tmp_path))
    assert len(whole) == len(_parse(XML)[0]) and c_whole.report.stopped == ""
    data = _zip(tmp_path).read_bytes()
    cut = tmp_path / "cut.zip"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    assert AppleHealthImporter().detect(cut)
    pts, c = _parse(cut)
    assert 0 < len(pts) < len(whole)
    assert "cut off" in c.report.stopped


def test_malformed_xml_reported_by_line_and_the_records_after_it_read(tmp_path: Path) -> None:
    text = XML.read_text().replace('value="55"/>', 'value="55"', 1)  # an element never closed
    p = tmp_path / "export.xml"
    p.write_text(text)
    pts, c = _parse(p)
    line = text[: text.index('value="55"')].count("\n") + 1
    # the parser sees the error where the next element starts, one line on, and picks up at the next record
    assert f"export.xml line {line + 1} column 1: not well-formed XML (not well-formed (invalid token))" in [
        str(x).split("; passed over")[0] for x in c.report.problems]
    assert c.report.stopped == ""
    assert [x.fields["bpm"] for x in pts if x.measurement == "heart_rate"] == [64, 58, 58, 52, 54]
    assert sum(x.measurement == "sleep_stage" for x in pts) == 17  # the nights after it are whole


def test_cut_off_xml_imports_what_it_holds(tmp_path: Path) -> None:
    text = XML.read_text()
    p = tmp_path / "export.xml"
    p.write_text(text[: text.index("HKCategoryValueSleepAnalysisAsleepREM")])
    pts, c = _parse(p)
    assert [x.fields["bpm"] for x in pts if x.measurement == "heart_rate"] == [64, 58, 58, 55, 52, 54]
    assert "no record after line" in c.report.stopped and "cut off" in c.report.stopped


async def test_imported_nights_computed_doses_confirmed_and_a_second_import_adds_nothing(
        influx_server, influx_db, tmp_path) -> None:
    s = settings(influx_server, influx_db, tmp_path / "state")
    path = _zip(tmp_path)

    first = await do_import(s, "apple-health", path, confirm_doses=True, now=lambda: THEN)
    assert first.nights == [date(2024, 3, 30), date(2024, 4, 1)]
    assert first.doses_logged == 2 and first.doses_refused == []
    assert first.nights_computed == 2
    hr_n = count(influx_server, influx_db, "SELECT count(bpm) FROM heart_rate")
    stage_n = count(influx_server, influx_db, "SELECT count(stage_code) FROM sleep_stage WHERE source = 'import'")
    assert hr_n == 5 and stage_n == 17  # duplicates stored once
    nights = {r["night"]: r for r in influx_server.rows("SELECT * FROM night GROUP BY *", influx_db)}
    dst = nights["2024-03-30"]
    assert dst["_tags"]["staging"] == "device" and dst["_tags"]["dose"] == "magnesium"
    assert (dst["tst_min"], dst["deep_min"], dst["rem_min"]) == (380.0, 50.0, 70.0)
    assert dst["lights_out"] == apple_ns("2024-03-30 23:05:00 +0100")
    assert dst["lights_on"] == apple_ns("2024-03-31 06:55:00 +0200")
    assert dst["hr_mean_bpm"] == pytest.approx((58 + 55 + 52 + 54) / 4, abs=3)
    old = nights["2024-04-01"]
    assert old["tst_min"] == 445.0 and old["_tags"]["dose"] == "magnesium" and old["elemental_mg"] == 150.0
    doses = influx_server.rows("SELECT * FROM supplement_dose GROUP BY *", influx_db)
    assert sorted(r["elemental_mg"] for r in doses) == [150.0, 200.0]
    assert {r["_tags"]["source"] for r in doses} == {"import"}

    again = await do_import(s, "apple-health", path, confirm_doses=True, now=lambda: THEN)
    assert again.nights_computed == 0 and again.nights_unchanged == 2
    assert count(influx_server, influx_db, "SELECT count(bpm) FROM heart_rate") == hr_n
    assert count(influx_server, influx_db, "SELECT count(stage_code) FROM sleep_stage WHERE source = 'import'") \
        == stage_n
    assert len(influx_server.rows("SELECT * FROM supplement_dose", influx_db)) == 2


def test_a_malformed_dtd_does_not_stop_the_import(tmp_path: Path) -> None:
    text = XML.read_text()
    broken = text.replace("<!ELEMENT ExportDate EMPTY>", "<!ELEMENT ExportDate EMPTY", 1)  # as some iOS versions wrote
    p = tmp_path / "export.xml"
    p.write_text(broken)
    pts, c = _parse(p)
    assert len(pts) == len(_parse(XML)[0]) and c.report.stopped == ""
