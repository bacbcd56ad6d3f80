"""Every panel, annotation and variable query, interpolated as Grafana does, against a real InfluxDB.

The data are seeded once (tests/dashboards/seed.py) following collector/storage/schema.py; each
check compares what a panel would receive with what was seeded.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from collector.dashboards import build_all
from collector.dashboards.interpolate import (
    ALL,
    Context,
    Variable,
    annotation_queries,
    interpolate,
    panel_targets,
    variable_queries,
)
from tests.dashboards.conftest import Seeded
from tests.dashboards.seed import BEFORE_AFTER, DEVICE, EFFECTS, FIRST_NIGHT, N_NIGHTS, S

DASHBOARDS = build_all()
FROM = datetime(FIRST_NIGHT.year, FIRST_NIGHT.month, FIRST_NIGHT.day, tzinfo=UTC) - timedelta(days=1)
TO = FROM + timedelta(days=N_NIGHTS + 3)
LAST_NIGHT = (FIRST_NIGHT + timedelta(days=N_NIGHTS - 1)).isoformat()


def ctx(**values: str | list[str]) -> Context:
    variables = {
        "person": Variable("person", "alice"),
        "device": Variable("device", ALL, all_value=".*"),
        "night": Variable("night", LAST_NIGHT),
        "metric": Variable("metric", "sol_min"),
    }
    for k, v in values.items():
        variables[k] = Variable(k, v, all_value=".*")
    return Context(int(FROM.timestamp() * 1000), int(TO.timestamp() * 1000), "5m", variables)


def series(seeded: Seeded, query: str) -> list[dict[str, Any]]:
    """The series InfluxDB returns for ``query`` (fails on an InfluxQL error)."""
    out: list[dict[str, Any]] = []
    for result in seeded.server.query(query, seeded.db)["results"]:
        assert "error" not in result, f"{result['error']}\n{query}"
        out.extend(result.get("series", []))
    return out


def rows(s: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(zip(s["columns"], v, strict=True)) for v in s["values"]]


def target(dashboard: str, title: str, ref: str = "A") -> str:
    for t, _panel, tgt in panel_targets(DASHBOARDS[dashboard]):
        if t == title and tgt["refId"] == ref:
            return str(tgt["query"])
    raise KeyError((dashboard, title, ref))


def run(seeded: Seeded, dashboard: str, title: str, ref: str = "A", **values: str | list[str]) -> list[dict[str, Any]]:
    return series(seeded, interpolate(target(dashboard, title, ref), ctx(**values)))


ALL_TARGETS = [
    pytest.param(name, title, tgt["refId"], id=f"{name}:{title}:{tgt['refId']}")
    for name, d in DASHBOARDS.items()
    for title, _panel, tgt in panel_targets(d)
]


@pytest.mark.parametrize(("dashboard", "title", "ref"), ALL_TARGETS)
def test_every_panel_query_runs_and_returns_data(seeded: Seeded, dashboard: str, title: str, ref: str) -> None:
    got = run(seeded, dashboard, title, ref)
    assert got, f"no data for {dashboard} / {title} / {ref}"
    assert all(s["values"] for s in got)


def test_every_panel_query_is_person_scoped(seeded: Seeded) -> None:
    """With bob selected, alice's values never appear (bob's numbers are all 99 / 999 / 5)."""
    for name, d in DASHBOARDS.items():
        for title, _panel, tgt in panel_targets(d):
            for s in series(seeded, interpolate(tgt["query"], ctx(person="bob", night=LAST_NIGHT))):
                for r in rows(s):
                    assert r.get("difference") in (None, 99.0), (name, title)
                    assert r.get("tst_min") in (None, 999.0), (name, title)


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_annotation_queries_return_alices_doses(seeded: Seeded, name: str) -> None:
    for _anno, q in annotation_queries(DASHBOARDS[name]):
        (s,) = series(seeded, interpolate(q, ctx()))
        got = rows(s)
        assert [r["time"] for r in got] == seeded.seed.dose_times_ns
        assert {r["elemental_mg"] for r in got} == {200.0}
        assert {r["form"] for r in got} == {"glycinate"}


def test_variable_queries(seeded: Seeded) -> None:
    night = dict(variable_queries(DASHBOARDS["night.json"]))

    def options(q: str) -> set[str]:  # Grafana collects unique values over all series
        return {v[1] for s in series(seeded, interpolate(q, ctx())) for v in s["values"]}

    assert options(night["person"]) == {"alice", "bob"}
    assert options(night["device"]) == {DEVICE}
    effects = dict(variable_queries(DASHBOARDS["effects.json"]))
    assert options(effects["metric"]) == set(EFFECTS) | set(BEFORE_AFTER)
    (nights,) = series(seeded, interpolate(night["night"], ctx()))
    # Grafana takes the second column (after time) as the option: the evening dates.
    assert [v[1] for v in nights["values"]] == [n.isoformat() for n in seeded.seed.nights]


def test_effect_stats_show_the_seeded_effect(seeded: Seeded) -> None:
    (s,) = run(seeded, "overview.json", "Sleep onset latency: magnesium − control")
    (r,) = rows(s)
    est, lo, hi, _pb = EFFECTS["sol_min"]
    assert (r["difference"], r["CI low"], r["CI high"], r["n magnesium"], r["n control"]) == (est, lo, hi, 7, 7)

    for metric, (est, lo, hi, pb) in EFFECTS.items():
        (s,) = run(seeded, "effects.json", "$metric: magnesium − control", metric=metric)
        (r,) = rows(s)
        got = (r["difference"], r["CI low"], r["CI high"], r["P(benefit)"], r["nights needed"])
        assert got == (est, lo, hi, pb, 20)


def test_effects_tables(seeded: Seeded) -> None:
    got = run(seeded, "effects.json", "All metrics: magnesium vs control")
    by_metric = {s["tags"]["metric"]: rows(s)[0] for s in got}
    assert set(by_metric) == set(EFFECTS)
    for metric, (est, lo, hi, pb) in EFFECTS.items():
        r = by_metric[metric]
        assert (r["difference"], r["CI low"], r["CI high"], r["P(benefit)"]) == (est, lo, hi, pb)
        assert r["summary"] == f"{metric} summary"
    got = run(seeded, "effects.json", "All metrics: after starting magnesium vs before")
    assert {s["tags"]["metric"]: rows(s)[0]["difference"] for s in got} == {m: v[0] for m, v in BEFORE_AFTER.items()}


def test_estimate_over_time_selected_metrics(seeded: Seeded) -> None:
    got = run(seeded, "effects.json", "Estimate as nights accrue", metric=["sol_min", "tst_min"])
    assert {s["tags"]["metric"] for s in got} == {"sol_min", "tst_min"}
    got = run(seeded, "effects.json", "Estimate as nights accrue", metric=ALL)
    assert {s["tags"]["metric"] for s in got} == set(EFFECTS)


def test_hypnogram_has_device_and_computed_stages(seeded: Seeded) -> None:
    got = {s["tags"]["source"]: [v[1] for v in s["values"]] for s in run(seeded, "night.json", "Hypnogram")}
    assert got == {"device": seeded.seed.stages_device, "computed": seeded.seed.stages_computed}


def test_heart_rate_and_rmssd(seeded: Seeded) -> None:
    (hr,) = run(seeded, "night.json", "Heart rate")
    values = [v[1] for v in hr["values"] if v[1] is not None]
    assert len(values) == 8 * 12  # 8 h in 5-min buckets
    assert set(values) == {seeded.seed.hr_bpm}
    (rr,) = run(seeded, "night.json", "RR interval and RMSSD (5 min)")
    assert {v[1] for v in rr["values"] if v[1] is not None} == {sum(seeded.seed.rr_ms) / 2}
    (rmssd,) = run(seeded, "night.json", "RR interval and RMSSD (5 min)", "B")
    lo, hi = seeded.seed.rr_ms
    assert [v[1] for v in rmssd["values"]] == pytest.approx([hi - lo] * len(rmssd["values"]))
    assert len(rmssd["values"]) == 8 * 12


def test_night_summary_is_the_selected_night(seeded: Seeded) -> None:
    for night in (seeded.seed.nights[-1], seeded.seed.nights[4]):
        (s,) = run(seeded, "night.json", "Night of $night", night=night.isoformat())
        (r,) = rows(s)
        assert r["Total sleep"] == seeded.seed.tst[night]


def test_nights_table_links_to_each_night(seeded: Seeded) -> None:
    got = run(seeded, "night.json", "Nights")
    assert {s["tags"]["dose"] for s in got} == {"magnesium", "control"}
    all_rows = sorted((r for s in got for r in rows(s)), key=lambda r: r["night"])
    assert [r["night"] for r in all_rows] == [n.isoformat() for n in seeded.seed.nights]
    last = all_rows[-1]
    assert last["from_ms"] == seeded.seed.last_lights_out_ns // 1_000_000 - 3_600_000
    assert last["to_ms"] == seeded.seed.last_lights_on_ns // 1_000_000 + 3_600_000


def test_overview_metric_split_by_dose_with_rolling_mean(seeded: Seeded) -> None:
    got = {s["tags"]["dose"]: [v[1] for v in s["values"]] for s in run(seeded, "overview.json", "Total sleep time")}
    tst = [seeded.seed.tst[n] for n in seeded.seed.nights]
    assert got == {"magnesium": tst[0::2], "control": tst[1::2]}
    (rolling,) = run(seeded, "overview.json", "Total sleep time", "B")
    expected = [sum(tst[i - 6 : i + 1]) / 7 for i in range(6, len(tst))]
    assert [v[1] for v in rolling["values"]] == pytest.approx(expected)


def test_trial_plan_adherence(seeded: Seeded) -> None:
    planned_mg = run(seeded, "effects.json", "Plan and nights", "A")[0]["values"][0][1]
    planned_ctl = run(seeded, "effects.json", "Plan and nights", "B")[0]["values"][0][1]
    assert (planned_mg, planned_ctl) == (7, 7)
    taken = {s["tags"]["dose"]: s["values"][0][1] for s in run(seeded, "effects.json", "Plan and nights", "C")}
    assert taken == {"magnesium": 7, "control": 7}
    (plan,) = run(seeded, "effects.json", "Trial plan vs what happened", "A")
    (mg,) = run(seeded, "effects.json", "Trial plan vs what happened", "B")
    assert [v[1] for v in plan["values"]] == [v[1] > 0 for v in mg["values"]]


def test_devices(seeded: Seeded) -> None:
    (seen,) = run(seeded, "devices.json", "Last seen")
    status = [p for p in seeded.seed.points if p.measurement == "device_status" and p.tags["person"] == "alice"]
    assert seen["tags"] == {"device": DEVICE}
    assert seen["values"][0][0] == max(p.time_ns for p in status)
    (now,) = run(seeded, "devices.json", "Devices now")
    r = rows(now)[0]
    assert (r["state"], r["battery_pct"], r["reconnects"], r["model"]) == ("connected", 79, 1, "H10")
    (states,) = run(seeded, "devices.json", "Connection state")
    assert [v[1] for v in states["values"]] == ["connecting", "connected", "backoff", "connected"]
    (samples,) = run(seeded, "devices.json", "Heart-rate samples per day")
    assert sum(v[1] for v in samples["values"]) == 8 * 3600 // 5
    (cov,) = run(seeded, "devices.json", "Usable signal per night")
    assert [v[1] for v in cov["values"]] == [95.0 - i for i in range(N_NIGHTS)]


def test_device_variable_filters(seeded: Seeded) -> None:
    assert run(seeded, "night.json", "Heart rate", device=DEVICE)
    assert run(seeded, "night.json", "Heart rate", device=["nope", DEVICE])
    assert run(seeded, "night.json", "Heart rate", device="nope") == []


def test_interval_seconds_constant() -> None:
    assert S == 1_000_000_000
