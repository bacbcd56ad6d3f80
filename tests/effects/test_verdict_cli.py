"""`magsleep effects` through the console script: the verdict first, ranked plain names, validity in the JSON."""

from __future__ import annotations

import json
from pathlib import Path

from collector.effects.validity import assess, load_table
from collector.effects.verdict import IMPORTANCE, PLAIN
from tests.cli.console import Console, flat
from tests.conftest import InfluxServer
from tests.effects.verdict_seed import WEEKS, seed, settings_for


def test_effects_cli_answers_first(influx_server: InfluxServer, influx_db: str, tmp_path: Path) -> None:
    seed(settings_for(influx_server.url, influx_db, tmp_path / "state"))
    console = Console(tmp_path, {"influx": {"embedded": False, "url": influx_server.url, "database": influx_db},
                                 "persons": [{"name": "alice"}]}, timeout_s=180)
    few = ("-m", "sol_min", "-m", "tst_min", "-m", "rem_min", "-m", "deep_min", "-m", "hr_mean_bpm")  # time
    res = console.run("effects", "--no-write", "--format", "json", *few)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)[0]
    v = out["verdict"]
    assert v["headline"].startswith("For you, magnesium nights: ")
    table = load_table()
    assert set(out["validity"]) == set(PLAIN)
    for metric in {r["metric"] for r in out["results"]}:  # what the shipped table says, metric by metric
        got = out["validity"][metric]
        a = assess(table, "computed", metric)
        assert got["status"] == a.status, metric
        row = next(r for r in out["results"] if r["metric"] == metric and r["comparison"] == "mg_vs_control")
        if a.status == "not_measurable":
            assert row["reported"] is False and row["estimate"] is None, metric
            assert "to measure it:" in row["summary"] and a.measured_by in row["summary"]
            item = next(i for i in v["items"] if i["metric"] == metric)
            assert item["state"] == "cannot_measure"
    assert out["staging_source"] == "computed" and out["nights_left_out_by_source"] == {}
    order = [i["metric"] for i in v["items"]]
    measurable = [i["metric"] for i in v["items"] if i["state"] != "cannot_measure"]
    assert order[: len(measurable)] == measurable == sorted(measurable, key=IMPORTANCE.index)
    assert out["nights"] == {"magnesium": 28, "control": 7 * WEEKS - 28}

    res = console.run("effects", "--no-write", *few)
    assert res.returncode == 0, res.stderr
    lines = [x for x in res.stdout.splitlines() if x.strip()]
    assert lines[0].startswith("alice: 56 nights")
    text = flat(res.stdout)
    assert flat(v["headline"]) in flat("\n".join(lines[1:6]))  # the answer right under the person's line
    assert "sol_min" not in text.split("Magnesium vs control nights")[1].split("effect = magnesium")[0]
    names = [PLAIN[m] for m in order]
    at = [text.index(n, text.index("Magnesium vs control nights")) for n in names[:3]]
    assert at == sorted(at)  # the table in the verdict's order
