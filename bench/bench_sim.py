"""Benchmark: backfill of N simulated nights (goal: 365 nights under 60 s) against baselines.

Measured in the same run on a private InfluxDB 1.6.7:

1. generation alone (hypnogram, beats, faults, truth) for every night;
2. generation + line-protocol encoding (what the backfill hands to the pipeline);
3. a bare aiohttp POST /write of the same lines in 5,000-line batches (no outbox);
4. ``magsleep sim backfill``'s path: :func:`collector.sim.backfill.backfill` through the
   Pipeline (SQLite outbox, batching, delivery, flush).

Run: ``.venv/bin/python -m bench.bench_sim [--nights 365]``; writes bench/results/sim.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import aiohttp

from collector.settings import InfluxSettings, PersonSettings, Settings, StorageSettings
from collector.sim.backfill import backfill, night_lines
from collector.sim.nights import plan_study
from collector.sim.person import PersonProfile
from collector.storage import local_influx

RESULTS = Path(__file__).parent / "results" / "sim.md"


async def bare_write(url: str, db: str, lines_per_night: list[list[str]], batch: int = 5000) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{url}/query", data={"q": f'CREATE DATABASE "{db}"'}) as r:
            r.raise_for_status()
        for lines in lines_per_night:
            for i in range(0, len(lines), batch):
                body = "\n".join(lines[i:i + batch]).encode()
                async with s.post(f"{url}/write", params={"db": db, "precision": "ns"}, data=body) as r:
                    if r.status != 204:
                        raise RuntimeError(await r.text())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nights", type=int, default=365)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    n = args.nights
    person = PersonProfile.sample("bench", 1, age=40, sex="male")
    study = plan_study(person, n, seed=1, end=date(2026, 11, 20))

    t0 = time.perf_counter()
    truths = [study.night(i).truth for i in range(n)]
    t_gen = time.perf_counter() - t0

    t0 = time.perf_counter()
    lines = [night_lines(study.night(i), study) for i in range(n)]
    t_enc = time.perf_counter() - t0
    n_lines = sum(len(x) for x in lines)
    beats = sum(t.n_beats for t in truths)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "influx"
        inst = local_influx.start(root)
        try:
            t0 = time.perf_counter()
            asyncio.run(bare_write(inst.url, "bare", lines))
            t_bare = time.perf_counter() - t0
            del lines
            settings = Settings(influx=InfluxSettings(embedded=False, url=inst.url, database="sim"),
                                storage=StorageSettings(state_dir=Path(tmp) / "state"),
                                persons=[PersonSettings(name="bench")])
            t0 = time.perf_counter()
            res = asyncio.run(backfill(settings, study, truth_path=Path(tmp) / "truth.json"))
            t_backfill = time.perf_counter() - t0
        finally:
            local_influx.stop(root)
    assert res.lines == n_lines

    rows = [
        ("generation only (truth incl. full RR)", t_gen),
        ("generation + line encoding", t_enc),
        ("bare aiohttp /write of the encoded lines (5,000/batch)", t_bare),
        ("backfill through the Pipeline (generate, encode, outbox, deliver, flush)", t_backfill),
    ]
    text = [
        "# Simulator benchmark (bench/bench_sim.py)",
        "",
        f"{n} nights, {beats:,} beats, {n_lines:,} points written (heart_rate 1/s, rr, motion, "
        "device stages, doses); private InfluxDB 1.6.7 on loopback. "
        f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other work; Python "
        f"{platform.python_version()}. Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "| step | wall s | points/s | vs bare write |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, t in rows:
        text.append(f"| {name} | {t:.1f} | {n_lines / t:,.0f} | {t / t_bare:.2f}x |")
    goal = "met" if t_backfill < 60 else "NOT met"
    text += ["", f"Goal (365 nights under 60 s): {goal} for {n} nights "
             f"({t_backfill:.1f} s; {t_backfill / n * 1000:.0f} ms per night).", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(text), encoding="utf-8")
    print("\n".join(text))


if __name__ == "__main__":
    main()
