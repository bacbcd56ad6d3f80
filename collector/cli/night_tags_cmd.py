"""``magsleep night``: tags on nights (no dose, alcohol, ...) and lights out / lights on.

Every ``night`` command lives here: the console script loads only this module for ``night``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from collector.app.doses import open_dose_service
from collector.cli.common import (
    DAY_FORMS,
    SINCE_HELP,
    Person,
    SiblingHintGroup,
    console,
    get_settings,
    parse_day,
    report_pending,
    run_async,
    today_for,
)
from collector.doses.entities import LightsEvent, NightTagName, Source
from collector.doses.lights import person_settings
from collector.doses.points import lights_point_of
from collector.doses.rules import AT_HELP
from collector.errors import ValidationError
from collector.settings import Settings
from collector.storage.lineprotocol import Point

app = typer.Typer(help="Nights: tag them (no dose, alcohol, ...), lights out / lights on.", no_args_is_help=True,
                  cls=SiblingHintGroup)


@app.command("tag")
def tag(
    night: Annotated[str, typer.Argument(metavar="DATE", help=f"The evening's date: {DAY_FORMS}.")],
    no_dose: Annotated[bool, typer.Option("--no-dose", help="No magnesium that evening.")] = False,
    alcohol: Annotated[bool, typer.Option("--alcohol", help="Alcohol that evening.")] = False,
    caffeine_late: Annotated[bool, typer.Option("--caffeine-late", help="Caffeine late in the day.")] = False,
    training: Annotated[bool, typer.Option("--training", help="Hard training that day.")] = False,
    illness: Annotated[bool, typer.Option("--illness", help="Ill that night.")] = False,
    remove: Annotated[bool, typer.Option("--remove", help="Remove the given tags instead.")] = False,
    person: Person = None,
) -> None:
    """Tag a night, e.g. `magsleep night tag 2026-11-20 --no-dose --alcohol`."""
    settings = get_settings()
    chosen = [t for t, on in ((NightTagName.no_dose, no_dose), (NightTagName.alcohol, alcohol),
                              (NightTagName.caffeine_late, caffeine_late),
                              (NightTagName.training, training), (NightTagName.illness, illness))
              if on]

    async def go() -> None:
        async with open_dose_service(settings) as svc:
            names = svc.rules.persons()
            tz = svc.rules.zone_for(person)
            d = parse_day(night, svc.rules.now().astimezone(tz).date(), "night")
            if not chosen:
                raise ValidationError("give at least one tag: --no-dose, --alcohol, "
                                      "--caffeine-late, --training or --illness")
            results = await svc.tag_night(person, d, chosen, remove=remove)
            for t, changed in results:
                if remove:
                    state = "removed" if changed else "was not set"
                else:
                    state = "tagged" if changed else "already tagged"
                console.print(f"{d.isoformat()} {t.value}: {state}")
            if not remove and NightTagName.no_dose in chosen:
                who = person or names[0]
                start = svc.rules.tz(who)
                doses = await svc.list_doses(person=who)
                same = [x for x in doses if x.taken_at.astimezone(start).date() == d]
                if same:
                    console.print(f"[yellow]note: {len(same)} dose(s) are logged on {d}; delete "
                                  "them if the night really had no dose[/yellow]")

    run_async(go)


@app.command("tags")
def tags(
    since: Annotated[str | None, typer.Option("--since", help=SINCE_HELP)] = None,
    person: Person = None,
) -> None:
    """List night tags, newest first."""
    settings = get_settings()

    async def go() -> None:
        async with open_dose_service(settings, influx=False) as svc:
            start = parse_day(since, today_for(settings, person, svc.rules.now())) if since else None
            rows = await svc.night_tags(person=person, since=start)
        table = Table(title=f"{len(rows)} night tag(s)")
        for col in ("night", "person", "tag"):
            table.add_column(col)
        for r in rows:
            table.add_row(r.night.isoformat(), r.person, r.tag.value)
        console.print(table)

    run_async(go)


# -- lights out / lights on ------------------------------------------------------------------
# They go through the dose service like the other night tags: journaled first (so they survive
# InfluxDB being down), then mirrored as `night_tag` points (collector.doses.lights.lights_point).


async def write_lights(settings: Settings, person: str | None, tag: str, at: str | None,
                       now: datetime | None = None) -> Point:
    """Record lights out/on through the dose journal; returns the ``night_tag`` point it makes."""
    clock = now or datetime.now(UTC)
    async with open_dose_service(settings, now=None if now is None else (lambda: clock)) as svc:
        saved, _ = await svc.record_lights(person, LightsEvent(tag), at, source=Source.cli)
        await report_pending(svc)
    return lights_point_of(saved)


AtOpt = Annotated[str | None, typer.Option("--at", help=f"{AT_HELP[:-1]}; default now.")]
NightPerson = Annotated[str | None, typer.Option("--person", "-p", help="Whose night (default: the only person).")]


def _lights(tag: str, at: str | None, person: str | None) -> None:
    settings = get_settings()
    point = run_async(lambda: write_lights(settings, person, tag, at), what=tag.replace("_", " "))
    tz = person_settings(settings, str(point.tags["person"])).tz
    at_ns = point.fields["at"]
    hm = datetime.fromtimestamp(at_ns / 1e9, tz).strftime("%H:%M") if isinstance(at_ns, int) else ""
    console.print(f"{point.tags['person']} night {point.fields['night']}: {tag.replace('_', ' ')} at "
                  f"{hm}; run `magsleep nights compute` to update the night")


@app.command("lights-out")
def lights_out(at: AtOpt = None, person: NightPerson = None) -> None:
    """Record lights out (now or --at): sleep latency is measured from it."""
    _lights("lights_out", at, person)


@app.command("lights-on")
def lights_on(at: AtOpt = None, person: NightPerson = None) -> None:
    """Record lights on (now or --at): the end of time in bed."""
    _lights("lights_on", at, person)
