"""The dose API on a real loopback port, in its own thread, for attacks sent as raw HTTP."""

from __future__ import annotations

import asyncio
import http.client
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from collector.doses.api import DOSE_SERVICE, create_app
from collector.doses.model import Dose
from collector.settings import Settings
from tests.doses.conftest import TOKEN, make_settings


@dataclass
class Api:
    """A running API: its port, and a way to look into its journal."""

    port: int
    app: web.Application
    loop: asyncio.AbstractEventLoop

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def doses(self) -> list[Dose]:
        svc = self.app[DOSE_SERVICE]
        return asyncio.run_coroutine_threadsafe(svc.list_doses(), self.loop).result(timeout=30)

    def request(
        self, method: str, path: str, *, headers: Mapping[str, str | bytes] | None = None,
        body: bytes | None = None, host: str | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One raw request, headers exactly as given (Host too: default 127.0.0.1:port)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", host if host is not None else f"127.0.0.1:{self.port}")
            for k, v in (headers or {}).items():
                conn.putheader(k, v)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()


@contextmanager
def serve(settings: Settings) -> Iterator[Api]:
    """``create_app(settings)`` on 127.0.0.1, an ephemeral port, in a thread of its own."""
    loop = asyncio.new_event_loop()
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    started = threading.Event()
    holder: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def up() -> None:
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            holder["port"] = runner.addresses[0][1]

        try:
            loop.run_until_complete(up())
        except BaseException as exc:  # handed to the test's thread
            holder["error"] = exc
            started.set()
            loop.close()
            return
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    t = threading.Thread(target=run, name="dose-api-attacked", daemon=True)
    t.start()
    assert started.wait(30)
    if "error" in holder:
        raise holder["error"]
    try:
        yield Api(holder["port"], app, loop)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        t.join(30)


@pytest.fixture
def open_api(tmp_path: Path, influx_server: Any, influx_db: str) -> Iterator[Api]:
    """The default installation: loopback, no token."""
    with serve(make_settings(tmp_path / "state", influx_server.url, influx_db, tokens=[])) as api:
        yield api


@pytest.fixture
def token_api(tmp_path: Path, influx_server: Any, influx_db: str) -> Iterator[Api]:
    with serve(make_settings(tmp_path / "state", influx_server.url, influx_db)) as api:
        yield api


__all__ = ["TOKEN", "Api", "serve"]
