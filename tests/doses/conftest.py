"""Fixtures for the dose tests: settings on the session's InfluxDB, an API server in a thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from collector.doses.api import DOSE_SERVICE, PIPELINE, create_app
from collector.doses.service import DoseService
from collector.settings import (
    ApiSettings,
    InfluxSettings,
    PersonSettings,
    Settings,
    StorageSettings,
)
from collector.storage.pipeline import Pipeline

TOKEN = "test-token-0123456789abcdef"


def make_settings(state_dir: Path, url: str, db: str, **api: Any) -> Settings:
    api.setdefault("tokens", [SecretStr(TOKEN)])
    return Settings(
        influx=InfluxSettings(embedded=False, url=url, database=db),
        storage=StorageSettings(state_dir=state_dir, flush_interval_s=0.05,
                                max_retry_backoff_s=0.5),
        persons=[PersonSettings(name="alice", timezone="Europe/Berlin"),
                 PersonSettings(name="bob", timezone="America/New_York")],
        api=ApiSettings(**api),
    )


@pytest.fixture
def settings(tmp_path: Path, influx_server: Any, influx_db: str) -> Settings:
    return make_settings(tmp_path / "state", influx_server.url, influx_db)


@pytest.fixture
def config_file(tmp_path: Path, settings: Settings) -> Path:
    """The same settings as a TOML file, for the CLI."""
    data = {
        "influx": {"embedded": False, "url": settings.influx.url,
                   "database": settings.influx.database},
        "storage": {"state_dir": str(settings.storage.state_dir), "flush_interval_s": 0.05,
                    "max_retry_backoff_s": 0.5},
        "persons": [{"name": "alice", "timezone": "Europe/Berlin"},
                    {"name": "bob", "timezone": "America/New_York"}],
    }
    path = tmp_path / "magsleep.toml"
    path.write_bytes(tomli_w.dumps(data).encode())
    return path


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = create_app(settings)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        yield c


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def service_of(client: TestClient[web.Request, web.Application]) -> DoseService:
    app = client.app
    assert app is not None
    return app[DOSE_SERVICE]


def pipeline_of(client: TestClient[web.Request, web.Application]) -> Pipeline:
    app = client.app
    assert app is not None
    pipe = app[PIPELINE]
    assert isinstance(pipe, Pipeline)
    return pipe


@dataclass
class ThreadedServer:
    url: str
    app: web.Application
    loop: asyncio.AbstractEventLoop
    runner: web.AppRunner
    port: int
    site: web.TCPSite | None = None

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run a coroutine function on the server's loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(fn(), self.loop).result(timeout=60)

    @property
    def service(self) -> DoseService:
        return self.app[DOSE_SERVICE]

    def go_offline(self) -> None:
        """Stop listening and drop open connections (the app and its journal stay up)."""

        async def down() -> None:
            assert self.site is not None and self.runner.server is not None
            await self.site.stop()
            await self.runner.server.shutdown(1.0)

        self.call(down)

    def go_online(self) -> None:
        async def up() -> None:
            self.site = web.TCPSite(self.runner, "127.0.0.1", self.port)
            await self.site.start()

        self.call(up)


@pytest.fixture
def server_now() -> Callable[[], datetime] | None:
    """The API's clock (None: the real one); a test parametrizes it, e.g. to skew the server."""
    return None


@contextmanager
def app_in_thread(app: web.Application, name: str) -> Iterator[tuple[asyncio.AbstractEventLoop, web.AppRunner,
                                                                      web.TCPSite]]:
    """``app`` on 127.0.0.1, an ephemeral port, in a thread of its own (for sync clients and raw HTTP).

    A start-up error is raised in the caller's thread; on exit the app is cleaned up and the loop closed.
    """
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    started = threading.Event()
    holder: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def up() -> None:
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            holder["site"] = site

        try:
            loop.run_until_complete(up())
        except BaseException as exc:  # handed to the caller's thread
            holder["error"] = exc
            started.set()
            loop.close()
            return
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    t = threading.Thread(target=run, name=name, daemon=True)
    t.start()
    assert started.wait(30)
    if "error" in holder:
        raise holder["error"]
    try:
        yield loop, runner, holder["site"]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        t.join(30)


@pytest.fixture
def threaded_server(settings: Settings,
                    server_now: Callable[[], datetime] | None) -> Iterator[ThreadedServer]:
    """The standalone API on a real loopback port, in its own thread (for sync clients)."""
    app = create_app(settings, now=server_now)
    with app_in_thread(app, "dose-api") as (loop, runner, site):
        port = runner.addresses[0][1]
        yield ThreadedServer(f"http://127.0.0.1:{port}", app, loop, runner, port, site)
