"""The import driver's own parts."""

from __future__ import annotations

import random
from datetime import time

from collector.importers.run import _SLOT_NS, ImportSummary, _shown, _Tally
from collector.nights.segment import night_of
from collector.settings import PersonSettings


def test_touched_nights_are_the_nights_of_each_slot() -> None:
    rng = random.Random(16)
    for tz, start, end in (("Europe/Berlin", time(18), time(14)), ("America/Los_Angeles", time(21, 30), time(13)),
                           ("Pacific/Auckland", time(20), time(11, 45))):
        p = PersonSettings(name="alice", timezone=tz, night_start=start, night_end=end)
        tally = _Tally(ImportSummary("rr", "x", "alice", dry_run=True))
        # five years across every DST change, at 5-minute slots
        tally.slots = {rng.randrange(1_700_000_000, 1_860_000_000) * 10**9 // _SLOT_NS for _ in range(5000)}
        expected = sorted({d for d in (night_of(m * _SLOT_NS + _SLOT_NS // 2, p) for m in tally.slots) if d})
        assert tally.nights(p) == expected and len(expected) > 1000


def test_shown_source_hides_credentials() -> None:
    assert _shown("https://u:p%40ss@db.example:8086/GarminStats") == "https://db.example:8086/GarminStats"
    assert _shown("/home/alice/export.zip") == "/home/alice/export.zip"
