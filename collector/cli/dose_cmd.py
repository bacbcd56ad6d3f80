"""``magsleep dose``: log, list, edit, delete, import, export and re-sync supplement doses.

Also ``magsleep api``: the dose HTTP API and phone page on their own.
"""

from __future__ import annotations

import sys
from datetime import datetime, time
from pathlib import Path
from typing import Annotated, Any, TypeVar
from uuid import UUID

import typer
from rich.markup import escape

from collector.app.doses import open_dose_service
from collector.app.persons import Persons
from collector.cli.common import (
    DAY_FORMS,
    Column,
    Person,
    console,
    err_console,
    fitted_table,
    get_settings,
    parse_day,
    report_pending,
    run_async,
)
from collector.doses.csvio import export_csv, import_rows, read_rows
from collector.doses.entities import (
    Dose,
    DoseCreate,
    DosePatch,
    Source,
)
from collector.doses.rules import AT_HELP as COMMON_AT_HELP
from collector.doses.rules import Rules
from collector.errors import MagsleepError, ValidationError

app = typer.Typer(help="Supplement doses: log, list, edit, delete, import, export.",
                  no_args_is_help=True)
T = TypeVar("T")


def _short(dose_id: UUID) -> str:
    return str(dose_id)[:8]


def mg(x: float) -> str:
    """Milligrams for people: at most one decimal."""
    return f"{x:.1f}".removesuffix(".0")


def _describe(d: Dose) -> str:
    return (f"{mg(d.amount_mg)} mg {d.form.value} ({mg(d.elemental_mg)} mg elemental) for {d.person}"
            f" at {d.taken_at.strftime('%Y-%m-%d %H:%M %Z')}")


def _warn(warnings: list[str]) -> None:
    for w in warnings:
        err_console.print(f"[yellow]warning:[/yellow] {escape(w)}", highlight=False)


FORM_HELP = ("glycinate, bisglycinate, citrate, oxide, threonate, malate, taurate, chloride, "
             "sulfate or other (default doses.default_form).")
AT_HELP = f"When taken: {COMMON_AT_HELP[:-1]} (default now)."
ELEMENTAL_HELP = "Elemental magnesium in mg, if the label states it (default: from the form)."
SINCE_HELP = f"From this day on: {DAY_FORMS}; or a date and time 'YYYY-MM-DD HH:MM'."



@app.command("add")
def add(
    amount: Annotated[float, typer.Argument(help="Amount of the compound in mg (as on the label).")],
    form: Annotated[str | None, typer.Option("--form", "-f", help=FORM_HELP)] = None,
    at: Annotated[str | None, typer.Option("--at", help=AT_HELP)] = None,
    person: Person = None,
    note: Annotated[str, typer.Option("--note", help="Free text.")] = "",
    elemental: Annotated[float | None, typer.Option("--elemental", help=ELEMENTAL_HELP)] = None,
    supplement: Annotated[str, typer.Option("--supplement", help="What was taken.")] = "magnesium",
    dose_id: Annotated[str | None, typer.Option("--id", help="Dose id (UUID) to make a retry idempotent.")] = None,
) -> None:
    """Log a dose taken now or at --at."""
    settings = get_settings()

    async def go() -> None:
        async with open_dose_service(settings) as svc:
            taken = svc.rules.at(at, person) if at else None
            data: dict[str, Any] = {"amount_mg": amount, "note": note, "supplement": supplement,
                                    "source": Source.cli}
            for k, v in (("form", form), ("person", person), ("elemental_mg", elemental),
                         ("taken_at", taken), ("id", dose_id)):
                if v is not None:
                    data[k] = v
            res = await svc.add(DoseCreate.model_validate(data))
            verb = "logged" if res.created else "already logged"
            console.print(f"{verb} {_describe(res.dose)}  id {res.dose.id}", highlight=False)
            _warn(res.warnings)
            await report_pending(svc)

    run_async(go)


def _parse_since(text: str | None, rules: Rules, person: str | None) -> datetime | None:
    """``--since``: a day as everywhere (:func:`parse_day`, from its start), or a date and time."""
    if text is None:
        return None
    tz = rules.zone_for(person)
    try:
        d = parse_day(text, rules.now().astimezone(tz).date())
    except ValidationError:
        if ":" not in text:
            raise
        return rules.at(text, person, "--since")
    return datetime.combine(d, time(0, 0), tzinfo=tz)


#: The dose listing; on a narrow terminal the columns with the highest ``drop`` are left out.
DOSE_TABLE = (Column("id"), Column("taken at"), Column("person", drop=1), Column("form"),
              Column("mg", "right"), Column("elem. mg", "right", drop=2), Column("source", drop=3),
              Column("note", wrap=True))


@app.command("list")
def list_(
    since: Annotated[str | None, typer.Option("--since", help=SINCE_HELP)] = None,
    person: Person = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many, newest first.")] = 50,
) -> None:
    """List logged doses, newest first."""
    settings = get_settings()

    async def go() -> None:
        async with open_dose_service(settings, influx=False) as svc:
            start = _parse_since(since, svc.rules, person)
            doses = await svc.list_doses(person=person, since=start, limit=limit)
        rows = [[_short(d.id), d.taken_at.strftime("%Y-%m-%d %H:%M"), d.person, d.form.value,
                 mg(d.amount_mg), mg(d.elemental_mg), d.source.value, escape(d.note)] for d in doses]
        console.print(fitted_table(DOSE_TABLE, rows, title=f"{len(doses)} dose(s)"))

    run_async(go)


@app.command("edit")
def edit(
    dose_id: Annotated[str, typer.Argument(metavar="ID", help="Dose id or a unique prefix.")],
    amount: Annotated[float | None, typer.Option("--amount", help="Amount of the compound, mg.")] = None,
    form: Annotated[str | None, typer.Option("--form", "-f")] = None,
    at: Annotated[str | None, typer.Option("--at", help=COMMON_AT_HELP)] = None,
    person: Person = None,
    note: Annotated[str | None, typer.Option("--note")] = None,
    elemental: Annotated[float | None, typer.Option("--elemental", help="Elemental Mg, mg.")] = None,
) -> None:
    """Change a dose; InfluxDB gets the old point deleted and the new one written."""
    settings = get_settings()

    async def go() -> None:
        async with open_dose_service(settings) as svc:
            uid = await svc.find_id(dose_id)
            old = await svc.get(uid)
            data: dict[str, Any] = {}
            for k, v in (("amount_mg", amount), ("form", form), ("person", person),
                         ("note", note), ("elemental_mg", elemental)):
                if v is not None:
                    data[k] = v
            if at is not None:
                data["taken_at"] = svc.rules.at(at, person or old.person)
            if not data:
                raise ValidationError("nothing to change; give --amount, --form, --at, --person, "
                                      "--note or --elemental")
            res = await svc.update(uid, DosePatch.model_validate(data))
            console.print(f"changed {_describe(res.dose)}  id {res.dose.id}", highlight=False)
            _warn(res.warnings)
            await report_pending(svc)

    run_async(go)


@app.command("delete")
def delete(
    dose_id: Annotated[str, typer.Argument(metavar="ID", help="Dose id or a unique prefix.")],
) -> None:
    """Delete a dose (from the journal and from InfluxDB)."""
    settings = get_settings()

    async def go() -> None:
        async with open_dose_service(settings) as svc:
            uid = await svc.find_id(dose_id)
            old = await svc.delete(uid)
            console.print(f"deleted {_describe(old)}  id {old.id}", highlight=False)
            await report_pending(svc)

    run_async(go)


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(metavar="FILE.csv", help="CSV with a header line.")],
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Import the good rows even if some are bad.")] = False,
) -> None:
    """Import doses from CSV (columns: id,person,supplement,form,amount_mg,elemental_mg,taken_at,note).

    Every row is checked first; if any is bad nothing is imported (unless --skip-bad).
    """
    settings = get_settings()

    async def go() -> None:
        rows = read_rows(file)
        async with open_dose_service(settings) as svc:
            report = await import_rows(svc, rows, skip_bad=skip_bad)
            for bad in report.bad:
                for p in bad.problems:
                    err_console.print(f"line {bad.line}: {p.field}: {p.reason}", highlight=False, markup=False)
            if report.bad and not skip_bad:
                lines = ", ".join(str(b.line) for b in report.bad)
                raise ValidationError(
                    f"{len(report.bad)} bad row(s) (lines {lines}); nothing imported. Fix them, "
                    "or pass --skip-bad to import the other rows")
            _warn(report.warnings)
            console.print(f"imported {report.imported} dose(s); {report.already_there} already "
                          f"there; {len(report.bad)} bad row(s) skipped")
            await report_pending(svc)

    run_async(go)


@app.command("export")
def export(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default stdout).")] = None,
    person: Person = None,
    since: Annotated[str | None, typer.Option("--since", help=SINCE_HELP)] = None,
) -> None:
    """Export doses as CSV (the format `dose import` reads)."""
    settings = get_settings()

    async def go() -> None:
        async with open_dose_service(settings, influx=False) as svc:
            start = _parse_since(since, svc.rules, person)
            doses = await svc.list_doses(person=person, since=start)
        doses.reverse()
        if output is None:
            export_csv(doses, sys.stdout)
        else:
            with output.open("w", encoding="utf-8", newline="") as fh:
                n = export_csv(doses, fh)
            err_console.print(f"wrote {n} dose(s) to {output}")

    run_async(go)


@app.command("sync")
def sync() -> None:
    """Send every dose, night tag and lights out/on in the journal to InfluxDB again (after a database reset)."""
    settings = get_settings()

    async def go() -> None:
        async with open_dose_service(settings) as svc:
            n = await svc.sync()
            left = await svc.pending()
            if left:
                raise MagsleepError(
                    f"InfluxDB did not take the journal ({left} operation(s) queued); check "
                    "`magsleep influx ping` and run `magsleep dose sync` again")
            console.print(f"sent {n} dose(s), night tag(s) and lights out/on to InfluxDB")

    run_async(go)


def api(
    host: Annotated[str | None, typer.Option("--host", help="Address to bind (default api.host).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default api.port).")] = None,
) -> None:
    """Serve the dose HTTP API and the phone page (without the collector daemon)."""
    from collector.doses.api import serve

    settings = get_settings()
    run_async(lambda: serve(settings, host=host, port=port, persons=Persons(settings)))
