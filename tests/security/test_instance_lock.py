"""Issue 20 #6: one `magsleep run` (and one `magsleep api`) per state dir.

A second one exits at once with a message naming the first one's pid; the lock goes with the
process however it ends, so a killed one never blocks the next start.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from collector.app.daemon import run_daemon
from collector.ble.registry import DeviceRegistry, RegisteredDevice
from collector.errors import AlreadyRunningError
from collector.settings import ApiSettings, InfluxSettings, PersonSettings, Settings, StorageSettings
from collector.sim.bluez import heart_rate_feed, heart_rate_strap
from collector.storage import local_influx
from collector.storage.lock import acquire, holder_pid, instance_lock
from tests.cli.console import Console, flat, magsleep_exe

ADDR = "C0:FF:EE:00:0E:01"


def test_second_holder_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    with instance_lock(tmp_path, "run") as lock:
        assert lock.path == tmp_path / "run.lock"
        assert holder_pid(tmp_path, "run") == os.getpid()
        with pytest.raises(AlreadyRunningError, match=rf"another magsleep run \(pid {os.getpid()}\)"):
            acquire(tmp_path, "run")
        with instance_lock(tmp_path, "api"):  # another role: its own lock
            pass
    assert (tmp_path / "run.lock").stat().st_mode & 0o777 == 0o600
    with instance_lock(tmp_path, "run"):  # released: the next one gets it
        pass


def test_a_killed_holder_never_blocks_the_next_start(tmp_path: Path) -> None:
    code = ("import sys, time; from pathlib import Path; from collector.storage.lock import acquire;"
            "acquire(Path(sys.argv[1]), 'run'); print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(AlreadyRunningError, match=rf"\(pid {proc.pid}\).*`kill {proc.pid}`"):
            acquire(tmp_path, "run")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    with instance_lock(tmp_path, "run"):
        assert holder_pid(tmp_path, "run") == os.getpid()


def console(tmp_path: Path, influx_server: Any, influx_db: str) -> Console:
    home = tmp_path / "home"
    home.mkdir()
    return Console(home, {"persons": [{"name": "alice"}],
                          "influx": {"embedded": False, "url": influx_server.url, "database": influx_db},
                          "api": {"port": local_influx.free_port()}})


def test_second_magsleep_api_exits_naming_the_first(tmp_path: Path, influx_server: Any, influx_db: str) -> None:
    con = console(tmp_path, influx_server, influx_db)
    con.write_config()
    state = con.home / "state"
    first = subprocess.Popen([str(magsleep_exe()), "api"], cwd=con.home, env=con.env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while holder_pid(state, "api") != first.pid:
            assert first.poll() is None, "the first magsleep api exited"
            assert time.monotonic() < deadline, "the first magsleep api never took its lock"
            time.sleep(0.05)
        r = con.run("api", "--port", str(local_influx.free_port()))
        assert r.returncode == 2, r.stdout + r.stderr
        assert f"another magsleep api (pid {first.pid}) is already running on {state}" in flat(r.stderr)
        assert "Traceback" not in r.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(20) == 0
    assert holder_pid(state, "api") is None  # released on a clean stop


async def test_second_magsleep_run_exits_naming_the_first(
    tmp_path: Path, virtual_bluez: Any, influx_server: Any, influx_db: str
) -> None:
    con = console(tmp_path, influx_server, influx_db)
    state = con.home / "state"
    virtual_bluez.add_device(heart_rate_strap(ADDR, feed=heart_rate_feed(60)), paired=True)
    settings = Settings(influx=InfluxSettings(embedded=False, url=influx_server.url, database=influx_db),
                        storage=StorageSettings(state_dir=state), persons=[PersonSettings(name="alice")],
                        api=ApiSettings(port=local_influx.free_port()))
    registry = DeviceRegistry(DeviceRegistry.path_for(settings),
                              [RegisteredDevice(ADDR, "h10-alice", "alice", paired=True)])
    registry.save()
    stop = asyncio.Event()
    task = asyncio.create_task(run_daemon(settings, registry, stop_event=stop))
    try:
        for _ in range(200):
            if holder_pid(state, "run") == os.getpid():
                break
            assert not task.done(), task.exception()
            await asyncio.sleep(0.05)
        r = await asyncio.to_thread(con.run, "run")
        assert r.returncode == 2, r.stdout + r.stderr
        assert f"another magsleep run (pid {os.getpid()}) is already running on {state}" in flat(r.stderr)
        assert not task.done()  # the first one goes on
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    assert holder_pid(state, "run") is None
