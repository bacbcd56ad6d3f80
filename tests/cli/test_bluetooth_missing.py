"""Without a system D-Bus the Bluetooth commands say that D-Bus/BlueZ is missing and how to fix it."""

from __future__ import annotations

import pytest

from collector.ble.bluez import to_device_error
from collector.errors import AdapterError
from tests.cli.console import Console, flat


@pytest.mark.parametrize("argv", [["scan", "--timeout", "1"], ["pair", "C0:FF:EE:00:00:01", "-p", "alice"]])
def test_no_system_dbus(console: Console, argv: list[str]) -> None:
    bus = f"unix:path={console.home / 'no-such-dbus-socket'}"
    res = console.run(*argv, DBUS_SYSTEM_BUS_ADDRESS=bus, COLUMNS="300")
    assert res.returncode == 2
    err = flat(res.stderr)
    assert f"Bluetooth (D-Bus/BlueZ) is missing: no system D-Bus at {bus}" in err
    assert "install and start D-Bus and BlueZ" in err
    assert "wake the wearable" not in err
    assert res.stdout.strip() == ""  # no empty live table before the error


def test_dbus_errors_become_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBUS_SYSTEM_BUS_ADDRESS", raising=False)
    refused = to_device_error(ConnectionRefusedError(111, "Connection refused"), "scan")
    assert isinstance(refused, AdapterError)
    assert "no system D-Bus at unix:path=/var/run/dbus/system_bus_socket" in str(refused)
    denied = to_device_error(PermissionError(13, "Permission denied"), "scan")
    assert isinstance(denied, AdapterError)
    assert "not allowed to use the system D-Bus" in str(denied) and "'bluetooth' group" in str(denied)
    assert "D-Bus" not in str(to_device_error(TimeoutError(), "connecting to h10"))  # a timeout is not this
