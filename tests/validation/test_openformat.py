"""The open night-folder format: a real record round-trips; bad files name file and line; other nights go on."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from collector.cli import app
from collector.nights.stages import NREM, REM, UNKNOWN, WAKE
from collector.validation.openformat import read_night, write_night
from collector.validation.records import RecordError
from collector.validation.slpdb import read_slpdb
from collector.validation.sources import RecordSource, find_sources, load

SLPDB = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "slpdb"


@pytest.fixture(scope="module")
def slp67x() -> object:
    return read_slpdb(SLPDB / "slp67x.hea.gz")


def good_night(folder: Path, rec: object) -> Path:
    write_night(folder, rec)  # type: ignore[arg-type]
    return folder


def test_round_trip_of_a_real_record(tmp_path: Path, slp67x) -> None:
    back = read_night(good_night(tmp_path / "n1", slp67x))
    assert back.start == slp67x.start
    assert back.timezone == "America/New_York"
    assert (back.age, back.sex, back.subject) == (None, "male", "slp67x")
    assert np.array_equal(back.stages, slp67x.stages)
    assert np.allclose(back.rr_ms, slp67x.rr_ms, atol=0.05)
    assert np.allclose(back.rr_end_s, slp67x.rr_end_s, atol=5e-4)


def test_slpdb_reader_reads_header_and_stage_codes(slp67x) -> None:
    # slp67x: 1:06:00 start, no date (reader's default), 154 epochs with 72 W, 81 NREM, 1 S4 -> NREM
    assert slp67x.start.isoformat() == "1990-01-01T01:06:00-05:00"
    assert slp67x.stages.size == 154
    assert np.count_nonzero(slp67x.stages == WAKE) == 72
    assert np.count_nonzero(slp67x.stages == NREM) == 82
    rec = read_slpdb(SLPDB / "slp01a.hea.gz")
    assert (rec.age, rec.subject) == (44, "slp01")
    assert np.count_nonzero(rec.stages == REM) == 13
    assert np.count_nonzero(rec.stages == UNKNOWN) == 1  # one MT epoch


def test_beat_times_file_and_lights(tmp_path: Path) -> None:
    folder = tmp_path / "b"
    folder.mkdir()
    (folder / "meta.json").write_text(json.dumps({
        "timezone": "Europe/Berlin", "start": "2024-03-01T22:41:30", "sex": "female", "age": 33,
        "lights_out": "2024-03-01T22:42:00", "lights_on": "2024-03-01T22:43:30"}))
    (folder / "stages.csv").write_text("t_s,stage\n0,W\n30,n1\n60,N2\n90,?\n120,R\n")
    (folder / "beats.csv").write_text("t_s\n0.5\n1.5\n2.4\n")
    rec = read_night(folder)
    assert rec.stages.tolist() == [WAKE, NREM, NREM, UNKNOWN, REM]
    assert np.allclose(rec.rr_ms, [1000.0, 900.0])
    assert np.allclose(rec.rr_end_s, [1.5, 2.4])
    assert (rec.lights_out_s, rec.lights_on_s) == (30.0, 120.0)


BAD = {
    # name: (file, content (bytes), expected file:line fragment, expected words)
    "bad_json": ("meta.json", b'{"timezone": "UTC",\n "start": 2024-01-01}\n', "meta.json:2", "not valid JSON"),
    "bad_bytes": ("stages.csv", b"t_s,stage\n0,W\n30,N2\n60,\xff\xfeN2\n", "stages.csv:4", "not UTF-8"),
    "bad_number": ("rr.csv", b"t_s,rr_ms\n1.0,1000\n2.0,1000\n3.0,ten\n", "rr.csv:4", "is not a number"),
    "backwards": ("rr.csv", b"t_s,rr_ms\n1.0,1000\n2.0,1000\n1.5,500\n", "rr.csv:4", "time order"),
    "off_grid": ("stages.csv", b"t_s,stage\n0,W\n45,N2\n", "stages.csv:3", "30-s epoch grid"),
    "twice": ("stages.csv", b"t_s,stage\n0,W\n30,N2\n30,R\n", "stages.csv:4", "given twice"),
    "bad_stage": ("stages.csv", b"t_s,stage\n0,W\n30,deep\n", "stages.csv:3", "unknown stage"),
    "short_row": ("rr.csv", b"t_s,rr_ms\n1.0,1000\n2.0\n", "rr.csv:3", "1 fields where the header has 2"),
    "no_column": ("rr.csv", b"time,rr\n1.0,1000\n", "rr.csv:1", "lacks column"),
}


def _broken(tmp: Path, slp67x, name: str) -> Path:
    folder = good_night(tmp / name, slp67x)
    file, content, _, _ = BAD[name]
    (folder / file).write_bytes(content)
    return folder


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_file_names_file_and_line(tmp_path: Path, slp67x, name: str) -> None:
    folder = _broken(tmp_path, slp67x, name)
    with pytest.raises(RecordError) as exc:
        read_night(folder)
    _, _, where, words = BAD[name]
    assert where in str(exc.value)
    assert words in str(exc.value)
    assert exc.value.line == int(where.rsplit(":", 1)[1])


def test_unreadable_files(tmp_path: Path, slp67x) -> None:
    folder = good_night(tmp_path / "dir_rr", slp67x)
    (folder / "rr.csv").unlink()
    (folder / "rr.csv").mkdir()  # not readable as a file, whoever runs the test
    with pytest.raises(RecordError, match=r"rr\.csv: cannot read it"):
        read_night(folder)
    for ext in ("hea", "rr", "an"):
        shutil.copy(SLPDB / f"slp67x.{ext}.gz", tmp_path / f"slp90.{ext}.gz")
    (tmp_path / "slp90.rr.gz").write_bytes(b"not gzip at all")
    with pytest.raises(RecordError, match=r"slp90\.rr\.gz: cannot read it"):
        load(RecordSource("slp90", "slpdb", tmp_path / "slp90.hea.gz"))


def test_slpdb_inconsistent_row_names_line(tmp_path: Path) -> None:
    for ext in ("hea", "an"):
        shutil.copy(SLPDB / f"slp67x.{ext}.gz", tmp_path / f"slp91.{ext}.gz")
    lines = gzip.decompress((SLPDB / "slp67x.rr.gz").read_bytes()).decode().splitlines(keepends=True)
    f = lines[9].split("\t")
    lines[9] = "\t".join([f[0], f[1], "3.500", f[3], f[4]])  # RR does not match its beat times
    (tmp_path / "slp91.rr.gz").write_bytes(gzip.compress("".join(lines).encode()))
    with pytest.raises(RecordError, match=r"slp91\.rr\.gz:10: beat times .* do not match RR 3\.5 s"):
        read_slpdb(tmp_path / "slp91.hea.gz")


def test_run_goes_on_past_bad_nights(tmp_path: Path, slp67x) -> None:
    root = tmp_path / "lab"
    good_night(root / "a_good", slp67x)
    for name in ("bad_bytes", "backwards", "bad_json"):
        _broken(root, slp67x, name)
    assert [s.name for s in find_sources(root)] == ["a_good", "backwards", "bad_bytes", "bad_json"]
    out = CliRunner().invoke(app, ["validate", str(root), "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert [n["record"] for n in data["variants"][0]["nights"]] == ["a_good"]
    skipped = {s["record"]: s["reason"] for s in data["skipped"]}
    assert sorted(skipped) == ["backwards", "bad_bytes", "bad_json"]
    for name, reason in skipped.items():
        assert BAD[name][2] in reason
    # the good night is the real record in the other format: the same stages come out
    direct = CliRunner().invoke(app, ["validate", str(SLPDB), "--records", "slp67x", "--json"])
    night = json.loads(direct.stdout)["variants"][0]["nights"][0]
    assert data["variants"][0]["nights"][0]["computed"] == night["computed"]
    assert data["variants"][0]["nights"][0]["truth"] == night["truth"]
    # the table run names the skipped nights on stderr and still prints the good one
    table = CliRunner().invoke(app, ["validate", str(root)])
    assert table.exit_code == 0
    assert "skipped" in table.output
    assert "a_good" in table.output


def test_nothing_usable_exits_non_zero(tmp_path: Path, slp67x) -> None:
    _broken(tmp_path, slp67x, "bad_json")
    out = CliRunner().invoke(app, ["validate", str(tmp_path)])
    assert out.exit_code == 1
    assert "meta.json:2" in out.output
    empty = CliRunner().invoke(app, ["validate", str(tmp_path / "nothing")])
    assert empty.exit_code == 2
    assert "is not a directory" in " ".join(empty.output.split())  # rich wraps long paths


def test_lights_from_meta_set_the_compared_span(tmp_path: Path, slp67x) -> None:
    from dataclasses import replace

    n = slp67x.stages.size
    rec = replace(slp67x, lights_out_s=600.0, lights_on_s=(n - 20) * 30.0)
    good_night(tmp_path / "lab" / "lit", rec)
    out = CliRunner().invoke(app, ["validate", str(tmp_path / "lab"), "--json"])
    assert out.exit_code == 0, out.output
    night = json.loads(out.stdout)["variants"][0]["nights"][0]
    assert night["first_epoch"] == 20
    assert len(night["truth"]) == len(night["computed"]) == n - 40
    assert night["lights_source"] == "tag"
    assert night["true"]["tst_min"] == 0.5 * sum(c in "NR" for c in night["truth"])
