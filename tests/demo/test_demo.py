"""`magsleep demo` end to end in reduced form: own InfluxDB, virtual BlueZ, the real daemon, backfill,
doses through the dose journal, nights, effects, reports; then `--clean`."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from collector.cli import app
from collector.demo import MARKER, DemoOptions, clean, prepare_dir
from collector.errors import ConfigError
from collector.settings import load_settings
from collector.storage import local_influx


def _rows(url: str, db: str, q: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/query?" + urllib.parse.urlencode({"db": db, "q": q}), timeout=30) as r:
        res = json.loads(r.read())["results"]
    out = []
    for stmt in res:
        assert "error" not in stmt, stmt
        for s in stmt.get("series", []):
            out += [dict(zip(s["columns"], v, strict=True)) | s.get("tags", {}) for v in s["values"]]
    return out


def test_demo_reduced_end_to_end_then_clean(tmp_path: Path) -> None:
    d = tmp_path / "demo"
    bystander = tmp_path / "keep-me.txt"
    bystander.write_text("not the demo's")
    runner = CliRunner()
    res = runner.invoke(app, ["demo", "--dir", str(d), "--nights", "8", "--live-nights", "1",
                              "--live-hours", "1", "--speed", "1000", "--seed", "3", "--keep-running"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    out = res.output
    assert "magsleep demo: done" in out
    assert "effects --source all" in out and "demo --clean" in out

    settings = load_settings(d / "magsleep.toml")
    assert [p.name for p in settings.persons] == ["ana", "ben"]
    inst = local_influx.status(d / "influxdb")
    assert inst is not None, "--keep-running leaves the demo's InfluxDB running"
    assert inst.url in out
    db = settings.influx.database
    try:
        # live nights came through the daemon from the paired virtual straps (source=device)
        devices = json.loads((d / "devices.json").read_text())
        assert sorted(x["person"] for x in devices["devices"]) == ["ana", "ben"]
        live = _rows(inst.url, db, "SELECT count(bpm) FROM heart_rate WHERE source = 'device' GROUP BY person")
        assert {r["person"] for r in live} == {"ana", "ben"}
        assert all(int(r["count"]) > 0.9 * 3600 for r in live)  # one hour at 1 Hz, > 90% collected
        sim = _rows(inst.url, db, "SELECT count(rr_ms) FROM rr WHERE source = 'sim' GROUP BY person")
        assert {r["person"] for r in sim} == {"ana", "ben"} and all(int(r["count"]) > 8 * 20_000 for r in sim)
        # doses through the dose journal (source=import), not as simulated points
        doses = _rows(inst.url, db, "SELECT amount_mg, elemental_mg FROM supplement_dose GROUP BY person, source")
        assert doses and {r["source"] for r in doses} == {"import"}
        assert all(r["elemental_mg"] == 210.0 for r in doses)
        assert (d / "doses.sqlite").exists()  # the journal is the source of truth
        nights = _rows(inst.url, db, "SELECT tst_min FROM night GROUP BY person, source, dose")
        for person in ("ana", "ben"):
            mine = [n for n in nights if n["person"] == person]
            assert len(mine) == 9, mine  # 8 backfilled + 1 live
            assert {n["source"] for n in mine} == {"sim", "computed"}
            assert {n["dose"] for n in mine} == {"magnesium", "control"}
        effects = _rows(inst.url, db, "SELECT n_mg, n_control, reported FROM effect GROUP BY person, metric")
        assert {e["person"] for e in effects} == {"ana", "ben"}
        assert all(int(e["n_mg"]) + int(e["n_control"]) <= 9 for e in effects)
        assert any(e["reported"] for e in effects) or "not enough nights" in out
        for person in ("ana", "ben"):
            report = d / f"report-{person}.html"
            assert report.stat().st_size > 10_000 and "<svg" in report.read_text()
            assert str(report.name) in out
    finally:
        res = runner.invoke(app, ["demo", "--clean", "--dir", str(d)])
    assert res.exit_code == 0, res.output
    assert not d.exists()
    assert local_influx.status(d / "influxdb") is None and not local_influx.ping(inst.url)
    assert bystander.read_text() == "not the demo's"


def test_clean_and_prepare_touch_only_demo_directories(tmp_path: Path) -> None:
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="not a magsleep demo directory"):
        clean(other)
    with pytest.raises(ConfigError, match="not a magsleep demo directory"):
        prepare_dir(other)
    assert (other / "notes.txt").read_text() == "x"
    assert clean(tmp_path / "absent") is False
    s = prepare_dir(tmp_path / "fresh")
    assert (tmp_path / "fresh" / MARKER).is_file() and s.storage.state_dir == (tmp_path / "fresh").resolve()
    assert s.influx.embedded and s.influx.url.startswith("http://127.0.0.1:")
    assert clean(tmp_path / "fresh") is True and not (tmp_path / "fresh").exists()
    # parents the demo created go too when empty (.state of .state/demo), never others' files
    prepare_dir(tmp_path / "a" / "b" / "demo")
    assert clean(tmp_path / "a" / "b" / "demo") and not (tmp_path / "a").exists() and tmp_path.exists()
    prepare_dir(tmp_path / "c" / "demo")
    (tmp_path / "c" / "later.txt").write_text("y")
    assert clean(tmp_path / "c" / "demo") and (tmp_path / "c" / "later.txt").read_text() == "y"


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError):
        DemoOptions(nights=0, live_nights=0)
    with pytest.raises(ConfigError):
        DemoOptions(speed=0.5)
