"""The strap's notification stream: bytes the collector's real parser reads, faults honoured."""

from __future__ import annotations

import itertools

import numpy as np

from collector.ble.profiles.heart_rate import decode_measurement, encode_measurement
from collector.ble.uuids import HEART_RATE_MEASUREMENT
from collector.sim.hrm import hr_notifications, notification_arrays
from collector.sim.params import Faults
from collector.sim.rr import in_intervals
from tests.sim.conftest import make_study


def test_encode_measurement_matches_published_bytes() -> None:
    # movisens/SmartGattLib test vector (ble.md): 72 bpm, contact detected, RR 340 and 748
    assert encode_measurement(72, (340, 748), contact=True).hex() == "16485401ec02"
    assert encode_measurement(60, (), contact=None).hex() == "003c"
    assert encode_measurement(300, (1000,), contact=False).hex() == "152c01e803"


def test_notifications_decode_with_the_collectors_parser() -> None:
    night = make_study(1, seed=8, faults=Faults(contact_losses_per_night=3.0)).night(0)
    notes = list(hr_notifications(night))
    a = notification_arrays(night)
    assert len(notes) == len(a.at_s)
    assert notes[0].uuid == HEART_RATE_MEASUREMENT
    rr_total = 0
    for n in notes[:: max(1, len(notes) // 2000)] + notes[-5:]:
        m = decode_measurement(n.value)
        assert (m.bpm, m.rr_1024, m.contact) == (n.bpm, n.rr_1024, n.contact)
        assert n.time_ns == night.lights_out_ns + round(n.at_s * 1e9)
        rr_total += len(n.rr_1024)
    assert rr_total > 0
    assert all(b.at_s > a.at_s for a, b in itertools.pairwise(notes))


def test_about_one_notification_per_second_except_in_dropouts() -> None:
    night = make_study(1, seed=8, faults=Faults(dropouts_per_night=8.0, dropout_s=(10.0, 200.0))).night(0)
    a = notification_arrays(night)
    assert len(night.dropouts_s) > 0
    assert not in_intervals(a.at_s, night.dropouts_s).any()
    lost = sum(e - s for s, e in night.dropouts_s)  # overlaps make this an upper bound
    assert night.duration_s - lost - 5 <= len(a.at_s) <= night.duration_s + 1
    gaps = np.diff(a.at_s)
    assert abs(np.median(gaps) - 1.0) < 0.05


def test_contact_loss_sends_no_hr_and_no_rr() -> None:
    night = make_study(1, seed=8, faults=Faults(contact_losses_per_night=4.0, dropouts_per_night=0.0)).night(0)
    a = notification_arrays(night)
    lost = in_intervals(a.at_s, night.contact_s)
    assert lost.any()
    assert np.all(a.bpm[lost] == 0) and not a.contact[lost].any()
    assert np.all(a.rr_count[lost] == 0)
    assert np.all(a.bpm[~lost][5:] > 30) and a.contact[~lost].all()
    assert not in_intervals(a.rr_end_s, night.contact_s).any()


def test_delivered_rr_are_the_detected_intervals_at_1024_hz() -> None:
    night = make_study(1, seed=8).night(0)
    a = notification_arrays(night)
    det = night.detected_s
    k = np.searchsorted(det, a.rr_end_s)
    assert np.allclose(det[k], a.rr_end_s)
    true_rr = det[k] - det[k - 1]
    assert np.all(np.abs(a.rr_1024 / 1024 - true_rr) <= 0.5 / 1024 + 1e-12)
    # the strap's HR tracks the intervals it reports
    hr_from_rr = 60000 / np.median(a.rr_ms)
    assert abs(np.median(a.bpm[a.bpm > 0]) - hr_from_rr) < 3
    # coverage: without dropout/contact faults nearly every detected beat is delivered
    clean = make_study(1, seed=8, faults=Faults(artefact_rate=0.0, dropouts_per_night=0.0,
                                                contact_losses_per_night=0.0)).night(0)
    ca = notification_arrays(clean)
    assert len(ca.rr_1024) >= len(clean.detected_s) - 3
