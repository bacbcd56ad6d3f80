"""The report's hypnogram names what each source measured: computed NREM is never labelled "deep"."""

from __future__ import annotations

import re
from datetime import UTC
from pathlib import Path

from collector.nights.stages import DEEP, LIGHT, NREM, REM, SLEEP, UNKNOWN, WAKE
from collector.report import plots
from tests.dashboards.conftest import Seeded
from tests.dashboards.seed import DEVICE

NS = 1_000_000_000


def _texts(svg: str) -> list[str]:
    """matplotlib writes every text of an SVG as a comment before its glyphs."""
    return re.findall(r"<!-- (.*?) -->", svg)


def _epochs(codes: list[int]) -> list[tuple[int, int]]:
    return [(i * 30 * NS, c) for i, c in enumerate(codes)]


def test_computed_row_says_nrem_not_deep() -> None:
    computed = [WAKE, WAKE, NREM, NREM, NREM, NREM, REM, REM, NREM, UNKNOWN, WAKE]
    texts = _texts(plots.latest_night({"computed · magsleep-wrn-gru-mesa": _epochs(computed)}, [], UTC))
    assert "NREM" in texts and "REM" in texts and "wake" in texts
    assert "deep" not in texts and "light" not in texts
    assert "Sleep stages (computed) · magsleep-wrn-gru-mesa · wake/NREM/REM" in texts


def test_device_rows_keep_their_resolution() -> None:
    device = [WAKE, LIGHT, DEEP, DEEP, LIGHT, REM, WAKE]
    two_stage = [WAKE, SLEEP, SLEEP, WAKE]
    texts = _texts(plots.latest_night({"device · bangle-bob": _epochs(device),
                                       "device · band": _epochs(two_stage),
                                       "computed · sleepecg": _epochs([WAKE, NREM, REM])}, [], UTC))
    assert "Sleep stages (device) · bangle-bob · wake/light/deep/REM" in texts
    assert "Sleep stages (device) · band · wake/sleep" in texts
    assert "Sleep stages (computed) · sleepecg · wake/NREM/REM" in texts
    assert texts.count("deep") == 1  # only the device row that measured deep sleep
    assert texts.count("light") == 1
    assert texts.count("sleep") == 1


def test_stage_ticks() -> None:
    assert plots.stage_ticks([WAKE, NREM, REM, UNKNOWN]) == [(2, "NREM"), (3, "REM"), (4, "wake")]
    assert plots.stage_ticks([WAKE, LIGHT, DEEP, REM]) == [(1, "deep"), (2, "light"), (3, "REM"), (4, "wake")]
    assert plots.stage_ticks([WAKE, SLEEP]) == [(2, "sleep"), (4, "wake")]
    # NREM sits at light sleep's height, never at deep's
    assert plots.STAGE_LEVELS[NREM][1] == plots.STAGE_LEVELS[LIGHT][1] != plots.STAGE_LEVELS[DEEP][1]


def test_report_draws_one_row_per_source_and_device(seeded: Seeded, tmp_path: Path) -> None:
    import asyncio

    from collector.report import write_report

    text = asyncio.run(write_report(seeded.settings, tmp_path / "r.html", person="alice")).read_text()
    # the seed's stages for both sources hold light and deep codes: both rows show all four stages
    assert f"Sleep stages (device) · {DEVICE} · wake/light/deep/REM" in text
    assert "Sleep stages (computed) · sleepecg · wake/light/deep/REM" in text
