"""Ready-made virtual wearables and notification feeds."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator

from collector.ble.profiles.heart_rate import encode_measurement
from collector.ble.uuids import (
    BATTERY_LEVEL,
    BATTERY_SERVICE,
    BODY_SENSOR_LOCATION,
    DEVICE_INFORMATION_SERVICE,
    FIRMWARE_REVISION,
    HEART_RATE_CONTROL_POINT,
    HEART_RATE_MEASUREMENT,
    HEART_RATE_SERVICE,
    MANUFACTURER_NAME,
    MODEL_NUMBER,
)
from collector.sim.bluez.gatt import Characteristic, Feed, Notification, Service, VirtualWearable

#: Bluetooth SIG company id of Polar Electro (used in the simulated advertisement).
POLAR_COMPANY_ID = 0x006B


def heart_rate_feed(
    duration_s: float,
    *,
    bpm: Callable[[float], float] | None = None,
    interval_s: float = 1.0,
    rr: bool = True,
    seed: int = 0,
) -> Feed:
    """A feed of Heart Rate Measurements every ``interval_s`` for ``duration_s`` seconds.

    ``bpm(t)`` gives the heart rate at ``t`` seconds (default: a slow 55-65 bpm wave); RR
    intervals follow it with a little beat-to-beat variability, and always cover exactly the time
    since the previous notification (a device reports the beats that ended in between).
    """
    rate = bpm or (lambda t: 60.0 + 5.0 * math.sin(t / 600.0))

    def make() -> Iterator[Notification]:
        rng = random.Random(seed)  # noqa: S311 - simulation
        t = interval_s
        next_beat = 0.0
        while t <= duration_s:
            hr = max(30.0, min(220.0, rate(t)))
            beats: list[int] = []
            while rr:
                period = 60.0 / hr * (1.0 + rng.gauss(0.0, 0.03))
                if next_beat + period > t:
                    break
                next_beat += period
                beats.append(max(1, round(period * 1024)))
            yield Notification(t, HEART_RATE_MEASUREMENT, encode_measurement(round(hr), beats[-8:], contact=True))
            t += interval_s

    return make


def heart_rate_strap(
    address: str,
    name: str = "Polar H10 A1B2C3D4",
    *,
    feed: Feed | None = None,
    battery_pct: int = 87,
    model: str = "H10",
    firmware: str = "3.1.1",
    body_location: int = 1,
    rssi: int = -58,
    hide_battery_service: bool = True,
    requires_pairing: bool = False,
) -> VirtualWearable:
    """A chest strap serving Heart Rate (+ Body Sensor Location), Battery and Device Information."""
    services = (
        Service(HEART_RATE_SERVICE, (
            Characteristic(HEART_RATE_MEASUREMENT, ("notify",)),
            Characteristic(BODY_SENSOR_LOCATION, ("read",), bytes([body_location])),
            Characteristic(HEART_RATE_CONTROL_POINT, ("write",)),
        )),
        Service(BATTERY_SERVICE, (Characteristic(BATTERY_LEVEL, ("read", "notify"), bytes([battery_pct])),)),
        Service(DEVICE_INFORMATION_SERVICE, (
            Characteristic(MANUFACTURER_NAME, ("read",), b"Polar Electro Oy"),
            Characteristic(MODEL_NUMBER, ("read",), model.encode()),
            Characteristic(FIRMWARE_REVISION, ("read",), firmware.encode()),
        )),
    )
    return VirtualWearable(
        address=address,
        name=name,
        services=services,
        rssi=rssi,
        tx_power=0,
        manufacturer_data={POLAR_COMPANY_ID: b"\x3f\x00\x00"},
        advertised_uuids=(HEART_RATE_SERVICE,),
        battery_pct=battery_pct,
        hide_battery_service=hide_battery_service,
        requires_pairing=requires_pairing,
        feed=feed,
    )
