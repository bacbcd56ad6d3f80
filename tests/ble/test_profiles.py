"""Golden-file tests per profile and a fuzz test proving parsers raise only ParseError."""

from __future__ import annotations

import contextlib
import itertools
import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.ble.profiles import PROFILES, battery, device_info, matching_profiles
from collector.ble.profiles.heart_rate import (
    HeartRateProfile,
    decode_body_sensor_location,
    decode_measurement,
    encode_measurement,
)
from collector.ble.uuids import BATTERY_LEVEL, HEART_RATE_MEASUREMENT, HEART_RATE_SERVICE, normalize_uuid, uuid16
from collector.errors import ParseError
from collector.storage.lineprotocol import Tags, encode_points
from collector.storage.schema import validate_point

GOLDEN = Path(__file__).parent / "golden"
HR_GOLDEN = json.loads((GOLDEN / "heart_rate.json").read_text())
TAGS = Tags(HR_GOLDEN["tags"])


@pytest.mark.parametrize("case", HR_GOLDEN["cases"], ids=lambda c: c["name"])
def test_heart_rate_golden(case):
    profile = PROFILES[HR_GOLDEN["profile"]]
    data = bytes.fromhex(case["hex"])
    if "error" in case:
        with pytest.raises(ParseError, match=case["error"]):
            profile.parse(HR_GOLDEN["characteristic"], data, HR_GOLDEN["received_ns"], TAGS)
        return
    points = profile.parse(HR_GOLDEN["characteristic"], data, HR_GOLDEN["received_ns"], TAGS)
    for p in points:
        validate_point(p)
    assert encode_points(points) == case["lines"]


@pytest.mark.parametrize("case", json.loads((GOLDEN / "battery.json").read_text())["cases"], ids=lambda c: c["hex"])
def test_battery_golden(case):
    data = bytes.fromhex(case["hex"])
    if "error" in case:
        with pytest.raises(ParseError, match=case["error"]):
            battery.decode_level(data)
    else:
        assert battery.decode_level(data) == case["percent"]


@pytest.mark.parametrize("case", json.loads((GOLDEN / "device_info.json").read_text())["cases"])
def test_device_info_golden(case):
    info = device_info.from_values({k: bytes.fromhex(v) for k, v in case["values"].items()})
    assert info == device_info.DeviceInfo(**case["info"])


def test_body_sensor_location():
    assert decode_body_sensor_location(b"\x01") == "chest"
    assert decode_body_sensor_location(b"\x02") == "wrist"
    assert decode_body_sensor_location(b"\x09") == "reserved_9"
    with pytest.raises(ParseError):
        decode_body_sensor_location(b"")


def test_heart_rate_profile_rejects_other_characteristics():
    with pytest.raises(ParseError, match="does not handle"):
        HeartRateProfile().parse(BATTERY_LEVEL, b"\x00\x40", 0, TAGS)


def test_matching_and_uuids():
    assert [p.name for p in matching_profiles({HEART_RATE_SERVICE, uuid16(0x180F)})] == ["heart_rate"]
    assert matching_profiles({uuid16(0x1816)}) == []
    assert normalize_uuid("0x180D") == normalize_uuid("180d") == HEART_RATE_SERVICE
    assert normalize_uuid("0000180D") == HEART_RATE_SERVICE


@given(
    bpm=st.integers(1, 65535),
    rr=st.lists(st.integers(1, 65535), max_size=9),
    contact=st.none() | st.booleans(),
    energy=st.none() | st.integers(0, 65535),
)
@settings(max_examples=300, deadline=None)
def test_encode_decode_round_trip(bpm, rr, contact, energy):
    m = decode_measurement(encode_measurement(bpm, rr, contact=contact, energy_kj=energy))
    assert (m.bpm, list(m.rr_1024), m.contact, m.energy_kj, m.trailing_bytes) == (bpm, rr, contact, energy, 0)


def test_rr_points_are_consecutive_beats_ending_at_receipt():
    rr = [800, 900, 1000, 1100]
    pts = HeartRateProfile().parse(HEART_RATE_MEASUREMENT, encode_measurement(60, rr), 10**18, TAGS)
    beats = [p for p in pts if p.measurement == "rr"]
    assert beats[-1].time_ns == 10**18
    gaps = [b.time_ns - a.time_ns for a, b in itertools.pairwise(beats)]
    assert gaps == [round(r * 1e9 / 1024) for r in rr[1:]]


def _fuzz_once(profile, data: bytes, tags) -> int:
    try:
        points = profile.parse(HEART_RATE_MEASUREMENT, data, 1_732_400_000_000_000_000, tags)
    except ParseError:
        return 1
    for p in points:
        validate_point(p)
    return 0


def test_fuzz_100k_random_payloads_raise_only_parse_error():
    """A seeded random loop (hypothesis is too slow for 100k); only ParseError may escape."""
    rng = random.Random(20261124)
    profile = PROFILES["heart_rate"]
    errors = 0
    n = 100_000
    for _ in range(n):
        length = rng.choice((0, 1, 2, 3, 4, 5, 6, 7, 8, rng.randrange(0, 64)))
        data = rng.randbytes(length)
        errors += _fuzz_once(profile, data, TAGS)
        with contextlib.suppress(ParseError):
            battery.decode_level(data)
        device_info.decode_string(data)
    # Short payloads must fail, most longer ones decode: both paths were exercised.
    assert 0 < errors < n


@given(st.binary(max_size=40))
@settings(max_examples=2000, deadline=None)
def test_fuzz_hypothesis_only_parse_error(data):
    _fuzz_once(PROFILES["heart_rate"], data, TAGS)
