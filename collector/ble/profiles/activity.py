"""Per-epoch ActiGraph activity counts from a tracker's raw acceleration (``motion`` points).

Samples (time, x, y, z in g) go in; one point per complete epoch of ``epoch_s`` seconds (60: the
epoch Cole-Kripke was published for), aligned to the wall clock (00:00:00, 00:01:00, ...), comes
out with

- ``counts``: vector magnitude of the three axis counts (ActiGraph counts per epoch);
- ``counts_x``, ``counts_y``, ``counts_z``: the axis counts;
- ``epoch_s``.

The counts come from :mod:`collector.nights.activity` (agcounts, ActiGraph's published algorithm)
on a 30 Hz grid, with the 10 s before the epoch as the filter's run-in, so a stream cut into
epochs gives the counts of the unbroken signal. Two kinds of stream:

- steady rate (``rate_hz``, the Polar strap): an epoch is emitted once a sample at or after its end
  arrives and it holds at least ``min_coverage`` of its samples (a lost radio frame is
  interpolated over);
- change-only (``hold=True``, InfiniTime: silence means "unchanged"): each value stands until the
  next; :meth:`EpochCounts.advance` closes epochs in which nothing moved; an epoch is complete only
  when the value was known from its start (the epoch in progress at connect is dropped).

The epoch in progress when the link goes down is dropped (it would understate).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from collector.nights.activity import epoch_counts, vector_magnitude
from collector.storage.lineprotocol import Point
from collector.storage.schema import MOTION

NS = 1_000_000_000
#: Epoch of the stored counts (Cole-Kripke's 1-minute epoch).
EPOCH_S = 60
#: Seconds before an epoch that the count filter runs over first.
WARMUP_S = 10


class EpochCounts:
    """Collects (time, x, y, z in g) samples and yields one ``motion`` point per complete epoch."""

    def __init__(self, tags: Mapping[str, str], *, epoch_s: int = EPOCH_S, rate_hz: float | None = None,
                 hold: bool = False, min_coverage: float = 0.8) -> None:
        if not hold and rate_hz is None:
            raise ValueError("a steady stream needs its rate_hz")
        self._tags = tags
        self.epoch_s = epoch_s
        self._epoch_ns = epoch_s * NS
        self._rate = rate_hz
        self._hold = hold
        self._min_coverage = min_coverage
        self._t: list[int] = []
        self._xyz: list[tuple[float, float, float]] = []
        self._start: int | None = None  # epoch in progress
        self._known_ns: int | None = None  # hold: time from which the value is known
        self.dropped_epochs = 0
        self.emitted_epochs = 0

    def add(self, time_ns: int, x_g: float, y_g: float, z_g: float) -> list[Point]:
        if self._t and time_ns < self._t[-1]:
            return []  # out of order: ignored
        if not all(math.isfinite(v) for v in (x_g, y_g, z_g)):
            return []
        out: list[Point] = []
        if self._start is None:
            self._start = time_ns - time_ns % self._epoch_ns
            self._known_ns = time_ns
        elif self._hold:
            out = self._close_until(time_ns)
        self._t.append(time_ns)
        self._xyz.append((x_g, y_g, z_g))
        if not self._hold:
            out = self._close_until(time_ns)
        return out

    def add_frame(self, last_ns: int, period_ns: int, xyz_g: Sequence[tuple[float, float, float]]) -> list[Point]:
        """A steady stream's frame: samples ``period_ns`` apart, the last at ``last_ns`` (same points as
        adding them one by one, at a fraction of the cost)."""
        n = len(xyz_g)
        if self._hold or n == 0:
            out: list[Point] = []
            for k, (x, y, z) in enumerate(xyz_g):
                out += self.add(last_ns - (n - 1 - k) * period_ns, x, y, z)
            return out
        first = 0
        if self._t and last_ns - (n - 1) * period_ns < self._t[-1]:  # overlaps what came before: drop that part
            first = -(-(self._t[-1] - (last_ns - (n - 1) * period_ns)) // period_ns)
            if first >= n:
                return []
        t0 = last_ns - (n - 1 - first) * period_ns
        if self._start is None:
            self._start = t0 - t0 % self._epoch_ns
            self._known_ns = t0
        self._t.extend(range(t0, last_ns + 1, period_ns))
        self._xyz.extend(xyz_g[first:])
        return self._close_until(last_ns)

    def advance(self, now_ns: int) -> list[Point]:
        """Change-only streams: the value held until ``now_ns``; points of the epochs that ended."""
        if not self._hold or self._start is None or (self._t and now_ns < self._t[-1]):
            return []
        return self._close_until(now_ns)

    def _close_until(self, now_ns: int) -> list[Point]:
        out: list[Point] = []
        if self._start is None or now_ns < self._start + self._epoch_ns:
            return out
        while self._start is not None and now_ns >= self._start + self._epoch_ns:
            p = self._close(self._start)
            if p is not None:
                out.append(p)
            self._start += self._epoch_ns
            if not self._hold and self._t[-1] >= self._start + self._epoch_ns:
                # a gap of whole epochs: jump to the epoch of the newest sample
                self._start = self._t[-1] - self._t[-1] % self._epoch_ns
        self._prune()
        return out

    def _close(self, start: int) -> Point | None:
        end = start + self._epoch_ns
        t = np.asarray(self._t, dtype=np.int64)
        if self._hold:
            complete = self._known_ns is not None and self._known_ns <= start
        else:
            assert self._rate is not None
            inside = int(np.count_nonzero((t >= start) & (t < end)))
            complete = inside >= self._min_coverage * self._rate * self.epoch_s
        if not complete:
            if t.size:
                self.dropped_epochs += 1
            return None
        rel_s = (t - start) / NS
        axes = epoch_counts(rel_s, np.asarray(self._xyz, dtype=np.float64), 0.0, self.epoch_s, warmup_s=WARMUP_S,
                            hold=self._hold)
        cx, cy, cz = (int(v) for v in axes)
        self.emitted_epochs += 1
        fields = {"counts": round(float(vector_magnitude(axes)), 2), "counts_x": cx, "counts_y": cy, "counts_z": cz,
                  "epoch_s": self.epoch_s}
        return Point(MOTION.name, self._tags, fields, start)

    def _prune(self) -> None:
        """Keep the run-in of the epoch in progress (and, for a held value, the value standing then)."""
        if self._start is None or not self._t:
            return
        keep_from = self._start - WARMUP_S * NS
        i = int(np.searchsorted(np.asarray(self._t, dtype=np.int64), keep_from, side="left"))
        if self._hold:
            i = max(0, i - 1)
        if i > 0:
            del self._t[:i]
            del self._xyz[:i]

    def reset(self) -> None:
        """Forget the epoch in progress (link lost: it would understate the epoch)."""
        if self._start is not None and self._t and self._t[-1] >= self._start:
            self.dropped_epochs += 1
        self._t, self._xyz = [], []
        self._start = self._known_ns = None
