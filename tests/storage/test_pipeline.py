"""The pipeline against the real local InfluxDB: every measurement, escaping, deletes, bad lines."""

from __future__ import annotations

from pathlib import Path

from collector.storage.lineprotocol import FieldValue, Point
from collector.storage.pipeline import Pipeline
from collector.storage.reader import InfluxReader
from collector.storage.schema import MEASUREMENTS, FieldSpec
from tests.conftest import InfluxServer
from tests.storage.helpers import make_settings

T0 = 1_732_400_000_000_000_000


def _value(f: FieldSpec, i: int) -> FieldValue:
    values: dict[str, FieldValue] = {"int": 7 + i, "float": 1.5 + i, "bool": i % 2 == 0, "string": f'v "{i}" \\ x'}
    return values[f.type]


def sample_points() -> list[Point]:
    pts = []
    for i, m in enumerate(MEASUREMENTS.values()):
        tags = {t.name: f"{t.name} v,={i}" for t in m.tags}
        tags["person"] = "alice"
        fields = {f.name: _value(f, i) for f in m.fields}
        pts.append(Point(m.name, tags, fields, T0 + i))
    return pts


async def test_every_measurement_round_trips(influx_server: InfluxServer, influx_db: str, tmp_path: Path) -> None:
    settings = make_settings(influx_server.url, influx_db, tmp_path)
    pts = sample_points()
    async with Pipeline.from_settings(settings) as pipe:
        await pipe.put(pts)
        await pipe.flush(timeout=20)
        assert pipe.pending() == (0, 0)
    async with InfluxReader.from_settings(settings) as r:
        for p in pts:
            rows = await r.query(f'SELECT * FROM "{p.measurement}" GROUP BY *')
            assert len(rows) == 1, p.measurement
            row = rows[0]
            assert row["time"] == p.time_ns
            for tk, tv in p.tags.items():
                assert row[tk] == tv
            for fk, fv in p.fields.items():
                assert row[fk] == fv, (p.measurement, fk)


async def test_float_fields_given_ints_stay_floats(influx_server: InfluxServer, influx_db: str, tmp_path: Path) -> None:
    settings = make_settings(influx_server.url, influx_db, tmp_path)
    tags = {"person": "alice", "device": "d", "source": "sim"}
    async with Pipeline.from_settings(settings) as pipe:
        await pipe.put([Point("rr", tags, {"rr_ms": 1000}, T0)])
        await pipe.put([Point("rr", tags, {"rr_ms": 999.5}, T0 + 1)])
        await pipe.flush(timeout=20)
        assert pipe.rejected_count() == 0
    rows = influx_server.rows('SHOW FIELD KEYS FROM "rr"', influx_db)
    assert [(r["fieldKey"], r["fieldType"]) for r in rows] == [("rr_ms", "float")]


async def test_bad_lines_are_isolated_and_good_lines_kept(
    influx_server: InfluxServer, influx_db: str, tmp_path: Path
) -> None:
    settings = make_settings(influx_server.url, influx_db, tmp_path, batch_size=1000)
    good = [f"heart_rate,device=d,person=alice,source=sim bpm={60 + i % 20}i {T0 + i}" for i in range(500)]
    bad = "heart_rate,device=d,person=alice bpm=oops= 1"
    lines = [*good[:250], bad, *good[250:]]
    async with Pipeline.from_settings(settings) as pipe:
        await pipe.put_lines(lines)
        await pipe.flush(timeout=30)
        assert pipe.rejected_count() == 1
        assert pipe.stats.lines_rejected == 1
        assert pipe.stats.lines_written == 500
    rows = influx_server.rows("SELECT count(bpm) FROM heart_rate", influx_db)
    assert rows[0]["count"] == 500


async def test_type_conflict_line_is_rejected_not_retried_forever(
    influx_server: InfluxServer, influx_db: str, tmp_path: Path
) -> None:
    settings = make_settings(influx_server.url, influx_db, tmp_path)
    async with Pipeline.from_settings(settings) as pipe:
        await pipe.put_lines([f"motion,device=d,person=a,source=sim steps=5i {T0}"])
        await pipe.flush(timeout=20)
        await pipe.put_lines(
            [
                f'motion,device=d,person=a,source=sim steps="x" {T0 + 1}',
                f"motion,device=d,person=a,source=sim steps=6i {T0 + 2}",
            ]
        )
        await pipe.flush(timeout=20)
        assert pipe.rejected_count() == 1
    rows = influx_server.rows("SELECT steps FROM motion", influx_db)
    assert [r["steps"] for r in rows] == [5, 6]


async def test_delete_is_applied_in_order_with_writes(
    influx_server: InfluxServer, influx_db: str, tmp_path: Path
) -> None:
    settings = make_settings(influx_server.url, influx_db, tmp_path)
    tags = {"person": "alice", "supplement": "magnesium", "form": "glycinate", "source": "cli"}
    p1 = Point("supplement_dose", tags, {"dose_id": "a", "amount_mg": 300.0, "elemental_mg": 42.0}, T0)
    p2 = Point("supplement_dose", tags, {"dose_id": "a", "amount_mg": 400.0, "elemental_mg": 56.0}, T0 + 10)
    async with Pipeline.from_settings(settings) as pipe:
        await pipe.put([p1])
        await pipe.delete("supplement_dose", tags, T0)
        await pipe.put([p2])
        await pipe.flush(timeout=20)
    rows = influx_server.rows("SELECT amount_mg FROM supplement_dose", influx_db)
    assert [(r["time"], r["amount_mg"]) for r in rows] == [(T0 + 10, 400.0)]


async def test_same_series_and_time_is_one_point(influx_server: InfluxServer, influx_db: str, tmp_path: Path) -> None:
    settings = make_settings(influx_server.url, influx_db, tmp_path)
    p = Point("heart_rate", {"person": "alice", "device": "d", "source": "sim"}, {"bpm": 61}, T0)
    async with Pipeline.from_settings(settings) as pipe:
        for _ in range(3):
            await pipe.put([p])
            await pipe.flush(timeout=20)
    assert influx_server.rows("SELECT count(bpm) FROM heart_rate", influx_db)[0]["count"] == 1


def test_take_batch_groups_writes_and_isolates_deletes() -> None:
    from collector.storage.outbox import Entry, take_batch

    q = [Entry(1, "w", "a", 3), Entry(2, "w", "b", 3), Entry(3, "w", "c", 3), Entry(4, "d", "{}", 0),
         Entry(5, "w", "e", 9)]
    assert [e.seq for e in take_batch(q, 6, 0)] == [1, 2]
    assert [e.seq for e in take_batch(q, 100, 0)] == [1, 2, 3]  # stops before the delete
    assert [e.seq for e in take_batch(q, 100, 3)] == [4]  # a delete travels alone
    assert [e.seq for e in take_batch(q, 2, 4)] == [5]  # one oversized entry still makes a batch
    assert take_batch(q, 10, 5) == []
