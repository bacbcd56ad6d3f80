"""Nordic UART Service (NUS): a serial console over BLE, as Espruino (Bangle.js) and others use it.

RX (6e400002, write) takes text for the device; TX (6e400003, notify) carries what the device
prints, cut into notifications of at most MTU-3 bytes (20 by default) with no regard for line or
JSON boundaries. :class:`LineAssembler` turns that byte stream back into lines and
:func:`json_payload` finds the JSON a line carries among console noise (prompts, echo, escape
sequences, "Uncaught Error" reports).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from collector.errors import DeviceError

if TYPE_CHECKING:
    from bleak import BleakClient
    from bleak.backends.characteristic import BleakGATTCharacteristic

NUS_SERVICE = "6e400001-b5a3-f393-e0a9-e50e24dcca9e"
NUS_RX = "6e400002-b5a3-f393-e0a9-e50e24dcca9e"  # we write here
NUS_TX = "6e400003-b5a3-f393-e0a9-e50e24dcca9e"  # the device notifies here

#: Bytes per RX write: the default ATT MTU (23) minus 3, safe on every device.
WRITE_CHUNK = 20
#: A line longer than this is console garbage (or an attack): dropped, the assembler resynchronises.
MAX_LINE = 64 * 1024
#: Real seconds between link checks while waiting for a line.
LINK_POLL_S = 0.2

_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class LineAssembler:
    """Bytes in (any split), complete text lines out; ``\\r`` and ANSI escapes removed."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._buf = bytearray()
        self._max = max_line
        self.overflows = 0

    def feed(self, data: bytes | bytearray) -> list[str]:
        self._buf += data
        if b"\n" not in data:
            if len(self._buf) > self._max:
                self._buf.clear()
                self.overflows += 1
            return []
        *lines, rest = bytes(self._buf).split(b"\n")
        self._buf = bytearray(rest)
        out = []
        for raw in lines:
            if len(raw) > self._max:
                self.overflows += 1
                continue
            text = _ESCAPES.sub("", raw.decode("utf-8", errors="replace")).replace("\r", "").strip()
            if text:
                out.append(text)
        return out

    def reset(self) -> None:
        self._buf.clear()


def json_payload(line: str) -> Any:
    """The JSON value a console line carries, or None; leading prompt/echo garbage is skipped.

    Espruino prefixes output with prompts ('>') and may echo input; the payload is the first
    '[' or '{' from which the rest of the line parses as JSON.
    """
    for i, ch in enumerate(line):
        if ch in "[{":
            try:
                return json.loads(line[i:])
            except ValueError:
                continue
    return None


class UartConsole:
    """A console session on one connection: subscribe TX, write lines to RX, route received lines.

    Every complete line is offered to ``on_line`` (unsolicited output such as HRM events); between
    :meth:`begin` and :meth:`end` lines are also queued for :meth:`next_line`.
    """

    def __init__(self, client: BleakClient, *, on_line: Callable[[str], None] | None = None,
                 on_bytes: Callable[[], None] | None = None) -> None:
        self._client = client
        self._asm = LineAssembler()
        self._lines: asyncio.Queue[str] = asyncio.Queue()
        self._on_line = on_line
        self._on_bytes = on_bytes
        self._collecting = False

    async def open(self) -> None:
        if self._client.services.get_characteristic(NUS_TX) is None:
            raise DeviceError("the device serves no Nordic UART TX characteristic (6e400003-...)")
        await self._client.start_notify(NUS_TX, self._notified)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._client.stop_notify(NUS_TX)

    def _notified(self, _char: BleakGATTCharacteristic, data: bytearray) -> None:
        if self._on_bytes is not None:
            self._on_bytes()
        for line in self._asm.feed(data):
            if self._on_line is not None:
                self._on_line(line)
            if self._collecting:
                self._lines.put_nowait(line)

    def begin(self) -> None:
        """Start queueing lines for a request (anything queued before is forgotten)."""
        while not self._lines.empty():
            self._lines.get_nowait()
        self._collecting = True

    def end(self) -> None:
        self._collecting = False
        while not self._lines.empty():
            self._lines.get_nowait()

    async def send(self, text: str) -> None:
        data = text.encode()
        for i in range(0, len(data), WRITE_CHUNK):
            await self._client.write_gatt_char(NUS_RX, data[i:i + WRITE_CHUNK], response=True)

    async def next_line(self, timeout_s: float) -> str:
        """The next received line; :class:`TimeoutError` after ``timeout_s`` real seconds,
        :class:`DeviceError` as soon as the link is gone."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            if not self._client.is_connected:
                raise DeviceError("link lost while waiting for the console")
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"no console line within {timeout_s:.0f} s")
            try:
                return await asyncio.wait_for(self._lines.get(), min(left, LINK_POLL_S))
            except TimeoutError:
                continue
