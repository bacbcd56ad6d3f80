"""``magsleep demo``: the whole system on virtual wearables, from a fresh clone, in a few minutes.

Everything lives in one directory (default ``.state/demo``) marked with :data:`MARKER`: its own
settings file (two persons), its own private InfluxDB, the device registry, the outboxes, the
dose journal, the nights state and the HTML reports. The demo

1. starts the private InfluxDB and a private D-Bus with the virtual BlueZ and two virtual
   heart-rate straps, and pairs them through the real pairing path;
2. plays the last nights of each person's simulated study **live**: the straps' feeds are the
   generator's Heart Rate Measurement notifications, and the real daemon (bleak's real BlueZ
   backend, the real storage pipeline) collects them on a :class:`CompressedClock`, so the points
   carry the simulated timestamps (:func:`play_night`); ana also wears a virtual Bangle.js
   (paired before the first night she wears it) whose sleeplog is her generated hypnogram, pulled
   by the daemon's ``bangle`` profile, so her watch-staged nights sit beside computed ones;
3. backfills the earlier nights (``source=sim``) and logs every dose of the randomised magnesium
   schedule through the real dose service (journal + pipeline);
4. computes nights, effects and one HTML report per person.

``--clean`` stops the demo's InfluxDB and removes its directory, and nothing else.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import shutil
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from collector.ble import pairing
from collector.ble.daemon import DaemonResult, run_wearables
from collector.ble.profiles.heart_rate import encode_measurement
from collector.ble.registry import DeviceRegistry
from collector.ble.uuids import HEART_RATE_MEASUREMENT
from collector.clock import Clock, CompressedClock, SystemClock
from collector.errors import ConfigError, MagsleepError
from collector.settings import Settings, load_settings
from collector.sim.bluez import Notification, VirtualBlueZ, heart_rate_strap
from collector.sim.bluez.fake import VirtualDevice
from collector.sim.bluez.gatt import VirtualWearable
from collector.sim.bluez.trackers import BangleConsole, bangle_js, sleeplog_from_hypnogram
from collector.sim.hrm import HrNotification, hr_notifications
from collector.sim.nights import NS, Night, Study, plan_study
from collector.sim.params import SimConfig
from collector.sim.person import PersonProfile
from collector.storage import local_influx

#: A file that marks a directory as the demo's own (``--clean`` refuses directories without it).
MARKER = ".magsleep-demo"
_CREATED = "created parent: "
CONFIG_NAME = "magsleep.toml"
DEFAULT_DIR = Path(".state/demo")
DATABASE = "magsleep"
#: Real seconds the daemon gets to connect before the first notification of a live night.
LEAD_REAL_S = 1.5
#: Real seconds one live night takes when no speed is given.
NIGHT_REAL_S = 30.0


@dataclass(frozen=True, slots=True)
class DemoPerson:
    """One simulated person, their virtual chest strap and (maybe) a Bangle.js-style watch."""

    name: str
    age: int
    sex: str
    timezone: str
    address: str
    strap_name: str
    watch_address: str = ""  # a Bangle.js with the sleeplog app ("": no watch)
    watch_name: str = ""


PERSONS: tuple[DemoPerson, ...] = (
    DemoPerson("ana", 34, "female", "Europe/Madrid", "C0:FF:EE:DE:00:01", "Polar H10 ANA0001",
               "C0:FF:EE:DE:00:11", "Bangle.js a0a1"),
    DemoPerson("ben", 52, "male", "Europe/London", "C0:FF:EE:DE:00:02", "Polar H10 BEN0002"),
)


def watch_nights(live_nights: int) -> range:
    """Which live nights (1-based) the watches are worn: from the second on (the only one if just one),
    so a watch wearer's live nights show device staging beside computed staging from the strap alone."""
    return range(min(2, live_nights), live_nights + 1)


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What ``magsleep demo`` does; the defaults are the README's demo."""

    directory: Path = DEFAULT_DIR
    nights: int = 60  # backfilled nights per person
    live_nights: int = 2  # the last nights, played live through the daemon
    speed: float | None = None  # simulated seconds per real second; None: a night in NIGHT_REAL_S
    seed: int = 0
    keep_running: bool = False
    live_hours: float | None = None  # play only the first hours of each live night (tests)
    workers: int = 2  # processes for the nights computation
    now_ns: int | None = None  # the demo's "now" (None: the system clock); tests set it

    def __post_init__(self) -> None:
        if self.nights < 0 or self.live_nights < 0 or self.nights + self.live_nights < 1:
            raise ConfigError("--nights and --live-nights must be >= 0, together at least 1")
        if self.nights + self.live_nights > 300:
            raise ConfigError("--nights + --live-nights must be at most 300 (doses older than a year "
                              "are refused by the dose journal)")
        if self.speed is not None and not 1 <= self.speed <= 100_000:
            raise ConfigError("--speed must be between 1 and 100000 (simulated seconds per real second)")
        if self.live_hours is not None and self.live_hours <= 0:
            raise ConfigError("--live-hours must be > 0")


# --------------------------------------------------------------------------------------------
# Live playback: generator notifications -> virtual strap -> bleak -> the real daemon
# --------------------------------------------------------------------------------------------


#: What a strap sends while it is switched on but not worn yet: HR 0, contact not detected.
NO_CONTACT = encode_measurement(0, (), contact=False)


def timed_feed(
    notes: Sequence[HrNotification], clock: CompressedClock, *, preroll_from_ns: int | None = None
) -> Callable[[], Iterator[Notification]]:
    """A virtual-BlueZ feed that plays each notification when ``clock`` shows its ``time_ns``.

    The virtual BlueZ plays a feed item ``at_s`` clock seconds after the feed starts; the feed's
    first item is asked for right when it starts, so offsets are taken from the clock then.
    Items already in the past are left out (the strap was not connected yet). With
    ``preroll_from_ns``, the strap sends "no contact" notifications every second from then until
    the night starts (switched on, not worn yet: the collector writes no heart rate for them, and
    its silence watchdog has no reason to reconnect).
    """

    def make() -> Iterator[Notification]:
        now_ns = clock.time_ns()
        if preroll_from_ns is not None and notes:
            t = max(preroll_from_ns, now_ns)
            while t < notes[0].time_ns - NS:
                yield Notification((t - now_ns) / NS, HEART_RATE_MEASUREMENT, NO_CONTACT)
                t += NS
        for n in notes:
            if n.time_ns >= now_ns:
                yield Notification((n.time_ns - now_ns) / NS, n.uuid, n.value)

    return make


@dataclass(frozen=True, slots=True)
class StrapNight:
    """What one virtual strap plays in a live night."""

    person: str
    address: str
    strap_name: str
    notes: tuple[HrNotification, ...]
    link_drops_ns: tuple[int, ...] = ()  # supervision timeouts injected at these simulated times

    @property
    def start_ns(self) -> int:
        return self.notes[0].time_ns if self.notes else 0

    @property
    def end_ns(self) -> int:
        return self.notes[-1].time_ns if self.notes else 0


@dataclass
class StrapResult:
    person: str
    alias: str
    notes: int  # the night's notifications (what the generator made the strap send)
    sent: int  # delivered by the virtual BlueZ to a subscriber (pre-roll included)
    lost: int  # not delivered (link down or not subscribed yet)
    received: int  # notifications the daemon's session handled (pre-roll included)
    reconnects: int


@dataclass
class PlaybackResult:
    start_ns: int
    end_ns: int
    speed: float
    wall_s: float
    straps: list[StrapResult] = field(default_factory=list)
    daemon: DaemonResult | None = None
    watches: list[WatchResult] = field(default_factory=list)


def strap_night(person: DemoPerson, night: Night, *, hours: float | None = None,
                link_drops: bool = True) -> StrapNight:
    """The generator's notifications of ``night`` (the first ``hours`` only, if given).

    With ``link_drops``, the generator's BLE dropouts that last 30 s or more become real link drops
    (supervision timeouts) on the virtual strap, so the daemon has to reconnect."""
    notes = tuple(hr_notifications(night))
    if hours is not None:
        cut = night.lights_out_ns + round(hours * 3600 * NS)
        notes = tuple(n for n in notes if n.time_ns <= cut)
    drops: tuple[int, ...] = ()
    if link_drops and notes:
        drops = tuple(night.lights_out_ns + round(float(a) * NS) for a, b in night.dropouts_s.tolist()
                      if b - a >= 30 and night.lights_out_ns + a * NS < notes[-1].time_ns)
    return StrapNight(person.name, person.address, person.strap_name, notes, drops)


@dataclass(frozen=True, slots=True)
class WatchNight:
    """What one virtual Bangle.js holds in a live night: its sleeplog (device time = simulated time)."""

    person: str
    address: str
    name: str
    entries: tuple[tuple[int, int, int], ...]  # sleeplog [time10, status, consecutive]


def watch_night(person: DemoPerson, night: Night, *, hours: float | None = None) -> WatchNight:
    """The watch's sleeplog for ``night``: its hypnogram seen in 10-minute slots without REM
    (:func:`sleeplog_from_hypnogram`), from lights out (the first ``hours`` only, if given)."""
    if not person.watch_address:
        raise ConfigError(f"{person.name} has no watch in the demo")
    hyp = night.hypnogram if hours is None else night.hypnogram[: round(hours * 120)]
    entries = sleeplog_from_hypnogram(night.lights_out_ns // 1_000_000, hyp.tolist())
    return WatchNight(person.name, person.watch_address, person.watch_name,
                      tuple((int(a), int(b), int(c)) for a, b, c in entries))


def virtual_watch(address: str, name: str, *, clock: Clock,
                  entries: Sequence[Sequence[int]] = ()) -> tuple[VirtualWearable, BangleConsole]:
    """A Bangle.js with the sleeplog app whose clock is ``clock``: (wearable, console).

    It serves a standard Heart Rate Service that stays silent (the strap measures heart rate), so
    the ``bangle`` profile leaves the watch's optical HRM off instead of streaming it over the UART.
    """
    wearable, console = bangle_js(address, name, clock=clock, entries=[list(e) for e in entries], with_hrs=True)
    return dataclasses.replace(wearable, feed=None), console


@dataclass
class WatchResult:
    person: str
    alias: str
    pulls: int  # sleeplog pulls the watch answered (on connect and every ble.history_pull_s)
    reconnects: int


def _aliases(registry: DeviceRegistry) -> dict[str, str]:
    return {d.address.upper(): d.alias for d in registry}


async def play_night(
    settings: Settings,
    registry: DeviceRegistry,
    bz: VirtualBlueZ,
    straps: Sequence[StrapNight],
    *,
    speed: float,
    watches: Sequence[WatchNight] = (),
    lead_real_s: float = LEAD_REAL_S,
    on_progress: Callable[[float], None] | None = None,
) -> PlaybackResult:
    """Play one night on the virtual straps while the real daemon collects it.

    A fresh :class:`CompressedClock` starts ``lead_real_s`` real seconds (at ``speed``) before
    the first notification; the virtual BlueZ plays the feeds on it and the daemon stamps points
    with it, so points carry the night's simulated timestamps. Each strap is put back in range as
    a bonded device (BlueZ keeps the bond from pairing) with the night as its feed. Each watch
    (already paired, profile ``bangle``) comes back in range with the night's sleeplog and the same
    clock as its own, so the watch and the host agree on the time (the skew measured at connect is
    round-trip noise) and the daemon pulls the sleeplog on connect and every ``ble.history_pull_s``
    simulated seconds. Returns once the last notification was played and the daemon stopped and flushed.
    """
    if not straps or not any(s.notes for s in straps):
        raise MagsleepError("nothing to play: no notifications")
    start_ns = min(s.start_ns for s in straps if s.notes) - round(lead_real_s * speed * NS)
    end_ns = max(s.end_ns for s in straps) + 2 * NS
    clock = CompressedClock(start_ns=start_ns, speed=speed)
    bz.clock = clock  # the fake plays feeds and times faults on this clock from now on
    devices: dict[str, VirtualDevice] = {}
    for s in straps:
        if s.address in bz.devices:
            await bz.remove_device(s.address)
        devices[s.address] = bz.add_device(
            heart_rate_strap(s.address, s.strap_name, feed=timed_feed(s.notes, clock, preroll_from_ns=start_ns)),
            paired=True)
    consoles: dict[str, BangleConsole] = {}
    for w in watches:
        if w.address in bz.devices:
            await bz.remove_device(w.address)
        wearable, consoles[w.address] = virtual_watch(w.address, w.name, clock=clock, entries=w.entries)
        bz.add_device(wearable, paired=True)
    stop = asyncio.Event()
    wall0 = time.monotonic()
    daemon = asyncio.create_task(run_wearables(settings, registry, clock=clock, stop_event=stop),
                                 name="demo-daemon")
    drops = sorted((t, s.address) for s in straps for t in s.link_drops_ns)
    try:
        while clock.time_ns() < end_ns:
            if daemon.done():  # the daemon gave up: report why
                daemon.result()
                raise MagsleepError("the collector daemon stopped before the night ended")
            now = clock.time_ns()
            while drops and drops[0][0] <= now:
                _, addr = drops.pop(0)
                await devices[addr].drop_link()
            if on_progress is not None:
                on_progress(min(1.0, max(0.0, (now - start_ns) / (end_ns - start_ns))))
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        result = await daemon
    if on_progress is not None:
        on_progress(1.0)
    aliases = _aliases(registry)
    out = PlaybackResult(start_ns, end_ns, speed, time.monotonic() - wall0, daemon=result)
    for s in straps:
        dev = devices[s.address]
        alias = aliases.get(s.address.upper(), s.address)
        sess = result.sessions.get(alias)
        out.straps.append(StrapResult(
            s.person, alias, len(s.notes), dev.stats.notifications_sent, dev.stats.notifications_dropped,
            sess.notifications if sess else 0, sess.reconnects if sess else 0))
    for w in watches:
        alias = aliases.get(w.address.upper(), w.address)
        sess = result.sessions.get(alias)
        pulls = sum(1 for r in consoles[w.address].requests if "readLog(" in r)
        out.watches.append(WatchResult(w.person, alias, pulls, sess.reconnects if sess else 0))
    return out


# --------------------------------------------------------------------------------------------
# The demo's directory and settings
# --------------------------------------------------------------------------------------------


def config_text(directory: Path, influx_port: int, api_port: int) -> str:
    """The demo's settings file (TOML)."""
    persons = "\n".join(
        f'[[persons]]\nname = "{p.name}"\nage = {p.age}\nsex = "{p.sex}"\ntimezone = "{p.timezone}"\n'
        for p in PERSONS)
    return (
        "# Written by 'magsleep demo' for its own use; 'magsleep demo --clean' removes it.\n"
        'log_level = "WARNING"\n\n'
        f'[influx]\nembedded = true\nurl = "http://127.0.0.1:{influx_port}"\ndatabase = "{DATABASE}"\n\n'
        f'[storage]\nstate_dir = "{directory}"\n\n'
        f'[api]\nhost = "127.0.0.1"\nport = {api_port}\n\n'
        "# silence_timeout_s counts simulated seconds: at the demo's ~1,000x, 900 s is 0.9 s of real time,\n"
        "# so a busy machine's short stall is not taken for a hung strap (link drops still reconnect)\n"
        "# history_pull_s (simulated seconds too): ana's Bangle.js sleeplog is pulled every 10 minutes of the\n"
        "# night (0.6 s of real time), so the watch also talks within the silence timeout\n"
        '[ble]\nscan_timeout_s = 5.0\nconnect_timeout_s = 10.0\nsilence_timeout_s = 900.0\nhistory_pull_s = 600.0\n\n'
        f"{persons}"
    )


#: Ports tried for the demo's InfluxDB: below Linux's ephemeral range (32768-60999), so that the
#: port is still free when the InfluxDB is started again later ('magsleep influx start').
DEMO_INFLUX_PORTS = range(18086, 18186)


def stable_port(candidates: range) -> int:
    """The first free loopback port of ``candidates`` (an ephemeral one if none is free)."""
    for port in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return local_influx.free_port()


def is_demo_dir(directory: Path) -> bool:
    return (directory / MARKER).is_file()


def influx_root(directory: Path) -> Path:
    return directory / "influxdb"


def prepare_dir(directory: Path) -> Settings:
    """A fresh demo directory with its settings file (a previous demo there is removed first)."""
    directory = directory.expanduser().resolve()
    if directory.exists():
        if not is_demo_dir(directory):
            if any(directory.iterdir()):
                raise ConfigError(f"{directory} exists and is not a magsleep demo directory; "
                                  "choose another --dir (the demo only ever writes into its own)")
        else:
            clean(directory)
    top = directory  # the highest directory this call creates (removed by clean when empty)
    while not top.parent.exists():
        top = top.parent
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MARKER).write_text(
        "created by 'magsleep demo'; 'magsleep demo --clean' removes this directory\n"
        + (f"{_CREATED}{top}\n" if created and top != directory else ""), encoding="utf-8")
    cfg = directory / CONFIG_NAME
    influx_port = stable_port(DEMO_INFLUX_PORTS)
    api_port = stable_port(range(influx_port + 1, DEMO_INFLUX_PORTS.stop + 1))
    cfg.write_text(config_text(directory, influx_port, api_port), encoding="utf-8")
    return load_settings(cfg)


def clean(directory: Path) -> bool:
    """Stop the demo's InfluxDB and remove its directory; False when there was no demo there."""
    directory = directory.expanduser().resolve()
    if not directory.exists():
        return False
    if not is_demo_dir(directory):
        raise ConfigError(f"{directory} is not a magsleep demo directory (no {MARKER} file); nothing removed")
    created = [line[len(_CREATED):] for line in (directory / MARKER).read_text(encoding="utf-8").splitlines()
               if line.startswith(_CREATED)]
    local_influx.stop(influx_root(directory))
    shutil.rmtree(directory)
    if created:  # empty parents the demo made (e.g. .state of .state/demo)
        top = Path(created[0])
        parent = directory.parent
        while parent != top.parent and parent.is_relative_to(top):
            try:
                parent.rmdir()
            except OSError:  # not empty: something else lives there now
                break
            parent = parent.parent
    return True


# --------------------------------------------------------------------------------------------
# The demo
# --------------------------------------------------------------------------------------------


class Progress(Protocol):
    """How the demo reports progress (the CLI shows rich progress bars; tests stay quiet)."""

    def step(self, key: str, description: str, total: float) -> None:
        """A new task with ``total`` units of work."""

    def update(self, key: str, completed: float, **fields: Any) -> None:
        """``completed`` units of task ``key`` are done."""

    def note(self, text: str) -> None:
        """A line of information."""


class QuietProgress:
    """Progress that shows nothing but keeps the notes (tests, benchmarks)."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.done: dict[str, float] = {}

    def step(self, key: str, description: str, total: float) -> None:
        self.done[key] = 0.0

    def update(self, key: str, completed: float, **fields: Any) -> None:
        self.done[key] = completed

    def note(self, text: str) -> None:
        self.notes.append(text)


@dataclass
class DemoResult:
    """Where everything is, and what happened."""

    directory: Path
    config: Path
    influx_url: str
    database: str
    persons: list[str]
    live: list[PlaybackResult] = field(default_factory=list)
    backfilled_nights: int = 0
    backfilled_points: int = 0
    doses_logged: int = 0
    nights_computed: int = 0
    night_rows: list[dict[str, Any]] = field(default_factory=list)
    effects: dict[str, list[Any]] = field(default_factory=dict)  # person -> EffectResult list
    reports: dict[str, Path] = field(default_factory=dict)
    influx_running: bool = False
    planted: dict[str, float] = field(default_factory=dict)
    effects_error: str = ""
    truths: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # person -> generator truth per night

    def truth_difference(self, person: str, metric: str) -> float | None:
        """Magnesium minus control mean of ``metric`` in the generator's truth of the demo's nights."""
        rows = self.truths.get(person, [])
        mg = [float(r[metric]) for r in rows if r.get("dose") == "magnesium" and r.get(metric) is not None]
        ctl = [float(r[metric]) for r in rows if r.get("dose") == "control" and r.get(metric) is not None]
        if not mg or not ctl:
            return None
        return sum(mg) / len(mg) - sum(ctl) / len(ctl)


#: Extra minutes after a live night's close before the demo counts it as last night (a run at the
#: very minute would depend on seconds).
READY_SLACK_MIN = 5.0


def demo_now_ns(opts: DemoOptions) -> int:
    return opts.now_ns if opts.now_ns is not None else time.time_ns()


def live_data_end_ns(study: Study, index: int, hours: float | None) -> int:
    """When live night ``index``'s data ends: the person gets up (or the played hours are over)."""
    lights_on = study.lights_on_ns(index)
    if hours is None:
        return lights_on
    return min(lights_on, study.plans[index].lights_out_ns + round(hours * 3600 * NS))


def _plan_studies(settings: Settings, opts: DemoOptions, end: date) -> dict[str, Study]:
    # no generated (motion-based) device stages: backfilled nights are staged from RR intervals, as for a
    # chest strap; ana's watch nights get their stages from the hypnogram instead (watch_night)
    cfg = SimConfig.from_choices(scenario="effect", design="randomised", device_stages=False)
    out: dict[str, Study] = {}
    for p in PERSONS:
        profile, _ = PersonProfile.from_settings(settings, p.name, opts.seed)
        out[p.name] = plan_study(profile, opts.nights + opts.live_nights, seed=opts.seed, end=end, config=cfg)
    return out


def studies(settings: Settings, opts: DemoOptions) -> dict[str, Study]:
    """Each person's simulated study with a randomised magnesium schedule, ending with the latest night that
    is over by the demo's "now" for everybody: its data has ended and the night has closed
    (``[nights] close_after_min`` after it, :func:`collector.nights.compute.closes_at`). At 08:00 that is
    usually last night, whatever the hour, time zone or DST change; before people get up, the night before."""
    now = demo_now_ns(opts)
    close_ns = round((settings.nights.close_after_min + READY_SLACK_MIN) * 60 * NS)
    end = datetime.fromtimestamp(now / NS, UTC).date() + timedelta(days=1)
    for _ in range(4):
        out = _plan_studies(settings, opts, end)
        if all(live_data_end_ns(s, len(s) - 1, opts.live_hours) + close_ns <= now for s in out.values()):
            return out
        end -= timedelta(days=1)
    raise ConfigError("no simulated night has ended by the demo's clock; check the system time")  # pragma: no cover


def auto_speed(straps: Iterable[StrapNight]) -> float:
    span_s = (max(s.end_ns for s in straps) - min(s.start_ns for s in straps)) / NS
    return max(60.0, span_s / NIGHT_REAL_S)


async def _pair_all(settings: Settings, registry: DeviceRegistry, bz: VirtualBlueZ, progress: Progress) -> None:
    progress.step("pair", "pairing the virtual straps", len(PERSONS))
    for i, p in enumerate(PERSONS):
        if p.address not in bz.devices:
            bz.add_device(heart_rate_strap(p.address, p.strap_name))
        await pairing.pair(settings, registry, p.address, person=p.name, alias=f"h10-{p.name}")
        progress.update("pair", i + 1)


async def _pair_watch(settings: Settings, registry: DeviceRegistry, bz: VirtualBlueZ, p: DemoPerson,
                      progress: Progress) -> None:
    """Pair ``p``'s watch through the real pairing path (the registry gets profile ``bangle``)."""
    if p.watch_address.upper() in _aliases(registry):
        return
    bz.clock = SystemClock()  # pairing happens between nights, in real time
    if p.watch_address in bz.devices:
        await bz.remove_device(p.watch_address)
    bz.add_device(virtual_watch(p.watch_address, p.watch_name, clock=bz.clock)[0])
    dev = await pairing.pair(settings, registry, p.watch_address, person=p.name, alias=f"bangle-{p.name}")
    progress.note(f"paired {p.name}'s {p.watch_name} as {dev.alias} (profiles: {', '.join(dev.profiles)})")


async def _live(settings: Settings, opts: DemoOptions, study_of: dict[str, Study], progress: Progress,
                result: DemoResult) -> None:
    from collector.sim.bluez import private_system_bus

    registry = DeviceRegistry.for_settings(settings)
    with private_system_bus():  # its own temporary directory: unix socket paths must stay short
        async with VirtualBlueZ.start() as bz:
            await _pair_all(settings, registry, bz, progress)
            n = len(next(iter(study_of.values())))
            worn = watch_nights(opts.live_nights)
            for k, idx in enumerate(range(n - opts.live_nights, n), start=1):
                nights = {p.name: study_of[p.name].night(idx) for p in PERSONS}
                for name, night in nights.items():
                    result.truths.setdefault(name, []).append(night.truth.as_dict(hypnogram=False))
                straps = [strap_night(p, nights[p.name], hours=opts.live_hours) for p in PERSONS]
                watches: list[WatchNight] = []
                if k in worn:
                    for p in PERSONS:
                        if p.watch_address:
                            await _pair_watch(settings, registry, bz, p, progress)
                            watches.append(watch_night(p, nights[p.name], hours=opts.live_hours))
                speed = opts.speed or auto_speed(straps)
                evening = study_of[PERSONS[0].name].plans[idx].night.isoformat()
                key = f"live{k}"
                progress.step(key, f"live night {k}/{opts.live_nights} ({evening}) at {speed:,.0f}x", 1.0)
                res = await play_night(settings, registry, bz, straps, speed=speed, watches=watches,
                                       on_progress=functools.partial(progress.update, key))
                result.live.append(res)
                got = sum(s.received for s in res.straps)
                lost = sum(s.lost for s in res.straps)
                progress.note(f"live night {evening}: {got:,} notifications collected, {lost:,} lost while a "
                              f"link was down, {sum(s.reconnects for s in res.straps)} reconnects, "
                              f"{res.wall_s:.1f} s")
                for w in res.watches:
                    progress.note(f"  {w.alias} ({w.person}): {w.pulls} sleeplog pulls")


async def _backfill_and_doses(settings: Settings, opts: DemoOptions, study_of: dict[str, Study],
                              progress: Progress, result: DemoResult) -> None:
    from collector.doses.entities import DoseCreate, Source
    from collector.doses.forms import parse_form
    from collector.doses.service import DoseService
    from collector.sim.backfill import backfill, default_truth_path, dose_id
    from collector.storage.pipeline import Pipeline

    for name, study in study_of.items():
        if opts.nights == 0:
            break
        key = f"backfill-{name}"
        progress.step(key, f"backfill {name}", opts.nights)
        # the live nights are the person's device data; the backfill never overlaps them

        def report(done: int, _total: int, lines: int, key: str = key) -> None:
            progress.update(key, done, points=lines)

        bf = await backfill(settings, study, indices=range(opts.nights), doses=False, allow_mixed=True,
                            truth_path=default_truth_path(settings, name), progress=report)
        result.truths.setdefault(name, []).extend(bf.truths)
        result.backfilled_nights += bf.nights
        result.backfilled_points += bf.lines
    # every dose of the schedule (backfilled and live nights) through the real dose path
    total = sum(sum(p.dose for p in s.plans) for s in study_of.values())
    progress.step("doses", "logging doses (dose journal)", total)
    async with Pipeline.from_settings(settings, name="demo") as pipe:
        now = datetime.fromtimestamp(demo_now_ns(opts) / NS, UTC)
        async with DoseService(settings, sink=pipe, now=lambda: now) as svc:
            for name, study in study_of.items():
                d = study.config.dosing
                for plan in study.plans:
                    t = study.dose_time_ns(plan)
                    if t is None:
                        continue
                    await svc.add(DoseCreate(
                        id=dose_id(study, plan.index), person=name, supplement=d.supplement,
                        form=parse_form(d.form), amount_mg=d.amount_mg, elemental_mg=d.elemental_mg,
                        taken_at=datetime.fromtimestamp(t / NS, UTC), note="magsleep demo (simulated)",
                        source=Source.import_))
                    result.doses_logged += 1
                    progress.update("doses", result.doses_logged)
        await pipe.flush(timeout=60)


async def _analyse(settings: Settings, opts: DemoOptions, progress: Progress, result: DemoResult) -> None:
    from collector.effects.io import run_effects
    from collector.nights.listing import list_nights
    from collector.nights.run import compute_all
    from collector.report import write_report

    names = [p.name for p in PERSONS]
    progress.step("nights", "computing nights", len(names))
    for i, name in enumerate(names):
        for s in await compute_all(settings, person=name, workers=opts.workers, now_ns=demo_now_ns(opts)):
            result.nights_computed += s.computed
        progress.update("nights", i + 1)
    result.night_rows = [dict(r) for r in await list_nights(settings)]
    progress.step("effects", "estimating effects", 1)
    try:
        runs = await run_effects(settings, names, source="all", now_ns=demo_now_ns(opts))
    except ArithmeticError as exc:  # a degenerate metric (e.g. constant) must not hide the rest
        result.effects_error = f"the effects analysis failed: {exc!r}"
        progress.note(result.effects_error)
    else:
        result.effects = {r.person: list(r.results) for r in runs}
    progress.update("effects", 1)
    progress.step("report", "writing the reports", len(names))
    for i, name in enumerate(names):
        result.reports[name] = await write_report(
            settings, settings.storage.state_dir / f"report-{name}.html", person=name,
            now=datetime.fromtimestamp(demo_now_ns(opts) / NS, UTC))
        progress.update("report", i + 1)


async def run_demo_async(opts: DemoOptions, progress: Progress | None = None) -> DemoResult:
    """The demo, start to end (see the module docstring)."""
    progress = progress or QuietProgress()
    settings = prepare_dir(opts.directory)
    directory = settings.storage.state_dir
    cfg = SimConfig()
    result = DemoResult(directory, directory / CONFIG_NAME, "", DATABASE, [p.name for p in PERSONS],
                        planted={"sol_min": cfg.effects.sol_min, "tst_min": cfg.effects.tst_min})
    progress.step("influx", "starting the local InfluxDB", 1)
    port = int(settings.influx.url.rsplit(":", 1)[1])
    inst = await asyncio.to_thread(local_influx.start, influx_root(directory), port)
    result.influx_url, result.influx_running = inst.url, True
    progress.update("influx", 1)
    try:
        study_of = studies(settings, opts)
        if opts.live_nights:
            await _live(settings, opts, study_of, progress, result)
        await _backfill_and_doses(settings, opts, study_of, progress, result)
        await _analyse(settings, opts, progress, result)
    finally:
        if not opts.keep_running:
            await asyncio.to_thread(local_influx.stop, influx_root(directory))
            result.influx_running = False
    return result


def run_demo(opts: DemoOptions, progress: Progress | None = None) -> DemoResult:
    return asyncio.run(run_demo_async(opts, progress))


def dashboards_dir() -> Path | None:
    """The generated dashboards' JSON (``dashboards/`` of the source tree), if present."""
    d = Path(__file__).resolve().parents[2] / "dashboards"  # collector/app/demo.py -> the tree's root
    return d if d.is_dir() else None


__all__ = [
    "MARKER",
    "PERSONS",
    "DemoOptions",
    "DemoPerson",
    "DemoResult",
    "PlaybackResult",
    "Progress",
    "QuietProgress",
    "StrapNight",
    "WatchNight",
    "WatchResult",
    "clean",
    "play_night",
    "run_demo",
    "run_demo_async",
    "strap_night",
    "timed_feed",
    "virtual_watch",
    "watch_night",
    "watch_nights",
]
