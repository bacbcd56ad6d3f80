"""Injectable clocks: monotonic time inside, wall-clock time only when stamping points."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """What the collector needs to know about time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for timeouts and rates)."""
        ...

    def time_ns(self) -> int:
        """Wall-clock time in nanoseconds since the Unix epoch (for stamping points)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time_ns(self) -> int:
        return time.time_ns()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class CompressedClock:
    """A clock that runs ``speed`` times faster than real time from a chosen wall-clock start.

    Used by the simulator to play a night in seconds while points carry simulated timestamps.
    """

    def __init__(self, start_ns: int, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self._start_ns = start_ns
        self._speed = speed
        self._real0 = time.monotonic()

    @property
    def speed(self) -> float:
        return self._speed

    def monotonic(self) -> float:
        return (time.monotonic() - self._real0) * self._speed

    def time_ns(self) -> int:
        return self._start_ns + int(self.monotonic() * 1e9)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self._speed)
