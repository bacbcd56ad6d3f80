"""Night windows, sleep periods and lights out / lights on.

- A night belongs to the evening's date and spans the person's window, by default 18:00 to 14:00
  the next day in their time zone (``night_start`` / ``night_end`` of the person's settings).
  Anything outside the window (an afternoon nap) is ignored.
- Sleep periods: runs of sleep epochs separated by less than :data:`MERGE_GAP_MIN` of wake or
  missing data are one period. The period with the most sleep is the main sleep; another period
  also belongs to the night when it holds at least :data:`MIN_PERIOD_SLEEP_MIN` of sleep (then the
  time between is wake after sleep onset); shorter ones are naps and ignored.
- Lights out / on, first match wins, source stored: an explicit ``lights_out`` / ``lights_on``
  night tag (``tag``), else the span of the device's own stages around its sleep (``device``),
  else an estimate from heart rate (``estimate``): from the first sleep epoch, go back while data
  is present and the 5-min mean HR stays within :data:`HR_REST_FACTOR` of the first 30 min of
  sleep, at most :data:`MAX_PRE_SLEEP_MIN`; likewise forward from the final awakening, at most
  :data:`MAX_POST_SLEEP_MIN`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from collector.nights.stages import EPOCH_S, SLEEP_CODES
from collector.settings import PersonSettings

NS = 1_000_000_000
MERGE_GAP_MIN = 120.0
MIN_PERIOD_SLEEP_MIN = 60.0
MAX_PRE_SLEEP_MIN = 90.0
MAX_POST_SLEEP_MIN = 60.0
HR_REST_FACTOR = 1.2

LightsSource = Literal["tag", "device", "estimate"]


@dataclass(frozen=True, slots=True)
class NightWindow:
    night: date
    start_ns: int
    end_ns: int


def night_window(night: date, person: PersonSettings) -> NightWindow:
    """The window of the evening ``night`` in the person's time zone."""
    tz = ZoneInfo(person.timezone)
    start = datetime.combine(night, person.night_start, tzinfo=tz)
    end_day = night + timedelta(days=1) if person.night_end <= person.night_start else night
    end = datetime.combine(end_day, person.night_end, tzinfo=tz)
    return NightWindow(night, int(start.timestamp()) * NS, int(end.timestamp()) * NS)


def night_of(time_ns: int, person: PersonSettings) -> date | None:
    """The evening whose window contains ``time_ns`` (None between windows)."""
    local = datetime.fromtimestamp(time_ns / NS, ZoneInfo(person.timezone))
    for d in (local.date(), local.date() - timedelta(days=1)):
        w = night_window(d, person)
        if w.start_ns <= time_ns < w.end_ns:
            return d
    return None


@dataclass(frozen=True, slots=True)
class Period:
    """Epoch indices [start, stop) from the first to one past the last sleep epoch; sleep minutes."""

    start: int
    stop: int
    sleep_min: float


def sleep_periods(codes: NDArray[np.int64], epoch_s: int = EPOCH_S) -> list[Period]:
    """Sleep periods (merged sleep runs), in time order."""
    sleep = np.isin(codes, SLEEP_CODES)
    idx = np.flatnonzero(sleep)
    if idx.size == 0:
        return []
    gap = MERGE_GAP_MIN * 60 / epoch_s
    breaks = np.flatnonzero(np.diff(idx) > gap + 1)
    starts = np.concatenate(([idx[0]], idx[breaks + 1]))
    stops = np.concatenate((idx[breaks] + 1, [idx[-1] + 1]))
    out = []
    for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
        out.append(Period(a, b, float(np.count_nonzero(sleep[a:b])) * epoch_s / 60))
    return out


def night_span(codes: NDArray[np.int64], epoch_s: int = EPOCH_S) -> tuple[int, int] | None:
    """[first, stop) epochs of the night's sleep by the two-period rule (None without sleep)."""
    periods = sleep_periods(codes, epoch_s)
    if not periods:
        return None
    main = max(periods, key=lambda p: p.sleep_min)
    keep = [p for p in periods if p is main or p.sleep_min >= MIN_PERIOD_SLEEP_MIN]
    return min(p.start for p in keep), max(p.stop for p in keep)


def rest_bounds(
    onset: int,
    final: int,
    present: NDArray[np.bool_],
    hr_bpm: NDArray[np.float64] | None,
    epoch_s: int = EPOCH_S,
) -> tuple[int, int]:
    """Estimated lights out / on epochs around sleep [onset, final) (see the module docstring).

    ``present[i]`` says epoch ``i`` has signal; ``hr_bpm[i]`` is its mean HR (NaN when none).
    """
    n = present.size
    back = int(MAX_PRE_SLEEP_MIN * 60 / epoch_s)
    fwd = int(MAX_POST_SLEEP_MIN * 60 / epoch_s)
    quiet = present.copy()
    if hr_bpm is not None and np.any(np.isfinite(hr_bpm[onset:final])):
        w = max(1, 300 // epoch_s)
        ref_hr = np.nanmean(hr_bpm[onset : min(final, onset + 1800 // epoch_s)])
        if not np.isfinite(ref_hr):
            ref_hr = np.nanmean(hr_bpm[onset:final])
        hr = np.where(np.isfinite(hr_bpm), hr_bpm, 0.0)
        cnt = np.convolve(np.isfinite(hr_bpm).astype(np.float64), np.ones(w), "same")
        smooth = np.convolve(hr, np.ones(w), "same") / np.maximum(cnt, 1)
        quiet &= ~(smooth > HR_REST_FACTOR * ref_hr)
    lo = onset
    while lo > 0 and onset - lo < back and quiet[lo - 1]:
        lo -= 1
    hi = final
    while hi < n and hi - final < fwd and quiet[hi]:
        hi += 1
    return lo, hi


def lights_from_tags(rows: list[dict[str, object]]) -> tuple[int | None, int | None]:
    """Latest lights_out / lights_on ``at`` values among night_tag rows (value false = removed)."""
    out: dict[str, int | None] = {"lights_out": None, "lights_on": None}
    for r in sorted(rows, key=lambda r: int(str(r.get("time", 0)))):
        tag = r.get("tag")
        if tag not in out:
            continue
        at = r.get("at")
        if r.get("value") is False:
            out[str(tag)] = None
        elif isinstance(at, int | float):
            out[str(tag)] = int(at)
    return out["lights_out"], out["lights_on"]
