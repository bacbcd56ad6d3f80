"""Import benchmark (issue 16): a generated Apple Health export of a realistic record mix.

1. Parse: ``AppleHealthImporter.parse`` (points built, nothing stored) vs a bare ElementTree
   iterparse of the same file that only reads the elements (and clears them the same way), each
   in its own process: seconds, MB/s, throughput ratio and peak RSS.
2. Import: ``magsleep import apple-health`` end to end (parse, write through the pipeline into a
   private InfluxDB 1.6.7) without and with the nights computed, vs a bare bulk /write of the
   same points (line protocol built before the clock starts, 20,000 lines per request).

The export: ``--days`` days (default 3 years) of a watch + phone history. Per day (x ``--density``
for the frequent types): heart rate 250, active energy 400, basal energy 300, steps 150, distance
150, stand/exercise time 50, audio exposure 30, respiratory rate/SpO2 20, HRV SDNN 5 (each with
~60 InstantaneousBeatsPerMinute), a night of watch sleep stages (~16 segments) plus the phone's
in-bed period, dietary magnesium every other day, an ActivitySummary; HR records carry a
MetadataEntry as the watch writes them. Attribute strings (sourceName, device) as Apple writes them.

One export per ``--density``: 0.35 gives ~230 MB for 3 years, 1.6 the issue's ~1 GB. The
generator writes about a gigabyte a minute here (a fixed NumPy RNG, times from tables, a day per
write), into a temporary directory (``--tmp`` to choose where) that is deleted afterwards.

Run: nice -n 10 .venv/bin/python -m bench.bench_import [--days 1095] [--density 0.35 1.6]
     [--rounds 2] [--gb-days 1095] [--out bench/results/import.md]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

WATCH_DEV = ("&lt;&lt;HKDevice: 0x3027a9180&gt;, name:Apple Watch, manufacturer:Apple Inc., model:Watch, "
             "hardware:Watch6,2, software:10.3&gt;")
PHONE_DEV = ("&lt;&lt;HKDevice: 0x3027a8f50&gt;, name:iPhone, manufacturer:Apple Inc., model:iPhone, "
             "hardware:iPhone15,2, software:17.3&gt;")
HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE HealthData [
<!ELEMENT HealthData (ExportDate,Me,(Record|Correlation|Workout|ActivitySummary|ClinicalRecord)*)>
<!ATTLIST HealthData locale CDATA #REQUIRED>
]>
<HealthData locale="en_DE">
 <ExportDate value="2026-11-30 08:00:00 +0100"/>
 <Me HKCharacteristicTypeIdentifierDateOfBirth="1984-05-01" \
HKCharacteristicTypeIdentifierBiologicalSex="HKBiologicalSexFemale" \
HKCharacteristicTypeIdentifierBloodType="HKBloodTypeNotSet"/>
"""
STAGES = ("AsleepCore", "AsleepDeep", "AsleepCore", "AsleepREM")
PER_DAY = {  # frequent quantity types: (type, unit, source, value range)
    "HKQuantityTypeIdentifierActiveEnergyBurned": (400, "kcal", "w", (0.05, 3.0)),
    "HKQuantityTypeIdentifierBasalEnergyBurned": (300, "kcal", "w", (0.5, 1.5)),
    "HKQuantityTypeIdentifierStepCount": (150, "count", "p", (5, 600)),
    "HKQuantityTypeIdentifierDistanceWalkingRunning": (150, "km", "p", (0.01, 0.5)),
    "HKQuantityTypeIdentifierAppleStandTime": (30, "min", "w", (1, 5)),
    "HKQuantityTypeIdentifierAppleExerciseTime": (20, "min", "w", (1, 5)),
    "HKQuantityTypeIdentifierHeadphoneAudioExposure": (30, "dBASPL", "p", (50, 80)),
    "HKQuantityTypeIdentifierRespiratoryRate": (12, "count/min", "w", (12, 18)),
    "HKQuantityTypeIdentifierOxygenSaturation": (8, "%", "w", (0.94, 0.99)),
}


def _clock_tables() -> tuple[list[str], list[str], list[str]]:
    """"HH:MM:SS", the 12-hour "H:MM:SS" and " AM"/" PM" of every second of a day."""
    hms = [f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)]
    hms12 = [f"{(h % 12) or 12}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)]
    return hms, hms12, [" AM"] * 43200 + [" PM"] * 43200


def generate(path: Path, days: int, density: float, seed: int = 16) -> dict[str, int]:
    """Write the export; returns record counts by kind.

    Fast (about 1 GB a minute here): a fixed NumPy RNG draws each day's numbers at once, times are
    formatted from tables of the day's date and every second of a day, and each day is written as
    one string; no datetime per record, no DOM. Times are local with the day's offset (+0100 in
    winter, +0200 in summer); a record that runs past midnight is dated on the next day.
    """
    import numpy as np  # here, not at the top: every measured child imports this module

    rng = np.random.default_rng(seed)
    start = date(2023, 12, 1)
    dates = [(start + timedelta(days=k)).isoformat() for k in range(days + 2)]
    offs = ["+0200" if 3 < (start + timedelta(days=k)).month < 11 else "+0100" for k in range(days + 2)]
    hms, hms12, ampm = _clock_tables()
    counts: dict[str, int] = dict.fromkeys(("other", "heart_rate", "hrv", "sleep", "magnesium"), 0)

    def ts(day: int, sec: int) -> str:  # seconds after the local midnight of ``day`` (may pass midnight)
        d, s = divmod(sec, 86400)
        return f"{dates[day + d]} {hms[s]} {offs[day]}"

    watch = ("Alice’s Apple Watch", WATCH_DEV)
    phone = ("Alice’s iPhone", PHONE_DEV)
    with path.open("w", encoding="utf-8") as f:
        f.write(HEAD)
        for day in range(days):
            out: list[str] = []
            for typ, (n, unit, src, (lo, hi)) in PER_DAY.items():
                k = max(1, round(n * density))
                name, dev = watch if src == "w" else phone
                pre = (f' <Record type="{typ}" sourceName="{name}" sourceVersion="10.3" device="{dev}" '
                       f'unit="{unit}" creationDate="')
                starts = rng.integers(0, 86400, k).tolist()
                ends = (np.asarray(starts) + rng.integers(30, 600, k)).tolist()
                values = rng.uniform(lo, hi, k).tolist()
                for t, e, v in zip(starts, ends, values, strict=True):
                    te = ts(day, e)
                    out.append(f'{pre}{te}" startDate="{ts(day, t)}" endDate="{te}" value="{v:.4g}"/>\n')
                counts["other"] += k
            k = max(1, round(250 * density))
            pre = (f' <Record type="HKQuantityTypeIdentifierHeartRate" sourceName="{watch[0]}" sourceVersion="10.3" '
                   f'device="{WATCH_DEV}" unit="count/min" creationDate="')
            for t, bpm in zip(rng.integers(0, 86400, k).tolist(), rng.integers(48, 130, k).tolist(), strict=True):
                tt = ts(day, t)
                out.append(f'{pre}{tt}" startDate="{tt}" endDate="{tt}" value="{bpm}">\n'
                           '  <MetadataEntry key="HKMetadataKeyHeartRateMotionContext" value="1"/>\n </Record>\n')
            counts["heart_rate"] += k
            for _ in range(max(1, round(5 * density))):
                t0 = int(rng.integers(0, 86400 - 120))
                beat_ms = (t0 * 1000 + np.cumsum(rng.integers(800, 1100, 60))).tolist()
                bpms = rng.integers(55, 75, 60).tolist()
                beats = "".join(
                    f'   <InstantaneousBeatsPerMinute bpm="{b}" '
                    f'time="{hms12[ms // 1000]}.{ms % 1000 // 10:02d}{ampm[ms // 1000]}"/>\n'
                    for ms, b in zip(beat_ms, bpms, strict=True))
                end = ts(day, beat_ms[-1] // 1000)
                out.append(f' <Record type="HKQuantityTypeIdentifierHeartRateVariabilitySDNN" sourceName="{watch[0]}" '
                           f'sourceVersion="10.3" device="{WATCH_DEV}" unit="ms" creationDate="{end}" '
                           f'startDate="{ts(day, t0)}" endDate="{end}" value="{rng.uniform(20, 80):.4g}">\n'
                           f"  <HeartRateVariabilityMetadataList>\n{beats}  </HeartRateVariabilityMetadataList>\n"
                           " </Record>\n")
                counts["hrv"] += 1
            # the night: the phone's in-bed period and the watch's stages
            bed = 21 * 3600 + int(rng.integers(0, 90)) * 60
            out.append(f' <Record type="HKCategoryTypeIdentifierSleepAnalysis" sourceName="{phone[0]}" '
                       f'sourceVersion="17.3" creationDate="{ts(day, bed)}" startDate="{ts(day, bed)}" '
                       f'endDate="{ts(day, bed + 8 * 3600)}" value="HKCategoryValueSleepAnalysisInBed"/>\n')
            t = bed + int(rng.integers(5, 25)) * 60
            for i, minutes in enumerate(rng.integers(10, 40, 16).tolist()):
                e = t + minutes * 60
                stage = "Awake" if i % 5 == 4 else STAGES[i % 4]
                out.append(f' <Record type="HKCategoryTypeIdentifierSleepAnalysis" sourceName="{watch[0]}" '
                           f'sourceVersion="10.3" device="{WATCH_DEV}" creationDate="{ts(day, e)}" '
                           f'startDate="{ts(day, t)}" endDate="{ts(day, e)}" '
                           f'value="HKCategoryValueSleepAnalysis{stage}"/>\n')
                t = e
            counts["sleep"] += 17
            if day % 2 == 0:
                m = ts(day, bed - 40 * 60)
                out.append(f' <Record type="HKQuantityTypeIdentifierDietaryMagnesium" sourceName="Cronometer" '
                           f'sourceVersion="4.2" unit="mg" creationDate="{m}" startDate="{m}" endDate="{m}" '
                           'value="200"/>\n')
                counts["magnesium"] += 1
            out.append(f' <ActivitySummary dateComponents="{dates[day]}" activeEnergyBurned="412" '
                       'activeEnergyBurnedGoal="500" activeEnergyBurnedUnit="kcal" appleMoveTime="0" '
                       'appleMoveTimeGoal="0" appleExerciseTime="31" appleExerciseTimeGoal="30" appleStandHours="12" '
                       'appleStandHoursGoal="12"/>\n')
            f.write("".join(out))
        f.write("</HealthData>\n")
    return counts


def generate_gadgetbridge(path: Path, days: int, seed: int = 16) -> int:
    """A Gadgetbridge database: a Mi Band 2 worn day and night, one row a minute; returns rows."""
    import sqlite3

    rng = random.Random(seed)
    sql = (Path(__file__).resolve().parent.parent / "tests" / "importers" / "fixtures" / "gadgetbridge.sql").read_text()
    schema = "\n".join(line for line in sql.splitlines() if line.startswith("CREATE TABLE"))  # one per line
    db = sqlite3.connect(path)
    db.executescript(schema)
    db.execute("INSERT INTO DEVICE VALUES (1, 'MI Band 2', 'Huami', 'C8:0F:10:AA:BB:01', 11, 'MI Band 2', NULL)")
    # noon UTC, ``days`` before the end of November 2026: every night ends before the import's clock (child_import)
    t0 = int((datetime(2026, 11, 30, 12, tzinfo=UTC) - timedelta(days=days)).timestamp())
    n = 0
    for day in range(days):
        rows = []
        bed = 600 + rng.randrange(0, 60)  # minutes after noon UTC: ~22:00-23:00 local
        wake = bed + 420 + rng.randrange(0, 60)
        for m in range(1440):
            asleep = bed <= m < wake
            kind = (9 if (m - bed) % 90 < 60 else 11) if asleep else 1
            if asleep and (m - bed) % 90 not in (0, 60) and rng.random() < 0.8:
                kind = 0  # "same as before", as the band writes most minutes
            hr = 55 + rng.randrange(0, 6) if asleep else 65 + rng.randrange(0, 30)
            rows.append((t0 + (day * 1440 + m) * 60, 1, 1, rng.randrange(0, 40) if not asleep else 3, 0, kind, hr))
        db.executemany('INSERT INTO "MI_BAND_ACTIVITY_SAMPLE" VALUES (?, ?, ?, ?, ?, ?, ?)', rows)
        n += len(rows)
    db.commit()
    db.close()
    return n


# --------------------------------------------------------------------------------------------
# Children (each measured in its own process: peak RSS is per process)
# --------------------------------------------------------------------------------------------


def _rss_mb() -> float:
    """Peak RSS of this process: VmHWM, whose count starts at exec (``ru_maxrss`` would carry over the
    RSS of the benchmark process that spawned this one)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s() -> float:
    """CPU seconds of this process and its waited-for children (the machine's load hardly moves it)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _children_rss_mb() -> float:
    """Peak RSS of the largest child process waited for (the nights' worker processes)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def child_bare(path: str) -> dict[str, Any]:
    c, t = _cpu_s(), time.perf_counter()
    n = 0
    root = None
    with open(path, "rb") as f:
        for ev, el in ET.iterparse(f, events=("start", "end")):
            if ev == "start":
                if root is None:
                    root = el
                continue
            if el.tag == "Record":
                n += 1
                el.get("type")
                if root is not None:
                    root.clear()
    return {"seconds": time.perf_counter() - t, "cpu_s": _cpu_s() - c, "records": n, "rss_mb": _rss_mb()}


def child_parse(path: str) -> dict[str, Any]:
    from zoneinfo import ZoneInfo

    from collector.importers.apple_health import AppleHealthImporter
    from collector.importers.base import ImportContext

    c, t = _cpu_s(), time.perf_counter()
    ctx = ImportContext(person="alice", tz=ZoneInfo("Europe/Berlin"))
    n = 0
    for batch in AppleHealthImporter().parse(Path(path), ctx):
        n += len(batch)
    return {"seconds": time.perf_counter() - t, "cpu_s": _cpu_s() - c, "points": n, "doses": len(ctx.doses),
            "bad": ctx.report.bad, "rss_mb": _rss_mb()}


def child_import(path: str, url: str, db: str, state: str, nights: str, kind: str = "apple-health") -> dict[str, Any]:
    from collector.importers.run import run_import
    from collector.settings import InfluxSettings, PersonSettings, Settings, StorageSettings

    s = Settings(influx=InfluxSettings(embedded=False, url=url, database=db), storage=StorageSettings(state_dir=state),
                 persons=[PersonSettings(name="alice", timezone="Europe/Berlin")])
    c, t = _cpu_s(), time.perf_counter()
    summary = asyncio.run(run_import(s, kind, path, nights=nights == "1",
                                     now=lambda: datetime(2026, 12, 1, tzinfo=UTC)))
    return {"seconds": time.perf_counter() - t, "cpu_s": _cpu_s() - c, "points": summary.total,
            "nights": len(summary.nights),
            "computed": summary.nights_computed, "rss_mb": _rss_mb(), "workers_rss_mb": _children_rss_mb()}


def child_bulk(path: str, url: str, db: str, kind: str = "apple-health") -> dict[str, Any]:
    """A bare bulk /write of the importer's points (lines built before the clock starts)."""
    from zoneinfo import ZoneInfo

    from collector.importers import get_importer
    from collector.importers.base import ImportContext
    from collector.storage.lineprotocol import encode_points
    from collector.storage.schema import normalize

    ctx = ImportContext(person="alice", tz=ZoneInfo("Europe/Berlin"))
    lines: list[str] = []
    for batch in get_importer(kind).parse(Path(path), ctx):
        lines.extend(encode_points([normalize(p) for p in batch]))
    c, t = _cpu_s(), time.perf_counter()
    for k in range(0, len(lines), 20_000):
        body = "\n".join(lines[k:k + 20_000]).encode()
        req = urllib.request.Request(f"{url}/write?db={db}&precision=ns", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=300):
            pass
    return {"seconds": time.perf_counter() - t, "cpu_s": _cpu_s() - c, "points": len(lines), "rss_mb": _rss_mb()}


def _child(*args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.bench_import", "--child", *args], capture_output=True,
                         text=True, check=True, cwd=Path(__file__).resolve().parent.parent)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _query(url: str, q: str) -> None:
    req = urllib.request.Request(f"{url}/query", data=f"q={q}".encode(), method="POST")
    with urllib.request.urlopen(req, timeout=60):
        pass


def _apple_health(a: argparse.Namespace, tmp: Path, url: str, density: float, tag: str) -> dict[str, Any]:
    """One generated export: bare parse, importer parse and import in turns, then bulk and nights."""
    xml = tmp / f"export-{tag}.xml"
    t = time.perf_counter()
    counts = generate(xml, a.days, density)
    gen_s = time.perf_counter() - t
    size_mb = xml.stat().st_size / 1e6
    print(f"generated {size_mb:.0f} MB in {gen_s:.1f} s: {counts}", flush=True)
    # bare, parse and import take turns (best of each): the shared machine's load changes by the
    # minute, and a ratio of runs minutes apart would measure that instead
    runs: dict[str, list[dict[str, Any]]] = {"bare": [], "parse": [], "import": [], "nights": []}
    for k in range(a.rounds):
        runs["bare"].append(_child("bare", str(xml)))
        runs["parse"].append(_child("parse", str(xml)))
        for run, nights in (("import", "0"), ("nights", "1")):
            db = f"{run}{tag}{k}"
            _query(url, f'CREATE DATABASE "{db}"')
            runs[run].append(_child("import", str(xml), url, db, str(tmp / f"s{db}"), nights))
        print(tag, k, {n: r[-1]["seconds"] for n, r in runs.items()}, flush=True)
    best = {n: min(r, key=lambda r: r["seconds"]) for n, r in runs.items()}
    _query(url, f'CREATE DATABASE "bulk{tag}"')
    best["bulk"] = _child("bulk", str(xml), url, f"bulk{tag}")  # parses the whole file first: once
    print(tag, "bulk", best["bulk"], flush=True)
    xml.unlink()
    return {"density": density, "size_mb": size_mb, "gen_s": gen_s, "counts": counts, "runs": runs, **best}


def _apple_rows(r: dict[str, Any], days: int, rounds: int) -> list[str]:
    mb = r["size_mb"]
    bare, parse, imp, bulk, nights = (r[k] for k in ("bare", "parse", "import", "bulk", "nights"))
    ratio = bare["seconds"] / parse["seconds"]
    cpu_ratio = min(b["cpu_s"] for b in r["runs"]["bare"]) / min(p["cpu_s"] for p in r["runs"]["parse"])
    rss = max(imp["rss_mb"], nights["rss_mb"])
    floor = bare["seconds"] + bulk["seconds"]
    return [
        f"### {mb:,.0f} MB export.xml (density {r['density']})",
        "",
        f"{days} days ({days / 365:.1f} years), records: {', '.join(f'{k} {v:,}' for k, v in r['counts'].items())}; "
        f"generated in {r['gen_s']:.0f} s.",
        "",
        "| run | seconds | CPU s | MB/s | points | peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        f"| bare iterparse (read + clear only; best of {rounds}) | {bare['seconds']:.1f} | {bare['cpu_s']:.1f} | "
        f"{mb / bare['seconds']:.1f} | - | {bare['rss_mb']:.0f} |",
        f"| importer parse, points built (best of {rounds}) | {parse['seconds']:.1f} | {parse['cpu_s']:.1f} | "
        f"{mb / parse['seconds']:.1f} | {parse['points']:,} | {parse['rss_mb']:.0f} |",
        f"| bare bulk /write of the same points (lines pre-built) | {bulk['seconds']:.1f} | {bulk['cpu_s']:.1f} | - | "
        f"{bulk['points']:,} | {bulk['rss_mb']:.0f} |",
        f"| magsleep import, no nights (best of {rounds}) | {imp['seconds']:.1f} | {imp['cpu_s']:.1f} | "
        f"{mb / imp['seconds']:.1f} | {imp['points']:,} | {imp['rss_mb']:.0f} |",
        f"| magsleep import with nights ({nights['computed']} computed; best of {rounds}) | {nights['seconds']:.1f} | "
        f"{nights['cpu_s']:.1f} | {mb / nights['seconds']:.1f} | {nights['points']:,} | {nights['rss_mb']:.0f} "
        f"(+ workers {nights['workers_rss_mb']:.0f} each) |",
        "",
        "- Seconds (CPU seconds) per round, bare / parse / import / import with nights: " + "; ".join(
            " / ".join(f"{x['seconds']:.1f} ({x['cpu_s']:.1f})" for x in xs)
            for xs in zip(*(r["runs"][n] for n in ("bare", "parse", "import", "nights")), strict=True)) + ".",
        f"- Parse throughput vs bare iterparse: **{ratio:.2f}** by wall-clock time, best of each (goal at least 0.7: "
        f"{'met' if ratio >= 0.7 else 'not met'}); **{cpu_ratio:.2f}** by CPU time (least of each), which the "
        "machine's load hardly moves.",
        f"- End-to-end import (no nights) vs bare iterparse: **{bare['seconds'] / imp['seconds']:.2f}** of its "
        "throughput.",
        f"- Peak RSS of the import process: **{rss:.0f} MB** (goal under 300 MB: {'met' if rss < 300 else 'not met'}); "
        f"the nights' worker processes peaked at {nights['workers_rss_mb']:.0f} MB each.",
        "- Import with nights vs a bare bulk /write of the same points: "
        f"**{nights['seconds'] / bulk['seconds']:.1f}x** "
        f"(goal within 2x: {'met' if nights['seconds'] <= 2 * bulk['seconds'] else 'not met'}); the XML is "
        f"{mb:,.0f} MB for {bulk['points']:,} points, so this mostly measures the XML. Against the least any "
        "importer must do, a bare iterparse plus the bare bulk /write: "
        f"**{imp['seconds'] / floor:.2f}x** without nights, **{nights['seconds'] / floor:.2f}x** with them.",
        "",
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=1095)
    ap.add_argument("--density", type=float, nargs="+", default=[0.35, 1.6],
                    help="one export per density (0.35: ~230 MB, 1.6: ~1 GB for 3 years; 0: skip Apple Health)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of bare parse / parse / import (best is kept)")
    ap.add_argument("--gb-days", type=int, default=1095, help="days of the Gadgetbridge database (0: skip)")
    ap.add_argument("--tmp", type=Path, default=None, help="where the generated files go (default: the temp dir)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/import.md"))
    ap.add_argument("--child", nargs="+")
    a = ap.parse_args()
    if a.child:
        children: dict[str, Callable[..., dict[str, Any]]] = {
            "bare": child_bare, "parse": child_parse, "import": child_import, "bulk": child_bulk}
        print(json.dumps(children[a.child[0]](*a.child[1:])))
        return

    from collector.storage import local_influx

    apple: list[dict[str, Any]] = []
    gb: dict[str, dict[str, Any]] = {}
    gb_runs: dict[str, list[dict[str, Any]]] = {"bulk": [], "import": [], "nights": []}
    with tempfile.TemporaryDirectory(prefix="magsleep-bench-import-", dir=a.tmp) as tmp_name:
        tmp = Path(tmp_name)
        inst = local_influx.start(tmp / "influxdb")
        try:
            for k, density in enumerate(d for d in a.density if d > 0):
                apple.append(_apple_health(a, tmp, inst.url, density, f"a{k}"))
            if a.gb_days:
                gbdb = tmp / "Gadgetbridge"
                gb_rows = generate_gadgetbridge(gbdb, a.gb_days)
                for k in range(a.rounds):  # in turns, best of each (as above)
                    for run in ("bulk", "import", "nights"):
                        db = f"gb{run}{k}"
                        _query(inst.url, f'CREATE DATABASE "{db}"')
                        nights = "1" if run == "nights" else "0"
                        args = (["bulk", str(gbdb), inst.url, db] if run == "bulk" else
                                ["import", str(gbdb), inst.url, db, str(tmp / f"s{db}"), nights])
                        gb_runs[run].append(_child(*args, "gadgetbridge"))
                    print("gadgetbridge", k, {n: r[-1]["seconds"] for n, r in gb_runs.items()}, flush=True)
                gb = {n: min(r, key=lambda r: r["seconds"]) for n, r in gb_runs.items()}
                gb["rows"] = {"n": gb_rows}
        finally:
            local_influx.stop(tmp / "influxdb")
    rows = [
        "## Import (bench/bench_import.py)",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} cores shared with the private InfluxDB 1.6.7 and other work, "
        "run with nice -n 10. Each line is its own process (peak RSS per process; CPU s: that process's CPU time "
        "and its workers', not InfluxDB's). The generated files live in a temporary directory and are deleted "
        "after the run.",
        "",
    ]
    if apple:
        rows += [
            "Apple Health: a generated watch + phone export.xml (see the module docstring for the record mix); "
            f"bare parse, importer parse and import took turns, best of {a.rounds} rounds each.",
            "",
        ]
        for r in apple:
            rows += _apple_rows(r, a.days, a.rounds)
    if gb:
        rows += [
            f"### Gadgetbridge, {a.gb_days} days",
            "",
            f"A generated database of {a.gb_days} days of a Mi Band 2 worn day and night "
            f"({gb['rows']['n']:,} minute rows, Huami sleep kinds with 'same as before' rows); the same points "
            "written by a bare bulk /write (lines pre-built, 20,000 per request) vs `magsleep import gadgetbridge`; "
            f"the three took turns, best of {a.rounds} rounds each.",
            "",
            "| run | seconds | CPU s | points | peak RSS MB |",
            "| --- | ---: | ---: | ---: | ---: |",
            f"| bare bulk /write | {gb['bulk']['seconds']:.1f} | {gb['bulk']['cpu_s']:.1f} | "
            f"{gb['bulk']['points']:,} | {gb['bulk']['rss_mb']:.0f} |",
            f"| magsleep import, no nights | {gb['import']['seconds']:.1f} | {gb['import']['cpu_s']:.1f} | "
            f"{gb['import']['points']:,} | {gb['import']['rss_mb']:.0f} |",
            f"| magsleep import with nights ({gb['nights']['computed']} computed) | {gb['nights']['seconds']:.1f} | "
            f"{gb['nights']['cpu_s']:.1f} | {gb['nights']['points']:,} | {gb['nights']['rss_mb']:.0f} (+ workers "
            f"{gb['nights']['workers_rss_mb']:.0f} each) |",
            "",
            "- Seconds (CPU seconds) per round, bulk / import / import with nights: " + "; ".join(
                " / ".join(f"{x['seconds']:.1f} ({x['cpu_s']:.1f})" for x in xs)
                for xs in zip(*(gb_runs[n] for n in ("bulk", "import", "nights")), strict=True)) + ".",
            f"- Import vs bare bulk /write: **{gb['import']['seconds'] / gb['bulk']['seconds']:.2f}x** without "
            f"nights, **{gb['nights']['seconds'] / gb['bulk']['seconds']:.2f}x** with them (goal within 2x: "
            f"{'met' if gb['nights']['seconds'] <= 2 * gb['bulk']['seconds'] else 'not met'}).",
            "",
        ]
    # notes written by hand below the generated part are kept
    old = a.out.read_text() if a.out.exists() else ""
    i = old.find("\nNotes (by hand")
    text = "\n".join(rows).rstrip() + "\n" + (old[i:] if i >= 0 else "")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
