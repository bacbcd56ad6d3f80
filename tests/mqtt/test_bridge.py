"""The MQTT bridge against a real Mosquitto, with a subscriber that listens like Home Assistant.

Time is injected (a fixed Friday evening in Berlin), so the tests pass at any hour in any zone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import tomli_w
from aiohttp import web

from collector.ble.registry import DeviceRegistry, DeviceStatus, RegisteredDevice, save_status, status_path
from collector.doses.entities import DoseCreate, Source
from collector.doses.service import DoseService
from collector.effects.io import verdict_point
from collector.effects.planner import PlanSpec
from collector.effects.store import PlanStore, StoredPlan
from collector.effects.tagging import night_time_ns
from collector.effects.verdict import Verdict, VerdictItem
from collector.mqtt.bridge import STOP_GRACE_S, Bridge, running_bridge
from collector.mqtt.reminders import STATE_FILE
from collector.mqtt.state import NO_VERDICT
from collector.settings import InfluxSettings, MqttSettings, PersonSettings, Settings, StorageSettings
from collector.storage.lineprotocol import Point
from collector.storage.local_influx import free_port
from collector.storage.pipeline import Pipeline
from collector.storage.reader import InfluxReader
from tests.mqtt import ha_schema
from tests.mqtt.conftest import Broker, frozen_link, home_assistant

BERLIN = ZoneInfo("Europe/Berlin")
TONIGHT = date(2026, 11, 20)  # a Friday
ADDR = "C0:FF:EE:00:0B:01"
RUN_NS = 1_763_000_000_000_000_000  # when the effects run wrote its points
VERDICT = Verdict("alice", "mg_vs_control",
                  "For you, magnesium nights: fell asleep 4.2 min faster (clear), total sleep no clear change.",
                  "26 more nights of the current plan to tell a 10-minute change in total sleep.",
                  (VerdictItem("sol_min", "time to fall asleep", "clear", "fell asleep 4.2 min faster", 1),
                   VerdictItem("tst_min", "total sleep", "no_clear_change", "total sleep no clear change", 0)),
                  "computed")
#: How long a stop may take here: the bridge's own grace plus room for a loaded 2-core machine, and
#: well below aiomqtt's 10-s operation timeout that a stop used to wait out.
STOP_BOUND_S = STOP_GRACE_S + 3.0


class Clock:
    """An injected wall clock that tests move by hand."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def make_settings(tmp_path: Path, influx_url: str, db: str, port: int, **mqtt: Any) -> Settings:
    return Settings(
        influx=InfluxSettings(embedded=False, url=influx_url, database=db),
        storage=StorageSettings(state_dir=tmp_path / "state", flush_interval_s=0.05, max_retry_backoff_s=0.5),
        persons=[PersonSettings(name=n, timezone="Europe/Berlin") for n in ("alice", "bob", "carol")],
        mqtt=MqttSettings(host="127.0.0.1", port=port, **mqtt),
    )


def night(person: str, d: str, **values: float) -> Point:
    return Point("night", {"person": person, "dose": "unknown", "staging": "computed"},
                 {"night": d, **{k: float(v) for k, v in values.items()}}, night_time_ns(date.fromisoformat(d)))


def setup_world(settings: Settings) -> None:
    """Plans (alice: magnesium tonight, bob: control tonight, carol: none) and one wearable."""
    store = PlanStore.from_settings(settings)
    spec = PlanSpec(TONIGHT - timedelta(days=6), 1, "randomised")
    store.save(StoredPlan("pa", "alice", spec, 1, 0, {TONIGHT - timedelta(days=1): False, TONIGHT: True}))
    store.save(StoredPlan("pb", "bob", spec, 1, 0, {TONIGHT - timedelta(days=1): True, TONIGHT: False}))
    reg = DeviceRegistry(DeviceRegistry.path_for(settings),
                         [RegisteredDevice(ADDR, "h10-alice", "alice", name="Polar H10 0B01", model="H10")])
    reg.save()
    seen = int(datetime(2026, 11, 20, 20, 0, tzinfo=BERLIN).timestamp() * 1e9)
    save_status(status_path(settings), {ADDR: DeviceStatus("connected", True, seen, 87, -60, 0)})


@pytest.fixture
async def pipe(settings: Settings) -> AsyncIterator[Pipeline]:
    p = Pipeline.from_settings(settings, name="mqtt-test")
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 20, 20, 30, tzinfo=BERLIN))


@pytest.fixture
def settings(tmp_path: Path, influx_server: Any, influx_db: str, broker: Broker) -> Settings:
    s = make_settings(tmp_path, influx_server.url, influx_db, broker.port)
    setup_world(s)
    return s


async def add_dose(settings: Settings, pipe: Pipeline, at: datetime, person: str = "alice") -> None:
    """A dose logged elsewhere (the phone page)."""
    async with DoseService(settings, sink=pipe, now=lambda: at) as svc:
        await svc.add(DoseCreate(person=person, amount_mg=300.0, form="glycinate", taken_at=at),
                      default_source=Source.web)


async def test_discovery_payloads_and_states_after_a_night(settings, broker, pipe, clock):
    await pipe.put([
        night("alice", "2026-11-17", tst_min=400, sol_min=20, waso_min=40, se_pct=85, rmssd_ms=38, hr_min5_bpm=52),
        night("alice", "2026-11-18", tst_min=410, sol_min=12, waso_min=35, se_pct=87, rmssd_ms=40, hr_min5_bpm=51),
        night("alice", "2026-11-19", tst_min=455.5, sol_min=8, waso_min=21.25, se_pct=93.1, rmssd_ms=47,
              hr_min5_bpm=49),
        # an effects run as `magsleep effects` writes it: its effect points and its verdict, one stamp
        Point("effect", {"person": "alice", "metric": "sol_min", "comparison": "mg_vs_control"},
              {"estimate": -4.2, "ci_low": -7.0, "ci_high": -1.1, "n_mg": 14, "n_control": 13, "reported": True,
               "unit": "min", "summary": "Sleep onset was 4.2 min faster with magnesium"}, RUN_NS),
        Point("effect", {"person": "alice", "metric": "tst_min", "comparison": "mg_vs_control"},
              {"estimate": 3.0, "ci_low": -9.0, "ci_high": 15.0, "n_mg": 14, "n_control": 13, "reported": True,
               "unit": "min", "summary": "Total sleep: no clear difference"}, RUN_NS),
        verdict_point(VERDICT, RUN_NS),
        verdict_point(replace(VERDICT, headline="An older run's answer."), RUN_NS - 86_400 * 10**9),
    ])
    await pipe.flush(timeout=20)
    async with home_assistant(broker.port) as ha:
        unconfigured = settings.model_copy(update={"mqtt": MqttSettings()})
        async with running_bridge(unconfigured, sink=pipe, now=clock) as none:
            assert none is None
        await asyncio.sleep(0.2)
        assert ha.last == {}, "nothing is published without [mqtt] host"

        async with running_bridge(settings, sink=pipe, now=clock, refresh_s=0.3) as bridge:
            assert bridge is not None
            await ha.wait_for("magsleep/person/alice/effect")
            await ha.wait_for("magsleep/device/h10-alice/last_seen")
            configs = ha.configs()
            # every discovery payload is one HA takes for its component
            for topic, cfg in configs.items():
                component = topic.split("/")[1]
                ha_schema.check(component, cfg)
                assert topic.split("/")[2] == "magsleep" and topic.endswith("/config")
            uids = [c["unique_id"] for c in configs.values()]
            assert len(uids) == len(set(uids)) == 3 * 15 + 3
            alice = {t.split("/")[3].removeprefix("alice_"): c for t, c in configs.items() if "/alice_" in t}
            assert alice["tst_min"]["device_class"] == "duration" and alice["tst_min"]["unit_of_measurement"] == "min"
            assert alice["se_pct"]["unit_of_measurement"] == "%" and "device_class" not in alice["se_pct"]
            assert alice["rmssd_ms"]["unit_of_measurement"] == "ms"
            assert alice["hr_min5_bpm"]["unit_of_measurement"] == "bpm"
            assert all(alice[k]["state_class"] == "measurement" for k in
                       ("tst_min", "sol_min", "waso_min", "se_pct", "rmssd_ms", "hr_min5_bpm"))
            assert alice["tonight_plan"]["options"] == ["magnesium", "control", "no_plan"]
            assert alice["took_magnesium"]["command_topic"] == "magsleep/person/alice/cmd/took_magnesium"
            assert alice["took_magnesium"]["payload_press"] == "PRESS"
            assert {c["availability_topic"] for c in configs.values()} == {"magsleep/status"}
            dev = configs["homeassistant/binary_sensor/magsleep/h10-alice_connected/config"]
            assert dev["device"]["connections"] == [["bluetooth", ADDR.lower()]]
            assert dev["device"]["via_device"] == alice["tst_min"]["device"]["identifiers"][0]

            # states: last night's numbers, tonight's plan, the dose, the verdict, the wearable
            assert ha.text("magsleep/status") == "online"
            p = "magsleep/person/alice/"
            assert [ha.text(p + k) for k in ("tst_min", "sol_min", "waso_min", "se_pct", "rmssd_ms",
                                              "hr_min5_bpm", "last_night")] == [
                "455.5", "8", "21.25", "93.1", "47", "49", "2026-11-19"]
            attrs = json.loads(ha.text(p + "last_night/attributes") or "")
            assert attrs["baseline_nights"] == 2 and attrs["provisional"] is False
            assert ha.text(p + "tonight_plan") == "magnesium"
            assert ha.text(p + "dose_logged") == "OFF"
            # the verdict: the latest stored one, word for word
            assert ha.text(p + "effect") == VERDICT.headline
            verdict = json.loads(ha.text(p + "effect/attributes") or "")
            assert verdict["next_step"] == VERDICT.next_step and verdict["comparison"] == "mg_vs_control"
            assert verdict["metrics"] == {"sol_min": "Sleep onset was 4.2 min faster with magnesium",
                                          "tst_min": "Total sleep: no clear difference"}
            assert list(verdict["metrics"]) == ["sol_min", "tst_min"]  # in the verdict's order
            assert ha.text("magsleep/person/bob/tonight_plan") == "control"
            assert ha.text("magsleep/person/carol/tonight_plan") == "no_plan"
            assert ha.text("magsleep/person/bob/tst_min") == "None"
            assert ha.text("magsleep/person/bob/effect") == NO_VERDICT
            assert [ha.text(f"magsleep/device/h10-alice/{k}") for k in ("connected", "battery", "last_seen")] == [
                "ON", "87", "2026-11-20T19:00:00+00:00"]
            # a Home Assistant (re)started now gets every config and state at once: all retained
            async with home_assistant(broker.port) as late:
                await late.wait_for("magsleep/device/h10-alice/last_seen")
                await asyncio.sleep(0.2)
                assert set(late.last) == set(ha.last) and all(late.retained.values())
                # HA announcing itself after a restart gets every config again
                n = len([t for t, _ in ha.log if t.endswith("/config")])
                await late.press("homeassistant/status", "online")
                for _ in range(100):
                    if len([t for t, _ in ha.log if t.endswith("/config")]) >= n + len(configs):
                        break
                    await asyncio.sleep(0.05)
                assert len([t for t, _ in ha.log if t.endswith("/config")]) == n + len(configs)

            # a new night computed later shows up on the next refresh
            await pipe.put([night("alice", "2026-11-20", tst_min=388, sol_min=30, waso_min=50, se_pct=80,
                                  rmssd_ms=35, hr_min5_bpm=55)])
            await pipe.flush(timeout=20)
            await ha.wait_for(p + "last_night", "2026-11-20")
            assert ha.text(p + "tst_min") == "388"
        await ha.wait_for("magsleep/status", "offline")  # stopping says goodbye


async def test_the_button_logs_a_dose_and_bad_commands_are_ignored(settings, broker, pipe, clock, caplog,
                                                                    influx_server, influx_db):
    caplog.set_level(logging.INFO, logger="collector.mqtt")
    async with home_assistant(broker.port) as ha:
        # a press someone published with retain: it would repeat at every reconnect
        await add_dose(settings, pipe, clock.at - timedelta(days=2), person="bob")
        await ha.press("magsleep/person/bob/cmd/took_magnesium", retain=True)
        async with running_bridge(settings, sink=pipe, now=clock, refresh_s=30) as bridge:
            assert bridge is not None
            p = "magsleep/person/alice/"
            await ha.wait_for(p + "dose_logged", "OFF")
            await ha.wait_for("magsleep/person/bob/cmd/took_magnesium", "")  # cleared by the bridge
            # no earlier dose: nothing to copy the amount from
            await ha.press(p + "cmd/took_magnesium")
            assert "no earlier magnesium dose" in await ha.wait_for(p + "button_result")
            await add_dose(settings, pipe, clock.at - timedelta(days=2))

            clock.at = datetime(2026, 11, 20, 21, 5, tzinfo=BERLIN)
            await ha.press(p + "cmd/took_magnesium")
            assert await ha.wait_for(p + "button_result", "logged 300 mg glycinate at 21:05")
            await ha.wait_for(p + "dose_logged", "ON")
            # pressed twice (or redelivered): not logged again
            await ha.press(p + "cmd/took_magnesium")
            await ha.wait_for(p + "button_result", "magnesium was already logged tonight at 21:05; not logged "
                              "again (the phone page logs a second dose)")

            # malformed or unauthorised: logged and ignored
            n_before = len(ha.log)
            await ha.press(p + "cmd/took_magnesium", "yes please")
            await ha.press("magsleep/person/mallory/cmd/took_magnesium")
            await ha.press(p + "cmd/format_disk")
            await ha.press(p + "cmd/lights_out")
            await ha.wait_for(p + "button_result", "lights out at 21:05 (night of 2026-11-20)")
            assert not any(t.endswith("button_result") and t != p + "button_result" for t, _ in ha.log[n_before:])
            warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert any("payload must be PRESS" in w for w in warnings)
            assert any("unknown person 'mallory'" in w for w in warnings)
            assert any("not a known command topic" in w for w in warnings)
            assert any("retained" in w for w in warnings)

        async with DoseService(settings, now=clock) as svc:
            doses = await svc.list_doses()
            got = sorted((d.person, d.amount_mg, d.form.value, d.taken_at.astimezone(BERLIN).hour, d.note)
                         for d in doses)
            assert got == [("alice", 300.0, "glycinate", 20, ""), ("alice", 300.0, "glycinate", 21,
                                                                    "Home Assistant button"),
                           ("bob", 300.0, "glycinate", 20, "")]
            lights = await svc.list_lights(person="alice")
            assert [(x.event.value, x.night) for x in lights] == [("lights_out", TONIGHT)]
    await pipe.flush(timeout=20)
    rows = influx_server.rows("SELECT amount_mg FROM supplement_dose", influx_db)
    assert sorted(r["amount_mg"] for r in rows) == [300.0, 300.0, 300.0]


async def test_reminders_on_planned_nights_only(settings, broker, pipe, clock, tmp_path):
    received: list[tuple[str, str, dict[str, str]]] = []

    async def ntfy(request: web.Request) -> web.Response:
        received.append((request.path, await request.text(), dict(request.headers)))
        return web.json_response({"id": "x"})

    app = web.Application()
    app.router.add_post("/{topic}", ntfy)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    token = tmp_path / "ntfy-token"
    token.write_text("tk_secret\n")
    s = settings.model_copy(update={"mqtt": settings.mqtt.model_copy(update={
        "ntfy_url": f"http://127.0.0.1:{port}", "ntfy_topic": "magsleep-test", "ntfy_token_file": token})})
    try:
        async with home_assistant(broker.port) as ha:
            async with running_bridge(s, sink=pipe, now=clock, refresh_s=30, reminder_every_s=0.1):
                await ha.wait_for("magsleep/person/alice/tonight_plan", "magnesium")
                await asyncio.sleep(0.5)  # 20:30: not yet
                assert not [t for t, _ in ha.log if t.endswith("/reminder")] and not received
                clock.at = datetime(2026, 11, 20, 21, 1, tzinfo=BERLIN)
                alice = json.loads(await ha.wait_for("magsleep/person/alice/reminder"))
                bob = json.loads(await ha.wait_for("magsleep/person/bob/reminder"))
                assert (alice["event_type"], alice["night"]) == ("take_magnesium", "2026-11-20")
                assert bob["event_type"] == "skip_magnesium" and "no magnesium tonight" in bob["text"]
                await asyncio.sleep(0.5)  # once per evening, and nothing for carol (no plan)
                reminders = [t for t, _ in ha.log if t.endswith("/reminder")]
                assert sorted(reminders) == ["magsleep/person/alice/reminder", "magsleep/person/bob/reminder"]
                assert not ha.retained["magsleep/person/alice/reminder"]
            await asyncio.sleep(0.1)
        assert sorted((path, h["Title"]) for path, _, h in received) == [
            ("/magsleep-test", "Magnesium tonight"), ("/magsleep-test", "No magnesium tonight")]
        assert all(h["Authorization"] == "Bearer tk_secret" for _, _, h in received)
        assert json.loads((s.storage.state_dir / STATE_FILE).read_text()) == {
            "alice": "2026-11-20", "bob": "2026-11-20"}
    finally:
        await runner.cleanup()


async def test_broker_restart_and_broker_down_at_start(settings, broker, pipe, clock):
    bridge = Bridge(settings, sink=pipe, now=clock, refresh_s=0.2, reconnect_max_s=0.3)
    broker.stop()  # down at start
    stop = asyncio.Event()
    task = asyncio.create_task(bridge.run(stop))
    try:
        await asyncio.sleep(1.0)
        assert not task.done() and bridge.connects == 0
        broker.start()
        async with home_assistant(broker.port) as ha:
            await ha.wait_for("magsleep/person/alice/dose_logged", "OFF")
            assert ha.text("magsleep/status") == "online"
        # the broker goes away mid-evening (forgetting every retained message); a dose is logged meanwhile
        broker.stop()
        await add_dose(settings, pipe, clock.at)
        await asyncio.sleep(0.8)
        assert not task.done()
        broker.start()
        async with home_assistant(broker.port) as ha:
            # the current state, not what was retained before, is what HA sees after the restart
            await ha.wait_for("magsleep/person/alice/dose_logged", "ON")
            await ha.wait_for("magsleep/status", "online")
            assert ha.configs(), "discovery is published again"
        assert bridge.connects == 2
    finally:
        stop.set()
        await asyncio.wait_for(task, STOP_BOUND_S)
    async with InfluxReader.from_settings(settings) as r:
        await pipe.flush(timeout=20)
        rows = await r.query("SELECT amount_mg FROM supplement_dose")
    assert [x["amount_mg"] for x in rows] == [300.0]


async def test_a_stop_never_waits_on_a_broker_that_hangs(settings, broker, pipe, clock, caplog):
    """A broker host that hangs (or a network that drops everything) while the bridge connects, right
    after it connected, or while it serves: the bridge still stops within STOP_BOUND_S."""
    caplog.set_level(logging.INFO, logger="collector.mqtt")

    async def stopped(bridge: Bridge, stop: asyncio.Event, task: asyncio.Task[None]) -> None:
        assert not task.done()
        stop.set()
        await asyncio.wait_for(task, STOP_BOUND_S)

    async with home_assistant(broker.port) as ha:
        # 1. no CONNACK ever comes: the connect is dropped at once (nothing was connected to say goodbye to)
        async with frozen_link(broker.port) as link:
            link.frozen = True
            s = settings.model_copy(update={"mqtt": settings.mqtt.model_copy(update={"port": link.port})})
            bridge, stop = Bridge(s, sink=pipe, now=clock), asyncio.Event()
            task = asyncio.create_task(bridge.run(stop))
            await asyncio.sleep(0.3)
            await stopped(bridge, stop, task)
            assert bridge.connects == 0

        # 2. the CONNACK and nothing more: connected, stuck subscribing; cut off after the grace
        async with frozen_link(broker.port) as link:
            link.freeze_after = 4
            s = settings.model_copy(update={"mqtt": settings.mqtt.model_copy(update={"port": link.port})})
            bridge, stop = Bridge(s, sink=pipe, now=clock), asyncio.Event()
            task = asyncio.create_task(bridge.run(stop))
            for _ in range(200):
                if bridge.connects:
                    break
                await asyncio.sleep(0.05)
            assert bridge.connects == 1 and link.frozen
            await stopped(bridge, stop, task)
            assert any("connection cut off" in r.getMessage() for r in caplog.records)
        await ha.wait_for("magsleep/status", "offline")  # the link closed: the broker sent the will

        # 3. silent while serving: the goodbye cannot get through, the stop does not wait for it
        async with frozen_link(broker.port) as link:
            s = settings.model_copy(update={"mqtt": settings.mqtt.model_copy(update={"port": link.port})})
            bridge, stop = Bridge(s, sink=pipe, now=clock, refresh_s=0.2), asyncio.Event()
            task = asyncio.create_task(bridge.run(stop))
            await ha.wait_for("magsleep/status", "online")
            await ha.wait_for("magsleep/person/alice/dose_logged", "OFF")
            link.frozen = True
            await stopped(bridge, stop, task)
            assert bridge.connects == 1
            assert ha.text("magsleep/status") == "online"  # the goodbye never got through...
        await ha.wait_for("magsleep/status", "offline")  # ...but the will did once the link closed


async def test_password_from_a_file_and_a_wrong_one_never_logged(settings, tmp_path, pipe, clock, caplog):
    passwords = tmp_path / "mosquitto.passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "magsleep", "right-horse-battery"], check=True,
                   capture_output=True)
    secured = Broker(tmp_path, free_port(), passwords=passwords)
    secured.start()
    try:
        secret = tmp_path / "mqtt-password"
        for word, ok in (("wrong-staple-4711", False), ("right-horse-battery", True)):
            secret.write_text(word + "\n")
            s = settings.model_copy(update={"mqtt": settings.mqtt.model_copy(update={
                "port": secured.port, "username": "magsleep", "password_file": secret})})
            caplog.clear()
            caplog.set_level(logging.DEBUG)
            async with running_bridge(s, sink=pipe, now=clock, reconnect_max_s=0.1) as bridge:
                assert bridge is not None
                for _ in range(100):
                    if bridge.connects or len([r for r in caplog.records if "no connection" in r.getMessage()]) > 2:
                        break
                    await asyncio.sleep(0.05)
            assert bool(bridge.connects) == ok
            if not ok:
                assert any("check mqtt.username and the password" in r.getMessage() for r in caplog.records)
            assert not any(word in r.getMessage() for r in caplog.records)
    finally:
        secured.stop()


CHILD = """
import asyncio, sys
from pathlib import Path
from collector.mqtt.bridge import running_bridge
from collector.settings import load_settings

async def main() -> None:
    async with running_bridge(load_settings(Path(sys.argv[1])), sink=None):
        await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_home_assistant_sees_magsleep_offline_when_it_dies(settings, broker, tmp_path):
    """The will: a magsleep killed without a goodbye is shown offline by the broker itself."""
    cfg = tmp_path / "magsleep.toml"
    cfg.write_text(tomli_w.dumps({
        "influx": {"embedded": False, "url": settings.influx.url, "database": settings.influx.database},
        "storage": {"state_dir": str(settings.storage.state_dir)},
        "persons": [{"name": "alice", "timezone": "Europe/Berlin"}],
        "mqtt": {"host": "127.0.0.1", "port": broker.port},
    }))
    async with home_assistant(broker.port) as ha:
        child = await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, str(cfg))
        try:
            await ha.wait_for("magsleep/status", "online", timeout=20)
            await ha.wait_for("magsleep/person/alice/tonight_plan")
            child.send_signal(signal.SIGKILL)
            await child.wait()
            await ha.wait_for("magsleep/status", "offline")
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()


def make_certificates(d: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for 127.0.0.1 (openssl, EC keys: fast)."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=magsleep test CA")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    return d / "ca.pem", d / "server.pem", d / "server.key"


async def test_tls_with_a_private_ca(settings, tmp_path, pipe, clock, caplog):
    certs = tmp_path / "certs"
    certs.mkdir()
    ca, cert, key = make_certificates(certs)
    secured = Broker(tmp_path, free_port(), tls=(cert, key))
    secured.start()
    try:
        for ca_file, ok in ((None, False), (ca, True)):  # the system's CAs do not know this broker
            s = settings.model_copy(update={"mqtt": settings.mqtt.model_copy(update={
                "port": secured.port, "tls": True, "ca_file": ca_file})})
            caplog.clear()
            async with running_bridge(s, sink=pipe, now=clock, reconnect_max_s=0.1) as bridge:
                assert bridge is not None
                for _ in range(100):
                    if bridge.connects or any("no connection" in r.getMessage() for r in caplog.records):
                        break
                    await asyncio.sleep(0.05)
            assert bool(bridge.connects) == ok
            if not ok:
                assert any("CERTIFICATE_VERIFY_FAILED" in r.getMessage() for r in caplog.records)
    finally:
        secured.stop()


async def test_buttons_turned_off_are_removed_and_ignored(settings, broker, pipe, clock, caplog):
    button = "homeassistant/button/magsleep/alice_took_magnesium/config"
    async with home_assistant(broker.port) as ha:
        async with running_bridge(settings, sink=pipe, now=clock):
            await ha.wait_for(button)
        off = settings.model_copy(update={"mqtt": settings.mqtt.model_copy(update={"commands": False})})
        async with running_bridge(off, sink=pipe, now=clock):
            await ha.wait_for(button, "")  # an empty retained config: HA removes the entity
            await ha.press("magsleep/person/alice/cmd/lights_out")
            for _ in range(100):
                if any("commands are off" in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.05)
            assert any("commands are off" in r.getMessage() for r in caplog.records)
        assert "homeassistant/sensor/magsleep/alice_tst_min/config" in ha.configs()
    async with DoseService(settings, now=clock) as svc:
        assert await svc.list_lights(person="alice") == []
