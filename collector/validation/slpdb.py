"""Reader for the text form of PhysioNet's MIT-BIH Polysomnographic Database (slpdb).

Per record ``slpNN``: ``slpNN.hea[.gz]`` (WFDB header: start time of day and date on line 1, and
``# <age> <sex> <weight>`` as a comment), ``slpNN.rr[.gz]`` (``ann2rr`` output: earlier beat time,
its type, RR in s, later beat type, later beat time) and ``slpNN.an[.gz]`` (``rdann`` output of the
30-s stage annotations: elapsed time first, the stage first in the last tab-separated field).

Choices (docs/validation.md): every interval between two beat annotations is kept (ectopic beats
included, as a chest strap would report them; the production clean-up corrects them); intervals
touching a non-beat annotation are dropped. Stages W, 1-4, R map to wake, NREM, REM; MT (movement
time) and unscored epochs are unknown. The laboratory was in Boston: time zone America/New_York.
A header without a date gets :data:`DEFAULT_DATE`. Records ``slpNNa`` and ``slpNNb`` are one subject.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np

from collector.nights.stages import EPOCH_S, NREM, REM, UNKNOWN, WAKE
from collector.validation.records import Record, RecordError, parse_clock, read_lines

TIMEZONE = "America/New_York"
DEFAULT_DATE = date(1990, 1, 1)
#: WFDB beat annotation codes (everything else, e.g. ``|`` ``~`` ``+`` ``[0]``, is not a beat).
BEAT_CODES = frozenset(("N", "L", "R", "B", "A", "a", "J", "S", "V", "r", "F", "e", "j", "n", "E", "/", "f", "Q",
                        "?"))
STAGE_MAP = {"W": WAKE, "1": NREM, "2": NREM, "3": NREM, "4": NREM, "R": REM, "MT": UNKNOWN, "M": UNKNOWN}
#: Grid tolerance of a stage annotation's elapsed time (s).
GRID_TOL_S = 0.5


def _companion(hea: Path, ext: str) -> Path:
    base = hea.name.removesuffix(".gz").removesuffix(".hea")
    for name in (f"{base}.{ext}.gz", f"{base}.{ext}"):
        if (hea.parent / name).exists():
            return hea.parent / name
    return hea.parent / f"{base}.{ext}.gz"


def _header(path: Path) -> tuple[datetime, float, int | None, Literal["female", "male"] | None]:
    lines = read_lines(path)
    if not lines:
        raise RecordError(path, 1, "empty header")
    f = lines[0].split()
    if len(f) < 5:
        raise RecordError(path, 1, "record line needs name, signals, frequency, samples and start time")
    try:
        fs = float(f[2].split("/")[0])
        n_samples = int(f[3])
        h, m, s = [*f[4].split(":"), "0", "0"][:3]
        start_t = time(int(h), int(m), int(float(s)))
        day = DEFAULT_DATE
        if len(f) >= 6:
            d, mo, y = (int(x) for x in f[5].split("/"))
            day = date(y + 1900 if y < 100 else y, mo, d)
    except ValueError as exc:
        raise RecordError(path, 1, f"cannot read the record line ({exc})") from None
    if fs <= 0 or n_samples <= 0:
        raise RecordError(path, 1, "sampling frequency and number of samples must be positive")
    age: int | None = None
    sex: Literal["female", "male"] | None = None
    for i, line in enumerate(lines, 1):
        m_ = re.match(r"#\s*(\S+)\s+([MFmfx])\b", line)
        if m_ and i > 1:
            age = int(m_.group(1)) if m_.group(1).isdigit() else None
            letter = m_.group(2).lower()
            sex = "male" if letter == "m" else "female" if letter == "f" else None
            break
    start = datetime.combine(day, start_t, tzinfo=ZoneInfo(TIMEZONE))
    return start, n_samples / fs, age, sex


def _stages(path: Path, duration_s: float) -> np.ndarray:
    lines = read_lines(path)
    n = int(-(-duration_s // EPOCH_S))
    codes = np.full(n, UNKNOWN, dtype=np.int64)
    seen = np.zeros(n, dtype=bool)
    for i, line in enumerate(lines, 1):
        if not line.strip() or (i == 1 and line.lstrip().startswith("Elapsed")):
            continue
        parts = line.split("\t")
        try:
            t = parse_clock(line.split()[0])
        except ValueError as exc:
            raise RecordError(path, i, str(exc)) from None
        aux = parts[-1].split() if len(parts) > 1 else []
        if not aux:
            raise RecordError(path, i, "no stage in the last tab-separated field")
        if aux[0] not in STAGE_MAP:
            raise RecordError(path, i, f"unknown stage {aux[0]!r} (expected one of {', '.join(STAGE_MAP)})")
        k = round(t / EPOCH_S)
        if abs(t - k * EPOCH_S) > GRID_TOL_S:
            raise RecordError(path, i, f"stage at {t:.3f} s is not on the 30-s epoch grid")
        if k >= n:
            raise RecordError(path, i, f"stage at {t:.0f} s is after the end of the recording ({duration_s:.0f} s)")
        if seen[k]:
            raise RecordError(path, i, f"epoch at {k * EPOCH_S} s is staged twice")
        seen[k] = True
        codes[k] = STAGE_MAP[aux[0]]
    if not seen.any():
        raise RecordError(path, 0, "no stages")
    return codes


def _rr(path: Path) -> tuple[np.ndarray, np.ndarray]:
    ends: list[float] = []
    rr: list[float] = []
    last = -1.0
    for i, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        f = line.split("\t")
        if len(f) != 5:
            raise RecordError(path, i, f"expected 5 tab-separated fields, found {len(f)}")
        try:
            t0, t1, r = parse_clock(f[0]), parse_clock(f[4]), float(f[2])
        except ValueError as exc:
            raise RecordError(path, i, str(exc)) from None
        if not (np.isfinite(r) and r > 0):
            raise RecordError(path, i, f"RR interval {f[2].strip()!r} is not a positive number of seconds")
        if abs(t1 - t0 - r) > 0.01:
            raise RecordError(path, i, f"beat times {f[0].strip()} -> {f[4].strip()} do not match RR {r} s")
        if t1 < last:
            raise RecordError(path, i, "beat times go backwards")
        last = t1
        if f[1].strip() in BEAT_CODES and f[3].strip() in BEAT_CODES:
            ends.append(t1)
            rr.append(r * 1000.0)
    if not rr:
        raise RecordError(path, 0, "no RR interval between two beats")
    return np.asarray(ends), np.asarray(rr)


def read_slpdb(hea: Path) -> Record:
    """One slpdb record from its header path (the .rr and .an files beside it)."""
    name = hea.name.removesuffix(".gz").removesuffix(".hea")
    start, duration, age, sex = _header(hea)
    stages = _stages(_companion(hea, "an"), duration)
    ends, rr = _rr(_companion(hea, "rr"))
    m = re.fullmatch(r"(slp\d+)[ab]", name)
    return Record(name=name, subject=m.group(1) if m else name, age=age, sex=sex, timezone=TIMEZONE,
                  start=start, stages=stages, rr_end_s=ends, rr_ms=rr, source="slpdb")
