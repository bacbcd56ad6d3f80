"""Session states and the reconnect backoff: a pure function, table-tested."""

from __future__ import annotations

import enum


class SessionState(enum.Enum):
    """States of one device session (the ``state`` field of ``device_status``)."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    BACKOFF = "backoff"
    STOPPED = "stopped"


class Failure(enum.Enum):
    """Why a session is not connected; each kind backs off differently."""

    LINK_LOST = "link_lost"  # was streaming, link dropped: reconnect at once the first time
    SILENT = "silent"  # connected but no notifications: the watchdog dropped it
    CONNECT_FAILED = "connect_failed"  # device seen, connect or subscribe failed
    NOT_FOUND = "not_found"  # device not visible (out of range, switched off)
    ADAPTER = "adapter"  # adapter missing or off, or bluetoothd not on the bus
    OUT_OF_SLOTS = "out_of_slots"  # adapter has no free connection slot


#: First retry delay in seconds; doubles per consecutive failure.
BASE_S = 1.0
#: Losing a working link is usually a brief radio hiccup: the first retry is immediate.
LINK_LOST_FIRST_S = 0.0
#: Freeing a slot takes another connection ending; never retry sooner than this.
OUT_OF_SLOTS_MIN_S = 10.0
#: Adapter problems are not fixed by hammering BlueZ; poll at this pace at least.
ADAPTER_MIN_S = 5.0


def backoff_s(kind: Failure, streak: int, cap: float) -> float:
    """Seconds to wait before reconnect attempt number ``streak`` (1 = first failure of a streak).

    Capped exponential: ``BASE_S * 2**(streak-1)``, never above ``cap``; a lost link retries
    immediately once; adapter and out-of-slot failures wait at least their minimum (still capped).
    """
    if streak < 1:
        return 0.0
    if kind in (Failure.LINK_LOST, Failure.SILENT) and streak == 1:
        return LINK_LOST_FIRST_S
    delay = BASE_S * 2.0 ** min(streak - 1, 30)
    if kind is Failure.OUT_OF_SLOTS:
        delay = max(delay, OUT_OF_SLOTS_MIN_S)
    elif kind is Failure.ADAPTER:
        delay = max(delay, ADAPTER_MIN_S)
    return min(delay, cap)
