"""Bluetooth LE benchmarks over the virtual BlueZ; results to bench/results/ble.md.

1. Notification path: N Heart Rate notifications through bleak's real BlueZ backend, once into a
   bare bleak callback (baseline: append the bytes) and once into the collector's session callback
   (parse -> Points -> queued for storage). Reported: end-to-end wall and CPU time per notification
   and their ratio (collector / bare), plus the collector callback alone (parse + queue) per call as a
   share of the bare end-to-end cost. Interleaved repetitions, medians.
2. Daemon footprint: ``run_wearables`` in a child process (real storage pipeline into a private
   InfluxDB) with 4 virtual wearables at 1 Hz over a simulated night on a compressed clock;
   RSS sampled through the run (start, peak, end), CPU per device.

Run: ``.venv/bin/python bench/bench_ble.py [--quick]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bleak import BleakClient, BleakScanner  # noqa: E402

from collector.ble.bluez import BlueZProps  # noqa: E402
from collector.ble.profiles.heart_rate import encode_measurement  # noqa: E402
from collector.ble.registry import RegisteredDevice  # noqa: E402
from collector.ble.session import DeviceSession, PointBuffer  # noqa: E402
from collector.ble.uuids import HEART_RATE_MEASUREMENT  # noqa: E402
from collector.clock import CompressedClock, SystemClock  # noqa: E402
from collector.settings import BleSettings  # noqa: E402
from collector.sim.bluez import PrivateDBus, VirtualBlueZ, heart_rate_feed, heart_rate_strap  # noqa: E402

ADDR = "C0:FF:EE:00:00:01"
PAYLOADS = [encode_measurement(55 + i % 30, [900 + i % 200, 950], contact=True) for i in range(256)]


class NullSink:
    async def put(self, points: Any) -> None:
        return None


def _bare_callback(got: list[bytes], _char: Any, data: bytearray) -> None:
    got.append(bytes(data))


async def _pump(dev: Any, n: int, received: Any) -> tuple[float, float]:
    """Send n notifications (bursts of 200), wait until all arrived; (wall s, cpu s)."""
    w0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        await dev.notify(HEART_RATE_MEASUREMENT, PAYLOADS[i & 255])
        if i % 200 == 199:
            await asyncio.sleep(0)
    while received() < n:  # noqa: ASYNC110 - polling a counter is the measurement's end condition
        await asyncio.sleep(0.001)
    return time.perf_counter() - w0, time.process_time() - c0


async def notification_path(n: int, reps: int) -> dict[str, float]:
    async with VirtualBlueZ.start() as bz:
        dev = bz.add_device(heart_rate_strap(ADDR))
        ble_dev = await BleakScanner.find_device_by_address(ADDR, timeout=5)
        assert ble_dev is not None
        buffer = PointBuffer(NullSink())
        reg = RegisteredDevice(ADDR, "h10", "alice", model="H10")
        session = DeviceSession(reg, buffer=buffer, clock=SystemClock(), ble=BleSettings(), props=BlueZProps())
        collector_cb = session._callback(session.profiles[0], HEART_RATE_MEASUREMENT)
        bare, coll = [], []
        async with BleakClient(ble_dev) as client:
            for _ in range(reps):
                got: list[bytes] = []
                await client.start_notify(HEART_RATE_MEASUREMENT, functools.partial(_bare_callback, got))
                bare.append(await _pump(dev, n, got.__len__))
                await client.stop_notify(HEART_RATE_MEASUREMENT)
                start = session.stats.notifications
                buffer._buf.clear()
                await client.start_notify(HEART_RATE_MEASUREMENT, collector_cb)
                coll.append(await _pump(dev, n, lambda s=start: session.stats.notifications - s))
                await client.stop_notify(HEART_RATE_MEASUREMENT)
                assert len(buffer._buf) >= n  # every notification became queued points
    # the collector callback alone (parse + Points + queue), called directly
    data = bytearray(PAYLOADS[7])
    m, chunk, spent = 200_000, 1_000, 0.0
    for _ in range(m // chunk):
        buffer._buf.clear()  # the forwarder drains the queue every 0.1 s in the daemon
        t0 = time.perf_counter()
        for _ in range(chunk):
            collector_cb(None, data)  # type: ignore[arg-type]
        spent += time.perf_counter() - t0
    cb_us = spent / m * 1e6
    bare_wall = statistics.median(w for w, _ in bare) / n * 1e6
    coll_wall = statistics.median(w for w, _ in coll) / n * 1e6
    bare_cpu = statistics.median(c for _, c in bare) / n * 1e6
    coll_cpu = statistics.median(c for _, c in coll) / n * 1e6
    return {
        "n": n, "reps": reps,
        "bare_wall_us": bare_wall, "collector_wall_us": coll_wall, "wall_ratio": coll_wall / bare_wall,
        "bare_cpu_us": bare_cpu, "collector_cpu_us": coll_cpu, "cpu_ratio": coll_cpu / bare_cpu,
        "callback_us": cb_us, "callback_share_of_bare": cb_us / bare_wall,
    }


# ---- daemon footprint (child process) ----------------------------------------------------------

def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _child(args: argparse.Namespace) -> None:
    import logging

    from collector.ble.daemon import run_wearables
    from collector.ble.registry import DeviceRegistry
    from collector.settings import InfluxSettings, PersonSettings, Settings, StorageSettings

    logging.basicConfig(level=logging.INFO, format="%(relativeCreated)d %(levelname)s %(name)s: %(message)s")
    state = Path(args.state)
    settings = Settings(
        influx=InfluxSettings(embedded=False, url=args.influx_url, database="bench"),
        storage=StorageSettings(state_dir=state),
        persons=[PersonSettings(name="alice"), PersonSettings(name="bob")],
    )
    reg = DeviceRegistry(state / "devices.json", [
        RegisteredDevice(f"C0:FF:EE:00:00:0{i}", f"strap-{i}", "alice" if i < 3 else "bob", paired=True, model="H10")
        for i in range(1, 5)])
    clock = CompressedClock(start_ns=time.time_ns(), speed=args.speed)
    stop = asyncio.Event()
    task = asyncio.create_task(run_wearables(settings, reg, clock=clock, stop_event=stop))
    await clock.sleep(args.hours * 3600)
    stop.set()
    result = await task
    print(json.dumps({a: s.notifications for a, s in result.sessions.items()}), flush=True)


async def daemon_footprint(hours: float, speed: float) -> dict[str, Any]:
    from collector.storage import local_influx

    influx_root = Path(tempfile.mkdtemp(prefix="bench-influx-"))
    inst = local_influx.start(influx_root)
    state = Path(tempfile.mkdtemp(prefix="bench-ble-"))
    clock = CompressedClock(start_ns=time.time_ns(), speed=speed)
    try:
        async with VirtualBlueZ.start(clock=clock) as bz:
            devs = [bz.add_device(heart_rate_strap(f"C0:FF:EE:00:00:0{i}", f"Strap {i}",
                                                   feed=heart_rate_feed(hours * 3600 + 60, seed=i)), paired=True)
                    for i in range(1, 5)]
            proc = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--child", "--state", str(state), "--influx-url", inst.url,
                "--hours", str(hours), "--speed", str(speed), stdout=subprocess.PIPE,
                stderr=(state / "daemon.log").open("w"))
            samples: list[tuple[float, int]] = []
            t0 = time.monotonic()
            while proc.returncode is None:
                try:
                    samples.append((time.monotonic() - t0, _rss_kb(proc.pid)))
                    cpu = _cpu_s(proc.pid)
                except (FileNotFoundError, ProcessLookupError):
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 2.0)
            out = (await proc.stdout.read()).decode() if proc.stdout else ""
            sent = sum(d.stats.notifications_sent for d in devs)
            expected = int(hours * 3600) * 4
    finally:
        local_influx.stop(influx_root)
    rss = [r for _, r in samples if r]
    warm = [r for t, r in samples if t > samples[-1][0] * 0.2 and r]
    return {
        "log": str(state / "daemon.log"), "hours": hours, "speed": speed, "wall_s": samples[-1][0] if samples else 0.0,
        "rss_start_mb": rss[0] / 1024, "rss_peak_mb": max(rss) / 1024, "rss_end_mb": rss[-1] / 1024,
        "rss_warm_min_mb": min(warm) / 1024, "rss_warm_max_mb": max(warm) / 1024,
        "cpu_s": cpu, "notifications_sent": sent, "notifications_expected": expected,
        "received": json.loads(out.strip().splitlines()[-1]) if out.strip() else {},
        # CPU a device costs at its real rate (1 Hz): daemon CPU per simulated second per device
        "cpu_pct_per_device_at_1hz": cpu / (hours * 3600) / 4 * 100,
    }


def write_results(path: Path, np: dict[str, Any], fp: dict[str, Any] | None) -> None:
    lines = [
        "# Bluetooth LE benchmarks (bench/bench_ble.py)",
        "",
        f"Machine: {os.cpu_count()} cores, shared with other work; Python {sys.version.split()[0]}; "
        "bleak's real BlueZ backend against the virtual BlueZ on a private dbus-daemon.",
        "",
        "## Notification path (goal: collector adds < 25% over a bare bleak loop)",
        "",
        f"{np['n']} Heart Rate notifications per run, {np['reps']} interleaved runs each, medians.",
        "",
        "| path | wall us/notification | CPU us/notification |",
        "| --- | ---: | ---: |",
        f"| bare bleak callback (baseline) | {np['bare_wall_us']:.1f} | {np['bare_cpu_us']:.1f} |",
        f"| collector callback: parse -> Points -> queued | {np['collector_wall_us']:.1f} | "
        f"{np['collector_cpu_us']:.1f} |",
        f"| **ratio collector / bare** | **{np['wall_ratio']:.3f}** | **{np['cpu_ratio']:.3f}** |",
        "",
        f"The collector callback alone (called directly: decode, build heart_rate + rr Points, queue) costs "
        f"{np['callback_us']:.2f} us, i.e. {np['callback_share_of_bare']:.1%} of the bare end-to-end cost of one "
        "notification. (The process CPU includes the virtual BlueZ sending, which is the same in both runs.)",
        "",
    ]
    if fp:
        lines += [
            "## Daemon footprint: 4 virtual wearables at 1 Hz (goal: RSS < 120 MB, steady)",
            "",
            f"`run_wearables` in its own process with the real storage pipeline (SQLite outbox, private InfluxDB), "
            f"{fp['hours']:g} simulated hours at {fp['speed']:g}x ({fp['wall_s']:.0f} s of real time).",
            "",
            "| metric | value |",
            "| --- | ---: |",
            f"| RSS at start | {fp['rss_start_mb']:.1f} MB |",
            f"| RSS peak | {fp['rss_peak_mb']:.1f} MB |",
            f"| RSS after warm-up, min .. max | {fp['rss_warm_min_mb']:.1f} .. {fp['rss_warm_max_mb']:.1f} MB |",
            f"| RSS at end | {fp['rss_end_mb']:.1f} MB |",
            f"| daemon CPU time | {fp['cpu_s']:.1f} s |",
            f"| CPU per device at 1 Hz (real time) | {fp['cpu_pct_per_device_at_1hz']:.3f} % of a core |",
            f"| notifications sent / expected | {fp['notifications_sent']} / {fp['notifications_expected']} |",
            f"| received per device | {fp['received']} |",
            "",
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


async def main(args: argparse.Namespace) -> None:
    np = await notification_path(5_000 if args.quick else 20_000, 3 if args.quick else 5)
    print(json.dumps(np, indent=2))
    fp = None
    if not args.skip_daemon:
        fp = await daemon_footprint(1.0 if args.quick else 8.0, 240.0)
        print(json.dumps(fp, indent=2))
    write_results(ROOT / "bench" / "results" / "ble.md", np, fp)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-daemon", action="store_true")
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--state")
    ap.add_argument("--influx-url")
    ap.add_argument("--hours", type=float, default=8.0)
    ap.add_argument("--speed", type=float, default=240.0)
    a = ap.parse_args()
    if a.child:
        asyncio.run(_child(a))
    else:
        bus = PrivateDBus.start()
        try:
            with bus.as_system_bus():
                asyncio.run(main(a))
        finally:
            bus.stop()
