"""A private InfluxDB 1.x process: for tests, the demo and users without an InfluxDB of their own.

Debian's ``influxdb`` package (1.6.7) provides ``influxd``; the package's own service is never
used. We write a private config (HTTP on 127.0.0.1:<port>, reporting and ``_internal``
monitoring off, RPC bound to loopback), keep meta/data/wal under one directory, wait for /ping
and stop the process by PID.

``ensure_running`` is what ``magsleep run`` calls at start with ``influx.embedded``: it starts the
instance under ``<state_dir>/influxdb`` on the port of ``influx.url`` unless it already runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from collector.errors import LocalInfluxError
from collector.storage.files import private_dir, private_file

if TYPE_CHECKING:
    from collector.settings import Settings

INFLUXD_CANDIDATES = ("influxd", "/usr/bin/influxd")

_CONFIG_TEMPLATE = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{root}/meta"
  logging-enabled = false

[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
  trace-logging-enabled = false
  index-version = "inmem"

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{port}"
  auth-enabled = false
  log-enabled = false
  write-tracing = false
  max-body-size = 0
  max-row-limit = 0

[logging]
  level = "warn"

[continuous_queries]
  enabled = false

[subscriber]
  enabled = false
"""


def find_influxd() -> str:
    for cand in INFLUXD_CANDIDATES:
        path = shutil.which(cand)
        if path:
            return path
    raise LocalInfluxError(
        "influxd not found; install Debian's InfluxDB 1.x with "
        "'sudo apt-get install --no-install-recommends influxdb' (scripts/setup does this)"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a listener could bind ``host:port`` now.

    Binds the way influxd does (Go's listeners set SO_REUSEADDR): connections of an instance just
    stopped linger in TIME_WAIT for about a minute and must not make the port look taken; a
    program listening on it does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def ping(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=timeout) as resp:  # noqa: S310
            return int(resp.status) == 204
    except (urllib.error.URLError, OSError):
        return False


@dataclass(frozen=True, slots=True)
class LocalInflux:
    """A running private influxd."""

    root: Path
    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _state_file(root: Path) -> Path:
    return root / "magsleep-influxd.json"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def status(root: Path) -> LocalInflux | None:
    """The instance recorded under ``root`` if its process is alive and answers /ping."""
    sf = _state_file(root)
    try:
        info = json.loads(sf.read_text())
        inst = LocalInflux(root=root, port=int(info["port"]), pid=int(info["pid"]))
    except (OSError, ValueError, KeyError):
        return None
    if _pid_alive(inst.pid) and ping(inst.url):
        return inst
    return None


def start(root: Path, port: int | None = None, timeout: float = 30.0) -> LocalInflux:
    """Start influxd with its data under ``root`` (or return the one already running there).

    A lock file under ``root`` makes concurrent starts (``magsleep run`` and a hand-typed
    ``magsleep influx start``) agree on one instance.
    """
    root = root.expanduser().resolve()
    running = status(root)
    if running is not None:
        return running
    binary = find_influxd()
    private_dir(root)
    with _start_lock(root):
        running = status(root)  # another process may have started it while we waited
        if running is not None:
            return running
        return _spawn(binary, root, port, timeout)


@contextlib.contextmanager
def _start_lock(root: Path) -> Iterator[None]:
    fd = os.open(root / ".magsleep-influxd.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _spawn(binary: str, root: Path, port: int | None, timeout: float) -> LocalInflux:
    if port is None:
        port = free_port()
    elif not port_free(port):
        other = ("an InfluxDB magsleep did not start (Debian's own influxdb service? "
                 "'sudo systemctl disable --now influxdb', or use it with influx.embedded = false)"
                 if ping(f"http://127.0.0.1:{port}", timeout=0.5) else "another program")
        raise LocalInfluxError(
            f"port {port} is taken by {other} on 127.0.0.1; stop what uses it or choose another "
            "port (the port of influx.url, or --port for 'magsleep influx start')"
        )
    conf = private_file(root / "influxdb.conf")
    conf.write_text(_CONFIG_TEMPLATE.format(root=root, port=port, rpc_port=free_port()))
    log = private_file(root / "influxd.log").open("ab")
    proc = subprocess.Popen(
        [binary, "run", "-config", str(conf)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        umask=0o077,  # its meta, data and wal: private like the rest of the state
    )
    log.close()
    inst = LocalInflux(root=root, port=port, pid=proc.pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (root / "influxd.log").read_text(errors="replace")[-2000:]
            raise LocalInfluxError(f"influxd exited with code {proc.returncode}:\n{tail}")
        if ping(inst.url, timeout=0.5):
            private_file(_state_file(root)).write_text(json.dumps({"port": port, "pid": proc.pid}))
            return inst
        time.sleep(0.05)
    proc.kill()
    raise LocalInfluxError(f"influxd did not answer /ping on {inst.url} within {timeout:.0f} s")


def stop(root: Path, timeout: float = 15.0) -> bool:
    """Stop the instance recorded under ``root``. True if one was running."""
    root = root.expanduser().resolve()
    sf = _state_file(root)
    try:
        pid = int(json.loads(sf.read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return False
    was_alive = _pid_alive(pid)
    if was_alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _pid_alive(pid):
            _reap(pid)
            time.sleep(0.05)
        if _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _reap(pid)
    sf.unlink(missing_ok=True)
    return was_alive


def embedded_root(settings: Settings) -> Path:
    """Where the embedded InfluxDB keeps its data: ``<state_dir>/influxdb``."""
    return settings.storage.path("influxdb").resolve()


def embedded_port(settings: Settings) -> int:
    """The embedded InfluxDB's HTTP port: the port of ``influx.url`` (8086 when it names none)."""
    return urlsplit(settings.influx.url).port or 8086


def ensure_running(settings: Settings, timeout: float = 30.0) -> LocalInflux | None:
    """With ``influx.embedded``, the embedded InfluxDB, started if it does not run; else None.

    Idempotent: an instance already running under the state directory is returned as it is.
    Raises :class:`LocalInfluxError` when it cannot be started (influxd missing, port taken).
    """
    if not settings.influx.embedded:
        return None
    return start(embedded_root(settings), port=embedded_port(settings), timeout=timeout)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
