"""`magsleep run` as a real child process: its settings file, and a run stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from collector.ble.registry import DeviceRegistry, RegisteredDevice


def write_run_config(tmp_path: Path, influx_server: Any, influx_db: str, device: str, extra: str = "") -> Path:
    """Settings for one person (alice) writing into the test InfluxDB, ``device`` registered as h10-alice."""
    cfg = tmp_path / "magsleep.toml"
    cfg.write_text(f"""
log_level = "INFO"
[influx]
embedded = false
url = "{influx_server.url}"
database = "{influx_db}"
[storage]
state_dir = "{tmp_path}"
[[persons]]
name = "alice"
{extra}""")
    DeviceRegistry(tmp_path / "devices.json", [RegisteredDevice(device, "h10-alice", "alice", paired=True)]).save()
    return cfg


async def run_until_then_sigterm(cfg: Path, started: Callable[[], bool], limit_s: float = 60.0) -> tuple[int, str]:
    """Start ``magsleep run``, wait until ``started()`` (it must still run), send SIGTERM; exit code and output."""
    env = {**os.environ, "MAGSLEEP_CONFIG": str(cfg)}
    proc = subprocess.Popen([sys.executable, "-m", "collector", "run"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + limit_s
        while not started() and proc.poll() is None:
            assert time.monotonic() < deadline, "condition not met in time"
            await asyncio.sleep(0.05)
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 15)
    finally:
        if proc.poll() is None:
            proc.kill()
    return code, proc.stdout.read().decode() if proc.stdout else ""
