"""`magsleep report`: a self-contained HTML file from the seeded InfluxDB, rendered in headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from collector.cli import main
from collector.report import ReportError, write_report
from tests.dashboards.conftest import Seeded
from tests.dashboards.seed import EFFECTS, N_NIGHTS, NEXT_STEP, VERDICT
from tests.dashboards.test_queries import rows, run

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--hide-scrollbars",
]


@pytest.fixture(scope="module")
def report(seeded: Seeded, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import asyncio

    out = tmp_path_factory.mktemp("report") / "sub" / "report.html"
    return asyncio.run(write_report(seeded.settings, out, person="alice"))


def test_report_is_self_contained(report: Path) -> None:
    text = report.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text) is None  # nothing fetched from outside
    assert "<script" not in text and "<link" not in text and "<img" not in text
    for plot in ("plot-nights", "plot-effects", "plot-latest"):
        m = re.search(rf'<div class="plot" id="{plot}"><svg[^>]*>(.*?)</svg>', text, flags=re.S)
        assert m, plot
        assert m.group(1).count("<path") > 20, plot  # real drawings, not an empty frame


def test_report_content_matches_the_data(report: Path, seeded: Seeded) -> None:
    text = report.read_text()
    assert f"{N_NIGHTS} nights (7 magnesium, 7 control)" in text
    for metric, (est, lo, hi, pb) in EFFECTS.items():
        row = re.search(rf'<tr data-metric="{metric}"><td>{metric}</td>(.*?)</tr>', text)
        assert row, metric
        assert f"{est:.2f}" in row.group(1) and f"{lo:.2f} … {hi:.2f}" in row.group(1)
        assert f"{100 * pb:.0f}%" in row.group(1)
        assert f"{metric} summary</li>" in text
    # rows without ranks (older effect points) are ordered by what matters, not alphabetically
    order = re.findall(r'<tr data-metric="(\w+)">', text)[: len(EFFECTS)]
    assert order == ["sol_min", "tst_min", "waso_min", "deep_pct"]
    assert "99.00" not in text  # bob's effect
    last = seeded.seed.last_night.isoformat()
    assert f"Night of <b>{last}</b> (control)" in text
    assert f"total sleep {seeded.seed.tst[seeded.seed.last_night]:.0f} min" in text
    assert "Sleep stages (computed)" in text and "Sleep stages (device)" in text
    assert "After starting magnesium vs before" in text
    # the stored verdict first, before any plot, and its items in its order
    assert f'<p class="headline">{VERDICT}</p>' in text and f'<p class="next">{NEXT_STEP}</p>' in text
    assert text.index('id="verdict"') < text.index('id="plot-nights"')
    assert '<p class="meta sources">Nights staged by: computed</p>' in text
    assert re.findall(r'<li class="state-none" data-rank="\d" data-metric="(\w+)"', text) == list(EFFECTS)


def test_effects_dashboard_shows_the_verdict_first(seeded: Seeded) -> None:
    (s,) = run(seeded, "effects.json", "The answer")
    (r,) = rows(s)
    assert (r["answer"], r["next step"]) == (VERDICT, NEXT_STEP)
    import json

    from collector.dashboards import effects

    panels = json.loads((Path(__file__).resolve().parents[2] / "dashboards" / "effects.json").read_text())["panels"]
    assert panels[0]["title"] == "The answer"  # at the top, above the per-metric panels
    assert effects.UID == "magsleep-effects"


def test_report_for_unknown_person_says_so(seeded: Seeded, tmp_path: Path) -> None:
    import asyncio

    with pytest.raises(ReportError, match="no nights or effects stored for person 'carol'"):
        asyncio.run(write_report(seeded.settings, tmp_path / "r.html", person="carol"))
    assert not (tmp_path / "r.html").exists()


def test_report_cli(seeded: Seeded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAGSLEEP_INFLUX__EMBEDDED", "false")
    monkeypatch.setenv("MAGSLEEP_INFLUX__URL", seeded.server.url)
    monkeypatch.setenv("MAGSLEEP_INFLUX__DATABASE", seeded.db)
    monkeypatch.setenv("MAGSLEEP_STORAGE__STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("MAGSLEEP_PERSONS", '[{"name": "alice"}]')
    out = tmp_path / "cli.html"
    with pytest.raises(SystemExit) as exc:
        main(["report", "--out", str(out)])
    assert exc.value.code == 0
    assert "plot-effects" in out.read_text()


def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    exe = shutil.which("chromium")
    assert exe, "install Debian's chromium (apt-get install chromium) to run this test"
    shot = tmp_path / "report.png"
    r = subprocess.run(
        [exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
         "--window-size=1200,3000", report.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert shot.is_file(), r.stderr[-2000:]
    if keep := os.environ.get("MAGSLEEP_KEEP_SCREENSHOT"):
        shutil.copy(shot, keep)  # to look at it
    img = Image.open(shot).convert("RGB")
    assert img.size == (1200, 3000)
    px = np.asarray(img).astype(int)
    non_white = (px.sum(axis=2) < 3 * 235).mean()
    assert non_white > 0.03  # text and plots, not a blank page
    purple_rows = (np.abs(px - np.array([0x8F, 0x3B, 0xB8])) < 30).all(axis=2).sum(axis=1)
    # magnesium nights as purple dots in the plots; rows that are one long purple line are the
    # headings' rules and do not count
    assert purple_rows[purple_rows < 300].sum() > 300
    colours = {tuple(c) for c in px[400:2600:4, ::4].reshape(-1, 3)}
    assert len(colours) > 200  # plots with colours and anti-aliasing, not only black text


def test_forest_plot_shares_one_scale_per_unit() -> None:
    from collector.report.plots import effects_forest, shared_spans

    items = [("time to fall asleep", "min", -6.5, -11.0, -2.0, True), ("total sleep", "min", 12.0, -3.0, 27.0, False),
             ("sleeping heart rate", "bpm", -0.3, -1.7, 1.0, True)]
    spans = shared_spans(items)
    assert spans == {"min": pytest.approx(27.0 * 1.3), "bpm": pytest.approx(1.7 * 1.3)}
    svg = effects_forest(items)
    # the first two rows (minutes) have the same tick labels; the heart-rate row its own
    rows = re.findall(r"<g id=\"axes_(\d+)\">", svg)
    assert len(rows) == 3
