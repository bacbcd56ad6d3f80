"""A real Mosquitto broker on a free loopback port, and a subscriber that listens like Home Assistant."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from collector.storage.local_influx import free_port


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if found is None:
        raise RuntimeError("mosquitto is not installed; run ./scripts/setup (apt-get install mosquitto)")
    return found


@dataclass
class Broker:
    """A private Mosquitto (no persistence: a restart forgets every retained message)."""

    root: Path
    port: int
    passwords: Path | None = None
    tls: tuple[Path, Path] | None = None  # certificate and key of a TLS listener
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        conf = self.root / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", "user root",
                 f"log_dest file {self.root / 'mosquitto.log'}", "log_type all"]
        if self.tls is not None:
            lines += [f"certfile {self.tls[0]}", f"keyfile {self.tls[1]}"]
        if self.passwords is not None:
            lines += ["allow_anonymous false", f"password_file {self.passwords}"]
        else:
            lines.append("allow_anonymous true")
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {err} {self.log()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port}: {self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None

    def log(self) -> str:
        path = self.root / "mosquitto.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    root = tmp_path / "mosquitto"
    root.mkdir()
    b = Broker(root, free_port())
    b.start()
    try:
        yield b
    finally:
        b.stop()


@dataclass
class HomeAssistant:
    """Subscribes to discovery and magsleep's topics as HA does; keeps the last message per topic."""

    port: int
    last: dict[str, bytes] = field(default_factory=dict)
    retained: dict[str, bool] = field(default_factory=dict)
    log: list[tuple[str, bytes]] = field(default_factory=list)
    client: aiomqtt.Client | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, ready: asyncio.Event) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port, identifier=f"fake-home-assistant-{id(self)}") as c:
            self.client = c
            await c.subscribe("homeassistant/#", qos=1)
            await c.subscribe("magsleep/#", qos=1)
            ready.set()
            async for msg in c.messages:
                payload = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload).encode()
                self.last[str(msg.topic)] = payload
                self.retained[str(msg.topic)] = bool(msg.retain)
                self.log.append((str(msg.topic), payload))
                self.changed.set()

    def text(self, topic: str) -> str | None:
        v = self.last.get(topic)
        return None if v is None else v.decode()

    def configs(self) -> dict[str, dict[str, Any]]:
        return {t: json.loads(v) for t, v in self.last.items() if t.startswith("homeassistant/") and v}

    async def wait_for(self, topic: str, value: str | None = None, timeout: float = 10.0) -> str:
        """The topic's payload once it is there (and equals ``value`` if given)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            got = self.text(topic)
            if got is not None and (value is None or got == value):
                return got
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"{topic}: wanted {value!r}, last {got!r}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 0.2))

    async def press(self, topic: str, payload: str = "PRESS", retain: bool = False) -> None:
        assert self.client is not None
        await self.client.publish(topic, payload, qos=1, retain=retain)


@contextlib.asynccontextmanager
async def home_assistant(port: int) -> AsyncIterator[HomeAssistant]:
    ha = HomeAssistant(port)
    ready = asyncio.Event()
    task = asyncio.create_task(ha.run(ready))
    done, _ = await asyncio.wait({task, asyncio.create_task(ready.wait())}, timeout=10,
                                 return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    try:
        yield ha
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await task


@dataclass
class FrozenLink:
    """A loopback TCP relay in front of the broker that can go silent, like a broker host that hangs or a
    network that drops packets: connections stay open but nothing gets through either way."""

    target_port: int
    port: int = 0
    frozen: bool = False
    #: bytes from the broker to let through before going silent by itself (4: just the CONNACK)
    freeze_after: int | None = None
    passed_down: int = 0
    server: asyncio.Server | None = None
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self.writers.append(up_writer)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, down: bool) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    if down and self.freeze_after is not None:
                        data = data[: max(0, self.freeze_after - self.passed_down)]
                        self.passed_down += len(data)
                        self.frozen = self.frozen or self.passed_down >= self.freeze_after
                        if data:
                            dst.write(data)
                    elif not self.frozen:  # frozen: swallowed, the connection stays open
                        dst.write(data)
                    await dst.drain()
            if not self.frozen:  # a dead network does not pass on a close either
                dst.close()

        await asyncio.gather(pump(reader, up_writer, False), pump(up_reader, writer, True))

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for w in self.writers:
            w.close()
        if self.server is not None:
            await self.server.wait_closed()


@contextlib.asynccontextmanager
async def frozen_link(target_port: int) -> AsyncIterator[FrozenLink]:
    link = FrozenLink(target_port)
    await link.start()
    try:
        yield link
    finally:
        await link.stop()
