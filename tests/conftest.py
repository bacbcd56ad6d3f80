"""Shared fixtures: a real private InfluxDB 1.x, started once per test session."""

from __future__ import annotations

import contextlib
import itertools
import json
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from collector.storage import local_influx

pytest_plugins = ["tests.ble_fixtures"]

_db_counter = itertools.count()


@dataclass
class InfluxServer:
    """The private influxd of this test session."""

    root: Path
    url: str

    def query(self, q: str, db: str | None = None, method: str = "GET") -> dict[str, Any]:
        params = {"q": q, "epoch": "ns"}
        if db:
            params["db"] = db
        data = None
        url = f"{self.url}/query"
        if method == "POST":
            data = urllib.parse.urlencode(params).encode()
        else:
            url += "?" + urllib.parse.urlencode(params)
        req = urllib.request.Request(url, data=data, method=method)
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]

    def create_database(self, name: str) -> None:
        self.query(f'CREATE DATABASE "{name}"', method="POST")

    def drop_database(self, name: str) -> None:
        self.query(f'DROP DATABASE "{name}"', method="POST")

    def rows(self, q: str, db: str) -> list[dict[str, Any]]:
        """Rows of the first series of all statements, as dicts (plus '_tags' per series)."""
        out: list[dict[str, Any]] = []
        for result in self.query(q, db).get("results", []):
            if "error" in result:
                raise AssertionError(result["error"])
            for series in result.get("series", []):
                cols = series["columns"]
                for values in series["values"]:
                    row = dict(zip(cols, values, strict=True))
                    row["_tags"] = series.get("tags", {})
                    row["_measurement"] = series.get("name")
                    out.append(row)
        return out

    def stop(self) -> None:
        local_influx.stop(self.root)

    def start(self) -> None:
        port = int(self.url.rsplit(":", 1)[1])
        local_influx.start(self.root, port=port)


@pytest.fixture(scope="session")
def influx_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    """A private InfluxDB 1.6.7 on a free loopback port, for the whole test session."""
    root = tmp_path_factory.mktemp("influxdb")
    inst = local_influx.start(root)
    server = InfluxServer(root=root, url=inst.url)
    try:
        yield server
    finally:
        local_influx.stop(root)


@pytest.fixture
def influx_db(influx_server: InfluxServer) -> Iterator[str]:
    """A fresh, empty database on the session's InfluxDB; dropped afterwards."""
    name = f"t{next(_db_counter)}"
    influx_server.create_database(name)
    try:
        yield name
    finally:
        with contextlib.suppress(OSError):  # a test stopped the server; it restarts it
            influx_server.drop_database(name)
