"""Forms, elemental shares, the pure rules, and the journal's hand-off to the pipeline."""

from __future__ import annotations

import asyncio
import fcntl
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from collector.app.persons import Persons
from collector.doses.api import mount
from collector.doses.entities import DoseCreate, DosePatch, DoseValidationError, Source
from collector.doses.forms import FORMS, Form, elemental_share, molar_mass, parse_form
from collector.doses.rules import Rules, apply_patch, build_dose
from collector.doses.service import DoseService
from collector.errors import ConfigError
from collector.settings import Settings
from collector.storage.pipeline import Pipeline
from tests.doses.conftest import auth, make_settings

NOW = datetime(2026, 11, 20, 21, 0, tzinfo=UTC)

# Shares as published in docs/doses.md (mass fraction of Mg, percent, one decimal).
DOCUMENTED = {
    Form.glycinate: 14.1, Form.bisglycinate: 14.1, Form.citrate: 16.2, Form.oxide: 60.3,
    Form.threonate: 8.3, Form.malate: 15.5, Form.taurate: 8.9, Form.chloride: 12.0,
    Form.sulfate: 9.9,
}


def test_shares_match_the_documented_table() -> None:
    assert {f: round(i.share * 100, 1) for f, i in FORMS.items()} == DOCUMENTED
    assert elemental_share(Form.other) is None
    assert set(FORMS) | {Form.other} == set(Form)
    docs = (Path(__file__).resolve().parents[2] / "docs" / "doses.md").read_text()
    for form, pct in DOCUMENTED.items():
        assert f"| {form.value} |" in docs and f"| {pct:.1f} % |" in docs


def test_molar_masses() -> None:
    assert molar_mass("MgO") == pytest.approx(40.304)
    assert molar_mass("Cl2H12MgO6") == pytest.approx(203.30, abs=0.01)  # MgCl2·6H2O
    with pytest.raises(ValueError, match="cannot parse"):
        molar_mass("Mg(OH)2")


@pytest.mark.parametrize("text", ["Glycinate", " citrate ", "Magnesium Oxide", "bis-glycinate"])
def test_parse_form_is_forgiving(text: str) -> None:
    assert parse_form(text) in set(Form)


def test_parse_form_lists_allowed() -> None:
    with pytest.raises(ValueError, match="use one of: glycinate, bisglycinate, citrate"):
        parse_form("carbonate")


def test_configured_default_form_is_normalised_and_checked_where_doses_start(tmp_path: Path) -> None:
    """The settings do not know the forms: the dose rules read doses.default_form, and a dose
    service refuses to start on one that is not a form (before anything is logged)."""
    base = make_settings(tmp_path, "http://127.0.0.1:1", "x")

    def with_form(form: str) -> Settings:
        return base.model_copy(update={"doses": base.doses.model_copy(update={"default_form": form})})

    rules = Rules(with_form(" Magnesium Citrate"), now=lambda: NOW)
    assert rules.default_form() is Form.citrate
    assert build_dose(DoseCreate(person="alice", amount_mg=1000), rules).form is Form.citrate
    with pytest.raises(ConfigError, match=r"^doses.default_form: unknown form 'kryptonite'; use one of: glycinate"):
        DoseService(with_form("kryptonite"))


@pytest.fixture
def rules(tmp_path: Path) -> Rules:
    return Rules(make_settings(tmp_path, "http://127.0.0.1:1", "x"), now=lambda: NOW)


def test_build_defaults(rules: Rules) -> None:
    d = build_dose(DoseCreate(person="alice", amount_mg=1000), rules)
    assert d.form is Form.glycinate and d.supplement == "magnesium" and d.source is Source.api
    assert d.elemental_computed and d.elemental_mg == pytest.approx(141.0, abs=0.1)
    assert d.taken_at == NOW and d.taken_at.utcoffset() == timedelta(hours=1)  # Berlin
    g = build_dose(DoseCreate(person="bob", amount_mg=100, elemental_mg=20, form="other"), rules)
    assert not g.elemental_computed and g.elemental_mg == 20


def test_boundaries(rules: Rules) -> None:
    ok = [
        DoseCreate(person="alice", amount_mg=3000, elemental_mg=2000),  # at the ceiling
        DoseCreate(person="alice", amount_mg=1, taken_at=NOW + timedelta(minutes=10)),
        DoseCreate(person="alice", amount_mg=1, taken_at=NOW - timedelta(days=365)),
    ]
    for c in ok:
        build_dose(c, rules)
    bad = [
        (DoseCreate(person="alice", amount_mg=3000, elemental_mg=2000.5), "elemental_mg"),
        (DoseCreate(person="alice", amount_mg=1, taken_at=NOW + timedelta(minutes=10, seconds=1)),
         "taken_at"),
        (DoseCreate(person="alice", amount_mg=1, taken_at=NOW - timedelta(days=365, seconds=1)),
         "taken_at"),
    ]
    for c, field in bad:
        with pytest.raises(DoseValidationError) as ei:
            build_dose(c, rules)
        assert [p.field for p in ei.value.problems] == [field]
    with pytest.raises(ValueError, match="must be at least 1 mg"):  # below the minimum dose
        DoseCreate(person="alice", amount_mg=5e-324)


def test_all_problems_reported_together(rules: Rules) -> None:
    with pytest.raises(DoseValidationError) as ei:
        build_dose(DoseCreate(person="zed", amount_mg=10, form="other"), rules)
    assert {p.field for p in ei.value.problems} == {"person", "elemental_mg"}


def test_patch_recomputes_only_computed_elemental(rules: Rules) -> None:
    d = build_dose(DoseCreate(person="alice", amount_mg=1000, form="citrate"), rules)
    p = apply_patch(d, DosePatch(form=Form.oxide), rules)
    assert p.elemental_mg == pytest.approx(603.0, abs=0.1) and p.elemental_computed
    g = build_dose(DoseCreate(person="alice", amount_mg=1000, elemental_mg=100), rules)
    assert apply_patch(g, DosePatch(amount_mg=900), rules).elemental_mg == 100
    with pytest.raises(DoseValidationError, match="required for form 'other'"):
        apply_patch(d, DosePatch(form=Form.other), rules)
    moved = apply_patch(d, DosePatch(person="bob"), rules)
    assert moved.person == "bob" and moved.id == d.id


async def test_journal_queue_survives_and_is_delivered_on_start(
    settings: Settings, influx_server: Any, influx_db: str
) -> None:
    """Doses logged with no pipeline at hand are sent when a service with one starts."""
    async with DoseService(settings) as svc:
        res = await svc.add(DoseCreate(person="alice", amount_mg=300, id=uuid4()))
        assert await svc.pending() == 1
    async with Pipeline.from_settings(settings, name="t") as pipe:
        async with DoseService(settings, sink=pipe) as svc:
            assert await svc.pending() == 0
        await pipe.flush(timeout=20)
    rows = influx_server.rows("SELECT dose_id FROM supplement_dose", influx_db)
    assert [r["dose_id"] for r in rows] == [str(res.dose.id)]


async def test_mount_into_daemon_app(settings: Settings, influx_server: Any, influx_db: str) -> None:
    async with Pipeline.from_settings(settings, name="daemon") as pipe:
        app = web.Application()
        mount(app, settings, sink=pipe, persons=Persons(settings, registry=lambda: ["dave"]))
        async with TestClient(TestServer(app, host="127.0.0.1")) as c:
            r = await c.post("/api/v1/doses", json={"person": "dave", "amount_mg": 200},
                             headers=auth())
            assert r.status == 201
            await pipe.flush(timeout=20)
    rows = influx_server.rows("SELECT * FROM supplement_dose", influx_db)
    assert [r["person"] for r in rows] == ["dave"]


async def test_running_api_beside_the_daemon(settings: Settings, influx_server: Any,
                                             influx_db: str) -> None:
    import aiohttp

    from collector.doses.api import running_api

    async with Pipeline.from_settings(settings, name="daemon") as pipe:
        async with running_api(settings, sink=pipe, port=0) as url, aiohttp.ClientSession() as s:
            async with s.post(f"{url}/api/v1/doses", json={"person": "bob", "amount_mg": 50},
                              headers=auth()) as r:
                assert r.status == 201
            async with s.get(f"{url}/api/v1/doses") as r:
                assert r.status == 401
        await pipe.flush(timeout=20)
    rows = influx_server.rows("SELECT * FROM supplement_dose", influx_db)
    assert [r["person"] for r in rows] == ["bob"]


async def test_one_process_at_a_time_hands_the_journal_over(
    settings: Settings, influx_server: Any, influx_db: str
) -> None:
    """A service skips the hand-off while another process holds the lock, and its periodic
    hand-off later delivers what a pipeline-less writer (a CLI without InfluxDB) queued."""
    async with DoseService(settings) as cli:  # no pipeline: queues only
        res = await cli.add(DoseCreate(person="alice", amount_mg=300))
        fd = os.open(cli.path.with_suffix(".drain.lock"), os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)  # "another process" is handing over
        try:
            async with Pipeline.from_settings(settings, name="t") as pipe, \
                    DoseService(settings, sink=pipe, drain_interval_s=0.05) as daemon:
                assert await daemon.pending() == 1  # start waited, then skipped
                os.close(fd)  # the other process is done
                fd = -1
                for _ in range(100):
                    if await daemon.pending() == 0:
                        break
                    await asyncio.sleep(0.05)
                assert await daemon.pending() == 0
                await pipe.flush(timeout=20)
        finally:
            if fd >= 0:
                os.close(fd)
    rows = influx_server.rows("SELECT dose_id FROM supplement_dose", influx_db)
    assert [r["dose_id"] for r in rows] == [str(res.dose.id)]
