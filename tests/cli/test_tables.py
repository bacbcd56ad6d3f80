"""Listings fit an 80-column terminal; the night listing marks provisional nights."""

from __future__ import annotations

import io
import json
import urllib.request
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from collector.ble.registry import DeviceRegistry, RegisteredDevice
from tests.cli.console import Console

WIDTH = 80
EVENING = date(2026, 11, 20)  # fixed nights: the listing shows what is stored, whatever today is


def _ns(d: date, hh: int, mm: int, days: int = 0) -> int:
    t = datetime(d.year, d.month, d.day, hh, mm, tzinfo=UTC) + timedelta(days=days)
    return int(t.timestamp()) * 1_000_000_000


def _night_line(person: str, d: date, *, dose: str, provisional: bool, flagged: bool) -> str:
    fields = {
        "night": f'"{d.isoformat()}"', "lights_out": f"{_ns(d, 22, 10)}i", "lights_on": f"{_ns(d, 5, 55, 1)}i",
        "lights_source": '"estimate"', "tib_min": "465.0", "sol_min": "14.5", "lps_min": "18.0",
        "tst_min": "411.5", "waso_min": "39.0", "se_pct": "88.5", "awakenings": "7i", "wake_min": "53.5",
        "light_min": "230.0", "deep_min": "88.5", "rem_min": "93.0", "nrem_min": "318.5", "deep_pct": "21.5",
        "rem_pct": "22.6", "hr_mean_bpm": "54.3", "hr_min5_bpm": "49.8", "rmssd_ms": "43.1", "ln_rmssd": "3.76",
        "coverage_pct": "97.0", "flagged": str(flagged).lower(), "provisional": str(provisional).lower(),
        "elemental_mg": "210.0" if dose == "magnesium" else "0.0",
        "form": '"glycinate"' if dose == "magnesium" else '""',
    }
    body = ",".join(f"{k}={v}" for k, v in fields.items())
    return f"night,person={person},dose={dose},staging=computed {body} {_ns(d, 12, 0)}"


@pytest.fixture
def influx_console(console: Console, influx_server: Any, influx_db: str) -> Console:
    console.settings = {
        "influx": {"embedded": False, "url": influx_server.url, "database": influx_db},
        "persons": [{"name": "alice", "timezone": "Europe/Berlin"},
                    {"name": "bartholomew", "timezone": "America/New_York"}],
    }
    lines = [_night_line(p, EVENING + timedelta(days=i), dose="magnesium" if i % 2 else "control",
                         provisional=i == 2 and p == "alice", flagged=i == 1)
             for p in ("alice", "bartholomew") for i in range(3)]
    req = urllib.request.Request(f"{influx_server.url}/write?db={influx_db}&precision=ns",
                                 data="\n".join(lines).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 204
    return console


def _fits(text: str) -> None:
    """No line wider than the terminal and nothing cut short ("…": rich squeezing a column)."""
    long = [ln for ln in text.splitlines() if len(ln) > WIDTH]
    assert not long, "lines wider than 80 columns:\n" + "\n".join(long)
    assert "…" not in text, text


def _row(out: str, *starts: str) -> str:
    (line,) = [ln for ln in out.splitlines() if ln.split()[: len(starts)] == list(starts)]
    return line


def test_nights_fit_80_columns_and_mark_provisional(influx_console: Console) -> None:
    res = influx_console.run("nights")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    _fits(out)
    assert "6 night(s)" in out
    assert _row(out, "2026-11-22*", "alice")  # the one provisional night, marked
    for d in ("2026-11-20", "2026-11-21"):
        assert _row(out, d, "alice") and _row(out, d, "bartholomew")
    assert _row(out, "2026-11-22", "bartholomew")
    assert "23:10-06:55" in _row(out, "2026-11-20", "alice")  # local times (Berlin)
    assert "17:10-00:55" in _row(out, "2026-11-20", "bartholomew")  # New York
    assert _row(out, "2026-11-21", "alice").rstrip().endswith("!")  # flagged
    assert "* provisional: the night's window is still open" in " ".join(out.split())
    assert "not shown at this width:" in out
    # the same listing as `nights list`; all columns on a wide terminal
    assert influx_console.run("nights", "list").stdout == out
    wide = influx_console.run("nights", COLUMNS="200").stdout
    assert "not shown" not in wide
    for header in ("deep", "REM", "RMSSD", "cover %", "staging", "lights"):
        assert header in wide.splitlines()[1]
    assert _row(wide, "2026-11-22*", "alice")
    # machine formats carry the field itself
    res = influx_console.run("nights", "--format", "json", "--since", "2026-11-22")
    rows = {(r["night"], r["person"]): r for r in json.loads(res.stdout)}
    assert rows[("2026-11-22", "alice")]["provisional"] is True
    assert rows[("2026-11-22", "bartholomew")]["provisional"] is False


def test_dose_list_fits_80_columns(console: Console, tmp_path: Path) -> None:
    console.settings = {"persons": [{"name": "alice", "timezone": "Europe/Berlin"},
                                    {"name": "maximiliane", "timezone": "Europe/Berlin"}],
                        "influx": {"embedded": False, "url": "http://127.0.0.1:9"}}  # not needed to list
    note = "with chamomile tea, after a long walk; slept with the window open and earplugs in"
    csv = tmp_path / "d.csv"
    csv.write_text("id,person,supplement,form,amount_mg,elemental_mg,taken_at,note\n"
                   f",maximiliane,magnesium,bisglycinate,1500,,2026-11-20T22:10:00+01:00,\"{note}\"\n"
                   ",alice,magnesium,citrate,300,,2026-11-21T21:05:00+01:00,\n")
    res = console.run("dose", "import", str(csv))
    assert res.returncode == 0, res.stderr
    res = console.run("dose", "list")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    _fits(out)
    assert "2026-11-20 22:10" in out and "2026-11-21 21:05" in out
    assert "maximiliane" in out and "bisglycinate" in out and "1500" in out
    assert " ".join(note.split()) in " ".join(out.split())  # the note wraps, whole
    wide = console.run("dose", "list", COLUMNS="250").stdout
    assert note in wide and "source" in wide and "import" in wide


def test_devices_fit_80_columns(console: Console) -> None:
    console.write_config()
    registry = DeviceRegistry(console.home / "state" / "devices.json")
    registry.add(RegisteredDevice(address="C0:FF:EE:00:00:01", alias="polar-h10-alice", person="alice",
                                  profiles=("heart_rate", "polar_pmd"), model="Polar H10", location="chest"))
    registry.add(RegisteredDevice(address="C0:FF:EE:00:00:02", alias="bangle-alice", person="alice",
                                  profiles=("heart_rate", "bangle_sleeplog"), model="Bangle.js 2"))
    registry.save()
    res = console.run("devices")
    assert res.returncode == 0, res.stderr
    _fits(res.stdout)
    for text in ("polar-h10-alice", "C0:FF:EE:00:00:01", "bangle-alice", "never run"):
        assert text in res.stdout


def test_effect_table_fits_80_columns() -> None:
    """The effects table (its data takes weeks of nights to make; the layout is checked directly)."""
    from rich.console import Console as RichConsole

    from collector.cli.common import fitted_table
    from collector.cli.effects_cmd import EFFECT_TABLE

    rows = [["sol_min", "-14.2 min", "-22.1 to -6.3", "<0.001", "0.004", "0.002", "0.99", "41/39", "12 (5.0)"],
            ["awakenings", "-0.4 count", "-1.2 to 0.4", "0.310", "0.412", "0.298", "0.84", "41/39", "160 (0.5)"],
            ["[dim]rem_min[/dim]", "[dim]not enough nights[/dim]", "", "", "", "", "", "3/2", "—"]]
    con = RichConsole(width=WIDTH, record=True, file=io.StringIO())
    table = fitted_table(EFFECT_TABLE, rows, title="Magnesium vs control nights", width=WIDTH)
    con.print(table)
    text = con.export_text()
    _fits(text)
    assert "-22.1 to -6.3" in text and "not enough nights" in text and "[dim]" not in text
    assert "not shown at this width:" in text  # something had to go at 80 columns
    wide = RichConsole(width=200, record=True, file=io.StringIO())
    wide.print(fitted_table(EFFECT_TABLE, rows, width=200))
    wide_text = wide.export_text()
    assert "not shown" not in wide_text and "nights needed" in wide_text
