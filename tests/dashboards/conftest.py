from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from collector.settings import Settings
from tests.conftest import InfluxServer
from tests.dashboards.seed import Seed, build_seed, settings_for, write


@dataclass
class Seeded:
    server: InfluxServer
    db: str
    seed: Seed
    settings: Settings


@pytest.fixture(scope="package")
def seeded(influx_server: InfluxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """One database seeded once for all dashboard/report query tests (read-only for the tests)."""
    db = "dashboards_seed"
    influx_server.create_database(db)
    seed = build_seed()
    settings = settings_for(influx_server.url, db, tmp_path_factory.mktemp("dash-state"))
    write(settings, seed)
    try:
        yield Seeded(influx_server, db, seed, settings)
    finally:
        influx_server.drop_database(db)
