"""``magsleep import``: bring history from other apps (docs/import.md)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from enum import StrEnum
from functools import partial
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from collector.cli.common import Column, console, err_console, fail, fitted_table, get_settings
from collector.errors import MagsleepError
from collector.importers.base import NS


class Kind(StrEnum):
    rr = "rr"
    apple_health = "apple-health"
    gadgetbridge = "gadgetbridge"
    garmin_grafana = "garmin-grafana"


#: How many problems are printed word for word (all are counted).
SHOWN_PROBLEMS = 10


def import_(
    kind: Annotated[Kind, typer.Argument(help="rr, apple-health, gadgetbridge or garmin-grafana.")],
    paths: Annotated[list[str], typer.Argument(
        help="The export file(s), e.g. one RR file per recording (for garmin-grafana: http://host:8086/DATABASE).",
        metavar="PATH")],
    person: Annotated[str | None, typer.Option("--person", "-p", help="Whose data (default: the only person).")]
    = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Read and count only; store nothing.")] = False,
    start: Annotated[str | None, typer.Option(
        "--start", help="Start of a recording without one (plain RR lists): 'YYYY-MM-DD HH:MM:SS', "
                        "the person's local time unless it has an offset.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="Device tag for the imported points "
                                                                "(default: the app or watch name).")] = None,
    no_nights: Annotated[bool, typer.Option("--no-nights", help="Do not compute the nights afterwards.")] = False,
    confirm_doses: Annotated[bool, typer.Option(
        "--confirm-doses", help="Log the magnesium intakes found as doses (listed otherwise).")] = False,
    beats: Annotated[bool, typer.Option(
        "--beats", help="Apple Health: import the HRV beat lists as RR intervals (see docs/import.md).")] = False,
) -> None:
    """Import history from another app: RR recordings, an Apple Health export, a Gadgetbridge
    database or a garmin-grafana InfluxDB. Importing again adds nothing."""
    from collector.importers.run import compute_nights, run_import

    settings = get_settings()
    start_dt: datetime | None = None
    if start is not None:
        if len(paths) > 1:
            fail("--start is the start of one recording: give one file with it")
        try:
            start_dt = datetime.fromisoformat(start.strip())
        except ValueError:
            fail(f"--start {start!r}: give 'YYYY-MM-DD HH:MM:SS' (e.g. '2024-01-02 23:10:00')")
    summaries = []
    for path in paths:
        progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                            TimeRemainingColumn(), console=err_console, transient=True)
        task = progress.add_task(f"{'reading' if dry_run else 'importing'} {escape(path.rsplit('/', 1)[-1])}",
                                 total=None)
        try:
            with progress:
                summary = asyncio.run(run_import(
                    settings, kind.value, path, person=person, dry_run=dry_run, start=start_dt, device=device,
                    nights=False, confirm_doses=confirm_doses, beats=beats,
                    advance=partial(progress.advance, task), on_total=partial(_set_total, progress, task)))
        except MagsleepError as exc:
            fail(str(exc))
        _print(summary)
        summaries.append(summary)
    nights = sorted({d for s in summaries for d in s.nights})
    if dry_run or not nights:
        return
    if no_nights:
        console.print(f"nights not computed (--no-nights): run `magsleep nights compute --since {nights[0]}`",
                      highlight=False)
        return
    try:
        computed, unchanged, flagged = asyncio.run(compute_nights(settings, summaries[0].person, nights))
    except MagsleepError as exc:
        fail(f"imported, but the nights could not be computed: {exc}; run `magsleep nights compute --since "
             f"{nights[0]}` once that is fixed")
    console.print(f"nights: {computed} computed ({flagged} flagged), {unchanged} unchanged", highlight=False)


def _set_total(progress: Progress, task: TaskID, total: int) -> None:
    progress.update(task, total=total or None)


def _fmt(ns: int | None, tz: str) -> str:
    from zoneinfo import ZoneInfo

    if ns is None:
        return "-"
    return datetime.fromtimestamp(ns / NS, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


def _print(s: object) -> None:
    from collector.importers.run import ImportSummary

    assert isinstance(s, ImportSummary)
    tz = get_settings().person(s.person).timezone
    verb = "would be stored" if s.dry_run else "stored"
    console.print(f"{escape(s.source)}: {s.total} point(s) {verb} for {s.person} "
                  f"({_fmt(s.first_ns, tz)} to {_fmt(s.last_ns, tz)})", highlight=False)
    if s.points:
        rows = [[m, str(n)] for m, n in sorted(s.points.items())]
        console.print(fitted_table((Column("measurement"), Column("points", "right")), rows))
    if s.nights:
        console.print(f"nights with data: {len(s.nights)} ({s.nights[0]} to {s.nights[-1]})", highlight=False)
    if s.report.skipped:
        kept = ", ".join(f"{what} {n}" for what, n in s.report.skipped.most_common())
        console.print(f"not imported (no place in the schema): {escape(kept)}", highlight=False)
    if s.doses:
        rows = [[_fmt(d.time_ns, tz), f"{d.elemental_mg:g}", escape(d.origin)] for d in s.doses]
        console.print(fitted_table((Column("taken"), Column("Mg mg", "right"), Column("recorded by", wrap=True)),
                                   rows, title=f"{len(s.doses)} magnesium intake(s) found"))
        if s.dry_run or (not s.doses_logged and not s.doses_refused):
            console.print("they are not doses yet: import again with --confirm-doses to log them", highlight=False)
        else:
            console.print(f"doses logged: {s.doses_logged}", highlight=False)
            for line in s.doses_refused[:SHOWN_PROBLEMS]:
                console.print(f"  refused: {escape(line)}", highlight=False)
    if s.report.bad:
        err_console.print(f"[yellow]{s.report.bad} bad input item(s) skipped[/yellow]; the rest was imported:",
                          highlight=False)
        for pr in s.report.problems[:SHOWN_PROBLEMS]:
            err_console.print(f"  {escape(str(pr))}", highlight=False)
        if s.report.bad > SHOWN_PROBLEMS:
            err_console.print(f"  ... and {s.report.bad - SHOWN_PROBLEMS} more", highlight=False)
    if s.report.stopped:
        err_console.print(f"[yellow]stopped early:[/yellow] {escape(s.report.stopped)}", highlight=False)
    if not s.total and not s.doses:
        fail("nothing found to import (see the problems above)" if s.report.bad else "nothing found to import")
