"""One PSG-labelled recording in memory, the error a bad file raises, and the helpers its readers share.

Times inside a record are seconds from the recording start; ``start`` is the local clock time of
that start in the record's time zone. Expert stages are one code per 30-s epoch from the start
(collector.nights.stages codes: WAKE, NREM, REM; UNKNOWN where unscored or movement time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from collector.errors import ValidationError

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


class RecordError(ValidationError):
    """A recording's file is unreadable or inconsistent; ``path`` and ``line`` (1-based, 0: whole file) say where."""

    def __init__(self, path: Path, line: int, message: str) -> None:
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line


@dataclass(frozen=True, slots=True)
class Record:
    """One night (or part of a night) with expert 30-s stages."""

    name: str
    subject: str  # records of the same person share it (leave-one-subject-out)
    age: int | None
    sex: Literal["female", "male"] | None
    timezone: str
    start: datetime  # aware: the recording start in ``timezone``
    stages: I64  # expert code per 30-s epoch from ``start``
    rr_end_s: F64  # time of the beat ending each RR interval, s from start
    rr_ms: F64
    hr_t_s: F64 = field(default_factory=lambda: np.zeros(0))
    hr_bpm: F64 = field(default_factory=lambda: np.zeros(0))
    activity_t_s: F64 = field(default_factory=lambda: np.zeros(0))
    activity_counts: F64 = field(default_factory=lambda: np.zeros(0))
    activity_epoch_s: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    lights_out_s: float | None = None  # from start; None: unknown
    lights_on_s: float | None = None
    source: str = ""  # "open" or "slpdb"


def read_lines(path: Path) -> list[str]:
    """The text lines of a file (gzip when it ends in .gz); undecodable bytes name their line."""
    import gzip

    try:
        raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    except FileNotFoundError:
        raise RecordError(path, 0, "file missing") from None
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise RecordError(path, 0, f"cannot read it ({exc})") from None
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out: list[str] = []
    for i, b in enumerate(lines, 1):
        try:
            out.append(b.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as exc:
            raise RecordError(path, i, f"bytes that are not UTF-8 text at column {exc.start + 1}: "
                                       "save the file as UTF-8 (or plain ASCII) text") from None
    return out


def parse_clock(text: str) -> float:
    """Seconds of ``[h:]m:ss[.fff]`` (WFDB elapsed-time form); ValueError when malformed."""
    parts = text.strip().split(":")
    if not 2 <= len(parts) <= 3 or any(not p for p in parts):
        raise ValueError(f"not a time of the form [h:]m:ss.fff: {text.strip()!r}")
    v = 0.0
    for p in parts:
        x = float(p)
        if not np.isfinite(x) or x < 0:
            raise ValueError(f"not a time of the form [h:]m:ss.fff: {text.strip()!r}")
        v = v * 60 + x
    return v
