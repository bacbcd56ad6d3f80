"""The dose API on a real loopback port, in its own thread, for attacks sent as raw HTTP."""

from __future__ import annotations

import asyncio
import http.client
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from collector.doses.api import DOSE_SERVICE, create_app
from collector.doses.entities import Dose
from collector.settings import Settings
from tests.doses.conftest import TOKEN, app_in_thread, make_settings


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
    app = create_app(settings)
    with app_in_thread(app, "dose-api-attacked") as (loop, runner, _site):
        yield Api(runner.addresses[0][1], app, loop)


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
