"""The ``magsleep`` command line.

Each area has its own module defining a ``typer.Typer`` (or commands) that is registered here.
Commands load settings once through :func:`collector.cli.common.get_settings`.
"""

from __future__ import annotations

import sys

import typer

from collector.cli import (
    ble_cmd,
    common,
    config_cmd,
    dashboards_cmd,
    dose_cmd,
    effects_cmd,
    influx_cmd,
    night_cmd,
    nights_cmd,
    report_cmd,
    schema_cmd,
    sim_cmd,
)
from collector.errors import MagsleepError

app = typer.Typer(
    name="magsleep",
    help="Find out, with honest numbers, whether evening magnesium changes your sleep.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.callback()(common.root_callback)
app.command("version")(common.version)
app.add_typer(config_cmd.app, name="config")
app.add_typer(influx_cmd.app, name="influx")
app.command("schema")(schema_cmd.schema)
app.add_typer(dose_cmd.app, name="dose")
app.add_typer(night_cmd.app, name="night")
app.add_typer(nights_cmd.app, name="nights")
app.command("api")(dose_cmd.api)
app.command("effects")(effects_cmd.effects)
app.add_typer(effects_cmd.plan_app, name="plan")
app.add_typer(dashboards_cmd.app, name="dashboards")
app.command("report")(report_cmd.report)
app.add_typer(sim_cmd.app, name="sim")
ble_cmd.register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``magsleep`` console script."""
    try:
        app(args=argv, prog_name="magsleep", standalone_mode=True)
    except MagsleepError as exc:  # pragma: no cover - typer handles most via common.fail
        common.err_console.print(f"[red]error:[/red] {exc}")
        sys.exit(2)
