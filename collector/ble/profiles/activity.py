"""Per-epoch activity from raw acceleration, for actigraphy (``motion`` points).

Each epoch of ``epoch_s`` seconds (aligned to the wall clock: 00:00:00, 00:00:30, ...) gets

- ``activity``: the mean amplitude deviation (MAD) of the acceleration magnitude in milli-g,
  ``mean(| |a_i| - mean|a| |)``. MAD tracks movement intensity, ignores the sensor's orientation
  and its calibration offset (a cheap sensor reading 1.03 g at rest still gives ~0), and does not
  depend on the sample rate, so 25 Hz straps and irregularly notifying watches compare; a still
  sleeper gives a few mg, turning over tens to hundreds. ``nights.motion_scale`` maps it to the
  counts Cole-Kripke was fitted on.
- ``magnitude_g``: mean magnitude minus 1 g (the schema's field).
- ``epoch_s``.

An epoch is emitted when the first sample of a later epoch arrives and it holds at least
``min_samples`` samples; the epoch in progress at a disconnect is dropped (it would understate).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from collector.storage.lineprotocol import Point

NS = 1_000_000_000


class EpochActivity:
    """Collects (time, x, y, z in milli-g) samples and yields one ``motion`` point per complete epoch."""

    def __init__(self, tags: Mapping[str, str], *, epoch_s: int = 30, min_samples: int = 5) -> None:
        self._tags = tags
        self.epoch_s = epoch_s
        self._epoch_ns = epoch_s * NS
        self._min = min_samples
        self._start: int | None = None
        self._mags: list[float] = []
        self.dropped_epochs = 0

    def add(self, time_ns: int, x_mg: float, y_mg: float, z_mg: float) -> list[Point]:
        start = time_ns - time_ns % self._epoch_ns
        out: list[Point] = []
        if self._start is not None and start != self._start:
            if start < self._start:
                return out  # a late sample of a closed epoch: ignored
            out = self._close()
        if self._start is None:
            self._start = start
        self._mags.append(math.sqrt(x_mg * x_mg + y_mg * y_mg + z_mg * z_mg))
        return out

    def _close(self) -> list[Point]:
        mags, start = self._mags, self._start
        self._mags, self._start = [], None
        if start is None or len(mags) < self._min:
            if mags:
                self.dropped_epochs += 1
            return []
        mean = sum(mags) / len(mags)
        mad = sum(abs(m - mean) for m in mags) / len(mags)
        fields = {"activity": round(mad, 3), "magnitude_g": round(mean / 1000.0 - 1.0, 5), "epoch_s": self.epoch_s}
        return [Point("motion", self._tags, fields, start)]

    def reset(self) -> None:
        """Forget the epoch in progress (link lost: it would understate the epoch)."""
        if self._mags:
            self.dropped_epochs += 1
        self._mags, self._start = [], None
