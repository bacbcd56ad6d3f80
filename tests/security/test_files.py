"""Files magsleep reads, made unreadable, undecodable or corrupt (issue 20 #4), and its own files' modes (#12).

Each broken file gives a one-line error that names it and says what to do, through the real
``magsleep`` console script (or the running API), and is left exactly as it was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from collector.storage import local_influx
from tests.doses.conftest import make_settings
from tests.security.conftest import serve

MAGSLEEP = str(Path(sys.executable).parent / "magsleep")
NOT_UTF8 = b"\xff\xfe{}"
JSON = {"Content-Type": "application/json"}


def magsleep(cfg: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAGSLEEP_")}
    return subprocess.run([MAGSLEEP, "--config", str(cfg), *args], capture_output=True, text=True,
                          timeout=timeout, env={**env, "COLUMNS": "500"})


def one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    """The command failed with exit code 2 and one error line, no traceback."""
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def write_config(tmp_path: Path, url: str = "http://127.0.0.1:9", db: str = "x", **sections: Any) -> Path:
    data: dict[str, Any] = {
        "influx": {"embedded": False, "url": url, "database": db},
        "storage": {"state_dir": str(tmp_path / "state")},
        "persons": [{"name": "alice"}],
    }
    for k, v in sections.items():
        data.setdefault(k, {}).update(v)
    cfg = tmp_path / "magsleep.toml"
    cfg.write_text(tomli_w.dumps(data))
    return cfg


def snapshot(path: Path) -> tuple[bool, bytes | None, int]:
    """What a file or directory is, byte for byte, and its mode."""
    if path.is_dir():
        return True, None, path.stat().st_mode
    return False, path.read_bytes(), path.stat().st_mode


# -- the config file ------------------------------------------------------------------------------

@pytest.mark.parametrize(("content", "needle"), [
    (b'[influx]\nembedded = false\n# caf\xe9\n', "is not UTF-8 text (at byte 31); save it as UTF-8"),
    (NOT_UTF8, "is not UTF-8 text (at byte 0)"),
    (b"[influx\nembedded = false\n", "cannot parse config file"),
    (None, "is a directory, not a file"),
], ids=["latin1", "bom-garbage", "syntax", "directory"])
def test_config_file(tmp_path: Path, content: bytes | None, needle: str) -> None:
    cfg = tmp_path / "magsleep.toml"
    if content is None:
        cfg.mkdir()
    else:
        cfg.write_bytes(content)
    before = snapshot(cfg)
    line = one_line_error(magsleep(cfg, "config", "check"))
    assert needle in line and str(cfg) in line
    assert snapshot(cfg) == before


# -- devices.json ---------------------------------------------------------------------------------

BROKEN_REGISTRIES = {
    "not-utf8": (NOT_UTF8, "is not UTF-8 text (at byte 0)"),
    "not-json": (b'{"version": 1, "devices": [', "is corrupt"),
    "wrong-shape": (b'{"version": 1, "devices": [{"address": 7}]}', "is corrupt"),
    "directory": (None, "is a directory, not a file"),
}


def _break_registry(state: Path, content: bytes | None) -> Path:
    state.mkdir(parents=True, exist_ok=True)
    path = state / "devices.json"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    return path


@pytest.mark.parametrize("case", BROKEN_REGISTRIES)
def test_devices_json_cli(tmp_path: Path, influx_server: Any, influx_db: str, case: str) -> None:
    content, needle = BROKEN_REGISTRIES[case]
    cfg = write_config(tmp_path, influx_server.url, influx_db)
    path = _break_registry(tmp_path / "state", content)
    before = snapshot(path)
    line = one_line_error(magsleep(cfg, "devices"))
    assert needle in line and str(path) in line
    assert "move it away" in line or "fix the path" in line
    # A dose for a configured person does not need the registry.
    r = magsleep(cfg, "dose", "add", "300", "--form", "citrate", "--person", "alice")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert snapshot(path) == before


def test_devices_json_api(tmp_path: Path, influx_server: Any, influx_db: str) -> None:
    """printf '\\xff\\xfe{}' > devices.json made the API answer 500."""
    state = tmp_path / "state"
    path = _break_registry(state, NOT_UTF8)
    with serve(make_settings(state, influx_server.url, influx_db, tokens=[])) as api:
        body = json.dumps({"person": "alice", "amount_mg": 300, "form": "citrate"}).encode()
        status, _, answer = api.request("POST", "/api/v1/doses", headers=JSON, body=body)
        assert status == 201, answer
        status, _, answer = api.request("GET", "/api/v1/doses")
        assert status == 200, answer
        assert len(json.loads(answer)["doses"]) == 1
    assert path.read_bytes() == NOT_UTF8


def test_device_status_cache_that_is_garbage_is_ignored(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    (state / "devices.json").write_text(json.dumps(
        {"version": 1, "devices": [{"address": "AA:BB:CC:DD:EE:FF", "alias": "h10", "person": "alice"}]}))
    status = state / "ble-status.json"
    status.write_bytes(b"\xff garbage")
    r = magsleep(cfg, "devices")
    assert r.returncode == 0, r.stderr
    assert "h10" in r.stdout
    assert status.read_bytes() == b"\xff garbage"


# -- secret files ---------------------------------------------------------------------------------

SECRET = b"\x00\xff\xfesecret-\x81bytes"


@pytest.mark.parametrize("case", ["binary", "directory", "missing"])
def test_influx_token_file(tmp_path: Path, case: str) -> None:
    tok = tmp_path / "influx-token"
    if case == "binary":
        tok.write_bytes(SECRET)
    elif case == "directory":
        tok.mkdir()
    cfg = write_config(tmp_path, influx={"version": 2, "org": "o", "token_file": str(tok)})
    before = snapshot(tok) if tok.exists() else None
    r = magsleep(cfg, "influx", "ping")
    line = one_line_error(r)
    assert "influx.token_file" in line and str(tok) in line
    assert "secret-" not in r.stdout + r.stderr
    assert (snapshot(tok) if tok.exists() else None) == before


def test_api_token_file_that_is_binary(tmp_path: Path) -> None:
    tok = tmp_path / "api-tokens"
    tok.write_bytes(SECRET)
    cfg = write_config(tmp_path, api={"token_file": str(tok)})
    r = magsleep(cfg, "api", "--port", str(local_influx.free_port()))
    line = one_line_error(r)
    assert "api.token_file" in line and str(tok) in line and "not UTF-8" in line
    assert "secret-" not in r.stdout + r.stderr
    assert tok.read_bytes() == SECRET


def test_api_token_file_grants_access_and_is_never_shown(tmp_path: Path, influx_server: Any, influx_db: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """api.token_file, promised by the README, was rejected as an unknown key."""
    tok = tmp_path / "api-tokens"
    tok.write_text("first-token-0123456789\n\nsecond-token-9876543210\n")
    cfg = write_config(tmp_path, api={"token_file": str(tok)})
    r = magsleep(cfg, "config", "check")
    assert r.returncode == 0, r.stderr
    assert "token_file" in r.stdout and "first-token" not in r.stdout
    from collector.settings import load_settings

    s = load_settings(cfg)
    settings = make_settings(tmp_path / "state", influx_server.url, influx_db, tokens=[], token_file=tok)
    assert s.api.token_values() == settings.api.token_values() == ["first-token-0123456789",
                                                                   "second-token-9876543210"]
    with caplog.at_level("DEBUG"), serve(settings) as api:
        assert api.request("GET", "/api/v1/doses")[0] == 401
        for t in ("first-token-0123456789", "second-token-9876543210"):
            status, _, body = api.request("GET", "/api/v1/doses", headers={"Authorization": f"Bearer {t}"})
            assert status == 200, body
    assert "token-" not in caplog.text
    assert "token-" not in repr(settings) and "token-" not in json.dumps(settings.masked())


# -- stores magsleep keeps --------------------------------------------------------------------------

def test_outbox_that_is_not_a_database(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    outbox = state / "outbox-api.sqlite"
    outbox.write_bytes(bytes(range(256)) * 20)
    before = snapshot(outbox)
    line = one_line_error(magsleep(cfg, "api", "--port", str(local_influx.free_port())))
    assert str(outbox) in line and "left untouched; move it aside" in line
    assert snapshot(outbox) == before


def test_local_influx_state_file_that_is_garbage(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    root = tmp_path / "state" / "influxdb"
    root.mkdir(parents=True)
    sf = root / "magsleep-influxd.json"
    sf.write_bytes(NOT_UTF8)
    r = magsleep(cfg, "influx", "status", "--dir", str(root))
    assert r.returncode == 1 and "not running" in r.stdout, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert sf.read_bytes() == NOT_UTF8



# -- issue 20 #12: state created private whatever the umask --------------------------------------

def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The umask of a shell where magsleep is run by hand (files would be 0644)."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_state_files_are_private(tmp_path: Path, loose_umask: None) -> None:
    from collector.ble.profiles.bangle import SleeplogState
    from collector.ble.registry import DeviceRegistry, DeviceStatus, RegisteredDevice, save_status
    from collector.doses.journal import DoseJournal
    from collector.effects.store import PlanStore
    from collector.nights.state import NightState, StateRow
    from collector.storage.outbox import SqliteOutbox

    home = tmp_path / "home"
    home.mkdir()
    os.chmod(home, 0o755)
    state = home / ".local" / "state" / "magsleep"
    DeviceRegistry(state / "devices.json", [RegisteredDevice("AA:BB:CC:DD:EE:FF", "h10", "alice")]).save()
    assert _mode(state) == 0o700
    assert _mode(state.parent) == 0o700  # and the parents it had to create
    assert _mode(home) == 0o755  # but not those that were there
    save_status(state / "ble-status.json", {"AA:BB:CC:DD:EE:FF": DeviceStatus()})
    SleeplogState(state).set("AA:BB:CC:DD:EE:FF", 1)
    box = SqliteOutbox(state / "outbox-cli.sqlite", 1 << 20)
    box.append("w", [("heart_rate bpm=60i 1", 1)])
    PlanStore(state / "plans.sqlite").active("alice")
    journal = DoseJournal(state / "doses.sqlite")
    journal.list_doses()
    nights = NightState(state / "nights.sqlite")
    nights.put("alice", "2026-11-20", StateRow("fp", 0, 0, "", ""))
    files = sorted(p.name for p in state.iterdir())
    assert {"devices.json", "ble-status.json", "bangle-sleeplog.json", "outbox-cli.sqlite",
            "outbox-cli.sqlite-wal", "plans.sqlite", "doses.sqlite", "doses.sqlite-wal", "nights.sqlite"} <= set(files)
    loose = {p.name: oct(_mode(p)) for p in state.iterdir() if _mode(p) != 0o600}
    box.close()
    journal.close()
    nights.close()
    assert not loose


def test_existing_state_dir_keeps_its_mode(tmp_path: Path, loose_umask: None) -> None:
    """An administrator's choice (systemd StateDirectoryMode=0750) is not overridden."""
    from collector.ble.registry import DeviceRegistry

    state = tmp_path / "state"
    state.mkdir(mode=0o750)
    os.chmod(state, 0o750)
    DeviceRegistry(state / "devices.json").save()
    assert _mode(state) == 0o750
    assert _mode(state / "devices.json") == 0o600


def test_embedded_influxdb_files_are_private(tmp_path: Path, loose_umask: None) -> None:
    cfg = write_config(tmp_path, url=f"http://127.0.0.1:{local_influx.free_port()}")
    cfg.write_text(cfg.read_text().replace("embedded = false", "embedded = true"))
    state = tmp_path / "state"
    root = state / "influxdb"
    try:
        r = subprocess.run([MAGSLEEP, "--config", str(cfg), "influx", "start"], capture_output=True, text=True,
                           timeout=90, umask=0o022)
        assert r.returncode == 0, r.stderr
        assert _mode(state) == _mode(root) == 0o700
        for name in ("influxdb.conf", "influxd.log", "magsleep-influxd.json"):
            assert _mode(root / name) == 0o600, name
        made_by_influxd = [p for p in root.rglob("*") if p.name in ("meta", "data", "wal") or p.suffix == ".db"]
        assert made_by_influxd
        assert all(_mode(p) & 0o077 == 0 for p in made_by_influxd), {str(p): oct(_mode(p)) for p in made_by_influxd}
    finally:
        local_influx.stop(root)


def test_corrupt_plan_store_says_what_to_do(tmp_path: Path) -> None:
    from collector.effects.store import PlanStore
    from collector.errors import StorageError

    path = tmp_path / "plans.sqlite"
    path.write_bytes(bytes(range(256)) * 8)
    before = snapshot(path)
    with pytest.raises(StorageError) as err:
        PlanStore(path).active("alice")
    assert str(path) in str(err.value) and "left untouched" in str(err.value)
    assert snapshot(path) == before
