"""scan / pair / devices / forget: library functions in the test loop, CLI with a threaded fake."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from collector.ble import pairing
from collector.ble.registry import DeviceRegistry
from collector.ble.uuids import uuid16
from collector.cli import app
from collector.errors import AdapterError, ConfigError, DeviceError, DeviceNotFoundError, PairingError
from collector.settings import BleSettings, InfluxSettings, PersonSettings, Settings, StorageSettings
from collector.sim.bluez import Service, VirtualWearable, heart_rate_strap

A1, A2, A3 = "C0:FF:EE:00:00:01", "C0:FF:EE:00:00:02", "C0:FF:EE:00:00:03"


def settings_for(tmp_path) -> Settings:
    return Settings(influx=InfluxSettings(embedded=False), storage=StorageSettings(state_dir=tmp_path),
                    persons=[PersonSettings(name="alice"), PersonSettings(name="bob")],
                    ble=BleSettings(scan_timeout_s=0.5, connect_timeout_s=5.0))


async def test_scan_lists_devices_with_profiles(virtual_bluez):
    virtual_bluez.add_device(heart_rate_strap(A1, "Polar H10 X"))
    virtual_bluez.add_device(VirtualWearable(A2, "Kettle", services=(Service(uuid16(0x1809)),)))
    updates: list[dict[str, pairing.ScanResult]] = []
    found = await pairing.scan(0.3, on_update=updates.append)
    assert found[A1].profiles == ("heart_rate",) and found[A1].name == "Polar H10 X"
    assert found[A2].profiles == ()
    assert updates and set(updates[-1]) == {A1, A2}


async def test_pair_by_address_and_name_then_forget(virtual_bluez, tmp_path):
    settings = settings_for(tmp_path)
    dev = virtual_bluez.add_device(heart_rate_strap(A1, "Polar H10 X", model="H10", firmware="3.1.1"))
    virtual_bluez.add_device(heart_rate_strap(A2, "Polar H7 Y", model="H7"))
    reg = DeviceRegistry.for_settings(settings)
    r1 = await pairing.pair(settings, reg, A1.lower(), person="alice")
    assert (r1.address, r1.alias, r1.person, r1.profiles, r1.model, r1.firmware, r1.paired) == (
        A1, "polar-h10-x-alice", "alice", ("heart_rate",), "H10", "3.1.1", True)
    assert r1.location == "chest"
    assert dev.paired and not dev.connected
    r2 = await pairing.pair(settings, reg, "Polar H7 Y", person="bob", alias="h7-bob", bond=False)
    assert r2.alias == "h7-bob" and not r2.paired and not virtual_bluez.device(A2).paired
    on_disk = DeviceRegistry.for_settings(settings)
    assert [d.alias for d in on_disk] == ["polar-h10-x-alice", "h7-bob"]
    gone, unbonded = await pairing.forget(settings, on_disk, "polar-h10-x-alice")
    assert gone.address == A1 and unbonded and not dev.paired
    assert [d.alias for d in DeviceRegistry.for_settings(settings)] == ["h7-bob"]


async def test_pair_errors_carry_advice(virtual_bluez, tmp_path):
    settings = settings_for(tmp_path)
    reg = DeviceRegistry.for_settings(settings)
    virtual_bluez.add_device(heart_rate_strap(A1)).refuse_pairing()
    virtual_bluez.add_device(VirtualWearable(A2, "Kettle", services=(Service(uuid16(0x1809)),)))
    with pytest.raises(PairingError, match="pairing mode"):
        await pairing.pair(settings, reg, A1, person="alice")
    with pytest.raises(DeviceError, match="none of the supported profiles"):
        await pairing.pair(settings, reg, A2, person="alice", bond=False)
    with pytest.raises(DeviceNotFoundError, match="magsleep scan"):
        await pairing.pair(settings, reg, A3, person="alice")
    with pytest.raises(ConfigError, match="unknown person"):
        await pairing.pair(settings, reg, A1, person="carol")
    virtual_bluez.device(A1).refuse_pairing(False)
    virtual_bluez.device(A1).refuse_connects(1, message="No available connection slot")
    with pytest.raises(DeviceError, match="connection slot"):
        await pairing.pair(settings, reg, A1, person="alice")
    await virtual_bluez.set_powered(False)
    with pytest.raises(AdapterError, match="powered on"):
        await pairing.scan(0.1)
    assert len(DeviceRegistry.for_settings(settings)) == 0


def _config(tmp_path) -> str:
    cfg = tmp_path / "magsleep.toml"
    cfg.write_text(f'''
[influx]
embedded = false
[storage]
state_dir = "{tmp_path}"
[ble]
scan_timeout_s = 0.5
[[persons]]
name = "alice"
''')
    return str(cfg)


def test_cli_scan_pair_devices_forget(threaded_bluez, tmp_path):
    threaded_bluez.call(lambda bz: bz.add_device(heart_rate_strap(A1, "Polar H10 X")))
    runner = CliRunner()
    cfg = _config(tmp_path)
    res = runner.invoke(app, ["--config", cfg, "scan", "--timeout", "0.5"])
    assert res.exit_code == 0, res.output
    assert A1 in res.output and "heart_rate" in res.output and "1 with a supported profile" in res.output
    res = runner.invoke(app, ["--config", cfg, "pair", A1, "--person", "alice", "--alias", "h10"])
    assert res.exit_code == 0, res.output
    assert "registered h10" in res.output and "heart_rate" in res.output
    res = runner.invoke(app, ["--config", cfg, "devices"])
    assert res.exit_code == 0 and "h10" in res.output and "never" in res.output
    res = runner.invoke(app, ["--config", cfg, "pair", "C0:FF:EE:00:00:09", "--person", "alice"])
    assert res.exit_code == 2 and "no device" in res.output and "within 0.5 s" in res.output
    res = runner.invoke(app, ["--config", cfg, "forget", "h10"])
    assert res.exit_code == 0 and "bond removed" in res.output
    res = runner.invoke(app, ["--config", cfg, "devices"])
    assert "no devices registered" in res.output


def test_cli_errors_for_corrupt_registry_and_empty_run(tmp_path):
    runner = CliRunner()
    cfg = _config(tmp_path)
    res = runner.invoke(app, ["--config", cfg, "run"])
    assert res.exit_code == 2 and "no devices registered" in res.output
    (tmp_path / "devices.json").write_text("{broken")
    for args in (["devices"], ["forget", "x"], ["run"]):
        res = runner.invoke(app, ["--config", cfg, *args])
        assert res.exit_code == 2 and "corrupt" in res.output, args
    assert (tmp_path / "devices.json").read_text() == "{broken"
    res = runner.invoke(app, ["--config", cfg, "scan", "--timeout", "0"])
    assert res.exit_code == 2 and "--timeout" in res.output
