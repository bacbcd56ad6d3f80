"""CSV import and export of doses: the same columns both ways, so an export re-imports as is.

Cells that a spreadsheet would run as a formula (starting with ``= + - @``, a tab or a carriage
return) are exported with a leading ``'`` (OWASP's advice against CSV injection), and so is a
cell that starts with ``'`` before one of those; import takes that one ``'`` off again.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic

from collector.doses.entities import (
    Dose,
    DoseCreate,
    DoseValidationError,
    FieldProblem,
    Source,
    problems_from_pydantic,
)
from collector.doses.rules import build_dose, same_request
from collector.doses.service import DoseService
from collector.errors import ValidationError

COLUMNS = ("id", "person", "supplement", "form", "amount_mg", "elemental_mg", "taken_at", "note")
REQUIRED = ("amount_mg",)
#: First characters that make a spreadsheet read a cell as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _needs_quote(text: str) -> bool:
    return text.startswith(FORMULA_STARTS) or (
        text.startswith("'") and text[1:].startswith((*FORMULA_STARTS, "'")))


def neutralise(text: str) -> str:
    """``text`` as a CSV cell a spreadsheet shows as text, never runs (see module doc)."""
    return "'" + text if _needs_quote(text) else text


def unneutralise(text: str) -> str:
    """The inverse of :func:`neutralise` (for import)."""
    return text[1:] if text.startswith("'") and _needs_quote(text[1:]) else text


@dataclass
class RowCheck:
    line: int
    create: DoseCreate | None
    problems: list[FieldProblem] = field(default_factory=list)


@dataclass
class ImportReport:
    imported: int = 0
    already_there: int = 0
    bad: list[RowCheck] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def read_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    """Rows of ``path`` with their line numbers (the header is line 1)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ValidationError(f"cannot read {path}: {exc.strerror}; check the path") from None
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{path} is not UTF-8 text (at byte {exc.start}); save it as CSV UTF-8 "
                              "(a spreadsheet's 'CSV UTF-8' export) and import it again") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if not header:
        raise ValidationError(f"{path} is empty; the first line must name the columns: "
                              + ",".join(COLUMNS))
    unknown = [h for h in header if h not in (*COLUMNS, "source", "elemental_computed",
                                             "recorded_at", "updated_at")]
    missing = [c for c in REQUIRED if c not in header]
    if unknown or missing:
        parts = []
        if unknown:
            parts.append(f"unknown columns {', '.join(unknown)}")
        if missing:
            parts.append(f"missing columns {', '.join(missing)}")
        raise ValidationError(f"{path}: {'; '.join(parts)}; use the columns " + ",".join(COLUMNS))
    reader.fieldnames = header
    out = []
    for row in reader:
        clean = {k: unneutralise((v or "").strip()) for k, v in row.items() if k in COLUMNS}
        if any(clean.values()):
            out.append((reader.line_num, clean))
    return out


def _create_from_row(row: dict[str, str]) -> DoseCreate:
    data: dict[str, Any] = {k: v for k, v in row.items() if v != "" or k == "note"}
    data["source"] = Source.import_
    return DoseCreate.model_validate(data)


async def check_rows(svc: DoseService, rows: Iterable[tuple[int, dict[str, str]]]) -> list[RowCheck]:
    """Validate every row (including ids repeated in the file or used by another dose)."""
    checks: list[RowCheck] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        rc = RowCheck(line, None)
        try:
            rc.create = _create_from_row(row)
            fresh = build_dose(rc.create, svc.rules)
        except pydantic.ValidationError as exc:
            rc.problems = problems_from_pydantic(exc)
        except DoseValidationError as exc:
            rc.problems = exc.problems
        else:
            if rc.create.id is not None:
                key = str(rc.create.id)
                if key in seen:
                    rc.problems.append(FieldProblem(
                        "id", f"repeats the id of line {seen[key]}; give each dose its own id "
                        "or leave id empty"))
                seen[key] = line
                stored = await svc.journal_get(rc.create.id)
                if stored is not None and not same_request(stored, rc.create, fresh):
                    rc.problems.append(FieldProblem(
                        "id", f"{key} is already used by a different dose; clear the id to add "
                        "this as a new dose"))
        checks.append(rc)
    return checks


async def import_rows(
    svc: DoseService, rows: list[tuple[int, dict[str, str]]], *, skip_bad: bool
) -> ImportReport:
    """Import all rows, or nothing if any is bad (unless ``skip_bad``)."""
    checks = await check_rows(svc, rows)
    report = ImportReport(bad=[c for c in checks if c.problems])
    if report.bad and not skip_bad:
        return report
    for c in checks:
        if c.problems or c.create is None:
            continue
        res = await svc.add(c.create)
        if res.created:
            report.imported += 1
        else:
            report.already_there += 1
        report.warnings += res.warnings
    return report


def export_csv(doses: Iterable[Dose], out: io.TextIOBase | Any) -> int:
    w = csv.writer(out, lineterminator="\n")
    w.writerow((*COLUMNS, "source"))
    n = 0
    for d in doses:
        w.writerow(neutralise(cell) for cell in (
            str(d.id), d.person, d.supplement, d.form.value, f"{d.amount_mg:g}",
            "" if d.elemental_computed else f"{d.elemental_mg:g}",
            d.taken_at.isoformat(), d.note, d.source.value))
        n += 1
    return n
