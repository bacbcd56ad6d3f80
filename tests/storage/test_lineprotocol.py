"""The encoder: byte-for-byte equivalence with influxdb-client's Point, and round trips through 1.6.7."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from influxdb_client.client.write.point import Point as ClientPoint

from collector.errors import ValidationError
from collector.storage.lineprotocol import Point, RowEncoder, Tags, encode_line, encode_points
from collector.storage.pipeline import Pipeline
from tests.conftest import InfluxServer
from tests.storage.helpers import make_settings

SPECIAL = st.sampled_from([",", " ", "=", '"', "\\", "\n", "\t", "é", "💤", "a", "Z", "0"])
text = st.lists(st.one_of(SPECIAL, st.characters()), min_size=0, max_size=12).map("".join)
name = text.filter(lambda s: s != "" and not s.startswith("#"))
value = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    text,
)


def client_line(m: str, tags: dict[str, str], fields: dict[str, object], t: int) -> str:
    p = ClientPoint(m)
    for tk, tv in tags.items():
        p.tag(tk, tv)
    for fk, fv in fields.items():
        p.field(fk, fv)
    p.time(t)
    return str(p.to_line_protocol())


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    m=name,
    tags=st.dictionaries(text, text, max_size=4),
    fields=st.dictionaries(name, value, min_size=0, max_size=5),
    t=st.integers(min_value=0, max_value=2**62),
)
def test_equivalent_to_influxdb_client_point(m: str, tags: dict[str, str], fields: dict[str, object], t: int) -> None:
    assert encode_line(m, tags, fields, t) == client_line(m, tags, fields, t)  # type: ignore[arg-type]


@pytest.mark.parametrize(("precision", "divisor"), [("ns", 1), ("us", 1000), ("ms", 10**6), ("s", 10**9)])
def test_precision(precision: str, divisor: int) -> None:
    t = 1_732_400_000_123_456_789
    line = encode_line("m", {}, {"v": 1}, t, precision)  # type: ignore[arg-type]
    assert line == f"m v=1i {t // divisor}"


def test_value_types() -> None:
    line = encode_line("m", {"a": "x"}, {"i": 3, "f": 2.0, "g": 0.25, "b": False, "s": 'say "hi" \\o/'}, 5)
    assert line == r'm,a=x b=false,f=2,g=0.25,i=3i,s="say \"hi\" \\o/" 5'


def test_non_finite_and_none_fields_are_left_out() -> None:
    assert encode_line("m", {}, {"a": math.nan, "b": math.inf, "c": None, "d": 1.5}, 1) == "m d=1.5 1"  # type: ignore[dict-item]
    assert encode_line("m", {}, {"a": math.nan}, 1) == ""


def test_unsupported_type_has_a_clear_error() -> None:
    with pytest.raises(ValidationError, match="unsupported type"):
        encode_line("m", {}, {"a": [1, 2]}, 1)  # type: ignore[dict-item]


def test_numpy_scalars() -> None:
    import numpy as np

    assert encode_line("m", {}, {"a": np.int64(3), "b": np.float32(0.5), "c": np.bool_(True)}, 1) == (  # type: ignore[dict-item]
        "m a=3i,b=0.5,c=true 1"
    )


printable = st.lists(
    st.one_of(
        st.sampled_from([",", " ", "=", '"', "\\", "é", "💤", "'"]), st.characters(min_codepoint=33, max_codepoint=126)
    ),
    min_size=1,
    max_size=10,
).map("".join)


@settings(max_examples=1, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
async def test_escaping_round_trips_through_the_server(
    data: st.DataObject, influx_server: InfluxServer, influx_db: str, tmp_path: Path
) -> None:
    # One batch of many random points (one hypothesis example keeps the server work bounded).
    tag_vals = data.draw(st.lists(printable.filter(lambda s: not s.endswith("\\")), min_size=40, max_size=40))
    str_vals = data.draw(
        st.lists(st.text(min_size=0, max_size=20).filter(lambda s: "\x00" not in s), min_size=40, max_size=40)
    )
    field_keys = data.draw(st.lists(printable, min_size=40, max_size=40))
    pts = [
        Point(
            "motion",
            {"person": tv, "device": "d,1 =x", "source": "sim"},
            {"activity": float(i), "note " + fk: sv},
            1_700_000_000_000_000_000 + i,
        )
        for i, (tv, sv, fk) in enumerate(zip(tag_vals, str_vals, field_keys, strict=True))
    ]
    settings_ = make_settings(influx_server.url, influx_db, tmp_path)
    async with Pipeline.from_settings(settings_) as pipe:
        await pipe.put_lines(encode_points(pts))
        await pipe.flush(timeout=20)
        assert pipe.rejected_count() == 0
    rows = influx_server.rows("SELECT * FROM motion GROUP BY *", influx_db)
    got = {r["time"]: r for r in rows}
    for i, p in enumerate(pts):
        r = got[p.time_ns]
        assert r["_tags"]["person"] == p.tags["person"]
        assert r["_tags"]["device"] == "d,1 =x"
        assert r["activity"] == float(i)
        (fk,) = [k for k in p.fields if k != "activity"]
        assert r[fk] == p.fields[fk]


layouts = st.lists(
    st.tuples(name, st.sampled_from(["int", "float", "bool", "string"])),
    min_size=1,
    max_size=4,
    unique_by=lambda f: f[0],
)


def _val(ftype: str) -> st.SearchStrategy[object]:
    return {
        "int": st.one_of(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.none()),
        "float": st.one_of(st.floats(), st.integers(min_value=-(2**50), max_value=2**50), st.none()),
        "bool": st.one_of(st.booleans(), st.none()),
        "string": st.one_of(text, st.none()),
    }[ftype]


@settings(max_examples=500, deadline=None)
@given(data=st.data(), m=name, tags=st.dictionaries(text, text, max_size=3), as_tags=st.booleans())
def test_row_encoder_matches_point_encoding(data: st.DataObject, m: str, tags: dict[str, str], as_tags: bool) -> None:
    layout = data.draw(layouts)
    rows = data.draw(
        st.lists(st.tuples(st.integers(min_value=0, max_value=2**62), *[_val(t) for _, t in layout]), max_size=5)
    )
    tagset = Tags(tags) if as_tags else tags
    got = RowEncoder(m, layout).lines(tagset, rows)
    floats = {n for n, t in layout if t == "float"}
    pts = [
        Point(
            m,
            tags,
            {n: (float(v) if n in floats and type(v) is int else v) for (n, _), v in zip(layout, row[1:], strict=True)},
            row[0],
        )
        for row in rows
    ]
    assert got == encode_points(pts)
    assert got == [ln for ln in (client_line(m, tags, dict(p.fields), p.time_ns) for p in pts) if ln]


def test_tags_behave_as_an_immutable_mapping() -> None:
    t = Tags({"person": "alice"}, device="d 1")
    assert dict(t) == {"device": "d 1", "person": "alice"}
    assert t == {"person": "alice", "device": "d 1"}
    assert hash(t) == hash(Tags(device="d 1", person="alice"))
    assert t.with_(device="x")["device"] == "x"
    assert t["device"] == "d 1"
    assert encode_points([Point("m", t, {"v": 1}, 1)]) == [r"m,device=d\ 1,person=alice v=1i 1"]
