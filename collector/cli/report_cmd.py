"""``magsleep report``: one self-contained HTML file with the nights, effects and latest night."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from collector.cli.common import console, fail, get_settings
from collector.errors import MagsleepError


def report(
    person: Annotated[str | None, typer.Option("--person", "-p", help="Whose report (default: the first person).")]
    = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the HTML file.")] = Path("report.html"),
) -> None:
    """Write an HTML report (plots embedded) that needs no Grafana."""
    from collector.report import write_report

    settings = get_settings()
    try:
        path = asyncio.run(write_report(settings, out, person=person))
    except MagsleepError as exc:
        fail(str(exc))
    console.print(f"wrote {path}")
