"""The embedded InfluxDB after a stop or a reboot: restart at once, start when missing, never twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from collector.ble.registry import DeviceRegistry, RegisteredDevice
from collector.errors import LocalInfluxError
from collector.settings import Settings, load_settings
from collector.sim.bluez import VirtualBlueZ, heart_rate_feed, heart_rate_strap
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


def _influxd_pids(root: Path) -> list[int]:
    """Live influxd processes whose config lies under ``root`` (read from /proc)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and argv[0].endswith(b"influxd") and str(root).encode() in b" ".join(argv):
            pids.append(int(proc.name))
    return pids


def test_ensure_running_starts_it_once(settings: Settings) -> None:
    root = local_influx.embedded_root(settings)
    port = local_influx.embedded_port(settings)
    assert local_influx.status(root) is None
    first = local_influx.ensure_running(settings)
    assert first is not None and first.port == port
    assert local_influx.ping(f"http://127.0.0.1:{port}")
    again = local_influx.ensure_running(settings)
    assert again == first
    assert _influxd_pids(root) == [first.pid]


def test_concurrent_ensures_agree_on_one_instance(settings: Settings) -> None:
    with ThreadPoolExecutor(3) as pool:
        started = list(pool.map(lambda _: local_influx.ensure_running(settings), range(3)))
    pids = {inst.pid for inst in started if inst is not None}
    assert len(pids) == 1
    assert _influxd_pids(local_influx.embedded_root(settings)) == list(pids)


def test_ensure_running_leaves_an_external_influxdb_alone(tmp_path: Path) -> None:
    s = load_settings(_config(tmp_path, local_influx.free_port(), embedded=False))
    assert local_influx.ensure_running(s) is None
    assert not (tmp_path / "state" / "influxdb").exists()


async def test_magsleep_run_starts_the_embedded_influxdb_and_collects_into_it(
    tmp_path: Path, virtual_bluez: VirtualBlueZ
) -> None:
    addr = "C0:FF:EE:00:00:07"
    dev = virtual_bluez.add_device(heart_rate_strap(addr, feed=heart_rate_feed(600, interval_s=0.05)), paired=True)
    port = local_influx.free_port()
    cfg = _config(tmp_path, port)
    cfg.write_text(cfg.read_text() + '[[persons]]\nname = "alice"\n')
    state = tmp_path / "state"
    DeviceRegistry(state / "devices.json", [RegisteredDevice(addr, "h10", "alice", paired=True)]).save()
    root = state / "influxdb"
    assert local_influx.status(root) is None  # as after a reboot
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAGSLEEP_")}
    proc = subprocess.Popen([MAGSLEEP, "--config", str(cfg), "run"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        t0 = time.monotonic()
        while dev.stats.notifications_sent < 20 and proc.poll() is None:
            assert time.monotonic() - t0 < 60, "no notifications within 60 s"
            await asyncio.sleep(0.1)
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        inst = local_influx.status(root.resolve())
        assert inst is not None and inst.port == port
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 15)
        out = proc.stdout.read().decode() if proc.stdout else ""
        assert code == 0, out
        assert f"embedded InfluxDB at http://127.0.0.1:{port}" in out
        q = urllib.parse.urlencode({"q": "SELECT count(bpm) FROM heart_rate", "db": "magsleep"})
        with urllib.request.urlopen(f"{inst.url}/query?{q}", timeout=10) as resp:
            series = json.loads(resp.read())["results"][0]["series"]
        assert series[0]["values"][0][1] >= 20
        # It outlives the daemon (its own session): a restarted 'magsleep run' finds it running.
        assert local_influx.status(root.resolve()) == inst
    finally:
        if proc.poll() is None:
            proc.kill()
        local_influx.stop(root)


def test_port_taken_by_an_influxdb_magsleep_did_not_start(tmp_path: Path, influx_server: Any) -> None:
    """After a reboot Debian's own influxd may hold the port: the error says so."""
    port = int(influx_server.url.rsplit(":", 1)[1])
    s = load_settings(_config(tmp_path, port))
    with pytest.raises(LocalInfluxError) as err:
        local_influx.ensure_running(s)
    assert f"port {port} is taken by an InfluxDB magsleep did not start" in str(err.value)
    assert "systemctl disable --now influxdb" in str(err.value)
    assert local_influx.status(local_influx.embedded_root(s)) is None
