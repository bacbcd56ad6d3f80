"""Shared pieces of the CLI: settings loading, consoles, error exit, the one day (``--since``)
parser, tables that fit the terminal, the night/nights hint. The one moment (``--at``) parser
is the doses' (:func:`collector.doses.rules.parse_at`): its rule matches what a dose accepts."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar
from zoneinfo import ZoneInfo

import typer
from rich import box
from rich.console import Console, JustifyMethod
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from collector import __version__
from collector.errors import MagsleepError, ValidationError
from collector.settings import Settings, load_settings, resolve_config_path

if TYPE_CHECKING:  # the dose service loads only for the commands that use it
    from collector.doses.service import DoseService

T = TypeVar("T")

console = Console()
err_console = Console(stderr=True)

_state: dict[str, Path | None] = {"config": None}
_cache: dict[str, Settings] = {}


def root_callback(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Settings file (TOML). Default: $MAGSLEEP_CONFIG, else config/magsleep.toml.",
            envvar=None,
        ),
    ] = None,
) -> None:
    """Find out, with honest numbers, whether evening magnesium changes your sleep."""
    _state["config"] = config
    _cache.clear()


def config_path() -> Path | None:
    """The settings file this command reads (absolute), if any: for child processes."""
    path, _ = resolve_config_path(_state["config"])
    return path.resolve() if path is not None and path.is_file() else None


def get_settings() -> Settings:
    """The validated settings (loaded once per command); exits with a clear message if invalid."""
    if "s" not in _cache:
        from collector.doses.forms import configured_form  # a table of constants

        try:
            _cache["s"] = load_settings(_state["config"])
            configured_form(_cache["s"].doses.default_form)  # the settings do not know the forms
        except MagsleepError as exc:
            _cache.pop("s", None)
            fail(str(exc))
    return _cache["s"]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` (as plain text: ``[[persons]]`` stays as written) and exit."""
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def run_async(fn: Callable[[], Awaitable[T]], *, what: str = "dose") -> T:
    """Run ``fn`` and turn magsleep errors into a clear message and exit code 2 (a
    :class:`~collector.doses.entities.DoseValidationError` as one line per bad field)."""
    import pydantic

    from collector.doses.entities import DoseValidationError, problems_from_pydantic

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


async def report_pending(svc: DoseService) -> None:
    """Say on stderr when InfluxDB has not taken a command's dose changes yet (they are safe)."""
    n = await svc.pending()
    if n:
        err_console.print(
            f"[yellow]InfluxDB did not take {n} change(s) yet; they are safe in the dose journal "
            "and are sent later (next command, the daemon, or `magsleep dose sync`).[/yellow]")


#: ``--person`` of the dose and night commands.
Person = Annotated[str | None, typer.Option("--person", "-p", help="Whose dose (default: the only configured person).")]


def version() -> None:
    """Print the magsleep version."""
    console.print(f"magsleep {__version__}")


#: The forms every day option takes (--since, --until, --start, a night's DATE).
DAY_FORMS = "7d (7 days before today), today, yesterday or a date YYYY-MM-DD"
SINCE_HELP = f"From this day on: {DAY_FORMS}."

_DAYS_AGO = re.compile(r"(\d{1,5})\s*d")


def parse_day(text: str, today: date, option: str = "--since") -> date:
    """A day as every command takes it: ``Nd`` (N days before ``today``), ``today``,
    ``yesterday`` or an ISO date. ``today`` is the caller's (see :func:`today_for`)."""
    t = text.strip().lower()
    if t == "today":
        return today
    if t == "yesterday":
        return today - timedelta(days=1)
    m = _DAYS_AGO.fullmatch(t)
    if m:
        return today - timedelta(days=int(m.group(1)))
    try:
        return date.fromisoformat(t)
    except ValueError:
        raise ValidationError(f"{option} {text!r}: give {DAY_FORMS}") from None


def today_for(settings: Settings, person: str | None = None, now: datetime | None = None) -> date:
    """Today's date where the person lives (the given one, else the only configured one; else
    this machine's time zone). ``now``: the clock (default the real one)."""
    at = now if now is not None else datetime.now(UTC)
    names = [p.name for p in settings.persons]
    name = person if person in names else (names[0] if len(names) == 1 and person is None else None)
    if name is None:
        return at.astimezone().date()
    return at.astimezone(ZoneInfo(settings.person(name).timezone)).date()


#: Command groups people mix up: a subcommand typed under one is looked for in the other.
SIBLINGS = {"night": "nights", "nights": "night"}


def sibling_hint(group: str, word: str) -> str | None:
    """``magsleep OTHER WORD`` when ``WORD`` is a command of ``group``'s sibling group."""
    other = SIBLINGS.get(group)
    if other is None:
        return None
    from collector.cli import build_app  # only on this error path: it loads the sibling's module

    root = typer.main.get_command(build_app(other))
    sub = getattr(root, "commands", {}).get(other)
    return f"magsleep {other} {word}" if word in getattr(sub, "commands", {}) else None


class SiblingHintGroup(TyperGroup):
    """A command group whose "No such command" says so when the command is in the sibling group
    (``magsleep night list`` -> "did you mean `magsleep nights list`?")."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except typer.TyperException as exc:  # click's UsageError ("No such command ...")
            hint = sibling_hint(self.name or "", args[0]) if args else None
            if hint is not None:
                exc.message = f"No such command {args[0]!r} in `{ctx.command_path}`. Did you mean `{hint}`?"
            raise


@dataclass(frozen=True)
class Column:
    """A listing's column. ``drop``: 0 = always shown; when the terminal is too narrow the column
    with the highest ``drop`` goes first. ``wrap``: free text that may wrap (a note)."""

    header: str
    justify: JustifyMethod = "left"
    drop: int = 0
    wrap: bool = False


def fitted_table(columns: Sequence[Column], rows: Sequence[Sequence[str]], *, title: str | None = None,
                 width: int | None = None) -> Table:
    """A table that fits ``width`` (default the terminal's, 80 when not a terminal): values are
    never cut or squeezed (only ``wrap`` columns wrap); columns are left out, highest ``drop``
    first, until it fits. Cells are rich markup (escape free text)."""
    limit = width if width is not None else console.width
    cells = [[Text.from_markup(c).cell_len for c in r] for r in rows]

    def need(i: int) -> int:
        natural = max([len(columns[i].header), *(r[i] for r in cells)])
        return min(natural, max(len(columns[i].header), _WRAP_MIN)) if columns[i].wrap else natural

    shown = list(range(len(columns)))
    while sum(need(i) for i in shown) + _GAP * (len(shown) - 1) > limit:
        droppable = [i for i in shown if columns[i].drop > 0]
        if not droppable:
            break
        shown.remove(max(droppable, key=lambda i: (columns[i].drop, i)))
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  padding=(0, 1, 0, 0))
    for i in shown:
        c = columns[i]
        table.add_column(c.header, justify=c.justify, no_wrap=not c.wrap, overflow="fold" if c.wrap else "ellipsis")
    for r in rows:
        table.add_row(*(r[i] for i in shown))
    if len(shown) < len(columns):
        table.caption = "not shown at this width: " + ", ".join(c.header for i, c in enumerate(columns)
                                                                if i not in shown)
        table.caption_justify = "left"
    return table


_GAP = 2  # between two columns: one space of padding, one of the (blank) column separator
_WRAP_MIN = 12  # a wrapping column (a note) gets at least this many characters
