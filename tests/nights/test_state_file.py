"""The nights state file (nights.sqlite) damaged or in the way: one clear line, the file kept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

MAGSLEEP = Path(sys.executable).with_name("magsleep")


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "magsleep.toml"
    cfg.write_text(f'[influx]\nembedded = false\nurl = "http://127.0.0.1:9"\ndatabase = "x"\n'
                   f'[storage]\nstate_dir = "{tmp_path / "state"}"\n'
                   '[[persons]]\nname = "sam"\nage = 45\nsex = "male"\ntimezone = "UTC"\n')
    return cfg


@pytest.mark.parametrize("content", [b"SQLite format 3\x00" + b"\xff" * 2000, b"\xff\xfe not a database at all"],
                         ids=["truncated", "garbage"])
def test_damaged_nights_state_says_what_to_do_and_is_kept(tmp_path: Path, content: bytes) -> None:
    cfg = _config(tmp_path)
    state = tmp_path / "state" / "nights.sqlite"
    state.parent.mkdir()
    state.write_bytes(content)
    res = subprocess.run([str(MAGSLEEP), "--config", str(cfg), "nights", "compute"], capture_output=True,
                         text=True, timeout=120, check=False)
    assert res.returncode == 2, res.stdout + res.stderr
    err = " ".join(res.stderr.split())
    assert "Traceback" not in res.stderr
    assert str(state) in "".join(res.stderr.split()) and "is damaged" in err  # (the console wraps long lines)
    assert "nights compute --recompute" in err
    assert state.read_bytes() == content  # left as it was


def test_nights_state_in_the_way_of_a_directory(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    state = tmp_path / "state" / "nights.sqlite"
    state.mkdir(parents=True)
    res = subprocess.run([str(MAGSLEEP), "--config", str(cfg), "nights", "compute"], capture_output=True,
                         text=True, timeout=120, check=False)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "cannot open the nights state" in " ".join(res.stderr.split())
