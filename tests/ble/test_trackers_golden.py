"""Golden-file and property tests of the tracker profiles (no Bluetooth): bytes in, line protocol out."""

from __future__ import annotations

import contextlib
import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.ble.profiles import PROFILES, bangle, infinitime, matching_profiles, profiles_for
from collector.ble.profiles import polar_pmd as pmd
from collector.ble.profiles.activity import EpochCounts
from collector.ble.profiles.generic import GenericProfile
from collector.ble.profiles.hooks import ProfileContext
from collector.ble.profiles.uart import NUS_SERVICE, NUS_TX, LineAssembler, json_payload
from collector.clock import SystemClock
from collector.errors import ConfigError, DeviceError, ParseError
from collector.nights.activity import counts_per_second
from collector.settings import BleSettings, GenericProfileSettings, load_settings
from collector.storage.lineprotocol import Tags, encode_points
from collector.storage.schema import validate_point

GOLDEN = Path(__file__).parent / "golden"
BANGLE = json.loads((GOLDEN / "bangle.json").read_text())
POLAR = json.loads((GOLDEN / "polar_pmd.json").read_text())
PINE = json.loads((GOLDEN / "infinitime.json").read_text())
GENERIC = json.loads((GOLDEN / "generic.json").read_text())


# ---- Bangle.js --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", BANGLE["cases"], ids=lambda c: c["name"])
def test_bangle_golden(case):
    asm, reply = LineAssembler(), bangle.SleeplogReply()
    for chunk in case["chunks"]:
        assert len(bytes.fromhex(chunk)) <= 20
        for line in asm.feed(bytes.fromhex(chunk)):
            reply.feed(line)
    assert reply.rejected == case["rejected"]
    if "error" in case:
        with pytest.raises(ParseError, match=case["error"]):
            bangle.stage_points(reply, case["since_ms"], case["skew_ms"], Tags(BANGLE["tags"]))
        return
    points, until = bangle.stage_points(reply, case["since_ms"], case["skew_ms"], Tags(BANGLE["tags"]))
    for p in points:
        validate_point(p)
    assert encode_points(points) == case["lines"]
    assert until == case["until_ms"]


def test_line_assembler_any_split_and_noise():
    text = b'\x1b[J>["ms-now",1732400000123]\r\n=undefined\r\n>>["ms",0,2887333,3,2]\r\npartial'
    for cut in range(1, len(text)):
        asm = LineAssembler()
        lines = asm.feed(text[:cut]) + asm.feed(text[cut:])
        assert lines == ['>["ms-now",1732400000123]', "=undefined", '>>["ms",0,2887333,3,2]']
    assert json_payload('>>["ms",0,2887333,3,2]') == ["ms", 0, 2887333, 3, 2]
    assert json_payload("=undefined") is None
    assert json_payload('[garbage {"a":1}') == {"a": 1}


def test_line_assembler_drops_endless_garbage():
    asm = LineAssembler(max_line=100)
    assert asm.feed(b"x" * 150) == []
    assert asm.overflows == 1
    assert asm.feed(b'["ms-end",0,5]\n') == ['["ms-end",0,5]']


def test_sleeplog_reply_rejects_bad_entries_and_reports_missing_app():
    reply = bangle.SleeplogReply()
    for line in ('["ms",0,100,9,2]', '["ms",1,"x",3,2]', '["ms",2,101]', '["other",1]', 'hello', '["ms",3,102,4,2]',
                 '["ms-end",4]'):
        reply.feed(line)
    assert reply.rejected == 4 and reply.entries == {3: (102, 4)} and not reply.done
    with pytest.raises(DeviceError, match="sleeplog"):
        reply.feed("Uncaught Error: Module sleeplog not found")


def test_bangle_skew_correction_rule():
    assert bangle.correction_ms(1999.0) == 0 and bangle.correction_ms(-1500.0) == 0
    assert bangle.correction_ms(440_321.0) == 440_000 and bangle.correction_ms(-2_600.0) == -3_000


def test_bangle_hrm_lines():
    tags = Tags(BANGLE["tags"])
    assert encode_points(bangle.hrm_points('>["ms-hrm",61,93]', 5, tags)) == [
        "heart_rate,device=bangle-bob,person=bob,source=device bpm=61i 5"]
    assert bangle.hrm_points('["ms-hrm",61,20]', 5, tags) == []  # low confidence
    assert bangle.hrm_points('["ms-hrm",0,100]', 5, tags) == []
    assert bangle.hrm_points('["ms-hrm","61",100]', 5, tags) == []
    assert len(PROFILES["bangle"].parse(NUS_TX, b'["ms-hrm",61,93]', 5, tags)) == 1


def test_bangle_js_lines_are_single_lines():
    for js in (bangle.JS_NOW, bangle.JS_HRM_ON, bangle.JS_HRM_OFF, bangle.js_pull(1732320000000)):
        assert js.startswith("\x10") and js.endswith("\n") and js.count("\n") == 1
    assert "readLog(1732320000000)" in bangle.js_pull(1732320000000)


def test_sleeplog_state_file(tmp_path):
    state = bangle.SleeplogState(tmp_path)
    assert state.get("AA:BB:CC:DD:EE:FF") is None
    state.set("AA:BB:CC:DD:EE:FF", 1_800_000)
    state.set("11:22:33:44:55:66", 600_000)
    assert state.get("AA:BB:CC:DD:EE:FF") == 1_800_000 and state.get("11:22:33:44:55:66") == 600_000
    (tmp_path / bangle.STATE_FILE).write_text("{not json")
    with pytest.raises(DeviceError, match="fix or delete"):
        state.get("AA:BB:CC:DD:EE:FF")
    assert bangle.SleeplogState(None).get("x") is None


# ---- Polar PMD ----------------------------------------------------------------------------------


def test_pmd_commands_golden():
    assert pmd.START_ACC.hex() == POLAR["start_acc"] == "0202000119000101100002010800"
    assert pmd.STOP_ACC.hex() == POLAR["stop_acc"] == "0302"


@pytest.mark.parametrize("case", POLAR["frames"], ids=lambda c: c["name"])
def test_pmd_frames_golden(case):
    data = bytes.fromhex(case["hex"])
    if "error" in case:
        with pytest.raises(ParseError, match=case["error"]):
            pmd.decode_acc_frame(data)
        return
    frame = pmd.decode_acc_frame(data)
    assert frame.timestamp_ns == case["timestamp_ns"] and frame.frame_type == case["frame_type"]
    assert len(frame.samples) == case["count"]
    assert list(frame.samples[0]) == case["first"] and list(frame.samples[1]) == case["second"]
    assert list(frame.samples[-1]) == case["last"]
    assert PROFILES["polar_pmd"].parse(pmd.PMD_DATA, data, 0, Tags(BANGLE["tags"])) == []


@pytest.mark.parametrize("case", POLAR["responses"], ids=lambda c: c["hex"])
def test_pmd_responses_golden(case):
    resp = pmd.decode_response(bytes.fromhex(case["hex"]))
    assert (resp.op, resp.type, resp.status) == (case["op"], case["type"], case["status"])
    if "factor" in case:
        assert pmd.decode_settings(resp.params)[pmd.SETTING_FACTOR][0] == pytest.approx(case["factor"])
    if "message" in case:
        assert case["message"] in str(pmd.PmdControlError(resp.op, resp.status))


def test_pmd_settings_and_scale():
    assert pmd.decode_settings(pmd.START_ACC[2:]) == {0: [25], 1: [16], 2: [8]}
    assert pmd.decode_settings(bytes([9, 1, 1, 2])) == {}  # unknown id: stop, never guess
    assert pmd.mg_per_count(1.0) == 1.0 and pmd.mg_per_count(2.44e-4) == pytest.approx(0.244)
    with pytest.raises(ParseError):
        pmd.decode_response(b"\x0f\x05")


samples_st = st.lists(st.tuples(*[st.integers(-32768, 32767)] * 3), min_size=1, max_size=80)


@settings(max_examples=300, deadline=None)
@given(samples_st, st.integers(0, 2**63), st.booleans(), st.integers(1, 40))
def test_pmd_encode_decode_roundtrip(samples, ts, compressed, block):
    frame = pmd.decode_acc_frame(pmd.encode_acc_frame(ts, samples, compressed=compressed, block=block))
    assert list(frame.samples) == samples and frame.timestamp_ns == ts


def test_pmd_frames_to_counts_golden():
    """Raw ACC frames (compressed, mG, 25 Hz) -> ActiGraph counts per minute (golden), checked against the
    same movement sampled natively at 30 Hz in g (no frames, no resampling): units and rate are right."""
    c = POLAR["counts"]
    ctx = ProfileContext("AA:BB", "h10-alice", Tags(c["tags"]), SystemClock(), emit=lambda _p: None)
    stream = pmd.AccStream(ctx)
    points = []
    for k, h in enumerate(c["frames"]):
        points += stream.feed(pmd.decode_acc_frame(bytes.fromhex(h)), c["first_received_ns"] + k * 10**9)
    for p in points:
        validate_point(p)
    assert encode_points(points) == c["lines"]
    assert ctx.memory["skew_ms"] == c["skew_ms"] == -3_600_000  # stamped in host time
    t = np.arange(120 * 30) / 30
    xyz = np.zeros((t.size, 3))
    xyz[:, 2] = 1.0
    moving = t >= 60
    xyz[moving, 0] += 0.3 * np.sin(2 * np.pi * 0.8 * t[moving])
    xyz[moving, 1] += 0.15 * np.sin(2 * np.pi * 1.3 * t[moving])
    native = counts_per_second(xyz)[60:].sum(axis=0)
    assert points[1].fields["counts_x"] == pytest.approx(native[0], rel=0.03)
    assert points[1].fields["counts_y"] == pytest.approx(native[1], rel=0.03)
    assert points[0].fields["counts"] == 0  # +-2 mG of noise is below the dead band


def test_pmd_clock_anchor_follows_the_least_delayed_frame():
    ctx = ProfileContext("AA:BB", "h10-alice", Tags(BANGLE["tags"]), SystemClock(), emit=lambda _p: None)
    stream = pmd.AccStream(ctx)
    dev0 = 5_000 * 10**9  # device time (since 2000) of the first frame's last sample
    host0 = pmd.POLAR_EPOCH_NS + dev0 + 3_600 * 10**9  # strap clock one hour behind

    def feed(k: int, late_s: float, jump_s: int = 0) -> None:
        frame = pmd.decode_acc_frame(pmd.encode_acc_frame(dev0 + (k - jump_s) * 10**9, [(0, 0, 1000)] * 25))
        stream.feed(frame, host0 + k * 10**9 + int(late_s * 1e9))

    feed(0, 3.0)  # the first frame came 3 s late: anchored there
    assert stream.offset_ns == 3_603 * 10**9
    feed(1, 2.5)  # 0.5 s sooner: latency noise, kept
    assert stream.offset_ns == 3_603 * 10**9
    feed(2, 0.2)  # 2.8 s sooner than predicted: the better anchor
    assert stream.offset_ns == 3_600_200_000_000 and ctx.memory["skew_ms"] == -3_600_200.0
    for k in range(3, 30):
        feed(k, 8.0 if k % 7 else 0.3)  # a busy radio delivering late bursts: the stamps never move
    assert stream.offset_ns == 3_600_200_000_000
    for k in range(30, 39):
        feed(k, 0.2, jump_s=3_600)  # the strap's clock set back an hour: nine frames are not enough
    assert stream.offset_ns == 3_600_200_000_000
    feed(39, 0.2, jump_s=3_600)  # the tenth re-anchors
    assert stream.offset_ns == 7_200_200_000_000


def test_epoch_counts_needs_a_rate_or_hold():
    with pytest.raises(ValueError, match="rate_hz"):
        EpochCounts(Tags(BANGLE["tags"]))


# ---- InfiniTime ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", PINE["cases"], ids=lambda c: c["name"])
def test_infinitime_golden(case):
    profile = PROFILES["infinitime"]
    data = bytes.fromhex(case["hex"])
    if "error" in case:
        with pytest.raises(ParseError, match=case["error"]):
            profile.parse(case["uuid"], data, PINE["received_ns"], Tags(PINE["tags"]))
        return
    points = profile.parse(case["uuid"], data, PINE["received_ns"], Tags(PINE["tags"]))
    assert encode_points(points) == case["lines"]


def test_infinitime_held_counts_golden():
    held = EpochCounts(Tags(PINE["tags"]), hold=True)
    start = PINE["held"]["start_ns"]
    points = []
    for t, x, y, z in PINE["held"]["samples"]:
        points += held.add(start + int(t * 1e9), *infinitime.motion_g(x, y, z))
    assert [p.time_ns for p in points] == [start]  # closed by the first notification of the next minute
    # Nothing moves and nothing is notified: the scheduled pull closes the still epochs.
    points += held.advance(start + PINE["held"]["advance_s"] * 10**9)
    for p in points:
        validate_point(p)
    assert encode_points(points) == PINE["held"]["lines"]
    assert [p.fields["counts"] for p in points[2:]] == [0.0, 0.0]
    assert infinitime.motion_g(0, -512, 1024) == (0.0, -0.5, 1.0)  # 1/1024 g


# ---- generic ------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", GENERIC["configs"], ids=lambda e: e["config"]["name"])
def test_generic_golden(entry):
    profile = GenericProfile(GenericProfileSettings(**entry["config"]))
    for case in entry["cases"]:
        data = bytes.fromhex(case["hex"])
        if "error" in case:
            with pytest.raises(ParseError, match=case["error"]):
                profile.parse(profile.characteristic, data, GENERIC["received_ns"], Tags(GENERIC["tags"]))
            continue
        points = profile.parse(profile.characteristic, data, GENERIC["received_ns"], Tags(GENERIC["tags"]))
        for p in points:
            validate_point(p)
        assert encode_points(points) == case["lines"]


def test_generic_acceleration_becomes_counts():
    """A sensor notifying one raw sample (mG, int16) 25 times a second: ActiGraph counts per minute."""
    cfg = GenericProfileSettings(name="wrist-accel", service="aa10", characteristic="aa11", format="<hhh",
                                 fields=["x_g", "y_g", "z_g"], scale=0.001, acceleration_hz=25)
    profile = GenericProfile(cfg)
    tags = Tags(GENERIC["tags"])
    t0 = 1_732_399_980 * 10**9  # a whole minute
    t = np.arange(25 * 150) / 25
    points = []
    for ti in t:
        x = 300 * math.sin(2 * math.pi * 0.8 * ti) if 60 <= ti < 120 else 0.0
        data = struct.pack("<hhh", round(x), 0, 1000)
        points += profile.parse(profile.characteristic, data, t0 + round(ti * 1e9), tags)
    assert [p.time_ns for p in points] == [t0, t0 + 60 * 10**9]
    for p in points:
        validate_point(p)
        assert p.tags == tags and p.fields["epoch_s"] == 60
    xyz = np.zeros((120 * 30, 3))
    xyz[:, 2] = 1.0
    tt = np.arange(120 * 30) / 30
    xyz[tt >= 60, 0] = 0.3 * np.sin(2 * np.pi * 0.8 * tt[tt >= 60])
    native = counts_per_second(xyz)[60:].sum(axis=0)
    assert points[0].fields["counts"] == 0
    assert points[1].fields["counts_x"] == pytest.approx(native[0], rel=0.03)


@pytest.mark.parametrize(("change", "message"), [
    ({"fields": ["x_g", "y_g", "z_g"]}, "set acceleration_hz"),
    ({"acceleration_hz": 25.0}, "fields x_g, y_g, z_g"),
    ({"format": "<hs"}, "struct format"),
    ({"fields": ["", "counts", "nope"]}, "no numeric field 'nope'"),
    ({"fields": ["counts"]}, "unpacks 3 value"),
    ({"measurement": "night"}, "cannot be fed by a sensor"),
    ({"measurement": "device_status"}, "cannot be fed by a sensor"),
    ({"name": "heart_rate"}, "built-in profile"),
    ({"service": "not-a-uuid"}, "must be a UUID"),
    ({"scale": [1.0, 2.0]}, "one per value"),
    ({"fields": ["", "", ""]}, "no field at all"),
])
def test_generic_config_validated_at_load(tmp_path, change, message):
    entry = {**GENERIC["configs"][0]["config"], **change}
    toml = "[[ble.generic]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in entry.items())
    cfg = tmp_path / "magsleep.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load_settings(cfg)


def test_generic_names_unique_and_attached_by_registry_or_devices():
    base = GENERIC["configs"][0]["config"]
    with pytest.raises(ValueError, match="unique"):
        BleSettings(generic=[GenericProfileSettings(**base), GenericProfileSettings(**base)])
    ble = BleSettings(generic=[GenericProfileSettings(**{**base, "devices": ["thermo-alice", "AA:BB:CC:DD:EE:01"]})])
    assert [p.name for p in profiles_for(("heart_rate",), ble, alias="thermo-alice")] == ["heart_rate", "bedside-accel"]
    assert [p.name for p in profiles_for((), ble, address="aa:bb:cc:dd:ee:01")] == ["bedside-accel"]
    assert [p.name for p in profiles_for(("bedside-accel",), ble)] == ["bedside-accel"]
    assert profiles_for(("heart_rate",), ble, alias="other") == [PROFILES["heart_rate"]]


def test_tracker_profiles_match_advertised_services():
    assert [p.name for p in matching_profiles({NUS_SERVICE})] == ["bangle"]
    assert [p.name for p in matching_profiles({pmd.PMD_SERVICE, "0000180d-0000-1000-8000-00805f9b34fb"})] == [
        "heart_rate", "polar_pmd"]
    assert [p.name for p in matching_profiles({infinitime.MOTION_SERVICE})] == ["infinitime"]


# ---- only ParseError, whatever the bytes ----------------------------------------------------------


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=64))
def test_tracker_parsers_raise_only_parse_error(data):
    tags = Tags(BANGLE["tags"])
    generic = GenericProfile(GenericProfileSettings(**GENERIC["configs"][0]["config"]))
    for profile, uuid in ((PROFILES["polar_pmd"], pmd.PMD_DATA), (PROFILES["infinitime"], infinitime.STEP_COUNT),
                          (PROFILES["infinitime"], infinitime.RAW_MOTION), (PROFILES["bangle"], NUS_TX),
                          (generic, generic.characteristic)):
        with contextlib.suppress(ParseError):
            profile.parse(uuid, data, 0, tags)
    with pytest.raises(ParseError):
        pmd.decode_response(data[:3])
    asm, reply = LineAssembler(), bangle.SleeplogReply()
    for line in asm.feed(data + b"\n"):
        if "Uncaught" not in line and not line.startswith("ERROR"):
            reply.feed(line)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 4)), max_size=12), st.integers(0, 30),
       st.sets(st.integers(0, 12), max_size=3))
def test_sleeplog_points_never_outside_window_and_watermark_safe(entries, extra, missing):
    """Whatever the entries and losses: epochs stay inside [since, device now), none twice, and the
    watermark never passes an epoch that was not stored."""
    since10 = 1000
    reply = bangle.SleeplogReply()
    rows = sorted({since10 + t: s for t, s in entries}.items())
    for i, (t10, status) in enumerate(rows):
        if i not in missing:
            reply.feed(json.dumps(["ms", i, t10, status, 2]))
    now_ms = (since10 + 31 + extra) * 600_000
    reply.feed(json.dumps(["ms-end", len(rows), now_ms]))
    points, until = bangle.stage_points(reply, since10 * 600_000, 0, Tags(BANGLE["tags"]))
    times = [p.time_ns // 1_000_000 for p in points]
    assert len(times) == len(set(times))
    assert all(since10 * 600_000 <= t < now_ms // 600_000 * 600_000 for t in times)
    stored = set(times)
    first_stage = rows[0][0] if rows else None
    for t in range(since10 * 600_000, until, 600_000):
        # every epoch below the watermark that the log covers was stored
        if first_stage is not None and t >= first_stage * 600_000:
            assert t in stored
    assert until % 600_000 == 0 and since10 * 600_000 <= until <= now_ms


def test_pmd_struct_sanity():
    # 3 x int16 reference + one block of 2 samples with 4-bit deltas (+1,-1,0)(+2,-2,1)
    payload = struct.pack("<3h", 10, 20, 1000) + bytes([4, 2]) + bytes([0xF1, 0x20, 0x1E])
    frame = pmd.decode_acc_frame(bytes([2]) + (5).to_bytes(8, "little") + b"\x80" + payload)
    assert frame.samples == ((10, 20, 1000), (11, 19, 1000), (13, 17, 1001))


def test_old_sleeplog_format_asks_for_an_update():
    with pytest.raises(DeviceError, match="too old"):
        bangle.SleeplogReply().feed('["ms",0,1732320000000,3,"info"]')


def test_sleeplog_from_hypnogram():
    from collector.sim.bluez.trackers import sleeplog_from_hypnogram

    hyp = [0] * 20 + [1] * 15 + [3] * 5 + [2] * 40 + [0] * 20
    entries = sleeplog_from_hypnogram(1_732_320_000_000, hyp)
    base = 1_732_320_000_000 // 600_000
    assert entries == [[base, 2, 1], [base + 1, 3, 2], [base + 2, 4, 2], [base + 4, 2, 1]]


def test_mutated_frames_and_console_bytes_raise_only_parse_error():
    """50k mutations of valid PMD frames and Bangle replies: decoders raise nothing but ParseError."""
    import random

    rng = random.Random(11)
    seeds = [bytes.fromhex(c["hex"]) for c in POLAR["frames"] if "error" not in c]
    seeds.append(pmd.encode_acc_frame(7, [(1, 2, 3), (-300, 40, 1000), (5, 5, 5)], compressed=True))
    replies = [b"".join(bytes.fromhex(h) for h in c["chunks"]) for c in BANGLE["cases"]]
    errors = 0
    device_errors: list[tuple[str, str]] = []
    for _ in range(25_000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            if not data:
                break
            op = rng.random()
            i = rng.randrange(len(data))
            if op < 0.5:
                data[i] = rng.randrange(256)
            elif op < 0.75:
                del data[i:]
            else:
                data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        try:
            pmd.decode_acc_frame(data)
        except ParseError:
            errors += 1
        text = bytearray(rng.choice(replies))
        for _ in range(rng.randint(1, 3)):
            text[rng.randrange(len(text))] = rng.randrange(256)
        asm, reply = LineAssembler(), bangle.SleeplogReply()
        for k in range(0, len(text), 20):
            for line in asm.feed(bytes(text[k:k + 20])):
                try:
                    reply.feed(line)
                except DeviceError as exc:  # only the device's own error reports, or an old app
                    device_errors.append((line, str(exc)))
        if reply.done:
            with contextlib.suppress(ParseError):
                bangle.stage_points(reply, BANGLE["cases"][0]["since_ms"], 0, Tags(BANGLE["tags"]))
    assert 0 < errors < 25_000
    assert all("Uncaught" in line or line.startswith("ERROR") or "too old" in msg for line, msg in device_errors)


def test_sleeplog_pull_is_capped():
    reply = bangle.SleeplogReply()
    for line in ('["ms",0,1000,3,2]', '["ms-end",1,9000000000000]'):
        reply.feed(line)
    points, until = bangle.stage_points(reply, 1000 * 600_000, 0, Tags(BANGLE["tags"]))
    assert len(points) == bangle.MAX_PULL_DAYS * 144 and until == (1000 + len(points)) * 600_000
