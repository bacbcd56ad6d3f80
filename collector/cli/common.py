"""Shared pieces of the CLI: settings loading, consoles, error exit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from collector import __version__
from collector.errors import MagsleepError
from collector.settings import Settings, load_settings, resolve_config_path

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
        try:
            _cache["s"] = load_settings(_state["config"])
        except MagsleepError as exc:
            fail(str(exc))
    return _cache["s"]


def fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(f"[red]error:[/red] {message}", highlight=False, markup=True)
    raise typer.Exit(code)


def version() -> None:
    """Print the magsleep version."""
    console.print(f"magsleep {__version__}")
