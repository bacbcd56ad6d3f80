"""``magsleep night``: tags on nights (no dose, alcohol, late caffeine, training, illness).

Other areas add their own ``night`` commands (e.g. lights out / lights on) to :data:`app`.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

import typer
from rich.table import Table

from collector.cli.common import console, get_settings
from collector.cli.dose_cmd import Person, open_service, run
from collector.doses.model import NightTagName
from collector.errors import ValidationError

app = typer.Typer(help="Nights: tag them (no dose, alcohol, ...).", no_args_is_help=True)


def parse_night(text: str, today: date) -> date:
    """The evening's date: YYYY-MM-DD, 'today' or 'yesterday'."""
    t = text.strip().lower()
    if t == "today":
        return today
    if t == "yesterday":
        return today - timedelta(days=1)
    try:
        return date.fromisoformat(t)
    except ValueError:
        raise ValidationError(
            f"night {text!r}: give the evening's date as YYYY-MM-DD, 'today' or 'yesterday'"
        ) from None


@app.command("tag")
def tag(
    night: Annotated[str, typer.Argument(metavar="DATE", help="The evening's date (YYYY-MM-DD, today, yesterday).")],
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
        async with open_service(settings) as svc:
            names = svc.rules.persons()
            tz = svc.rules.tz(person or (names[0] if len(names) == 1 else ""))
            d = parse_night(night, svc.rules.now().astimezone(tz).date())
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

    run(go)


@app.command("tags")
def tags(
    since: Annotated[str | None, typer.Option("--since", help="YYYY-MM-DD")] = None,
    person: Person = None,
) -> None:
    """List night tags, newest first."""
    settings = get_settings()

    async def go() -> None:
        async with open_service(settings, influx=False) as svc:
            start = parse_night(since, date.today()) if since else None  # noqa: DTZ011
            rows = await svc.night_tags(person=person, since=start)
        table = Table(title=f"{len(rows)} night tag(s)")
        for col in ("night", "person", "tag"):
            table.add_column(col)
        for r in rows:
            table.add_row(r.night.isoformat(), r.person, r.tag.value)
        console.print(table)

    run(go)
