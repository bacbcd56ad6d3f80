"""Tracker profile benchmarks; results to bench/results/trackers.md.

1. Bangle.js history pull over the virtual BlueZ with bleak's real backend: a week of sleeplog
   (status changes every ~40 min) pulled on connect. Baseline in the same run: the same bytes
   notified on the same TX characteristic into a bare bleak callback (append). Reported: real time
   of the pull (JS line written -> epochs emitted) and its ratio to the bare transfer.
2. Polar PMD frame decoding per frame (25 samples): delta-compressed and raw int16, as a ratio to
   ``struct.unpack`` of the same number of int16 values (the least any decoder must do), and the
   whole path frame -> ActiGraph counts per minute, per frame.

Run: ``.venv/bin/python bench/bench_trackers.py [--quick]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import struct
import sys
import tempfile
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bleak import BleakClient  # noqa: E402

from collector.ble.profiles import polar_pmd as pmd  # noqa: E402
from collector.ble.profiles.bangle import BangleProfile  # noqa: E402
from collector.ble.profiles.hooks import ProfileContext  # noqa: E402
from collector.ble.profiles.uart import NUS_TX  # noqa: E402
from collector.clock import SystemClock  # noqa: E402
from collector.nights.activity import load_counts  # noqa: E402
from collector.sim.bluez import PrivateDBus, VirtualBlueZ  # noqa: E402
from collector.sim.bluez.trackers import UART_CHUNK, bangle_js  # noqa: E402
from collector.storage.lineprotocol import Tags  # noqa: E402

ADDR = "C0:FF:EE:00:09:01"


def week_of_sleeplog(now_ms: int) -> list[list[int]]:
    rng = random.Random(5)
    t10 = now_ms // 600_000 - 7 * 144
    out = []
    while t10 < now_ms // 600_000 - 1:
        out.append([t10, rng.choice((2, 3, 3, 4)), 2])
        t10 += rng.randint(2, 6)
    return out


async def bangle_bench(reps: int) -> dict[str, float]:
    clock = SystemClock()
    entries = week_of_sleeplog(clock.time_ns() // 1_000_000)
    wearable, console = bangle_js(ADDR, clock=clock, entries=entries, noise=True, with_hrs=True)
    profile = BangleProfile()
    pulls, bare = [], []
    async with VirtualBlueZ.start(clock=clock) as bz:
        dev = bz.add_device(wearable, paired=True)
        async with BleakClient(ADDR) as client:
            # Collector: the whole pull from a 7-day-old watermark, repeated.
            points: list[object] = []
            ctx = ProfileContext(ADDR, "bench", Tags(person="p", device="bench", source="device"), clock,
                                 emit=points.extend)
            await profile.on_connect(client, ctx)  # opens the console, measures skew, first pull
            since = ctx.memory["until_ms"] - 7 * 86_400_000
            for _ in range(reps):
                points.clear()
                ctx.memory["until_ms"] = since
                t0 = time.perf_counter()
                await profile.pull(client, ctx)
                pulls.append(time.perf_counter() - t0)
            await client.stop_notify(NUS_TX)
            # Baseline: the same reply bytes into a bare callback.
            text = "".join(json.dumps(["ms", i, *e], separators=(",", ":")) + "\r\n"
                           for i, e in enumerate(console.read_log(since)))
            data = (text + json.dumps(["ms-end", 0, 0]) + "\r\n").encode()
            for _ in range(reps):
                got = bytearray()
                done = asyncio.Event()

                def cb(_c: object, b: bytearray, got: bytearray = got, done: asyncio.Event = done,
                       n: int = len(data)) -> None:
                    got.extend(b)
                    if len(got) >= n:
                        done.set()

                await client.start_notify(NUS_TX, cb)
                t0 = time.perf_counter()
                for i in range(0, len(data), UART_CHUNK):
                    await dev.notify(NUS_TX, data[i:i + UART_CHUNK])
                await asyncio.wait_for(done.wait(), 30)
                bare.append(time.perf_counter() - t0)
                await client.stop_notify(NUS_TX)
    n_points = len(points)
    return {"entries": len(entries), "bytes": len(data), "epochs": n_points,
            "pull_s": statistics.median(pulls), "bare_s": statistics.median(bare)}


def pmd_bench(number: int) -> dict[str, float]:
    rng = random.Random(3)
    samples = [(rng.randint(-60, 60), rng.randint(-60, 60), 1000 + rng.randint(-60, 60)) for _ in range(25)]
    comp = pmd.encode_acc_frame(123, samples, compressed=True)
    raw = pmd.encode_acc_frame(123, samples, compressed=False)
    payload = raw[10:]
    base = min(timeit.repeat(lambda: struct.unpack("<75h", payload), number=number, repeat=5)) / number
    t_comp = min(timeit.repeat(lambda: pmd.decode_acc_frame(comp), number=number, repeat=5)) / number
    t_raw = min(timeit.repeat(lambda: pmd.decode_acc_frame(raw), number=number, repeat=5)) / number
    ctx = ProfileContext(ADDR, "bench", Tags(person="p", device="bench", source="device"), SystemClock(),
                         emit=lambda _p: None)
    load_counts()  # SciPy's import is a one-off at connect (in a thread), not per frame
    stream = pmd.AccStream(ctx)
    state = {"t": 10**18, "k": 0}

    frames = [pmd.encode_acc_frame(k * 1_000_000_000, samples, compressed=True) for k in range(number * 5 + 10)]

    def whole() -> None:  # consecutive frames, one second apart (device and host time)
        state["t"] += 1_000_000_000
        stream.feed(pmd.decode_acc_frame(frames[state["k"]]), state["t"])
        state["k"] += 1

    t_whole = min(timeit.repeat(whole, number=number, repeat=5)) / number
    return {"base_us": base * 1e6, "comp_us": t_comp * 1e6, "raw_us": t_raw * 1e6, "whole_us": t_whole * 1e6,
            "comp_bytes": len(comp), "raw_bytes": len(raw)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    reps = 3 if args.quick else 7
    with tempfile.TemporaryDirectory() as tmp:
        bus = PrivateDBus.start(Path(tmp))
        try:
            import os

            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
            b = asyncio.run(bangle_bench(reps))
        finally:
            bus.stop()
    p = pmd_bench(2000 if args.quick else 10000)
    lines = [
        "# Tracker profile benchmarks",
        "",
        "Measured by `bench/bench_trackers.py` on this machine (2 shared cores); medians/minima of "
        f"{reps} repetitions. Ratios are against a baseline measured in the same run.",
        "",
        "## Bangle.js sleeplog pull over the virtual BlueZ (bleak's real backend)",
        "",
        f"A week of sleeplog: {b['entries']} status changes, {b['bytes']} bytes of reply in "
        f"{-(-b['bytes'] // UART_CHUNK)} notifications of 20 bytes, {b['epochs']} ten-minute epochs.",
        "",
        "| what | real time | ratio |",
        "| --- | --- | --- |",
        f"| bare transfer of the reply bytes into a bleak callback (baseline) | {b['bare_s'] * 1000:.1f} ms | 1.00 |",
        f"| collector pull: JS line written, reply reassembled, epochs emitted, watermark kept | "
        f"{b['pull_s'] * 1000:.1f} ms | {b['pull_s'] / b['bare_s']:.2f} |",
        "",
        "The pull includes writing the JS line (chunked into 20-byte writes with response) and the virtual "
        "watch composing its reply; the baseline is only the notification transfer. Over a real link one "
        "20-byte notification per connection event (7.5-50 ms) dominates: the same reply takes seconds.",
        "",
        "## Polar PMD frame decoding (25 samples per frame, 25 Hz: one frame per second)",
        "",
        "| what | per frame | ratio to struct.unpack of 75 int16 |",
        "| --- | --- | --- |",
        f"| struct.unpack('<75h') (baseline) | {p['base_us']:.1f} us | 1.0 |",
        f"| raw int16 frame (type 0x01, {p['raw_bytes']} bytes) | {p['raw_us']:.1f} us | "
        f"{p['raw_us'] / p['base_us']:.1f} |",
        f"| delta-compressed frame (type 0x80, {p['comp_bytes']} bytes) | {p['comp_us']:.1f} us | "
        f"{p['comp_us'] / p['base_us']:.1f} |",
        f"| compressed frame -> samples -> ActiGraph counts per minute (agcounts, 1/60 of an epoch) | "
        f"{p['whole_us']:.1f} us | "
        f"{p['whole_us'] / p['base_us']:.1f} |",
        "",
        f"At one frame per second a night (8 h) costs {p['whole_us'] * 28800 / 1e6:.2f} s of CPU for the ACC stream.",
        "",
    ]
    out = ROOT / "bench" / "results" / "trackers.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
