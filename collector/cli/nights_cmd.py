"""``magsleep nights``: list computed nights, compute new ones."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo

import typer

from collector.cli.common import (
    DAY_FORMS,
    Column,
    SiblingHintGroup,
    console,
    fail,
    fitted_table,
    get_settings,
    parse_day,
    today_for,
)
from collector.errors import MagsleepError
from collector.nights.listing import NIGHT_COLUMNS, list_nights
from collector.nights.run import compute_all
from collector.nights.segment import NS
from collector.settings import Settings

T = TypeVar("T")

app = typer.Typer(help="Nightly sleep metrics: list them, or compute new nights.", invoke_without_command=True,
                  cls=SiblingHintGroup)


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


PersonOpt = Annotated[str | None, typer.Option("--person", "-p", help="Only this person (default: all).")]
SinceOpt = Annotated[str | None, typer.Option("--since", help=f"First night (the evening): {DAY_FORMS}.")]


def _run(fn: Callable[[], Awaitable[T]]) -> T:
    try:
        return asyncio.run(fn())  # type: ignore[arg-type]
    except MagsleepError as exc:
        fail(str(exc))


def _day(text: str | None, option: str, settings: Settings, person: str | None) -> date | None:
    return None if text is None else parse_day(text, today_for(settings, person), option)


def _fmt_time(ns: Any, tz: ZoneInfo) -> str:
    if not isinstance(ns, int):
        return ""
    return datetime.fromtimestamp(ns / NS, tz).strftime("%H:%M")


def _num(v: Any, nd: int = 0) -> str:
    if isinstance(v, bool) or v is None:
        return "" if v is None else ("yes" if v else "")
    if isinstance(v, int | float):
        return f"{v:.{nd}f}"
    return str(v)


FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table, csv or json.")]


@app.callback()
def nights(ctx: typer.Context, person: PersonOpt = None, since: SinceOpt = None,
           fmt: FormatOpt = Format.table) -> None:
    """List computed nights (run `magsleep nights compute` first)."""
    if ctx.invoked_subcommand is None:
        _list(person, since, fmt)


@app.command("list")
def list_(person: PersonOpt = None, since: SinceOpt = None, fmt: FormatOpt = Format.table) -> None:
    """List computed nights (the same as `magsleep nights`)."""
    _list(person, since, fmt)


def _list(person: str | None, since: str | None, fmt: Format) -> None:
    settings = get_settings()
    try:
        start = _day(since, "--since", settings, person)
    except MagsleepError as exc:
        fail(str(exc))
    rows = _run(lambda: list_nights(settings, person=person, since=start))
    if fmt is Format.json:
        out = [{k: r.get(k) for k in NIGHT_COLUMNS if r.get(k) not in (None, "")} for r in rows]
        typer.echo(json.dumps(out, indent=1))
        return
    if fmt is Format.csv:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(NIGHT_COLUMNS)
        for r in rows:
            w.writerow(["" if r.get(k) is None else r.get(k) for k in NIGHT_COLUMNS])
        typer.echo(buf.getvalue(), nl=False)
        return
    table_rows = []
    for r in rows:
        tz = _tz(settings, str(r.get("person")))
        table_rows.append([
            f"{r.get('night')}{'*' if r.get('provisional') is True else ''}", str(r.get("person")),
            _DOSE.get(str(r.get("dose")), "?"),
            f"{_fmt_time(r.get('lights_out'), tz)}-{_fmt_time(r.get('lights_on'), tz)}",
            str(r.get("lights_source") or ""),
            _num(r.get("tst_min")), _num(r.get("sol_min")), _num(r.get("waso_min")), _num(r.get("se_pct")),
            _num(r.get("deep_min")), _num(r.get("rem_min")), _num(r.get("hr_mean_bpm"), 1),
            _num(r.get("rmssd_ms"), 1), _num(r.get("coverage_pct")), str(r.get("staging") or ""),
            "!" if r.get("flagged") is True else "",
        ])
    table = fitted_table(NIGHT_TABLE, table_rows, title=f"{len(rows)} night(s)")
    console.print(table)
    if not rows:
        console.print("no nights yet: run `magsleep nights compute`")
        return
    legend = ["dose: Mg magnesium, ctl control"]
    if any(r.get("provisional") is True for r in rows):
        legend.append("* provisional: the night's window is still open; recomputed as data arrives")
    if any(r.get("flagged") is True for r in rows):
        legend.append("! flagged: too little usable signal")
    console.print("; ".join(legend), highlight=False, markup=False)


_DOSE = {"magnesium": "Mg", "control": "ctl", "unknown": "?"}

#: The night listing; on a narrow terminal the columns with the highest ``drop`` are left out.
NIGHT_TABLE = (
    Column("night"), Column("person"), Column("dose"), Column("in bed"), Column("lights", drop=8),
    Column("TST", "right"), Column("SOL", "right"), Column("WASO", "right"), Column("SE %", "right"),
    Column("deep", "right", drop=5), Column("REM", "right", drop=5), Column("HR", "right", drop=2),
    Column("RMSSD", "right", drop=3), Column("cover %", "right", drop=4), Column("staging", drop=7),
    Column("flag"),
)


def _tz(settings: Settings, person: str) -> ZoneInfo:
    for p in settings.persons:
        if p.name == person:
            return ZoneInfo(p.timezone)
    return ZoneInfo("UTC")


@app.command("compute")
def compute(
    person: PersonOpt = None,
    since: SinceOpt = None,
    until: Annotated[str | None, typer.Option("--until", help=f"Last night: {DAY_FORMS}.")] = None,
    recompute: Annotated[bool, typer.Option("--recompute", help="Recompute nights even if unchanged.")] = False,
    workers: Annotated[int | None, typer.Option("--workers", min=1, max=64,
                                                help="Processes for staging (default: CPUs, at most 4).")] = None,
) -> None:
    """Compute new or changed nights (incremental and idempotent)."""
    settings = get_settings()
    try:
        start, end = _day(since, "--since", settings, person), _day(until, "--until", settings, person)
    except MagsleepError as exc:
        fail(str(exc))
    n_workers = workers or min(4, os.cpu_count() or 1)
    summaries = _run(lambda: compute_all(settings, person=person, since=start, until=end, recompute=recompute,
                                         workers=n_workers))
    for s in summaries:
        prov = f", {s.provisional} provisional" if s.provisional else ""
        waiting = f", {s.pending} not over yet" if s.pending else ""
        console.print(f"{s.person}: {s.computed} night(s) computed ({s.flagged} flagged{prov}), {s.unchanged} "
                      f"unchanged, {s.empty} without data{waiting}, in {s.seconds:.1f} s")
