"""The device registry: which wearables belong to whom (``<state_dir>/devices.json``).

Written atomically (temporary file in the same directory, fsync, rename). A file that cannot be
read or parsed raises :class:`RegistryError` naming the file and what to do; magsleep never
replaces it silently. Live status (state, last seen, battery) is kept apart in
``ble-status.json``, written by the daemon, so the daemon never rewrites the registry.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from collector.errors import DeviceNotFoundError, RegistryError
from collector.settings import Settings
from collector.storage.files import private_dir, read_text

REGISTRY_FILE = "devices.json"
STATUS_FILE = "ble-status.json"
FORMAT_VERSION = 1
_ADDRESS_RE = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
_ALIAS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def is_address(text: str) -> bool:
    return bool(_ADDRESS_RE.match(text))


def slug(text: str) -> str:
    """A tag-safe alias from a device name ('Polar H10 A1B2' -> 'polar-h10-a1b2')."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return (s or "device")[:48]


@dataclass(frozen=True, slots=True)
class RegisteredDevice:
    """One paired wearable. ``alias`` is the ``device`` tag of its points."""

    address: str
    alias: str
    person: str
    name: str = ""
    profiles: tuple[str, ...] = ("heart_rate",)
    paired: bool = False
    added_ns: int = 0
    model: str = ""
    firmware: str = ""
    location: str = ""  # Body Sensor Location (chest, wrist, ...) when the device reports it

    def __post_init__(self) -> None:
        if not is_address(self.address):
            raise RegistryError(f"device address {self.address!r} must look like AA:BB:CC:DD:EE:FF")
        if not _ALIAS_RE.match(self.alias):
            raise RegistryError(
                f"alias {self.alias!r} must be 1-64 letters, digits, '_', '.', '-' starting with a letter or digit"
            )

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["profiles"] = list(self.profiles)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RegisteredDevice:
        return cls(
            address=str(d["address"]).upper(),
            alias=str(d["alias"]),
            person=str(d["person"]),
            name=str(d.get("name", "")),
            profiles=tuple(str(p) for p in d.get("profiles", ["heart_rate"])),
            paired=bool(d.get("paired", False)),
            added_ns=int(d.get("added_ns", 0)),
            model=str(d.get("model", "")),
            firmware=str(d.get("firmware", "")),
            location=str(d.get("location", "")),
        )


@dataclass
class DeviceRegistry:
    """The registered wearables, loaded from and saved to one JSON file."""

    path: Path
    devices: list[RegisteredDevice] = field(default_factory=list)

    @classmethod
    def path_for(cls, settings: Settings) -> Path:
        return settings.storage.path(REGISTRY_FILE)

    @classmethod
    def for_settings(cls, settings: Settings) -> DeviceRegistry:
        return cls.load(cls.path_for(settings))

    @classmethod
    def load(cls, path: Path) -> DeviceRegistry:
        """Read the registry; a missing file is an empty registry, a broken one a :class:`RegistryError`."""
        advice = (f"fix it by hand or move it away (then pair the devices again); "
                  f"magsleep will not overwrite {path} while it is broken")
        try:
            text = read_text(path, what="device registry", advice=advice, error=RegistryError)
        except FileNotFoundError:
            return cls(path)
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
                raise ValueError(f"expected an object with \"version\": {FORMAT_VERSION}")
            devices = [RegisteredDevice.from_json(d) for d in data.get("devices", [])]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RegistryError(f"device registry {path} is corrupt ({exc}); {advice}") from exc
        except RegistryError as exc:
            raise RegistryError(f"device registry {path} is invalid: {exc}; {advice}") from exc
        seen: set[str] = set()
        for d in devices:
            for key in (d.address, d.alias):
                if key in seen:
                    raise RegistryError(f"device registry {path} lists {key} twice; {advice}")
                seen.add(key)
        return cls(path, devices)

    def save(self) -> None:
        """Write atomically: readers see the old or the new file, never half of one."""
        payload = json.dumps({"version": FORMAT_VERSION, "devices": [d.to_json() for d in self.devices]}, indent=2)
        atomic_write(self.path, payload + "\n")

    def __iter__(self) -> Iterator[RegisteredDevice]:
        return iter(self.devices)

    def __len__(self) -> int:
        return len(self.devices)

    def find(self, key: str) -> RegisteredDevice | None:
        """The device whose address (any case), alias or name is ``key``."""
        for d in self.devices:
            if d.address == key.upper() or d.alias == key or (d.name and d.name == key):
                return d
        return None

    def get(self, key: str) -> RegisteredDevice:
        d = self.find(key)
        if d is None:
            known = ", ".join(f"{x.alias} ({x.address})" for x in self.devices) or "none"
            raise DeviceNotFoundError(f"no registered device {key!r} (registered: {known}); "
                                      "see 'magsleep devices' or pair it with 'magsleep pair'")
        return d

    def add(self, device: RegisteredDevice) -> None:
        """Add or replace (same address) a device; an alias used by another device is an error."""
        for d in self.devices:
            if d.alias == device.alias and d.address != device.address:
                raise RegistryError(
                    f"alias {device.alias!r} is already used by {d.address}; choose another with --alias"
                )
        self.devices = [d for d in self.devices if d.address != device.address] + [device]

    def remove(self, key: str) -> RegisteredDevice:
        d = self.get(key)
        self.devices = [x for x in self.devices if x.address != d.address]
        return d

    def unique_alias(self, base: str, address: str) -> str:
        taken = {d.alias for d in self.devices if d.address != address}
        alias, n = base, 2
        while alias in taken:
            alias = f"{base}-{n}"
            n += 1
        return alias

    def with_info(self, address: str, *, model: str, firmware: str) -> None:
        self.devices = [replace(d, model=model, firmware=firmware) if d.address == address else d
                        for d in self.devices]


def atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (0600, in a directory created 0700 if missing)."""
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """Live status of a device as the daemon last saw it."""

    state: str = "unknown"
    connected: bool = False
    last_seen_ns: int = 0
    battery_pct: int | None = None
    rssi_dbm: int | None = None
    reconnects: int = 0


def status_path(settings: Settings) -> Path:
    return settings.storage.path(STATUS_FILE)


def load_status(path: Path) -> dict[str, DeviceStatus]:
    """Status by address; a missing or unreadable status file is empty (it is only a cache)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {addr: DeviceStatus(**v) for addr, v in data.items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def save_status(path: Path, status: dict[str, DeviceStatus]) -> None:
    atomic_write(path, json.dumps({a: asdict(s) for a, s in status.items()}, indent=2) + "\n")
