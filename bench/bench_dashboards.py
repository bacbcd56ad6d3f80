"""How long the dashboards' queries and the report take on a month of 1 Hz data -> bench/results/dashboards.md.

Run: .venv/bin/python bench/bench_dashboards.py [--nights 30]

A private InfluxDB 1.6.7 is seeded with the test seed (tests/dashboards/seed.py) plus ``--nights``
nights of 1 Hz heart rate, RR and 30-s stages. Every panel query of a dashboard is interpolated as
Grafana does and run once (Grafana runs them in parallel; we run them one after another, so the
sum is an upper bound of a dashboard load). Times are reported as ratios against a baseline
measured in the same run: one trivial query (``SELECT last("tst_min") FROM "night"``, a few dozen points).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from collector.dashboards import build_all  # noqa: E402
from collector.dashboards.interpolate import ALL, Context, Variable, interpolate, panel_targets  # noqa: E402
from collector.report import write_report  # noqa: E402
from collector.storage import local_influx  # noqa: E402
from collector.storage.lineprotocol import Point  # noqa: E402
from tests.dashboards.seed import DEVICE, FIRST_NIGHT, N_NIGHTS, S, build_seed, settings_for, write  # noqa: E402


def extra_nights(n: int) -> list[Point]:
    pts: list[Point] = []
    start = datetime(FIRST_NIGHT.year, FIRST_NIGHT.month, FIRST_NIGHT.day, 22, tzinfo=UTC) - timedelta(days=n)
    for d in range(n):
        t0 = int((start + timedelta(days=d)).timestamp()) * S
        for k in range(8 * 3600):
            t = t0 + k * S
            pts.append(Point("heart_rate", {"person": "alice", "device": DEVICE, "source": "device"},
                             {"bpm": 50 + k % 13}, t))
            pts.append(Point("rr", {"person": "alice", "device": DEVICE, "source": "device"},
                             {"rr_ms": 1000.0 + (k % 7) * 10}, t))
            if k % 30 == 0:
                pts.append(Point("sleep_stage", {"person": "alice", "source": "device", "device": DEVICE},
                                 {"stage": "x", "stage_code": (k // 600) % 4, "epoch_s": 30}, t))
    return pts


def timed(url: str, db: str, q: str) -> float:
    params = urllib.parse.urlencode({"q": q, "db": db, "epoch": "ms"})
    t = time.perf_counter()
    with urllib.request.urlopen(f"{url}/query?{params}", timeout=120) as r:
        body = json.loads(r.read())
    dt = time.perf_counter() - t
    assert all("error" not in res for res in body["results"]), (q, body)
    return dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nights", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-dash-"))
    inst = local_influx.start(root)
    try:
        db = "bench"
        urllib.request.urlopen(urllib.request.Request(
            f"{inst.url}/query", data=urllib.parse.urlencode({"q": f"CREATE DATABASE {db}"}).encode()))
        seed = build_seed()
        settings = settings_for(inst.url, db, root / "state")
        extra = extra_nights(args.nights)
        seed.points.extend(extra)
        t = time.perf_counter()
        write(settings, seed)
        write_s = time.perf_counter() - t

        last_from = datetime(FIRST_NIGHT.year, FIRST_NIGHT.month, FIRST_NIGHT.day, tzinfo=UTC) + timedelta(
            days=N_NIGHTS - 1, hours=20)
        month_from = last_from - timedelta(days=args.nights + N_NIGHTS)
        variables = {
            "person": Variable("person", "alice"), "device": Variable("device", ALL, all_value=".*"),
            "night": Variable("night", seed.last_night.isoformat()), "metric": Variable("metric", "sol_min"),
        }
        windows = {  # each dashboard at its usual time range
            "night.json": (last_from, last_from + timedelta(hours=12), "30s"),
            "overview.json": (month_from, last_from + timedelta(days=1), "1h"),
            "effects.json": (month_from, last_from + timedelta(days=1), "1h"),
            "devices.json": (month_from, last_from + timedelta(days=1), "1h"),
        }
        base = [timed(inst.url, db, 'SELECT last("tst_min") FROM "night"') for _ in range(20)]
        baseline = statistics.median(base)
        rows = []
        for name, d in build_all().items():
            lo, hi, interval = windows[name]
            ctx = Context(int(lo.timestamp() * 1000), int(hi.timestamp() * 1000), interval, variables)
            queries = [interpolate(t["query"], ctx) for _title, _p, t in panel_targets(d)]
            runs = [sum(timed(inst.url, db, q) for q in queries) for _ in range(args.repeat)]
            slowest = max(queries, key=lambda q: timed(inst.url, db, q))
            rows.append((name, len(queries), statistics.median(runs), slowest))

        t = time.perf_counter()
        build_all()
        build_s = time.perf_counter() - t
        reps = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            asyncio.run(write_report(settings, root / "report.html", person="alice"))
            reps.append(time.perf_counter() - t)
        report_s = statistics.median(reps)
        size_kb = (root / "report.html").stat().st_size / 1024
    finally:
        local_influx.stop(root)

    out = [
        "# Dashboards and report: query and render times",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `bench/bench_dashboards.py --nights {args.nights}` "
        "on InfluxDB 1.6.7 (private instance, same 2-core machine, shared with other work: read ratios, not ms).",
        f"Data: {len(seed.points):,} points ({len(extra):,} of them {args.nights} extra nights of 1 Hz HR + RR and "
        f"30-s stages); written through `Pipeline` in {write_s:.1f} s.",
        "",
        f"Baseline: one trivial query (`SELECT last(\"tst_min\") FROM \"night\"`), median of 20: "
        f"{baseline * 1000:.1f} ms.",
        "",
        "| dashboard (time range) | queries | all queries one after another (median of "
        f"{args.repeat}) | ratio to baseline |",
        "|---|---|---|---|",
    ]
    for name, n, total, _slowest in rows:
        lo, hi, interval = windows[name]
        span = f"{(hi - lo).total_seconds() / 3600:.0f} h, $__interval {interval}"
        out.append(f"| {name} ({span}) | {n} | {total * 1000:.0f} ms | {total / baseline:.1f}x |")
    out += [
        "",
        f"Building all four dashboards with the SDK: {build_s * 1000:.0f} ms "
        f"({build_s / baseline:.1f}x baseline).",
        f"`magsleep report` (read + 3 matplotlib SVG plots + write, {N_NIGHTS} nights): {report_s:.2f} s "
        f"({report_s / baseline:.0f}x baseline); file size {size_kb:.0f} KiB.",
        "",
        "Slowest query per dashboard:",
        "",
    ]
    out += [f"- {name}: `{slowest[:160]}{'…' if len(slowest) > 160 else ''}`" for name, _n, _t, slowest in rows]
    path = ROOT / "bench" / "results" / "dashboards.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
