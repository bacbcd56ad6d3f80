"""``magsleep influx``: ping the configured InfluxDB, run the private local one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from collector.cli.common import console, fail, get_settings
from collector.errors import MagsleepError
from collector.storage import local_influx
from collector.storage.connection import influx_target

app = typer.Typer(help="InfluxDB: ping it, or run the private local instance.", no_args_is_help=True)

DirOpt = Annotated[
    Path | None,
    typer.Option("--dir", help="Data directory of the local instance (default: <state_dir>/influxdb)."),
]


def _dir(d: Path | None) -> Path:
    return d if d is not None else local_influx.embedded_root(get_settings())


@app.command("ping")
def ping() -> None:
    """Check that the configured InfluxDB answers."""
    s = get_settings()
    try:
        target = influx_target(s)
    except MagsleepError as exc:
        fail(str(exc))
    if local_influx.ping(target.url, timeout=s.influx.timeout_s):
        console.print(f"[green]InfluxDB at {target.url} answers /ping[/green]")
    else:
        fail(
            f"InfluxDB at {target.url} does not answer /ping; is it running? (magsleep influx start runs a local one)",
            code=1,
        )


@app.command("start")
def start(
    dir: DirOpt = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (default: the port of influx.url, else 8086)")] = None,
) -> None:
    """Start the private local InfluxDB 1.x (data under the state directory)."""
    s = get_settings()
    root = _dir(dir)
    if port is None:
        port = local_influx.embedded_port(s)
    try:
        inst = local_influx.start(root, port=port)
    except MagsleepError as exc:
        fail(str(exc))
    console.print(f"local InfluxDB running at {inst.url} (pid {inst.pid}, data in {inst.root})")


@app.command("stop")
def stop(dir: DirOpt = None) -> None:
    """Stop the private local InfluxDB."""
    root = _dir(dir)
    if local_influx.stop(root):
        console.print("local InfluxDB stopped")
    else:
        console.print("local InfluxDB was not running")


@app.command("status")
def status(dir: DirOpt = None) -> None:
    """Say whether the private local InfluxDB runs."""
    inst = local_influx.status(_dir(dir).resolve())
    if inst is None:
        console.print("local InfluxDB is not running")
        raise typer.Exit(1)
    console.print(f"local InfluxDB running at {inst.url} (pid {inst.pid})")

