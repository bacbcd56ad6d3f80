"""Device registry (atomic, never silently overwritten) and the pure backoff function."""

from __future__ import annotations

import json

import pytest

from collector.ble.backoff import ADAPTER_MIN_S, OUT_OF_SLOTS_MIN_S, Failure, backoff_s
from collector.ble.bluez import failure_kind, to_device_error
from collector.ble.registry import (
    DeviceRegistry,
    DeviceStatus,
    RegisteredDevice,
    load_status,
    save_status,
    slug,
)
from collector.errors import (
    AdapterError,
    DeviceError,
    DeviceNotFoundError,
    OutOfSlotsError,
    PairingError,
    RegistryError,
)

A1, A2 = "C0:FF:EE:00:00:01", "C0:FF:EE:00:00:02"


@pytest.mark.parametrize(
    ("kind", "streak", "cap", "expected"),
    [
        (Failure.CONNECT_FAILED, 0, 60, 0.0),
        (Failure.CONNECT_FAILED, 1, 60, 1.0),
        (Failure.CONNECT_FAILED, 2, 60, 2.0),
        (Failure.CONNECT_FAILED, 6, 60, 32.0),
        (Failure.CONNECT_FAILED, 7, 60, 60.0),
        (Failure.CONNECT_FAILED, 500, 60, 60.0),
        (Failure.NOT_FOUND, 3, 60, 4.0),
        (Failure.LINK_LOST, 1, 60, 0.0),
        (Failure.LINK_LOST, 2, 60, 2.0),
        (Failure.SILENT, 1, 60, 0.0),
        (Failure.OUT_OF_SLOTS, 1, 60, OUT_OF_SLOTS_MIN_S),
        (Failure.OUT_OF_SLOTS, 6, 60, 32.0),
        (Failure.OUT_OF_SLOTS, 1, 5, 5.0),
        (Failure.ADAPTER, 1, 60, ADAPTER_MIN_S),
        (Failure.ADAPTER, 4, 60, 8.0),
        (Failure.ADAPTER, 9, 30, 30.0),
    ],
)
def test_backoff_table(kind, streak, cap, expected):
    assert backoff_s(kind, streak, cap) == expected


def test_error_classification_and_advice():
    from bleak.exc import BleakBluetoothNotAvailableError, BleakBluetoothNotAvailableReason, BleakDBusError
    from bleak_retry_connector import BleakNotFoundError, BleakOutOfConnectionSlotsError

    no_bt = BleakBluetoothNotAvailableError("No Bluetooth adapters found.",
                                            BleakBluetoothNotAvailableReason.NO_BLUETOOTH)
    assert failure_kind(no_bt) is Failure.ADAPTER
    assert failure_kind(BleakDBusError("org.bluez.Error.NotReady", ["Resource Not Ready"])) is Failure.ADAPTER
    assert failure_kind(BleakOutOfConnectionSlotsError("x")) is Failure.OUT_OF_SLOTS
    assert failure_kind(BleakNotFoundError("x")) is Failure.NOT_FOUND
    assert failure_kind(TimeoutError()) is Failure.CONNECT_FAILED
    err = to_device_error(no_bt, "scan")
    assert isinstance(err, AdapterError) and "powered on" in str(err)
    assert isinstance(to_device_error(BleakOutOfConnectionSlotsError("no connection slot"), "x"), OutOfSlotsError)
    assert isinstance(to_device_error(BleakNotFoundError("gone"), "x"), DeviceNotFoundError)
    pe = to_device_error(BleakDBusError("org.bluez.Error.AuthenticationFailed", []), "pairing", pairing=True)
    assert isinstance(pe, PairingError) and "pairing mode" in str(pe)
    assert type(to_device_error(OSError("boom"), "x")) is DeviceError


def test_registry_round_trip_and_atomic_save(tmp_path):
    path = tmp_path / "state" / "devices.json"
    reg = DeviceRegistry.load(path)
    assert len(reg) == 0
    reg.add(RegisteredDevice(A1, "h10-alice", "alice", name="Polar H10", model="H10"))
    reg.add(RegisteredDevice(A2, "h7-bob", "bob"))
    reg.save()
    assert not [p for p in path.parent.iterdir() if p.name != "devices.json"]  # no temp files left
    again = DeviceRegistry.load(path)
    assert [d.alias for d in again] == ["h10-alice", "h7-bob"]
    assert again.get("c0:ff:ee:00:00:01").model == "H10"
    assert again.get("h7-bob").address == A2
    assert again.get("Polar H10").alias == "h10-alice"
    removed = again.remove("h7-bob")
    assert removed.person == "bob" and len(again) == 1
    with pytest.raises(DeviceNotFoundError, match="magsleep pair"):
        again.get("nope")


def test_alias_rules(tmp_path):
    reg = DeviceRegistry(tmp_path / "d.json", [RegisteredDevice(A1, "strap", "alice")])
    with pytest.raises(RegistryError, match="already used"):
        reg.add(RegisteredDevice(A2, "strap", "bob"))
    assert reg.unique_alias("strap", A2) == "strap-2"
    assert reg.unique_alias("strap", A1) == "strap"
    with pytest.raises(RegistryError, match="alias"):
        RegisteredDevice(A1, "bad alias!", "alice")
    with pytest.raises(RegistryError, match="AA:BB"):
        RegisteredDevice("nope", "x", "alice")
    assert slug("Polar H10 A1B2C3D4") == "polar-h10-a1b2c3d4"
    assert slug("!!!") == "device"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "corrupt"),
        ('{"version": 99, "devices": []}', "corrupt"),
        ('[1, 2]', "corrupt"),
        ('{"version": 1, "devices": [{"address": "C0:FF:EE:00:00:01"}]}', "corrupt"),
        ('{"version": 1, "devices": [{"address": "zz", "alias": "a", "person": "p"}]}', "invalid"),
        (json.dumps({"version": 1, "devices": [
            {"address": A1, "alias": "a", "person": "p"}, {"address": A1, "alias": "b", "person": "p"}]}), "twice"),
    ],
)
def test_corrupt_registry_is_a_clear_error_and_never_overwritten(tmp_path, content, message):
    path = tmp_path / "devices.json"
    path.write_text(content)
    with pytest.raises(RegistryError, match=message) as exc:
        DeviceRegistry.load(path)
    assert "will not overwrite" in str(exc.value) and str(path) in str(exc.value)
    assert path.read_text() == content


def test_status_file_round_trip_and_tolerance(tmp_path):
    path = tmp_path / "ble-status.json"
    assert load_status(path) == {}
    save_status(path, {A1: DeviceStatus("connected", True, 5, 80, -60, 2)})
    assert load_status(path)[A1].battery_pct == 80
    path.write_text("garbage")
    assert load_status(path) == {}


def test_logfmt_lines_carry_device_fields():
    import logging

    from collector.ble.logs import LogfmtFormatter

    rec = logging.LogRecord("collector.ble.session", logging.WARNING, __file__, 1, "h10: link lost (%s)",
                            ("silent",), None)
    rec.__dict__.update({"device": "h10", "person": "alice", "event": "failure", "streak": 1})
    line = LogfmtFormatter().format(rec)
    assert line.startswith("ts=") and " level=warning logger=collector.ble.session " in line
    assert 'msg="h10: link lost (silent)" event=failure device=h10 person=alice streak=1' in line
