"""The embedded InfluxDB after a stop or a reboot: restart at once, start when missing, never twice."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.settings import Settings, load_settings
from collector.storage import local_influx

MAGSLEEP = str(Path(sys.executable).parent / "magsleep")


def _config(tmp_path: Path, port: int, *, embedded: bool = True) -> Path:
    cfg = tmp_path / "magsleep.toml"
    cfg.write_text(f'[influx]\nembedded = {"true" if embedded else "false"}\nurl = "http://127.0.0.1:{port}"\n'
                   f'[storage]\nstate_dir = "{tmp_path / "state"}"\n')
    return cfg


def _magsleep(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAGSLEEP_")}
    return subprocess.run([MAGSLEEP, "--config", str(cfg), *args], capture_output=True, text=True, timeout=90,
                          env={**env, "COLUMNS": "200"})


def _plain_bind_fails(port: int) -> bool:
    """A bind without SO_REUSEADDR: what the old port check did."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    s = load_settings(_config(tmp_path, local_influx.free_port()))
    try:
        yield s
    finally:
        local_influx.stop(local_influx.embedded_root(s))


def test_stop_then_start_at_once_on_the_same_port(tmp_path: Path) -> None:
    port = local_influx.free_port()
    cfg = _config(tmp_path, port)
    root = tmp_path / "state" / "influxdb"
    try:
        r = _magsleep(cfg, "influx", "start")
        assert r.returncode == 0, r.stderr
        # Connections the server closes leave its port in TIME_WAIT once it stops.
        for _ in range(5):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5) as resp:
                assert resp.status == 204
        r = _magsleep(cfg, "influx", "stop")
        assert r.returncode == 0 and "stopped" in r.stdout, r.stdout + r.stderr
        assert _plain_bind_fails(port), "no TIME_WAIT left behind: this test would not reproduce the bug"
        assert local_influx.port_free(port)
        r = _magsleep(cfg, "influx", "start")
        assert r.returncode == 0, r.stderr
        assert f"127.0.0.1:{port}" in r.stdout
        assert local_influx.ping(f"http://127.0.0.1:{port}")
    finally:
        local_influx.stop(root)


def test_port_free_still_sees_a_listener() -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert not local_influx.port_free(port)
    assert local_influx.port_free(port)
