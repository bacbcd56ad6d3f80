"""Variants: parsing, validation messages, and the clock-time replay experiment."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest

from collector.errors import ValidationError
from collector.settings import PersonSettings
from collector.validation.compare import parse_variant, replayed_at, truth_span, window_for
from collector.validation.slpdb import read_slpdb

SLPDB = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "slpdb"


def test_parse_variant() -> None:
    v = parse_variant("alone=wake_classifier=none, lights=estimate,start=22:30")
    assert v.name == "alone"
    assert v.options.wake_classifier is None
    assert v.options.classifier == "wrn-gru-mesa"
    assert v.lights == "estimate"
    assert v.start == time(22, 30)
    assert v.describe() == {"wake_classifier": "none", "lights": "estimate", "start": "22:30"}
    assert parse_variant("same=").describe() == {}
    meta = parse_variant("f=sex=female,age=60")
    assert (meta.sex, meta.age) == ("female", 60)
    assert meta.describe() == {"age": "60", "sex": "female"}


@pytest.mark.parametrize(("text", "words"), [
    ("noname", "write NAME=key=value"),
    ("x=bogus=1", "unknown option 'bogus'"),
    ("x=classifier=foo", "variant x: classifier"),
    ("x=lights=sometimes", "lights must be 'tags' or 'estimate'"),
    ("x=start=late", "start must be a clock time"),
    ("x=wake_classifier", "is not key=value"),
    ("x=sex=other", "sex must be 'female' or 'male'"),
    ("x=age=0", "age must be whole years"),
])
def test_parse_variant_errors(text: str, words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        parse_variant(text)


def test_replay_moves_only_the_clock() -> None:
    rec = read_slpdb(SLPDB / "slp02b.hea.gz")  # 03:59:30 on 1 Feb 1989: the night of 31 Jan
    moved = replayed_at(rec, time(22, 30))
    assert moved.start.isoformat() == "1989-01-31T22:30:00-05:00"
    assert truth_span(moved) == truth_span(rec)
    assert (moved.stages is rec.stages) and (moved.rr_ms is rec.rr_ms)
    assert replayed_at(rec, time(1, 0)).start.isoformat() == "1989-02-01T01:00:00-05:00"
    person = PersonSettings(name="p", timezone=rec.timezone)
    w = window_for(rec, person)
    assert str(w.night) == "1989-01-31"
    assert w.start_ns <= int(rec.start.timestamp()) * 1_000_000_000 < w.end_ns
