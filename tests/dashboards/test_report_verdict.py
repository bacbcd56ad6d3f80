"""The report's verdict, computed for real (nights in InfluxDB -> magsleep effects -> report), in headless Chromium.

The screenshot is checked for the verdict's presence (its box's colours at the top of the page, above
the plots) and its order (the items' marks from top to bottom in the verdict's order: measurable
metrics by what matters, the ones the chest strap cannot measure last, in amber).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from collector.effects.io import run_effects
from collector.effects.verdict import IMPORTANCE
from collector.report import write_report
from tests.conftest import InfluxServer
from tests.effects.verdict_seed import seed, settings_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
AMBER = (0xE0, 0xA0, 0x30)
BOX = (0xF3, 0xEC, 0xF8)
PURPLE = (0x8F, 0x3B, 0xB8)


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    if not Path(CHROMIUM).exists() or not Path(CHROMEDRIVER).exists():
        pytest.fail("needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--hide-scrollbars", "--force-device-scale-factor=1", "--window-size=1200,1600"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def _near(px: np.ndarray, colour: tuple[int, int, int], tol: int = 12) -> bool:
    return bool((np.abs(px.astype(int) - np.array(colour)) <= tol).all())


def test_report_puts_the_verdict_first_in_its_order(influx_server: InfluxServer, influx_db: str, tmp_path: Path,
                                                    browser: WebDriver) -> None:
    settings = settings_for(influx_server.url, influx_db, tmp_path / "state")
    seed(settings)
    runs = asyncio.run(run_effects(settings, ["alice"], now_ns=1_790_000_000 * 10**9,
                                   metrics=["sol_min", "tst_min", "waso_min", "rem_min", "deep_min", "hr_mean_bpm"]))
    v = runs[0].verdict
    assert v is not None and v.headline.startswith("For you, magnesium nights: ")
    order = [i.metric for i in v.items]
    cannot = [i.metric for i in v.items if i.state == "cannot_measure"]
    assert "deep_min" in cannot  # heartbeats give no deep sleep, whatever the validity table says
    assert order[-len(cannot):] == cannot  # the ones that cannot be measured come last
    measurable = order[: len(order) - len(cannot)]
    assert measurable == sorted(measurable, key=IMPORTANCE.index) and order != sorted(order)
    out = asyncio.run(write_report(settings, tmp_path / "report.html", person="alice",
                                   now=datetime(2026, 11, 3, 8, tzinfo=UTC)))

    browser.get(out.as_uri())
    box = browser.find_element(By.ID, "verdict")
    assert box.find_element(By.CLASS_NAME, "headline").text == v.headline
    if v.next_step:
        assert box.find_element(By.CLASS_NAME, "next").text == v.next_step
    items = box.find_elements(By.TAG_NAME, "li")
    assert [i.get_attribute("data-metric") for i in items] == order
    tops = [i.rect["y"] for i in items]
    assert tops == sorted(tops) and len(set(tops)) == len(tops)
    plot_top = browser.find_element(By.ID, "plot-nights").rect["y"]
    assert box.rect["y"] < plot_top and tops[-1] < plot_top  # the answer before any plot

    browser.set_window_size(1200, int(box.rect["y"] + box.rect["height"] + 200))
    shot = tmp_path / "verdict.png"
    assert browser.save_screenshot(str(shot))
    if keep := os.environ.get("MAGSLEEP_KEEP_SCREENSHOT"):
        shutil.copy(shot, keep)
    px = np.asarray(Image.open(shot).convert("RGB"))
    r = box.rect
    # presence: the box's background and its purple left rule, where the page says the box is
    assert _near(px[int(r["y"]) + 6, int(r["x"] + r["width"]) - 10], BOX)
    assert _near(px[int(r["y"] + r["height"] / 2), int(r["x"]) + 3], PURPLE, 20)
    # order: each item's mark, top to bottom; amber exactly for the metrics that cannot be measured
    marks = []
    for it in items:
        m = it.find_element(By.CLASS_NAME, "mark").rect
        marks.append(px[int(m["y"] + m["height"] / 2), int(m["x"] + m["width"] / 2)])
    amber = [_near(c, AMBER, 20) for c in marks]
    assert amber == [m in cannot for m in order]
    assert not amber[0] and amber[-1]
