"""Finding recordings in a directory and reading each with its reader (slpdb or the open night format).

Kept apart from :mod:`collector.validation.records`, which the readers import, so that no module
imports one that imports it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from collector.errors import ValidationError
from collector.validation.openformat import read_night
from collector.validation.records import Record
from collector.validation.slpdb import read_slpdb


@dataclass(frozen=True, slots=True)
class RecordSource:
    """Where a record is read from: its name, reader kind and main path."""

    name: str
    kind: Literal["open", "slpdb"]
    path: Path  # the night's folder (open) or the record's header file (slpdb)


def find_sources(directory: Path) -> list[RecordSource]:
    """Every recording in ``directory``, sorted by name: night folders (meta.json) and slpdb records (.hea/.hea.gz)."""
    if not directory.is_dir():
        raise ValidationError(f"{directory} is not a directory: give the folder holding the recordings")
    out: dict[str, RecordSource] = {}
    for p in sorted(directory.iterdir()):
        if p.is_dir() and (p / "meta.json").exists():
            out[p.name] = RecordSource(p.name, "open", p)
        elif p.is_file() and (p.name.endswith(".hea.gz") or p.name.endswith(".hea")):
            name = p.name.removesuffix(".gz").removesuffix(".hea")
            if name in out and out[name].kind == "slpdb":
                continue  # both slpNN.hea and slpNN.hea.gz: one record
            out[name] = RecordSource(name, "slpdb", p)
    if (directory / "meta.json").exists():  # the directory is itself one night
        out[directory.name] = RecordSource(directory.name, "open", directory)
    return [out[k] for k in sorted(out)]


def load(source: RecordSource) -> Record:
    """Read one record (raises :class:`RecordError` naming the file and line of a problem)."""
    if source.kind == "slpdb":
        return read_slpdb(source.path)
    return read_night(source.path)
