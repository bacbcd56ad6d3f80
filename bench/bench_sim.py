"""Benchmark: backfill of N simulated nights (goal: 365 nights under 60 s) against baselines.

Measured in the same run on a private InfluxDB 1.6.7, every row doing the same nights:

1. generation alone (hypnogram, beats, faults, truth);
2. generation + line-protocol encoding (lines discarded);
3. baseline: generation + encoding + a bare aiohttp POST /write per 20,000 lines, in sequence
   (no pipeline, no outbox);
4. ``magsleep sim backfill``'s path: :func:`collector.sim.backfill.backfill` through the
   Pipeline (in-memory outbox, 20,000-line writes, generation overlapped with delivery);
5. the same with ``durable=True`` (SQLite outbox), for comparison;
6. the default path with ``hr_every_s=5`` (``--hr-every 5``: heart_rate thinned to one point per
   5 s, RR complete), which writes about half the points.

Run: ``.venv/bin/python -m bench.bench_sim [--nights 365] [--no-durable]``; writes
bench/results/sim.md.
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
from collector.sim.backfill import BULK_BATCH_SIZE, backfill, night_lines
from collector.sim.nights import Study, plan_study
from collector.sim.person import PersonProfile
from collector.storage import local_influx

RESULTS = Path(__file__).parent / "results" / "sim.md"


async def bare_write(url: str, db: str, study: Study, batch: int = BULK_BATCH_SIZE) -> int:
    """Generate, encode and POST every night's lines with plain aiohttp; returns the line count."""
    n_lines = 0
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{url}/query", data={"q": f'CREATE DATABASE "{db}"'}) as r:
            r.raise_for_status()
        for i in range(len(study)):
            lines = night_lines(study.night(i), study)
            n_lines += len(lines)
            for j in range(0, len(lines), batch):
                body = "\n".join(lines[j:j + batch]).encode()
                async with s.post(f"{url}/write", params={"db": db, "precision": "ns"}, data=body) as r:
                    if r.status != 204:
                        raise RuntimeError(await r.text())
    return n_lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nights", type=int, default=365)
    ap.add_argument("--no-durable", action="store_true", help="skip the SQLite-outbox row")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    n = args.nights
    person = PersonProfile.sample("bench", 1, age=40, sex="male")
    study = plan_study(person, n, seed=1, end=date(2026, 11, 20))

    t0 = time.perf_counter()
    beats = sum(study.night(i).truth.n_beats for i in range(n))
    t_gen = time.perf_counter() - t0

    t0 = time.perf_counter()
    n_lines = sum(len(night_lines(study.night(i), study)) for i in range(n))
    t_enc = time.perf_counter() - t0

    rows: list[tuple[str, float, int]] = [
        ("generation only (truth incl. full RR)", t_gen, n_lines),
        ("generation + line encoding", t_enc, n_lines),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "influx"
        inst = local_influx.start(root)
        try:
            t0 = time.perf_counter()
            assert asyncio.run(bare_write(inst.url, "bare", study)) == n_lines
            t_bare = time.perf_counter() - t0
            rows.append((f"baseline: generate + encode + bare aiohttp /write ({BULK_BATCH_SIZE:,}/batch)", t_bare,
                         n_lines))
            variants = [("**backfill through the Pipeline (default: memory outbox)**", False, 1.0)]
            if not args.no_durable:
                variants.append(("backfill through the Pipeline, durable=True (SQLite outbox)", True, 1.0))
            variants.append(("backfill through the Pipeline, --hr-every 5", False, 5.0))
            for k, (label, durable, hr_every) in enumerate(variants):
                settings = Settings(influx=InfluxSettings(embedded=False, url=inst.url, database=f"sim{k}"),
                                    storage=StorageSettings(state_dir=Path(tmp) / f"state{k}"),
                                    persons=[PersonSettings(name="bench")])
                t0 = time.perf_counter()
                res = asyncio.run(backfill(settings, study, durable=durable, hr_every_s=hr_every,
                                           truth_path=Path(tmp) / "truth.json"))
                rows.append((label, time.perf_counter() - t0, res.lines))
                assert hr_every > 1 or res.lines == n_lines
        finally:
            local_influx.stop(root)

    t_backfill = rows[3][1]
    t_thin, lines_thin = rows[-1][1], rows[-1][2]
    text = [
        "# Simulator benchmark (bench/bench_sim.py)",
        "",
        f"{n} nights, {beats:,} beats, {n_lines:,} points written per run (heart_rate 1/s, rr, motion, "
        "device stages, doses); private InfluxDB 1.6.7 on loopback. "
        f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other work; Python "
        f"{platform.python_version()}. Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "| step | wall s | points | points/s | vs baseline |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, t, k in rows:
        text.append(f"| {name} | {t:.1f} | {k:,} | {k / t:,.0f} | {t / t_bare:.2f}x |")

    def verdict(t: float) -> str:
        return "met" if t * 365 / n < 60 else "NOT met"

    text += ["", f"Goal (365 nights under 60 s): {verdict(t_backfill)} at full resolution "
             f"({t_backfill:.1f} s for {n} nights, {t_backfill / n * 1000:.0f} ms per night); "
             f"{verdict(t_thin)} with --hr-every 5 ({t_thin:.1f} s, {lines_thin:,} points).", "",
             "Notes: InfluxDB 1.6.7's ingest rate on this shared 2-core machine is the limit; generation",
             "and encoding are a small part. The pipeline path overlaps generating the next night with",
             "delivery, so it can beat the sequential bare-write baseline. The default backfill skips the",
             "durable SQLite outbox (a backfill is deterministic and idempotent); `durable=True` shows its",
             "cost. Full-resolution heart rate (one point per notification, as a strap sends) is about",
             "half of all points; `--hr-every 5` thins it.", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(text), encoding="utf-8")
    print("\n".join(text))


if __name__ == "__main__":
    main()
