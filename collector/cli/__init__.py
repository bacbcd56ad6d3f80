"""The ``magsleep`` command line.

Each area has its own module defining a ``typer.Typer`` (or commands); :data:`SECTIONS` says
which top-level commands each module provides and how to register them. ``main`` imports only
the module of the command being run, so a quick ``magsleep dose add`` at bedtime does not pay for
numpy/statsmodels imports; ``collector.cli.app`` (used by tests) has everything.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

import typer
from rich.markup import escape

from collector.cli import common
from collector.errors import MagsleepError

Register = Callable[[typer.Typer, ModuleType], None]


def _typer(name: str, attr: str = "app") -> Register:
    return lambda app, m: app.add_typer(getattr(m, attr), name=name)


def _command(name: str, attr: str) -> Register:
    return lambda app, m: app.command(name)(getattr(m, attr))


def _ble(app: typer.Typer, m: ModuleType) -> None:
    m.register(app)


#: (top-level command names, module under collector.cli, how to register it)
SECTIONS: list[tuple[tuple[str, ...], str, Register]] = [
    (("config",), "config_cmd", _typer("config")),
    (("influx",), "influx_cmd", _typer("influx")),
    (("schema",), "schema_cmd", _command("schema", "schema")),
    (("scan", "pair", "devices", "forget", "run"), "ble_cmd", _ble),
    (("dose",), "dose_cmd", _typer("dose")),
    (("api",), "dose_cmd", _command("api", "api")),
    (("night",), "night_tags_cmd", _typer("night")),
    (("nights",), "nights_cmd", _typer("nights")),
    (("effects",), "effects_cmd", _command("effects", "effects")),
    (("plan",), "effects_cmd", _typer("plan", "plan_app")),
    (("dashboards",), "dashboards_cmd", _typer("dashboards")),
    (("report",), "report_cmd", _command("report", "report")),
    (("sim",), "sim_cmd", _typer("sim")),
    (("demo",), "demo_cmd", _command("demo", "demo")),
    (("validate",), "validate_cmd", _command("validate", "validate")),
    (("import",), "import_cmd", _command("import", "import_")),
]


def build_app(command: str | None = None) -> typer.Typer:
    """The typer app with every command, or only ``command`` (and ``version``) when it is known."""
    known = {n for names, _, _ in SECTIONS for n in names} | {"version"}
    only = command if command in known else None
    app = typer.Typer(
        name="magsleep",
        help="Find out, with honest numbers, whether evening magnesium changes your sleep.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    app.callback()(common.root_callback)
    app.command("version")(common.version)
    for names, module, register in SECTIONS:
        if only is None or only in names:
            register(app, importlib.import_module(f"collector.cli.{module}"))
    return app


def _command_of(args: list[str]) -> str | None:
    """The top-level command in ``args``, skipping the root options (``--config PATH``)."""
    skip = False
    for a in args:
        if skip:
            skip = False
        elif a in ("--config", "-c"):
            skip = True
        elif not a.startswith("-"):
            return a
    return None


def __getattr__(name: str) -> Any:
    if name == "app":
        full = build_app()
        globals()["app"] = full
        return full
    raise AttributeError(name)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``magsleep`` console script."""
    args = sys.argv[1:] if argv is None else argv
    try:
        build_app(_command_of(args))(args=args, prog_name="magsleep", standalone_mode=True)
    except MagsleepError as exc:  # pragma: no cover - commands report their own errors via common.fail
        common.err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        sys.exit(2)
