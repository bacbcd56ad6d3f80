"""A simulated chest strap's view of a night: Heart Rate Measurement (0x2A37) notifications.

A strap sends about one notification per second with its current heart rate and the RR
intervals (1/1024 s) of the beats detected since the previous one. Here:

- beats come from :attr:`Night.detected_s` (clean beats with ectopic/missed artefacts);
- during a BLE dropout no notification arrives and the RR intervals they carried are lost;
- during contact loss the strap still notifies, with contact "not detected", HR 0 and no RR
  (the collector's heart-rate profile writes no point for HR 0, as for a real strap);
- an interval that spans a contact loss is never reported.

:func:`hr_notifications` yields :class:`HrNotification` objects whose ``at_s``/``uuid``/``value``
match the virtual BlueZ's feed items, so ``feed=lambda: hr_notifications(night)`` plays a
night on a virtual wearable. :func:`notification_arrays` is the same stream as numpy arrays
(what the backfill writes).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from collector.ble.profiles.heart_rate import encode_measurement
from collector.ble.uuids import HEART_RATE_MEASUREMENT
from collector.sim.nights import NS, Night
from collector.sim.rr import in_intervals

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

RR_UNITS_PER_S = 1024
_HR_AVERAGE_BEATS = 4  # the strap's HR is the mean of its last few intervals


@dataclass(frozen=True, slots=True)
class HrNotification:
    """One notification: ``at_s`` seconds after lights out, ``time_ns`` UTC, ``value`` the bytes."""

    at_s: float
    time_ns: int
    value: bytes
    bpm: int
    rr_1024: tuple[int, ...]
    contact: bool | None
    uuid: str = HEART_RATE_MEASUREMENT


@dataclass(frozen=True, slots=True)
class NotificationArrays:
    """The notifications that arrive, as arrays; RR ``rr_start[i]:rr_start[i]+rr_count[i]`` per notification."""

    at_s: F64
    time_ns: I64
    bpm: I64
    contact: NDArray[np.bool_]
    rr_start: I64
    rr_count: I64
    rr_1024: I64  # every delivered interval, in order
    rr_end_s: F64  # when each delivered beat was detected (seconds after lights out)
    lights_out_ns: int

    @property
    def rr_ms(self) -> F64:
        """Delivered intervals in ms as the collector decodes them (1/1024 s resolution)."""
        return np.asarray(self.rr_1024 * (1000.0 / RR_UNITS_PER_S), dtype=np.float64)

    @property
    def rr_time_ns(self) -> I64:
        """UTC ns at which each delivered beat was detected (the end of its interval)."""
        return self.lights_out_ns + np.round(self.rr_end_s * NS).astype(np.int64)


def notification_arrays(
    night: Night, *, interval_s: float = 1.0, contact_supported: bool = True
) -> NotificationArrays:
    """Vectorised notification stream of one night (deterministic for the night)."""
    dur = night.duration_s
    rng = np.random.default_rng([night.plan.index, night.plan.lights_out_ns % (2**32), 0x2A37])
    n_notes = int(dur / interval_s)
    at = rng.uniform(0, interval_s) + np.arange(n_notes) * interval_s + rng.normal(0, 0.01, n_notes)
    at = np.clip(at, 0.0, dur - 1e-3)
    at = np.maximum.accumulate(at)

    det = night.detected_s
    rr_s = np.diff(det)
    end_s = det[1:]
    no_contact_end = in_intervals(end_s, night.contact_s)
    no_contact_start = in_intervals(det[:-1], night.contact_s)
    ok_rr = ~(no_contact_end | no_contact_start) & (end_s <= at[-1] if n_notes else False)
    # which notification carries each beat: the first one at or after the beat
    carrier = np.searchsorted(at, end_s, side="left")

    note_contact = ~in_intervals(at, night.contact_s)
    note_arrives = ~in_intervals(at, night.dropouts_s)
    if n_notes:
        c = np.minimum(carrier, n_notes - 1)
        ok_rr &= note_arrives[c] & note_contact[c]  # a no-contact notification carries no RR

    # HR shown: mean of the last few detected intervals that ended by the notification
    cs = np.concatenate(([0.0], np.cumsum(rr_s)))
    last = np.searchsorted(end_s, at, side="right")  # number of intervals ended by each notification
    first = np.maximum(last - _HR_AVERAGE_BEATS, 0)
    cnt = last - first
    mean_rr = np.where(cnt > 0, (cs[last] - cs[first]) / np.maximum(cnt, 1), np.nan)
    bpm = np.where(np.isfinite(mean_rr) & note_contact, np.round(60.0 / np.where(cnt > 0, mean_rr, 1.0)), 0)
    bpm = np.clip(bpm, 0, 300).astype(np.int64)

    keep_rr = np.flatnonzero(ok_rr)
    counts_all = np.bincount(carrier[keep_rr], minlength=n_notes)[:n_notes]
    kept = np.flatnonzero(note_arrives)
    counts = counts_all[kept].astype(np.int64)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64) if len(counts) else counts
    rr_units = np.round(rr_s[keep_rr] * RR_UNITS_PER_S).astype(np.int64)
    return NotificationArrays(
        at_s=at[kept],
        time_ns=night.lights_out_ns + np.round(at[kept] * NS).astype(np.int64),
        bpm=bpm[kept],
        contact=note_contact[kept] if contact_supported else np.ones(len(kept), dtype=bool),
        rr_start=starts,
        rr_count=counts,
        rr_1024=rr_units,
        rr_end_s=end_s[keep_rr],
        lights_out_ns=night.lights_out_ns,
    )


def hr_notifications(
    night: Night, *, interval_s: float = 1.0, contact_supported: bool = True
) -> Iterator[HrNotification]:
    """The 0x2A37 notifications of one night in time order, as a strap would send them."""
    a = notification_arrays(night, interval_s=interval_s, contact_supported=contact_supported)
    rr = a.rr_1024.tolist()
    for at, t, bpm, c, s, n in zip(
        a.at_s.tolist(), a.time_ns.tolist(), a.bpm.tolist(), a.contact.tolist(),
        a.rr_start.tolist(), a.rr_count.tolist(), strict=True,
    ):
        rr_t = tuple(rr[s:s + n])
        contact = bool(c) if contact_supported else None
        yield HrNotification(at, t, encode_measurement(bpm, rr_t, contact=contact), bpm, rr_t, contact)
