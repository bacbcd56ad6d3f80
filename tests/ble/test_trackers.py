"""Tracker profiles end to end: bleak's real backend, the virtual BlueZ with virtual trackers, real InfluxDB."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from collector.ble.bluez import BlueZProps
from collector.ble.daemon import run_wearables
from collector.ble.pairing import pair
from collector.ble.profiles import polar_pmd as pmd
from collector.ble.registry import DeviceRegistry, RegisteredDevice
from collector.ble.session import DeviceSession, PointBuffer
from collector.clock import CompressedClock
from collector.settings import (
    BleSettings,
    GenericProfileSettings,
    InfluxSettings,
    PersonSettings,
    Settings,
    StorageSettings,
)
from collector.sim.bluez import Characteristic, Notification, Service, VirtualBlueZ, VirtualWearable
from collector.sim.bluez.trackers import (
    DEFAULT_NIGHT,
    bangle_js,
    infinitime_feed,
    infinitime_watch,
    polar_h10_pmd,
    sleeplog_entries,
)
from collector.storage.lineprotocol import Point
from collector.storage.pipeline import Pipeline
from collector.storage.schema import validate_point

BANGLE, H10, PINE, THERMO = "C0:FF:EE:00:01:01", "C0:FF:EE:00:01:02", "C0:FF:EE:00:01:03", "C0:FF:EE:00:01:04"
NIGHT_EPOCHS = DEFAULT_NIGHT[-1][0] // 10  # the last entry (awake) runs until the pull


class MemorySink:
    def __init__(self) -> None:
        self.points: list[Point] = []

    async def put(self, points) -> None:
        self.points.extend(points)

    def of(self, measurement: str) -> list[Point]:
        return [p for p in self.points if p.measurement == measurement]


def make_settings(tmp_path: Path, influx_server=None, db: str = "x", **ble) -> Settings:
    influx = (InfluxSettings(embedded=False, url=influx_server.url, database=db) if influx_server
              else InfluxSettings(embedded=False))
    return Settings(
        influx=influx,
        storage=StorageSettings(state_dir=tmp_path),
        persons=[PersonSettings(name="alice"), PersonSettings(name="bob")],
        ble=BleSettings(**{"scan_timeout_s": 2.0, "connect_timeout_s": 5.0,
                           # simulated seconds: at 60x, 30 s would be half a real second of load away from a
                           # spurious watchdog reconnect; these tests do not exercise the watchdog
                           "silence_timeout_s": 900.0,
                           "max_backoff_s": 20.0, **ble}),
    )


class Session:
    """One DeviceSession (with state_dir) and its forwarder, as the daemon runs them."""

    def __init__(self, settings: Settings, device: RegisteredDevice, clock, sink) -> None:
        self.buffer = PointBuffer(sink, batch_s=0.02)
        self.props = BlueZProps()
        self.session = DeviceSession(device, buffer=self.buffer, clock=clock, ble=settings.ble, props=self.props,
                                     state_dir=settings.storage.state_dir)
        self.forwarder = asyncio.create_task(self.buffer.run())
        self.task = asyncio.create_task(self.session.run())

    def ctx(self, profile: str):
        return self.session.hooks.contexts[profile]

    async def stop(self) -> DeviceSession:
        self.session.stop()
        await asyncio.wait_for(self.task, 10)
        self.forwarder.cancel()
        await asyncio.gather(self.forwarder, return_exceptions=True)
        await self.buffer.drain()
        self.props.close()
        return self.session


async def until(cond: Callable[[], bool], limit_s: float = 20.0) -> None:
    """Wait (real seconds) until ``cond()`` holds."""
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < limit_s, "condition not met in time"
        await asyncio.sleep(0.02)


def stages(rows_or_points) -> list[tuple[int, str]]:
    out = []
    for r in rows_or_points:
        if isinstance(r, Point):
            out.append((r.time_ns, str(r.fields["stage"])))
        else:
            out.append((int(r["time"]), r["stage"]))
    return sorted(out)


def expected_stages(lights_out_ms: int, skew_ms: int = 0) -> list[tuple[int, str]]:
    names = {2: "wake", 3: "light", 4: "deep", 1: "not_worn", 0: "unknown"}
    base = lights_out_ms // 600_000
    out = []
    for (m0, status), (m1, _) in itertools.pairwise(DEFAULT_NIGHT):
        out += [(((base + k) * 600_000 - skew_ms) * 1_000_000, names[status]) for k in range(m0 // 10, m1 // 10)]
    return out


def bangle_device(person: str = "bob") -> RegisteredDevice:
    return RegisteredDevice(BANGLE, "bangle-bob", person, profiles=("bangle",), paired=True)


# ---- Bangle.js -----------------------------------------------------------------------------------


async def test_bangle_sleeplog_lands_once_in_influxdb(tmp_path, private_dbus, influx_server, influx_db):
    clock = CompressedClock(start_ns=time.time_ns(), speed=60.0)
    settings = make_settings(tmp_path, influx_server, influx_db, history_pull_s=300.0)
    lights_out = clock.time_ns() // 1_000_000 - 9 * 3600_000
    wearable, console = bangle_js(BANGLE, clock=clock, entries=sleeplog_entries(lights_out))
    async with VirtualBlueZ.start(bus_address=private_dbus.address, clock=clock) as bz:
        bz.add_device(wearable, paired=True)
        async with Pipeline.from_settings(settings, name="ble") as pipe:
            run = Session(settings, bangle_device(), clock, pipe)
            await until(lambda: run.ctx("bangle").memory.get("pulls", 0) >= 1)
            first_until = run.ctx("bangle").memory["until_ms"]
            # A scheduled pull (every 300 clock-seconds) and a reconnect pull: both fetch only what is new.
            await until(lambda: run.ctx("bangle").memory.get("pulls", 0) >= 2, limit_s=30)
            await bz.device(BANGLE).drop_link()
            await until(lambda: run.ctx("bangle").memory.get("pulls", 0) >= 3, limit_s=30)
            session = await run.stop()
            await pipe.flush(timeout=30)
    pulls = [r for r in console.requests if "readLog(" in r]
    assert len(pulls) >= 3
    since = [int(r.split("readLog(")[1].split(")")[0]) for r in pulls]
    assert since[1] == first_until and since == sorted(since)  # each pull starts where the last ended
    assert session.hooks.contexts["bangle"].errors == 0
    rows = influx_server.rows("SELECT stage, stage_code, epoch_s FROM sleep_stage GROUP BY *", influx_db)
    assert {tuple(sorted(r["_tags"].items())) for r in rows} == {
        (("device", "bangle-bob"), ("person", "bob"), ("source", "device"))}
    got = stages(rows)
    night = expected_stages(lights_out)
    assert got[:len(night)] == night  # the night, epoch by epoch, exactly once
    assert all(s == "wake" for _, s in got[len(night):])  # then awake since the last entry
    assert len(got) == len({t for t, _ in got})
    assert {r["epoch_s"] for r in rows} == {600}
    state = json.loads((tmp_path / "bangle-sleeplog.json").read_text())
    assert state[BANGLE]["until_ms"] == run.ctx("bangle").memory["until_ms"]
    assert state[BANGLE]["until_ms"] % 600_000 == 0


async def test_bangle_resumes_after_link_drop_mid_transfer(tmp_path, private_dbus):
    clock = CompressedClock(start_ns=time.time_ns(), speed=60.0)
    settings = make_settings(tmp_path)
    lights_out = clock.time_ns() // 1_000_000 - 9 * 3600_000
    wearable, console = bangle_js(BANGLE, clock=clock, entries=sleeplog_entries(lights_out))
    console.drop_after_chunks = 5  # the first sleeplog reply is cut after 100 bytes
    sink = MemorySink()
    async with VirtualBlueZ.start(bus_address=private_dbus.address, clock=clock) as bz:
        dev = bz.add_device(wearable, paired=True)
        run = Session(settings, bangle_device(), clock, sink)
        await until(lambda: run.ctx("bangle").memory.get("pulls", 0) >= 1)
        session = await run.stop()
    assert dev.stats.disconnects >= 1 and session.stats.connects >= 2
    assert len([r for r in console.requests if "readLog(" in r]) == 2
    first, second = (int(r.split("readLog(")[1].split(")")[0]) for r in console.requests if "readLog(" in r)
    assert first == second  # the cut transfer moved nothing: the same window again
    got = stages(sink.of("sleep_stage"))
    assert got[:len(expected_stages(lights_out))] == expected_stages(lights_out)
    assert len(got) == len({t for t, _ in got})  # nothing twice


async def test_bangle_malformed_lines_rejected_rest_kept_gap_pulled_again(tmp_path, private_dbus):
    clock = CompressedClock(start_ns=time.time_ns(), speed=60.0)
    settings = make_settings(tmp_path, history_pull_s=60.0)
    lights_out = clock.time_ns() // 1_000_000 - 9 * 3600_000
    wearable, console = bangle_js(BANGLE, clock=clock, entries=sleeplog_entries(lights_out))
    console.corrupt_entries = {4}  # the 5th entry of the first reply arrives mangled
    sink = MemorySink()
    async with VirtualBlueZ.start(bus_address=private_dbus.address, clock=clock) as bz:
        bz.add_device(wearable, paired=True)
        run = Session(settings, bangle_device(), clock, sink)
        await until(lambda: run.ctx("bangle").memory.get("pulls", 0) >= 1)
        await until(lambda: run.buffer.forwarded == run.buffer.queued)
        after_first = stages(sink.of("sleep_stage"))
        first_until = run.ctx("bangle").memory["until_ms"]
        await until(lambda: run.ctx("bangle").memory.get("pulls", 0) >= 2, limit_s=30)
        await run.stop()
    night = expected_stages(lights_out)
    lost = {t for t, _ in night} - {t for t, _ in after_first}
    # Only the span of entry 3 (ending at the mangled entry 4) and entry 4's own span are missing ...
    span3 = {t for t, _ in night[DEFAULT_NIGHT[3][0] // 10:DEFAULT_NIGHT[5][0] // 10]}
    assert lost == span3
    assert set(after_first) - set(night) == {x for x in after_first if x[0] > night[-1][0]}  # nothing wrong
    assert run.ctx("bangle").memory["rejected"] == 1
    # ... the watermark stopped at the start of the uncertain span, and the next pull filled it.
    assert first_until == (lights_out // 600_000 + DEFAULT_NIGHT[3][0] // 10) * 600_000
    got = stages(sink.of("sleep_stage"))
    assert sorted(set(got))[:len(night)] == night


async def test_bangle_clock_skew_corrected_and_hrm_over_uart(tmp_path, private_dbus):
    clock = CompressedClock(start_ns=time.time_ns(), speed=20.0)
    settings = make_settings(tmp_path)
    skew_ms = 7 * 60_000 + 20_000  # the watch runs 7 min 20 s ahead
    lights_out_device = clock.time_ns() // 1_000_000 + skew_ms - 9 * 3600_000
    wearable, console = bangle_js(BANGLE, clock=clock, entries=sleeplog_entries(lights_out_device), skew_ms=skew_ms)
    sink = MemorySink()
    async with VirtualBlueZ.start(bus_address=private_dbus.address, clock=clock) as bz:
        bz.add_device(wearable, paired=True)
        run = Session(settings, bangle_device(), clock, sink)
        await until(lambda: len(sink.of("heart_rate")) >= 5)
        ctx = run.ctx("bangle")
        assert console.hrm_on  # no standard HRS: the HRM was switched on over the console
        await run.stop()
    assert not console.hrm_on  # and off again on a clean stop
    assert ctx.memory["skew_ms"] == round(ctx.memory["measured_skew_ms"] / 1000) * 1000
    assert abs(ctx.memory["skew_ms"] - skew_ms) <= 1000  # measured over a compressed round trip
    got = stages(sink.of("sleep_stage"))
    assert got[:len(expected_stages(lights_out_device))] == expected_stages(lights_out_device, ctx.memory["skew_ms"])
    assert all(55 <= p.fields["bpm"] <= 61 for p in sink.of("heart_rate"))
    for p in sink.points:
        validate_point(p)


async def test_bangle_without_sleeplog_app_keeps_streaming_hr(tmp_path, private_dbus):
    clock = CompressedClock(start_ns=time.time_ns(), speed=20.0)
    wearable, console = bangle_js(BANGLE, clock=clock, with_hrs=True)
    console.sleeplog_installed = False
    sink = MemorySink()
    async with VirtualBlueZ.start(bus_address=private_dbus.address, clock=clock) as bz:
        bz.add_device(wearable, paired=True)
        device = RegisteredDevice(BANGLE, "bangle-bob", "bob", profiles=("heart_rate", "bangle"), paired=True)
        run = Session(make_settings(tmp_path), device, clock, sink)
        await until(lambda: run.ctx("bangle").errors >= 1 and len(sink.of("heart_rate")) >= 5)
        await run.stop()
    assert not console.hrm_on  # standard HRS present: no HRM over UART
    assert sink.of("sleep_stage") == []
    assert not (tmp_path / "bangle-sleeplog.json").exists()


# ---- Polar PMD ---------------------------------------------------------------------------------


async def test_polar_pmd_start_stream_stop(tmp_path, private_dbus, influx_server, influx_db):
    clock = CompressedClock(start_ns=time.time_ns(), speed=30.0)  # the strap's 25 Hz stream keeps up
    t0 = clock.time_ns() / 1e9
    wearable, pmd_dev = polar_h10_pmd(H10, clock=clock, movement=[(t0 + 120, t0 + 300)])
    settings = make_settings(tmp_path, influx_server, influx_db)
    device = RegisteredDevice(H10, "h10-alice", "alice", profiles=("heart_rate", "polar_pmd"), paired=True)
    async with VirtualBlueZ.start(bus_address=private_dbus.address, clock=clock) as bz:
        bz.add_device(wearable, paired=True)
        async with Pipeline.from_settings(settings, name="ble") as pipe:
            run = Session(settings, device, clock, pipe)
            await until(lambda: clock.time_ns() / 1e9 > t0 + 420, limit_s=40)
            ctx = run.ctx("polar_pmd")
            session = await run.stop()
            await pipe.flush(timeout=30)
    assert pmd_dev.commands == [pmd.START_ACC, pmd.STOP_ACC]
    assert pmd.START_ACC.hex() == "0202000119000101100002010800"  # 25 Hz, 16 bit, 8 g
    assert not pmd_dev.streaming and ctx.errors == 0 and session.stats.parse_errors == 0
    assert abs(ctx.memory["skew_ms"] + 3_600_000) < 10_000  # the strap's clock is an hour behind (+ latency at 60x)
    rows = influx_server.rows("SELECT counts, counts_x, counts_y, counts_z, epoch_s FROM motion", influx_db)
    # whole minutes of ActiGraph counts (a minute with under 80% of its samples is dropped: on a loaded
    # machine the virtual strap falls behind the compressed clock and loses some)
    assert len(rows) >= 3
    assert all(int(r["time"]) % 60_000_000_000 == 0 and r["epoch_s"] == 60 for r in rows)
    moving = [r["counts"] for r in rows if t0 + 120 <= int(r["time"]) / 1e9 <= t0 + 240]  # minutes inside
    still = [r["counts"] for r in rows if int(r["time"]) / 1e9 >= t0 + 310 or int(r["time"]) / 1e9 < t0 + 60]
    assert moving and still and min(moving) > 1000 and max(still) < 10  # 4 mG of noise: below the dead band
    assert all(r["counts"] == pytest.approx(math.hypot(r["counts_x"], r["counts_y"], r["counts_z"]), abs=0.01)
               for r in rows)
    assert influx_server.rows("SELECT count(bpm) FROM heart_rate", influx_db)[0]["count"] >= 250


@pytest.mark.parametrize(("status", "message"), [(13, "device in charger"), (8, "invalid sample rate")])
async def test_polar_pmd_start_refused_keeps_heart_rate(tmp_path, private_dbus, status, message, caplog):
    clock = CompressedClock(start_ns=time.time_ns(), speed=60.0)
    wearable, pmd_dev = polar_h10_pmd(H10, clock=clock)
    pmd_dev.start_status = status
    sink = MemorySink()
    device = RegisteredDevice(H10, "h10-alice", "alice", profiles=("heart_rate", "polar_pmd"), paired=True)
    async with VirtualBlueZ.start(bus_address=private_dbus.address, clock=clock) as bz:
        bz.add_device(wearable, paired=True)
        run = Session(make_settings(tmp_path), device, clock, sink)
        await until(lambda: len(sink.of("heart_rate")) >= 60)
        ctx = run.ctx("polar_pmd")
        await run.stop()
    assert ctx.errors == 1 and f"status {status} ({message})" in caplog.text
    assert pmd_dev.frames_sent == 0 and sink.of("motion") == []
    assert pmd_dev.commands == [pmd.START_ACC]  # never started, so nothing to stop


async def test_polar_pmd_restarted_after_link_loss(tmp_path, private_dbus):
    clock = CompressedClock(start_ns=time.time_ns(), speed=60.0)
    wearable, pmd_dev = polar_h10_pmd(H10, clock=clock, compressed=False)
    sink = MemorySink()
    device = RegisteredDevice(H10, "h10-alice", "alice", profiles=("heart_rate", "polar_pmd"), paired=True)
    async with VirtualBlueZ.start(bus_address=private_dbus.address, clock=clock) as bz:
        dev = bz.add_device(wearable, paired=True)
        run = Session(make_settings(tmp_path), device, clock, sink)
        await until(lambda: len(sink.of("motion")) >= 2)
        await dev.drop_link()
        n = len(sink.of("motion"))
        await until(lambda: len(sink.of("motion")) >= n + 2)
        await run.stop()
    assert pmd_dev.commands == [pmd.START_ACC, pmd.START_ACC, pmd.STOP_ACC]
    times = [p.time_ns for p in sink.of("motion")]
    assert len(times) == len(set(times))


# ---- InfiniTime --------------------------------------------------------------------------------


async def test_infinitime_motion_epochs_and_steps(tmp_path, private_dbus, influx_server, influx_db):
    clock = CompressedClock(start_ns=time.time_ns(), speed=60.0)
    feed = infinitime_feed(420, movement=[(120, 250)])
    settings = make_settings(tmp_path, influx_server, influx_db)
    device = RegisteredDevice(PINE, "pinetime-bob", "bob", profiles=("heart_rate", "infinitime"), paired=True)
    async with VirtualBlueZ.start(bus_address=private_dbus.address, clock=clock) as bz:
        t0 = clock.time_ns() / 1e9
        bz.add_device(infinitime_watch(PINE, feed=feed), paired=True)
        async with Pipeline.from_settings(settings, name="ble") as pipe:
            run = Session(settings, device, clock, pipe)
            await until(lambda: clock.time_ns() / 1e9 > t0 + 410, limit_s=30)
            await run.stop()
            await pipe.flush(timeout=30)
    rows = influx_server.rows("SELECT counts, epoch_s FROM motion WHERE counts >= 0", influx_db)
    assert len(rows) >= 5  # whole minutes, the still ones closed by the pull
    assert all(int(r["time"]) % 60_000_000_000 == 0 and r["epoch_s"] == 60 for r in rows)
    moving = [r["counts"] for r in rows if t0 + 122 <= int(r["time"]) / 1e9 <= t0 + 188]
    still = [r["counts"] for r in rows if int(r["time"]) / 1e9 >= t0 + 262]
    assert moving and still and min(moving) > 1000 and max(still) < 10  # a 1/1024 g flicker: below the dead band
    steps = influx_server.rows("SELECT steps FROM motion WHERE steps > 0", influx_db)
    assert steps and steps[-1]["steps"] > 1200 and [s["steps"] for s in steps] == sorted(s["steps"] for s in steps)


# ---- generic profile from config ------------------------------------------------------------------


TOML = """
[[persons]]
name = "alice"

[storage]
state_dir = "{state}"

[influx]
embedded = false
url = "{url}"
database = "{db}"

[ble]
scan_timeout_s = 2.0
connect_timeout_s = 5.0

[[ble.generic]]
name = "bedside-accel"
service = "0000aa00-0000-1000-8000-00805f9b34fb"
characteristic = "0000aa01-0000-1000-8000-00805f9b34fb"
format = "<hHi"
fields = ["", "counts", "steps"]
scale = [1.0, 0.5, 1.0]
measurement = "motion"
"""


async def test_generic_profile_from_config_end_to_end(tmp_path, private_dbus, influx_server, influx_db):
    from collector.settings import load_settings

    cfg = tmp_path / "magsleep.toml"
    cfg.write_text(TOML.format(state=tmp_path, url=influx_server.url, db=influx_db))
    settings = load_settings(cfg)
    assert isinstance(settings.ble.generic[0], GenericProfileSettings)
    clock = CompressedClock(start_ns=time.time_ns(), speed=30.0)
    char = "0000aa01-0000-1000-8000-00805f9b34fb"

    def feed():
        import struct
        for k in range(1, 200):
            yield Notification(float(k), char, struct.pack("<hHi", -5, 2 * k, 100 + k))

    wearable = VirtualWearable(THERMO, "Bedside", services=(
        Service("0000aa00-0000-1000-8000-00805f9b34fb", (Characteristic(char, ("notify",)),)),), feed=feed)
    reg = DeviceRegistry(tmp_path / "devices.json")
    async with VirtualBlueZ.start(bus_address=private_dbus.address, clock=clock) as bz:
        dev = bz.add_device(wearable)
        # `magsleep pair` recognises the sensor through its [[ble.generic]] service.
        registered = await pair(settings, reg, THERMO, person="alice", alias="thermo-alice", bond=False)
        assert registered.profiles == ("bedside-accel",)
        stop = asyncio.Event()
        task = asyncio.create_task(run_wearables(settings, reg, clock=clock, stop_event=stop))
        await until(lambda: dev.stats.notifications_sent >= 30)
        stop.set()
        result = await asyncio.wait_for(task, 15)
    async with Pipeline.from_settings(settings, name="ble") as pipe:
        await pipe.flush(timeout=30)
    rows = influx_server.rows("SELECT counts, steps FROM motion GROUP BY *", influx_db)
    assert len(rows) == result.sessions["thermo-alice"].notifications >= 30
    assert all(r["steps"] - 100 == r["counts"] for r in rows)  # 2k x 0.5 and 100 + k
    assert {tuple(sorted(r["_tags"].items())) for r in rows} == {
        (("device", "thermo-alice"), ("person", "alice"), ("source", "device"))}


async def test_bangle_daemon_restart_pulls_only_what_is_new(tmp_path, private_dbus):
    """Through run_wearables: the state file carries the watermark across a daemon restart."""
    clock = CompressedClock(start_ns=time.time_ns(), speed=60.0)
    settings = make_settings(tmp_path)
    lights_out = clock.time_ns() // 1_000_000 - 9 * 3600_000
    wearable, console = bangle_js(BANGLE, clock=clock, entries=sleeplog_entries(lights_out), with_hrs=True)
    reg = DeviceRegistry(tmp_path / "devices.json", [
        RegisteredDevice(BANGLE, "bangle-bob", "bob", profiles=("heart_rate", "bangle"), paired=True)])
    sinks = [MemorySink(), MemorySink()]

    def pulls() -> list[int]:
        return [int(r.split("readLog(")[1].split(")")[0]) for r in console.requests if "readLog(" in r]

    async with VirtualBlueZ.start(bus_address=private_dbus.address, clock=clock) as bz:
        bz.add_device(wearable, paired=True)
        for n, sink in enumerate(sinks, start=1):
            stop = asyncio.Event()
            task = asyncio.create_task(run_wearables(settings, reg, clock=clock, stop_event=stop, sink=sink))
            def pulled(n: int = n) -> bool:
                return len(pulls()) == n and (tmp_path / "bangle-sleeplog.json").exists()

            await until(pulled)
            await asyncio.sleep(0.3)
            stop.set()
            await asyncio.wait_for(task, 15)
            if n == 1:
                first_until = json.loads((tmp_path / "bangle-sleeplog.json").read_text())[BANGLE]["until_ms"]
    assert pulls()[1] == first_until
    first, second = stages(sinks[0].of("sleep_stage")), stages(sinks[1].of("sleep_stage"))
    assert first[:len(expected_stages(lights_out))] == expected_stages(lights_out)
    assert len(second) <= 1 and all(t >= first_until * 1_000_000 for t, _ in second)  # only a new epoch, if any
    assert sinks[1].of("heart_rate")  # HR kept streaming through the standard HRS
