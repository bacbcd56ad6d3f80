"""``magsleep dose``: log, list, edit, delete, import, export and re-sync supplement doses.

Also ``magsleep api``: the dose HTTP API and phone page on their own.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, time
from pathlib import Path
from typing import Annotated, Any, TypeVar
from uuid import UUID

import pydantic
import typer
from rich.markup import escape

from collector.app.persons import Persons
from collector.cli.common import DAY_FORMS, Column, console, err_console, fail, fitted_table, get_settings, parse_day
from collector.doses.csvio import export_csv, import_rows, read_rows
from collector.doses.entities import (
    Dose,
    DoseCreate,
    DosePatch,
    DoseValidationError,
    Source,
    problems_from_pydantic,
)
from collector.doses.rules import AT_HELP as COMMON_AT_HELP
from collector.doses.rules import Rules
from collector.doses.service import DoseService
from collector.errors import MagsleepError, ValidationError
from collector.settings import Settings

app = typer.Typer(help="Supplement doses: log, list, edit, delete, import, export.",
                  no_args_is_help=True)
T = TypeVar("T")

FLUSH_TIMEOUT_S = 3.0


@asynccontextmanager
async def open_service(
    settings: Settings, *, influx: bool = True, now: Callable[[], datetime] | None = None
) -> AsyncIterator[DoseService]:
    """The dose service, with a short-lived pipeline (memory outbox) when ``influx``.

    The journal is the CLI's outbox: operations it could not deliver stay queued there and go
    out with the next command, ``magsleep dose sync``, or the running daemon. ``now``: the
    clock for validation (default the real one).
    """
    clock: dict[str, Any] = {"persons": Persons(settings)}
    if now is not None:
        clock["now"] = now
    if not influx:
        async with DoseService(settings, **clock) as svc:
            yield svc
        return
    from collector.storage.pipeline import Pipeline

    pipe = Pipeline.from_settings(settings, name="cli", outbox_path=None, wait_for_embedded=True)
    await pipe.start()
    try:
        async with DoseService(settings, sink=pipe, durable_sink=False,
                               flush_timeout_s=FLUSH_TIMEOUT_S, **clock) as svc:
            yield svc
    finally:
        await pipe.stop(flush_timeout=0.1)


def run(fn: Callable[[], Awaitable[T]], *, what: str = "dose") -> T:
    """Run ``fn`` and turn magsleep errors into a clear message and exit code 2."""
    try:
        return asyncio.run(_call(fn))
    except DoseValidationError as exc:
        lines = "\n".join(f"  {p.field}: {p.reason}" for p in exc.problems)
        fail(f"invalid {what}:\n{lines}")
    except pydantic.ValidationError as exc:
        lines = "\n".join(f"  {p.field}: {p.reason}" for p in problems_from_pydantic(exc))
        fail(f"invalid input:\n{lines}")
    except MagsleepError as exc:
        fail(str(exc))


async def _call(fn: Callable[[], Awaitable[T]]) -> T:
    return await fn()


def _short(dose_id: UUID) -> str:
    return str(dose_id)[:8]


def mg(x: float) -> str:
    """Milligrams for people: at most one decimal."""
    return f"{x:.1f}".removesuffix(".0")


def _describe(d: Dose) -> str:
    return (f"{mg(d.amount_mg)} mg {d.form.value} ({mg(d.elemental_mg)} mg elemental) for {d.person}"
            f" at {d.taken_at.strftime('%Y-%m-%d %H:%M %Z')}")


async def resolve_id(svc: DoseService, text: str) -> UUID:
    """A full id, or a unique prefix of one (as `dose list` shows)."""
    t = text.strip().lower()
    try:
        return UUID(t)
    except ValueError:
        pass
    if not re.fullmatch(r"[0-9a-f-]{4,36}", t):
        raise ValidationError(f"{text!r} is not a dose id; copy one from `magsleep dose list`")
    matches = [d.id for d in await svc.list_doses() if str(d.id).startswith(t)]
    if not matches:
        raise ValidationError(f"no dose id starts with {text!r}; see `magsleep dose list`")
    if len(matches) > 1:
        raise ValidationError(f"{text!r} matches {len(matches)} doses; give more characters")
    return matches[0]


async def report_pending(svc: DoseService) -> None:
    n = await svc.pending()
    if n:
        err_console.print(
            f"[yellow]InfluxDB did not take {n} change(s) yet; they are safe in the dose journal "
            "and are sent later (next command, the daemon, or `magsleep dose sync`).[/yellow]")


def _warn(warnings: list[str]) -> None:
    for w in warnings:
        err_console.print(f"[yellow]warning:[/yellow] {escape(w)}", highlight=False)


FORM_HELP = ("glycinate, bisglycinate, citrate, oxide, threonate, malate, taurate, chloride, "
             "sulfate or other (default doses.default_form).")
AT_HELP = f"When taken: {COMMON_AT_HELP[:-1]} (default now)."
ELEMENTAL_HELP = "Elemental magnesium in mg, if the label states it (default: from the form)."
SINCE_HELP = f"From this day on: {DAY_FORMS}; or a date and time 'YYYY-MM-DD HH:MM'."

Person = Annotated[str | None, typer.Option("--person", "-p", help="Whose dose (default: the only configured person).")]


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
        async with open_service(settings) as svc:
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

    run(go)


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
        async with open_service(settings, influx=False) as svc:
            start = _parse_since(since, svc.rules, person)
            doses = await svc.list_doses(person=person, since=start, limit=limit)
        rows = [[_short(d.id), d.taken_at.strftime("%Y-%m-%d %H:%M"), d.person, d.form.value,
                 mg(d.amount_mg), mg(d.elemental_mg), d.source.value, escape(d.note)] for d in doses]
        console.print(fitted_table(DOSE_TABLE, rows, title=f"{len(doses)} dose(s)"))

    run(go)


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
        async with open_service(settings) as svc:
            uid = await resolve_id(svc, dose_id)
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

    run(go)


@app.command("delete")
def delete(
    dose_id: Annotated[str, typer.Argument(metavar="ID", help="Dose id or a unique prefix.")],
) -> None:
    """Delete a dose (from the journal and from InfluxDB)."""
    settings = get_settings()

    async def go() -> None:
        async with open_service(settings) as svc:
            uid = await resolve_id(svc, dose_id)
            old = await svc.delete(uid)
            console.print(f"deleted {_describe(old)}  id {old.id}", highlight=False)
            await report_pending(svc)

    run(go)


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
        async with open_service(settings) as svc:
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

    run(go)


@app.command("export")
def export(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default stdout).")] = None,
    person: Person = None,
    since: Annotated[str | None, typer.Option("--since", help=SINCE_HELP)] = None,
) -> None:
    """Export doses as CSV (the format `dose import` reads)."""
    settings = get_settings()

    async def go() -> None:
        async with open_service(settings, influx=False) as svc:
            start = _parse_since(since, svc.rules, person)
            doses = await svc.list_doses(person=person, since=start)
        doses.reverse()
        if output is None:
            export_csv(doses, sys.stdout)
        else:
            with output.open("w", encoding="utf-8", newline="") as fh:
                n = export_csv(doses, fh)
            err_console.print(f"wrote {n} dose(s) to {output}")

    run(go)


@app.command("sync")
def sync() -> None:
    """Send every dose, night tag and lights out/on in the journal to InfluxDB again (after a database reset)."""
    settings = get_settings()

    async def go() -> None:
        async with open_service(settings) as svc:
            n = await svc.sync()
            left = await svc.pending()
            if left:
                raise MagsleepError(
                    f"InfluxDB did not take the journal ({left} operation(s) queued); check "
                    "`magsleep influx ping` and run `magsleep dose sync` again")
            console.print(f"sent {n} dose(s), night tag(s) and lights out/on to InfluxDB")

    run(go)


def api(
    host: Annotated[str | None, typer.Option("--host", help="Address to bind (default api.host).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default api.port).")] = None,
) -> None:
    """Serve the dose HTTP API and the phone page (without the collector daemon)."""
    from collector.doses.api import serve

    settings = get_settings()
    run(lambda: serve(settings, host=host, port=port, persons=Persons(settings)))
