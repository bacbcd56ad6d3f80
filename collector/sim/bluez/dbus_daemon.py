"""A private ``dbus-daemon`` that plays the system bus for the virtual BlueZ.

bleak talks to BlueZ on the *system* bus; pointing ``DBUS_SYSTEM_BUS_ADDRESS`` at a private
daemon lets the virtual BlueZ own ``org.bluez`` there without touching the machine's real bus.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from collector.errors import DeviceError

ENV_SYSTEM_BUS = "DBUS_SYSTEM_BUS_ADDRESS"

# A session-like policy: anyone may own any name and talk to anyone (only this user can
# reach the socket anyway: it lives in a private directory).
_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
  <limit name="max_incoming_bytes">1000000000</limit>
  <limit name="max_outgoing_bytes">1000000000</limit>
  <limit name="max_message_size">1000000000</limit>
</busconfig>
"""

INSTALL_ADVICE = "install it with 'sudo apt-get install dbus' (Debian/Ubuntu) and try again"


class PrivateDBus:
    """A ``dbus-daemon`` process listening on a unix socket in its own temporary directory."""

    def __init__(self, proc: subprocess.Popen[bytes], address: str, root: Path, owns_root: bool) -> None:
        self._proc = proc
        self.address = address
        self.root = root
        self._owns_root = owns_root

    @classmethod
    def start(cls, root: Path | None = None) -> PrivateDBus:
        """Start a daemon; raises :class:`DeviceError` with advice when ``dbus-daemon`` is missing."""
        exe = shutil.which("dbus-daemon") or ("/usr/bin/dbus-daemon" if Path("/usr/bin/dbus-daemon").exists() else None)
        if exe is None:
            raise DeviceError(f"dbus-daemon not found; {INSTALL_ADVICE}")
        owns_root = root is None
        base = Path(tempfile.mkdtemp(prefix="magsleep-dbus-")) if root is None else root
        base.mkdir(parents=True, exist_ok=True)
        sock = base / "system_bus_socket"
        conf = base / "bus.conf"
        conf.write_text(_CONFIG.format(socket=sock), encoding="utf-8")
        proc = subprocess.Popen(
            [exe, f"--config-file={conf}", "--nofork", "--nopidfile", "--print-address=1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        if not line:
            proc.kill()
            proc.wait()
            raise DeviceError(f"dbus-daemon did not start (exit {proc.poll()}); check {conf}")
        return cls(proc, line, base, owns_root)

    @property
    def running(self) -> bool:
        return self._proc.poll() is None

    def stop(self) -> None:
        """Terminate the daemon and remove its directory (if this object created it)."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    @contextlib.contextmanager
    def as_system_bus(self) -> Iterator[str]:
        """Point ``DBUS_SYSTEM_BUS_ADDRESS`` at this daemon for the duration of the block."""
        old = os.environ.get(ENV_SYSTEM_BUS)
        os.environ[ENV_SYSTEM_BUS] = self.address
        try:
            yield self.address
        finally:
            if old is None:
                os.environ.pop(ENV_SYSTEM_BUS, None)
            else:
                os.environ[ENV_SYSTEM_BUS] = old


@contextlib.contextmanager
def private_system_bus(root: Path | None = None) -> Iterator[PrivateDBus]:
    """Start a private daemon, make it the system bus, stop it afterwards."""
    bus = PrivateDBus.start(root)
    try:
        with bus.as_system_bus():
            yield bus
    finally:
        bus.stop()
