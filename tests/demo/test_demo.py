"""`magsleep demo` end to end in reduced form: own InfluxDB, virtual BlueZ, the real daemon (straps and
ana's Bangle.js), backfill, doses through the dose journal, nights, effects, reports; then `--clean`."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from collector.app.demo import MARKER, PERSONS, DemoOptions, clean, prepare_dir, studies, watch_night
from collector.cli import app
from collector.errors import ConfigError
from collector.settings import load_settings
from collector.storage import local_influx


def _rows(url: str, db: str, q: str) -> list[dict[str, Any]]:
    params = {"db": db, "q": q, "epoch": "ns"}
    with urllib.request.urlopen(f"{url}/query?" + urllib.parse.urlencode(params), timeout=30) as r:
        res = json.loads(r.read())["results"]
    out = []
    for stmt in res:
        assert "error" not in stmt, stmt
        for s in stmt.get("series", []):
            out += [dict(zip(s["columns"], v, strict=True)) | s.get("tags", {}) for v in s["values"]]
    return out


NOW = "2026-03-29T08:00:00+02:00"
NOW_NS = int(datetime.fromisoformat(NOW).timestamp()) * 1_000_000_000
LAST_NIGHT = "2026-03-28"


def test_demo_reduced_end_to_end_then_clean(tmp_path: Path) -> None:
    d = tmp_path / "demo"
    bystander = tmp_path / "keep-me.txt"
    bystander.write_text("not the demo's")
    runner = CliRunner()
    # 08:00 in Madrid the morning after the last live night, which is the night clocks go forward: the
    # demo's nights do not depend on when the suite runs (tests/demo/test_demo_clock.py sweeps the hours)
    res = runner.invoke(app, ["demo", "--dir", str(d), "--nights", "8", "--live-nights", "2",
                              "--live-hours", "1", "--speed", "1000", "--seed", "3", "--keep-running",
                              "--now", NOW])
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
        assert sorted((x["alias"], x["person"]) for x in devices["devices"]) == [
            ("bangle-ana", "ana"), ("h10-ana", "ana"), ("h10-ben", "ben")]
        assert "bangle" in next(x for x in devices["devices"] if x["alias"] == "bangle-ana")["profiles"]
        live = _rows(inst.url, db, "SELECT count(bpm) FROM heart_rate WHERE source = 'device' GROUP BY person, device")
        assert {(r["person"], r["device"]) for r in live} == {("ana", "h10-ana"), ("ben", "h10-ben")}  # watch HR off
        assert all(int(r["count"]) > 0.9 * 2 * 3600 for r in live)  # two hours at 1 Hz, > 90% collected
        sim = _rows(inst.url, db, "SELECT count(rr_ms) FROM rr WHERE source = 'sim' GROUP BY person")
        assert {r["person"] for r in sim} == {"ana", "ben"} and all(int(r["count"]) > 8 * 20_000 for r in sim)
        # doses through the dose journal (source=import), not as simulated points
        doses = _rows(inst.url, db, "SELECT amount_mg, elemental_mg FROM supplement_dose GROUP BY person, source")
        assert doses and {r["source"] for r in doses} == {"import"}
        assert all(r["elemental_mg"] == 210.0 for r in doses)
        assert (d / "doses.sqlite").exists()  # the journal is the source of truth
        nights = _rows(inst.url, db, "SELECT tst_min, night, lights_source, provisional FROM night "
                                     "GROUP BY person, source, dose, staging")
        for person in ("ana", "ben"):
            mine = sorted((n for n in nights if n["person"] == person), key=lambda n: n["night"])
            assert len(mine) == 10, mine  # 8 backfilled + 2 live
            assert {n["source"] for n in mine} == {"sim", "computed"}
            assert {n["dose"] for n in mine} == {"magnesium", "control"}
            # ana wears her Bangle.js on the last live night: its stages are preferred, lights out from them
            last = "device" if person == "ana" else "computed"
            assert [n["staging"] for n in mine] == ["computed"] * 9 + [last], mine
            assert (mine[-1]["lights_source"] == "device") == (person == "ana")
            # last night is there at 08:00 (its window runs to 14:00): provisional, the others final
            assert mine[-1]["night"] == LAST_NIGHT
            assert [n["provisional"] for n in mine] == [False] * 9 + [True], mine
        listed = runner.invoke(app, ["--config", str(d / "magsleep.toml"), "nights", "--format", "json"])
        assert listed.exit_code == 0, listed.output
        shown = [r for r in json.loads(listed.output) if r["night"] == LAST_NIGHT]
        assert {r["person"] for r in shown} == {"ana", "ben"} and all(r["provisional"] for r in shown)
        # sleep stages: ana's watch (source=device, 10-min epochs) beside computed ones; ben computed only
        stages = _rows(inst.url, db, "SELECT count(stage_code) FROM sleep_stage GROUP BY person, source, device")
        got = {(r["person"], r["source"], r["device"]) for r in stages}
        assert ("ana", "device", "bangle-ana") in got and ("ana", "computed", "magsleep-wrn-gru-mesa") in got
        assert {(p, s) for p, s, _ in got} == {("ana", "device"), ("ana", "computed"), ("ana", "sim"),
                                               ("ben", "computed"), ("ben", "sim")}
        # the watch's epochs are the generated hypnogram as its sleeplog holds it, at the device's own times
        opts = DemoOptions(directory=d, nights=8, live_nights=2, seed=3, live_hours=1, now_ns=NOW_NS)
        entries = watch_night(PERSONS[0], studies(settings, opts)["ana"].night(9), hours=1).entries
        names = {2: "wake", 3: "light", 4: "deep"}

        def status_at(t10: int) -> str:
            return names[[e for e in entries if e[0] <= t10][-1][1]]

        dev = _rows(inst.url, db, "SELECT stage, epoch_s FROM sleep_stage WHERE source = 'device' AND person = 'ana'")
        assert len(dev) >= 4 and {r["epoch_s"] for r in dev} == {600}  # an hour, pulled every 10 minutes
        # The profile corrects the watch's clock by the skew it measures over one console round trip. On the
        # demo's compressed clock a round trip of a loaded machine's tenth of a second is minutes of demo time,
        # so an epoch may be stamped a few minutes off its boundary: each row is matched to the nearest epoch.
        epoch_of = [round(int(r["time"]) / 600_000_000_000) for r in dev]
        assert [r["stage"] for r in dev] == [status_at(k) for k in epoch_of]
        assert epoch_of[0] == entries[0][0] and abs(int(dev[0]["time"]) - entries[0][0] * 600_000_000_000) < 300e9
        assert {"light", "deep"} & {r["stage"] for r in dev}  # she fell asleep within the hour
        assert "staging" in out and "device" in out
        effects = _rows(inst.url, db, "SELECT n_mg, n_control, reported FROM effect GROUP BY person, metric")
        assert {e["person"] for e in effects} == {"ana", "ben"}
        assert all(int(e["n_mg"]) + int(e["n_control"]) <= 10 for e in effects)
        assert any(e["reported"] for e in effects) or "not enough nights" in out
        for person in ("ana", "ben"):
            report = d / f"report-{person}.html"
            assert report.stat().st_size > 10_000 and "<svg" in report.read_text()
            assert f"Night of <b>{LAST_NIGHT}</b>" in report.read_text()  # the report's latest night
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


def test_the_summary_points_at_the_generated_dashboards() -> None:
    from collector.app.demo import dashboards_dir

    d = dashboards_dir()
    assert d is not None and d.name == "dashboards" and (d / "overview.json").is_file()
