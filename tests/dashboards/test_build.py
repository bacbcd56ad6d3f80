"""The committed dashboards are what the code builds, and they validate against Grafana's schema."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]
import pytest

from collector.cli import main
from collector.dashboards import BUILDERS, build_all, render, stale, write_all
from collector.dashboards.interpolate import panel_targets
from collector.storage.schema import MEASUREMENTS

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "dashboards"
SCHEMA = json.loads((DASHBOARDS / "schema" / "dashboard.schema.json").read_text())


def test_committed_json_matches_builder() -> None:
    assert stale(DASHBOARDS) == [], "run 'magsleep dashboards build' and commit dashboards/*.json"
    for name in BUILDERS:
        assert (DASHBOARDS / name).read_text() == render(build_all()[name])


def test_stale_detects_an_edit(tmp_path: Path) -> None:
    write_all(tmp_path)
    assert stale(tmp_path) == []
    p = tmp_path / "night.json"
    p.write_text(p.read_text().replace("Hypnogram", "Hypnogramm"))
    assert stale(tmp_path) == ["night.json"]
    (tmp_path / "devices.json").unlink()
    assert stale(tmp_path) == ["night.json", "devices.json"]


def test_cli_build_and_check(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["dashboards", "build", "--out", str(tmp_path)])
    assert exc.value.code == 0
    assert sorted(p.name for p in tmp_path.glob("*.json")) == sorted(BUILDERS)
    with pytest.raises(SystemExit) as exc:
        main(["dashboards", "build", "--check", "--out", str(tmp_path)])
    assert exc.value.code == 0
    (tmp_path / "effects.json").write_text("{}")
    with pytest.raises(SystemExit) as exc:
        main(["dashboards", "build", "--check", "--out", str(tmp_path)])
    assert exc.value.code == 1


def test_schema_source_is_recorded() -> None:
    assert "@grafana/schema 11.6" in (DASHBOARDS / "schema" / "VERSION").read_text()
    assert "AnnotationTarget relaxed" in SCHEMA["$comment"]


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_dashboard_validates_against_grafana_schema(name: str) -> None:
    data = json.loads((DASHBOARDS / name).read_text())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in jsonschema.Draft7Validator(SCHEMA).iter_errors(data)]
    assert errors == []


def test_schema_rejects_a_broken_dashboard() -> None:
    data = build_all()["night.json"]
    data["panels"][0]["gridPos"]["h"] = "tall"
    data["refresh"] = 5
    errors = list(jsonschema.Draft7Validator(SCHEMA).iter_errors(data))
    assert len(errors) == 2


def test_dashboards_are_distinct_and_use_influxql_only() -> None:
    built = build_all()
    uids = [d["uid"] for d in built.values()]
    assert len(set(uids)) == len(uids) == 4
    for d in built.values():
        assert {v["name"] for v in d["templating"]["list"]} >= {"datasource", "person"}
        for title, _panel, target in panel_targets(d):
            assert target["rawQuery"] is True, title
            assert target["datasource"] == {"type": "influxdb", "uid": "${datasource}"}, title
            assert "from(bucket" not in target["query"], title  # no Flux


def test_queries_name_only_schema_measurements() -> None:
    for d in build_all().values():
        for title, _panel, target in panel_targets(d):
            for m in re.findall(r'FROM "(\w+)"', target["query"]):
                assert m in MEASUREMENTS, (title, m)


def test_stage_colours_cover_every_stage_code() -> None:
    from collector.dashboards.common import STAGES

    doc = MEASUREMENTS["sleep_stage"].field("stage_code").doc
    codes = {int(c) for c in re.findall(r"(-?\d+) ", doc)}
    assert set(STAGES) == codes
