"""The MQTT bridge: publishes discovery and states, takes button presses, sends reminders.

:class:`Bridge` runs beside the collector (``magsleep run`` starts it when ``[mqtt] host`` is
set) and never stops it: a broker that is down at start or goes away is retried with backoff
while collection goes on; doses pressed in Home Assistant are logged through its own
:class:`DoseService` on the daemon's pipeline, so the dose journal keeps them whatever happens to
the broker. On every (re)connect the current state replaces what the broker retained; states are
refreshed every ``refresh_s`` and right after a button. Reminders run on their own loop, so an
ntfy reminder still goes out while the broker is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt

from collector.ble.registry import DeviceRegistry, DeviceStatus, RegisteredDevice, load_status, status_path
from collector.clock import Clock
from collector.doses.entities import Assignment, Dose, DoseCreate, LightsEvent, MorningCard, PlanToday, Source
from collector.doses.service import DoseService, PointSink
from collector.doses.today import morning_card, night_rows, plan_doses, plan_today, read_night_rows
from collector.effects.store import PlanStore, StoredPlan
from collector.errors import ConfigError, MagsleepError
from collector.mqtt import discovery as d
from collector.mqtt.reminders import STATE_FILE, Reminder, SentLog, due, post_ntfy
from collector.mqtt.state import Verdict, device_states, magnesium_tonight, person_states, stored_verdict
from collector.settings import Settings
from collector.storage.pipeline import backoff_delay
from collector.storage.reader import InfluxReader, Row, quote_str
from collector.storage.schema import EFFECT, EFFECT_VERDICT

log = logging.getLogger(__name__)

#: Longest wait between connection attempts to the broker.
RECONNECT_MAX_S = 60.0
#: Seconds the goodbye (availability "offline") may take when magsleep stops.
GOODBYE_S = 1.0
#: Seconds a connected bridge has, once told to stop, to say goodbye and disconnect before its
#: connection is cut off (a connection not yet made is left at once): a broker that hangs never
#: holds up the stop for an aiomqtt operation timeout.
STOP_GRACE_S = GOODBYE_S + 1.0
#: Seconds a cancelled connection or bridge may take to unwind before it is left behind.
CANCEL_S = 1.0
#: Effects are re-read every this many refreshes (they change once a day at most).
EFFECT_EVERY = 10


def utcnow() -> datetime:
    return datetime.now(UTC)


async def wait_or_stop(tasks: Iterable[asyncio.Task[Any]], stop: asyncio.Event) -> None:
    """Wait until one of the tasks is done or ``stop`` is set."""
    stopper = asyncio.create_task(stop.wait(), name="mqtt-stop")
    try:
        await asyncio.wait({*tasks, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()


async def cancel_and_wait(tasks: Sequence[asyncio.Task[Any]], within: float) -> bool:
    """Cancel the tasks and wait at most ``within`` seconds for them to end; True if they all did.

    The cancellation is repeated while waiting: on Python 3.11 ``asyncio.wait_for`` (which aiomqtt
    uses for every acknowledgement) swallows a cancellation that arrives as its future completes
    (gh-86296), and the task then goes on as if never cancelled."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    pending = [t for t in tasks if not t.done()]
    while pending:
        left = deadline - loop.time()
        if left <= 0:
            return False
        for t in pending:
            t.cancel()
        _, still = await asyncio.wait(pending, timeout=min(left, 0.1))
        pending = list(still)
    for t in tasks:  # retrieved, so that asyncio does not warn about them
        if not t.cancelled():
            t.exception()
    return True


@dataclass(frozen=True, slots=True)
class PersonView:
    """What one refresh knows about a person (None: could not be read this time)."""

    person: str
    plan: PlanToday | None
    doses_tonight: list[Dose] | None
    last_dose: Dose | None


class Bridge:
    """Use :func:`running_bridge`, or ``await Bridge(...).run(stop)``."""

    def __init__(self, settings: Settings, *, sink: PointSink | None, now: Callable[[], datetime] = utcnow,
                 refresh_s: float | None = None, reconnect_max_s: float = RECONNECT_MAX_S,
                 reminder_every_s: float | None = None, status_file: Path | None = None,
                 devices: Sequence[RegisteredDevice] | None = None) -> None:
        """``now``: the wall clock (injected in tests); ``status_file`` and ``devices``: the daemon's
        wearable status and registry (default: those of the state dir)."""
        self.settings = settings
        self.status_file = status_file or status_path(settings)
        self.devices = list(devices) if devices is not None else None
        self.mqtt = settings.mqtt
        self.topics = d.Topics(self.mqtt.topic_prefix, self.mqtt.discovery_prefix)
        self.sink = sink
        self.now = now
        self.refresh_s = refresh_s if refresh_s is not None else self.mqtt.refresh_s
        self.reminder_every_s = reminder_every_s if reminder_every_s is not None else min(60.0, self.refresh_s)
        self.reconnect_max_s = reconnect_max_s
        self.connects = 0  # successful connections (for tests and logs)
        self._client: aiomqtt.Client | None = None
        self._published: dict[str, str] = {}  # what this connection published, retained
        self._verdicts: dict[str, Verdict] = {}
        self._refreshes = 0
        self._refresh_lock = asyncio.Lock()
        self._left: set[asyncio.Task[Any]] = set()  # connect attempts a stop left to end by themselves

    # -- the loops ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, publish and listen until ``stop`` is set, reconnecting as needed. Never raises."""
        try:
            password = self.mqtt.password_value()
            tls = self._tls()
        except (ConfigError, OSError, ssl.SSLError) as exc:
            log.error("not connecting to MQTT: %s", exc)
            return
        try:
            async with DoseService(self.settings, sink=self.sink, now=self.now) as svc:
                reminders = (asyncio.create_task(self._reminder_loop(svc, stop), name="mqtt-reminders")
                             if self.mqtt.reminders else None)
                try:
                    await self._connection_loop(svc, stop, password, tls)
                finally:
                    if reminders is not None:
                        await cancel_and_wait([reminders], CANCEL_S)
        except Exception:  # the collection goes on without MQTT
            log.exception("MQTT: the bridge stopped")

    def _tls(self) -> ssl.SSLContext | None:
        if not self.mqtt.tls:
            return None
        ca = self.mqtt.ca_file.expanduser() if self.mqtt.ca_file else None
        return ssl.create_default_context(cafile=str(ca) if ca else None)

    async def _connection_loop(self, svc: DoseService, stop: asyncio.Event, password: str | None,
                               tls: ssl.SSLContext | None) -> None:
        failures = 0
        while not stop.is_set():
            client = aiomqtt.Client(
                self.mqtt.host, self.mqtt.port, username=self.mqtt.username or None, password=password,
                identifier=f"{self.topics.node_id}-{uuid.uuid4().hex[:8]}", tls_context=tls, timeout=10,
                keepalive=30, will=aiomqtt.Will(self.topics.availability, d.OFFLINE, qos=1, retain=True))
            # The connection runs as its own task, so that a stop never waits on it for longer than
            # STOP_GRACE_S, whatever aiomqtt is waiting for (a CONNACK, an acknowledgement, a disconnect).
            session = asyncio.create_task(self._session(client, svc, stop, failures), name="mqtt-connection")
            try:
                await self._until_done_or_stopped(session, stop)
            finally:
                if not session.done():  # cancelled from outside: never leave a connection behind
                    session.cancel()
                    session.add_done_callback(lambda t: t.cancelled() or t.exception())
            if session.done() and not session.cancelled():
                failures = session.result()
            if stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff_delay(max(failures, 1), self.reconnect_max_s))

    async def _until_done_or_stopped(self, session: asyncio.Task[int], stop: asyncio.Event) -> None:
        """Wait for the connection to end; once ``stop`` is set, give it STOP_GRACE_S to say goodbye
        and disconnect, then cancel it."""
        await wait_or_stop([session], stop)
        if session.done():
            return
        await asyncio.wait({session}, timeout=STOP_GRACE_S)
        if session.done():
            return
        log.info("MQTT: the broker did not answer the goodbye within %.0f s; connection cut off", STOP_GRACE_S)
        if not await cancel_and_wait([session], CANCEL_S):
            log.warning("MQTT: the connection did not end after it was cancelled; left behind")

    async def _session(self, client: aiomqtt.Client, svc: DoseService, stop: asyncio.Event, failures: int) -> int:
        """One connection: connect, then serve until it drops or ``stop`` is set. Returns the number of
        failed attempts in a row (0 after a connection was made)."""
        where = f"{self.mqtt.host}:{self.mqtt.port}"
        try:
            async with contextlib.AsyncExitStack() as connected:
                if not await self._connect(client, stop):
                    return failures  # stopped while connecting
                connected.push_async_exit(client)  # disconnects when done
                self._client = client
                self.connects += 1
                log.info("MQTT: connected to %s%s", where, f" after {failures} failed attempt(s)"
                         if failures else "")
                failures = 0
                await self._serve(client, svc, stop)
        except aiomqtt.MqttError as exc:
            failures += 1
            level = logging.WARNING if failures == 1 else logging.DEBUG
            hint = ("; check mqtt.username and the password" if "authori" in str(exc).lower()
                    or "password" in str(exc).lower() else "")
            log.log(level, "MQTT: no connection to the broker at %s (%s%s); collection goes on, retrying "
                    "with backoff", where, exc, hint)
        except Exception:  # a bug here must not end the bridge or the daemon
            failures += 1
            log.exception("MQTT: unexpected error; reconnecting")
        finally:
            self._client = None
            self._published.clear()
        return failures

    async def _connect(self, client: aiomqtt.Client, stop: asyncio.Event) -> bool:
        """Connect (raises MqttError); False if ``stop`` came first. aiomqtt is not cancelled while it
        waits for the CONNACK (that breaks the client's state): the attempt is left to end by itself,
        and a connection it still makes is closed at once."""
        connecting = asyncio.create_task(client.__aenter__(), name="mqtt-connect")
        try:
            await wait_or_stop([connecting], stop)
        finally:
            if not connecting.done():
                self._left.add(connecting)
                connecting.add_done_callback(lambda t: self._close_left(t, client))
        if connecting.done():
            connecting.result()
            return True
        return False

    def _close_left(self, connecting: asyncio.Task[aiomqtt.Client], client: aiomqtt.Client) -> None:
        """A connect attempt left behind by a stop has ended: disconnect if it connected after all."""
        self._left.discard(connecting)
        if connecting.cancelled() or connecting.exception() is not None:
            return
        closing = asyncio.create_task(client.__aexit__(None, None, None), name="mqtt-disconnect-left")
        self._left.add(closing)
        closing.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._left.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a failed disconnect of a connection nobody uses is no news

    async def _goodbye(self, client: aiomqtt.Client) -> None:
        """Availability "offline" (retained), waiting at most GOODBYE_S for the broker."""
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            await asyncio.wait_for(client.publish(self.topics.availability, d.OFFLINE, qos=1, retain=True),
                                   GOODBYE_S)

    async def _serve(self, client: aiomqtt.Client, svc: DoseService, stop: asyncio.Event) -> None:
        if stop.is_set():  # connected while stopping: only the goodbye
            await self._goodbye(client)
            return
        await client.subscribe(self.topics.command_filter, qos=1)
        await client.subscribe(self.topics.ha_status, qos=1)
        await client.publish(self.topics.availability, d.ONLINE, qos=1, retain=True)
        # Publishing runs beside the listener: a publish does not notice a lost connection (it
        # waits for its acknowledgement until the timeout), the listener does at once.
        listener = asyncio.create_task(self._listen(client, svc), name="mqtt-listen")
        ticker = asyncio.create_task(self._tick(client, svc, stop), name="mqtt-refresh")
        try:
            await wait_or_stop([listener, ticker], stop)
            if not stop.is_set():
                for task in (listener, ticker):
                    if task.done():
                        task.result()  # MqttError: the connection is gone
                return
            await cancel_and_wait([listener, ticker], CANCEL_S)  # stopping: no more states, then the goodbye
            await self._goodbye(client)
        finally:
            await cancel_and_wait([listener, ticker], CANCEL_S)

    async def _tick(self, client: aiomqtt.Client, svc: DoseService, stop: asyncio.Event) -> None:
        await self.refresh(client, svc, everything=True)
        while not stop.is_set():
            await asyncio.sleep(self.refresh_s)
            await self.refresh(client, svc)

    async def _listen(self, client: aiomqtt.Client, svc: DoseService) -> None:
        async for msg in client.messages:
            topic = str(msg.topic)
            payload = msg.payload if isinstance(msg.payload, bytes | bytearray) else str(msg.payload).encode()
            if topic == self.topics.ha_status:
                if bytes(payload) == d.ONLINE.encode():  # Home Assistant restarted: send everything again
                    log.info("MQTT: Home Assistant is online; publishing discovery and states again")
                    self._published.clear()
                    await self.refresh(client, svc, everything=True)
                continue
            await self.command(client, svc, topic, bytes(payload), retained=bool(msg.retain))

    # -- states ---------------------------------------------------------------------------------

    async def refresh(self, client: aiomqtt.Client, svc: DoseService, *, everything: bool = False) -> None:
        """Publish (retained) every discovery config and state that changed since this connection sent it."""
        async with self._refresh_lock:
            messages = await self.messages(svc, effects=everything or self._refreshes % EFFECT_EVERY == 0)
            self._refreshes += 1
            for topic, payload in messages.items():
                if self._published.get(topic) == payload:
                    continue
                await client.publish(topic, payload, qos=1, retain=True)
                self._published[topic] = payload

    async def messages(self, svc: DoseService, *, effects: bool = True) -> dict[str, str]:
        """Topic -> payload of every discovery config and state (what can be read now)."""
        persons = svc.rules.persons()
        out: dict[str, str] = {}
        devices = self.devices
        if devices is None:
            try:
                devices = list(DeviceRegistry.for_settings(self.settings))
            except MagsleepError as exc:
                log.warning("MQTT: no wearables published: %s", exc)
                devices = []
        if self.mqtt.discovery:
            for p in persons:
                offered = d.person_configs(self.topics, p, commands=self.mqtt.commands)
                # buttons turned off: an empty retained config removes them from HA
                out.update({t: "" for t in d.person_configs(self.topics, p, commands=True) if t not in offered})
                out.update({t: json.dumps(c) for t, c in offered.items()})
            for dev in devices:
                out.update({t: json.dumps(c) for t, c in d.device_configs(self.topics, dev).items()})
        views = {p: await self.person_view(svc, p) for p in persons}
        cards = await self._cards(svc, persons)
        if effects:
            self._verdicts.update(await self._effects(persons))
        for p in persons:
            v = views[p]
            card, row = cards.get(p, (None, None))
            out.update(person_states(self.topics, p, plan=v.plan, doses_tonight=v.doses_tonight, card=card,
                                     row=row, verdict=self._verdicts.get(p)))
        statuses: dict[str, DeviceStatus] = await asyncio.to_thread(load_status, self.status_file)
        for dev in devices:
            out.update(device_states(self.topics, dev, statuses.get(dev.address)))
        return out

    async def person_view(self, svc: DoseService, person: str) -> PersonView:
        now, tz = self.now(), svc.rules.tz(person)
        try:
            doses = await plan_doses(svc, person, now)
        except MagsleepError as exc:
            log.warning("MQTT: cannot read %s's doses: %s", person, exc)
            return PersonView(person, None, None, None)
        plan: StoredPlan | None = None
        plan_ok = True
        try:
            plan = await asyncio.to_thread(PlanStore.from_settings(self.settings).active, person)
        except MagsleepError as exc:
            log.warning("MQTT: cannot read %s's trial plan: %s", person, exc)
            plan_ok = False
        mg = [x for x in doses if x.supplement == "magnesium"]
        return PersonView(person, plan_today(person, now, tz, plan, doses) if plan_ok else None,
                          magnesium_tonight(doses, now, tz), mg[0] if mg else None)

    async def _cards(self, svc: DoseService, persons: list[str]) -> dict[str, tuple[MorningCard, Row | None]]:
        """Each person's morning card and the night row it shows (``doses.today``'s choice)."""
        out: dict[str, tuple[MorningCard, Row | None]] = {}
        try:
            async with InfluxReader.from_settings(self.settings) as reader:
                for p in persons:
                    today = self.now().astimezone(svc.rules.tz(p)).date()
                    rows = await read_night_rows(reader, p, today)
                    card = morning_card(p, rows)
                    out[p] = (card, night_rows(rows).get(card.night) if card.night is not None else None)
        except MagsleepError as exc:  # InfluxDB away: the retained values stay as they were
            log.debug("MQTT: cannot read nights: %s", exc)
        return out

    async def _effects(self, persons: list[str]) -> dict[str, Verdict]:
        """Each person's latest stored verdict (``magsleep effects`` writes it; the same words everywhere)."""
        out: dict[str, Verdict] = {}
        try:
            async with InfluxReader.from_settings(self.settings) as reader:
                for p in persons:
                    rows = await reader.query(f'SELECT * FROM {EFFECT_VERDICT.quoted} WHERE "person" = '
                                              f"{quote_str(p)} ORDER BY time DESC LIMIT 1")
                    verdict = rows[0] if rows else None
                    effects: list[Row] = []
                    if verdict is not None:
                        effects = await reader.query(
                            f'SELECT "metric", "summary" FROM {EFFECT.quoted} WHERE "person" = {quote_str(p)} AND '
                            f'"comparison" = {quote_str(str(verdict.get("comparison") or ""))} AND '
                            f'time = {int(verdict["time"])}')
                    out[p] = stored_verdict(verdict, effects)
        except MagsleepError as exc:  # InfluxDB away: the retained verdict stays as it was
            log.debug("MQTT: cannot read effects: %s", exc)
        return out

    # -- buttons --------------------------------------------------------------------------------

    async def command(self, client: aiomqtt.Client | None, svc: DoseService, topic: str, payload: bytes, *,
                      retained: bool = False) -> str | None:
        """Carry out a button press; returns what was done, or None if the message was ignored (logged)."""
        parsed = self.topics.parse_command(topic)
        shown = payload[:40].decode("utf-8", "replace")
        if not payload:  # a retained message being cleared
            return None
        problem = None
        if parsed is None or parsed[1] not in d.COMMANDS:
            problem = "not a known command topic"
        elif retained:
            problem = "retained (a retained command would repeat at every reconnect; publish it without retain)"
        elif not self.mqtt.commands:
            problem = "commands are off (mqtt.commands = false)"
        elif parsed[0] not in svc.rules.persons():
            problem = f"unknown person {parsed[0]!r}"
        elif payload != d.PRESS.encode():
            problem = f"payload must be {d.PRESS}"
        if problem is not None or parsed is None:
            log.warning("MQTT: ignored a message on %s (payload %r): %s", topic, shown, problem)
            if retained and client is not None:  # clear it, or every reconnect brings it back
                with contextlib.suppress(aiomqtt.MqttError):
                    await client.publish(topic, b"", qos=1, retain=True)
            return None
        person, cmd = parsed
        try:
            result = await self._carry_out(svc, person, cmd)
        except MagsleepError as exc:
            result = f"not done: {exc}"
        log.info("MQTT: %s for %s: %s", cmd, person, result)
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await client.publish(self.topics.person(person, "button_result"), result[: d.HA_STATE_MAX],
                                     qos=1, retain=True)
                await self.refresh(client, svc)
        return result

    async def _carry_out(self, svc: DoseService, person: str, cmd: str) -> str:
        tz = svc.rules.tz(person)
        if cmd in ("lights_out", "lights_on"):
            event = LightsEvent(cmd)
            lights, _ = await svc.set_lights(person, event, None, source=Source.api)
            return (f"{cmd.replace('_', ' ')} at {lights.at.astimezone(tz):%H:%M} "
                    f"(night of {lights.night.isoformat()})")
        view = await self.person_view(svc, person)
        if view.doses_tonight:
            first = view.doses_tonight[-1]
            return (f"magnesium was already logged tonight at {first.taken_at.astimezone(tz):%H:%M}; "
                    "not logged again (the phone page logs a second dose)")
        last = view.last_dose
        if last is None:
            return ("no earlier magnesium dose to copy the amount from: log the first one on the phone page "
                    "or with 'magsleep dose add'")
        create = DoseCreate(person=person, form=last.form, amount_mg=last.amount_mg,
                            elemental_mg=None if last.elemental_computed else last.elemental_mg,
                            note="Home Assistant button")
        res = await svc.add(create, default_source=Source.api)
        dose = res.dose
        text = f"logged {dose.amount_mg:g} mg {dose.form.value} at {dose.taken_at.astimezone(tz):%H:%M}"
        if view.plan is not None and view.plan.tonight is not None \
                and view.plan.tonight.planned is Assignment.control:
            text += "; note: tonight is a control night of the plan"
        if res.warnings:
            text += "; " + " ".join(res.warnings)
        return text

    # -- reminders ------------------------------------------------------------------------------

    async def _reminder_loop(self, svc: DoseService, stop: asyncio.Event) -> None:
        sent = SentLog(self.settings.storage.path(STATE_FILE))
        async with aiohttp.ClientSession() as http:
            while not stop.is_set():
                try:
                    for r in await self.due_reminders(svc, sent):
                        if await self.send_reminder(r, http):
                            sent.mark(r.person, r.night)
                except Exception:  # a bug here must not end the daemon
                    log.exception("MQTT: reminder check failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.reminder_every_s)

    async def due_reminders(self, svc: DoseService, sent: SentLog) -> list[Reminder]:
        out = []
        for p in svc.rules.persons():
            v = await self.person_view(svc, p)
            if v.plan is None or v.doses_tonight is None:
                continue
            r = due(p, self.now(), svc.rules.tz(p), v.plan, bool(v.doses_tonight), self.mqtt.reminder_time,
                    sent.get(p))
            if r is not None:
                out.append(r)
        return out

    async def send_reminder(self, r: Reminder, http: aiohttp.ClientSession) -> bool:
        """Publish the reminder (not retained) and post it to ntfy; True if either got it."""
        delivered = False
        client = self._client
        if client is not None:
            try:
                await client.publish(self.topics.person(r.person, "reminder"), r.payload(), qos=1, retain=False)
                delivered = True
            except aiomqtt.MqttError as exc:
                log.warning("MQTT: reminder for %s not published: %s", r.person, exc)
        if self.mqtt.ntfy_url:
            try:
                await post_ntfy(http, self.mqtt, r)
                delivered = True
            except MagsleepError as exc:
                log.warning("reminder for %s not sent to ntfy: %s", r.person, exc)
        if delivered:
            log.info("reminder sent to %s: %s", r.person, r.kind)
        return delivered


@contextlib.asynccontextmanager
async def running_bridge(settings: Settings, *, sink: PointSink | None, now: Callable[[], datetime] = utcnow,
                         clock: Clock | None = None, **kwargs: Any) -> AsyncIterator[Bridge | None]:
    """Run the bridge in the background while the block runs (None, and nothing published, without
    ``[mqtt] host``); on exit it says goodbye (availability "offline") and stops.

    ``clock``: the daemon's clock (simulated time in the demo) instead of ``now``."""
    if not settings.mqtt.configured:
        yield None
        return
    if clock is not None:
        wall = clock

        def now() -> datetime:
            return datetime.fromtimestamp(wall.time_ns() / 1e9, UTC)

    bridge = Bridge(settings, sink=sink, now=now, **kwargs)
    stop = asyncio.Event()
    task = asyncio.create_task(bridge.run(stop), name="mqtt-bridge")
    try:
        yield bridge
    finally:
        stop.set()
        # asyncio.wait, not wait_for: a timeout must not turn into an unbounded wait for the
        # cancelled task. The bridge ends by itself within STOP_GRACE_S + CANCEL_S.
        await asyncio.wait({task}, timeout=STOP_GRACE_S + CANCEL_S + 1.0)
        if not task.done():
            log.warning("MQTT: the bridge did not stop in time; cancelled")
            await cancel_and_wait([task], CANCEL_S)
        if task.done() and not task.cancelled() and task.exception() is not None:  # never break the shutdown
            log.error("MQTT: the bridge failed while stopping", exc_info=task.exception())
