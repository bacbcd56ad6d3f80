"""Who exists: one resolver (collector.app.persons) from the settings and the device registry."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from collector.app.persons import Persons
from collector.ble.registry import DeviceRegistry, RegisteredDevice
from collector.errors import ConfigError
from collector.settings import PersonSettings, Settings, StorageSettings
from tests.cli.console import Console, flat


def settings_for(state: Path, *names: str) -> Settings:
    return Settings(storage=StorageSettings(state_dir=state),
                    persons=[PersonSettings(name=n, timezone="Europe/Berlin") for n in names])


def pair(settings: Settings, person: str) -> Path:
    path = DeviceRegistry.path_for(settings)
    DeviceRegistry(path, [RegisteredDevice(address="AA:BB:CC:DD:EE:01", alias=f"h10-{person}",
                                           person=person)]).save()
    return path


def test_configured_then_registry_persons_with_defaults_for_registry_only(tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    s = settings_for(tmp_path, "alice", "bob")
    path = pair(s, "erin")
    persons = Persons(s)
    assert persons.names() == ["alice", "bob", "erin"]
    assert persons.tz("alice") == ZoneInfo("Europe/Berlin") and persons.tz("erin") is UTC
    assert persons.settings_of("erin") == PersonSettings(name="erin")
    assert persons.settings_of("bob").timezone == "Europe/Berlin"
    path.write_text("{broken", encoding="utf-8")  # a broken registry: the configured persons still work
    with caplog.at_level(logging.WARNING):
        assert persons.names() == ["alice", "bob"]
    assert "only configured persons are accepted" in caplog.text


def test_commands_on_configured_persons_say_what_to_pass(tmp_path: Path) -> None:
    two = Persons(settings_for(tmp_path, "alice", "bob"), registry=lambda: ["erin"])
    assert two.configured_names(None) == ["alice", "bob"]
    assert two.configured_names(["bob"]) == ["bob"]
    with pytest.raises(ConfigError, match=r"unknown person 'erin' \(known: alice, bob\)"):
        two.configured_names(["erin"])  # effects need a configured person (time zone, nights)
    with pytest.raises(ConfigError, match=r"several persons are configured; pass --person \(alice, bob\)"):
        two.one_configured(None)
    assert Persons(settings_for(tmp_path, "alice")).one_configured(None) == "alice"
    none = Persons(settings_for(tmp_path), registry=lambda: ["erin"])
    with pytest.raises(ConfigError, match=r"no persons configured; add a \[\[persons\]\] entry"):
        none.configured_names(None)
    assert none.names() == ["erin"] and none.tz("erin") is UTC


def test_the_cli_resolves_persons_through_the_registry(tmp_path: Path) -> None:
    """The installed script: a registry-only person may log a dose (the CLI injects the resolver),
    but not run effects (those need a configured person)."""
    home = tmp_path / "home"
    home.mkdir()
    con = Console(home, {"persons": [{"name": "alice", "timezone": "Europe/Berlin"}],
                         "influx": {"embedded": False, "url": "http://127.0.0.1:9"}})
    pair(settings_for(home / "state", "alice"), "erin")
    day = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
    r = con.run("dose", "add", "100", "-p", "erin", "--at", f"{day} 22:10")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "logged 100 mg glycinate (14.1 mg elemental) for erin" in flat(r.stdout)
    r = con.run("effects", "-p", "erin")
    assert r.returncode == 2 and "unknown person 'erin' (known: alice)" in flat(r.stderr), r.stderr
